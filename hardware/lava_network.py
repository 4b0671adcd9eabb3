"""What a Lava build hands over: ``GroupSpec`` (what one ``NodeGroup`` process runs) and ``LavaNetwork`` (the built
processes). Both builds (``spikebert.hardware.nir_to_lava`` and its ``fuse="deploy"`` in
``spikebert.hardware.lava_deploy``) and the ``NodeGroup`` process read these; no Lava import is needed for them.
"""

from __future__ import annotations

import dataclasses

import nir
import numpy as np

from spikebert.contract.extension import SBTokenMean
from spikebert.hardware.fixed_point import fixed_params


@dataclasses.dataclass
class GroupSpec:
    """What a ``NodeGroup`` process runs (its ``proc_params["spec"]``)."""

    nodes: dict[str, nir.NIRNode]
    order: list[str]
    internal_preds: dict[str, list[str]]
    entries: set[str]  # nodes that read the group's input port
    recorded: list[str]  # synapse nodes whose activity the group records
    dt: float | None
    time_steps: int
    latency: int
    n_batches: int
    masks: np.ndarray | None  # (n_batches, B, positions): real tokens / real rows
    reset: bool = True  # state to 0 at each sentence window; False for branch-alignment delays (pure shifts)
    error_path: str | None = None  # where the process writes the traceback of an exception (the runner watches it)
    recurrent_preds: dict[str, list[str]] = dataclasses.field(default_factory=dict)  # inside the group, last step's
    output: str | None = None  # the node whose value the group sends (default: the last in order)

    @property
    def sends(self) -> str:
        return self.output or self.order[-1]

    @property
    def float_output(self) -> bool:
        return any(_is_readout(self.nodes[n]) for n in self.order)


def _is_readout(node: nir.NIRNode) -> bool:
    """A float node of a quantised graph: synapses that feed no spiking population, the token mean."""
    return isinstance(node, (SBTokenMean, nir.Affine, nir.Linear, nir.Conv1d)) and fixed_params(node) is None


@dataclasses.dataclass
class LavaNetwork:
    source: object
    sink: object
    groups: dict[str, object]  # group name -> NodeGroup process
    lava_processes: dict[str, object]  # NIR node name -> lava-nc LIFReset / Dense
    num_steps: int
    output_latency: int
    exceptions: dict  # process -> ProcessModel (the float sink of a fixed-point run)
    loops: dict = dataclasses.field(default_factory=dict)  # RecurrentDelay processes of recurrent edges

    @property
    def num_processes(self) -> int:
        return len(self.groups) + len(self.lava_processes) + len(self.loops) + 2
