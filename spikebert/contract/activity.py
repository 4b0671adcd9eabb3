"""Recorded activity: what a backend measured while running a NIR graph, for the energy module.

Totals over samples, time steps and real tokens (padding excluded when the graph masks it):
per node that has synapses (Conv1d, Affine, Linear, SBSpikeAttention, SBTokenMean), the
nonzeros, the sum of absolute values and the number of elements of its (summed) input, plus for
attention nodes the exact accumulate counts of the two products.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path


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
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        nodes = {k: NodeActivity(**v) for k, v in data.pop("nodes").items()}
        return cls(nodes=nodes, **data)
