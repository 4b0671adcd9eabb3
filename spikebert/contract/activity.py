"""Recorded activity: what a backend measured while running a NIR graph, for the energy module.

Totals over samples, time steps and real tokens (padding excluded when the graph masks it):
per node that has synapses (Conv1d, Affine, Linear, SBSpikeAttention, SBSpikeDrivenAttention, SBTokenMean),
the nonzeros, the sum of absolute values and the number of elements of its (summed) input, plus for
attention nodes the exact accumulate counts of the two products (spike-driven attention: its K * V
coincidences in ``qk_accumulates``).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from spikebert.contract.errors import SpikebertError
from spikebert.contract.jsonfile import check_keys, count, integer, read_json, require_object


@dataclasses.dataclass
class NodeActivity:
    input_nonzeros: float = 0.0
    input_abs_sum: float = 0.0
    input_elements: float = 0.0
    qk_accumulates: float = 0.0  # attention nodes only
    av_accumulates: float = 0.0  # attention nodes only

    def add(self, other: NodeActivity) -> None:
        for f in dataclasses.fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def same_counts(self, other: NodeActivity) -> bool:
        """Equal integer counts (spikes, elements, attention accumulates); ``input_abs_sum`` is a float
        sum whose order differs between backends."""
        return (self.input_nonzeros, self.input_elements, self.qk_accumulates, self.av_accumulates) == (
            other.input_nonzeros, other.input_elements, other.qk_accumulates, other.av_accumulates)

    @property
    def input_rate(self) -> float:
        """Share of nonzero input elements (the firing rate for spike inputs)."""
        return self.input_nonzeros / self.input_elements if self.input_elements else 0.0


@dataclasses.dataclass
class Activity:
    backend: str
    samples: int
    time_steps: int
    real_tokens: float  # total real (non-padding) tokens over all samples
    nodes: dict[str, NodeActivity]

    def same_counts(self, other: Activity) -> bool:
        """Every node recorded here has the same counts in ``other`` (:meth:`NodeActivity.same_counts`); a
        backend may record fewer nodes (lava-nc's own Dense processes record nothing)."""
        return all(name in other.nodes and node.same_counts(other.nodes[name]) for name, node in self.nodes.items())

    def to_json(self, path: str | Path) -> None:
        from spikebert.contract.fileio import atomic_write_text

        data = dataclasses.asdict(self)
        atomic_write_text(Path(path), json.dumps(data, indent=1, sort_keys=True) + "\n")

    @classmethod
    def from_json(cls, path: str | Path) -> Activity:
        """Read a record written by :meth:`to_json`; anything else (a wrong key or type, a negative or non-finite
        count, a file that is not such JSON) raises ``SpikebertError`` naming the file."""
        data = require_object(read_json(path, what="activity record"), path, what="activity record")
        check_keys(data, path, where="the activity record", required={f.name for f in dataclasses.fields(cls)})
        if not isinstance(data["backend"], str):
            raise SpikebertError(f"{path}: backend must be a string, got {data['backend']!r:.40}")
        nodes = require_object(data["nodes"], path, what="activity record (its nodes)")
        fields = {f.name for f in dataclasses.fields(NodeActivity)}
        read = {}
        for name, node in nodes.items():
            node = require_object(node, path, what=f"activity record (its node {name!r})")
            check_keys(node, path, where=f"node {name!r}", required=set(), optional=fields)
            read[name] = NodeActivity(**{k: count(v, path, where=f"{name}.{k}") for k, v in node.items()})
        return cls(backend=data["backend"], samples=integer(data["samples"], path, where="samples", minimum=0),
                   time_steps=integer(data["time_steps"], path, where="time_steps", minimum=1),
                   real_tokens=count(data["real_tokens"], path, where="real_tokens"), nodes=read)
