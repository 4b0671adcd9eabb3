"""Operation counts per layer from a NIR graph and recorded activity (per sample, averaged).

For every synapse node (Conv1d, Affine, Linear, SBSpikeAttention, SBTokenMean):
- ``dense_macs``: the multiply-accumulates a non-spiking network of the same shape would do, T steps.
- spike input (from LIF/Threshold nodes): ``acs = input nonzeros x fan-out`` (synaptic operations).
- real-valued input (embedding, LayerNorm output, ...): ``macs = dense_macs``.
- integer input (a residual join of spike trains; SpikeBERT's stream): convention ``residual``:
  ``"mac"`` counts it as dense MACs (NeuroBench/syops view), ``"accumulate"`` as k accumulates per
  value k (``acs = sum|x| x fan-out``, the multi-spike view).
- attention: ``acs`` = exact accumulates of Q K^T (coincidences) and A V (nonzeros x fan-out).
- token mean: one accumulate per input element.
LIF nodes contribute ``neuron_updates`` = neurons x real tokens' share x T.

Memory accesses, for the memory-aware profiles (``spikebert.energy.profiles``):
- ``weight_reads``: one per accumulate (each input spike fetches its fan-out weights; attention
  fetches one stored K or V spike per accumulate); a MAC layer reads each weight once per time step
  (reused over the tokens of that step); the token mean reads none.
- ``state_accesses``: a membrane read and a write per neuron update.
Rows come in the graph's topological order.

SpikingBERT (:func:`spikingbert_counts`) has no NIR form (softmax, LayerNorm and GELU act on the
currents of its populations), so its rows come from its shape and population spike counts with the
same conventions: a matrix product with spike input is ``spikes x fan-out`` accumulates; ``Q s_K^T``
and ``softmax(A) s_V`` are one accumulate per key (value) spike and query token; the classifier on
real-valued rates is MACs; every population is ``neurons x real tokens x T`` updates. The softmax,
LayerNorm and GELU elements are outside the scope, as the teacher's are, and reported beside it.
"""

from __future__ import annotations

import dataclasses

import nir
import numpy as np

from spikebert.contract.activity import Activity
from spikebert.contract.errors import SpikebertError
from spikebert.contract.extension import SBSpikeAttention, SBTokenMean
from spikebert.contract.graph import predecessors, topological_order

RESIDUAL_CONVENTIONS = ("mac", "accumulate")
STATE_ACCESSES_PER_UPDATE = 2  # read the membrane, write it back


@dataclasses.dataclass
class LayerCount:
    """Operations per sample of one node (T steps). ``input_rate`` is the share of nonzero input
    elements (the firing rate for spike inputs) and ``input_elements`` their number (real tokens)."""

    name: str
    kind: str  # conv1d | affine | attention | token-mean | neurons
    input_kind: str  # spike | integer | real | -
    input_rate: float
    dense_macs: float
    macs: float
    acs: float
    neuron_updates: float
    weight_reads: float = 0.0
    state_accesses: float = 0.0
    input_elements: float = 0.0


@dataclasses.dataclass(frozen=True)
class TeacherCount:
    """Teacher operations per sample: MACs of its matrix products and the reads of their stationary
    operand (each weight once per sample; K and V once per attention product); ``method`` says how
    they were counted."""

    macs: float
    weight_reads: float
    method: str


def _input_kind(graph: nir.NIRGraph, preds: dict, name: str) -> str:
    kinds = set()
    for p in preds[name]:
        node = graph.nodes[p]
        if isinstance(node, (nir.LIF, nir.IF, nir.Threshold)):
            kinds.add("spike")
        elif isinstance(node, nir.Scale) and np.all(node.scale == 1):
            inner = _input_kind(graph, preds, p)
            kinds.add("integer" if inner in ("spike", "integer") else "real")
        else:
            kinds.add("real")
    if kinds == {"spike"}:
        return "spike" if len(preds[name]) == 1 else "integer"
    return "integer" if kinds <= {"spike", "integer"} else "real"


def count_operations(graph: nir.NIRGraph, activity: Activity, *, residual: str = "mac") -> list[LayerCount]:
    if residual not in RESIDUAL_CONVENTIONS:
        raise SpikebertError(f"residual convention {residual!r}: use one of {RESIDUAL_CONVENTIONS}")
    if activity.samples < 1:
        raise SpikebertError("activity records no samples")
    preds = predecessors(graph)
    n, T = activity.samples, activity.time_steps
    tokens = activity.real_tokens / n  # real tokens per sample
    rows = []
    for name in topological_order(graph):
        node = graph.nodes[name]
        if isinstance(node, (nir.LIF, nir.IF)):
            channels = int(np.prod(node.v_threshold.shape[:-1])) if node.v_threshold.ndim > 1 else node.v_threshold.size
            per_token = node.v_threshold.ndim > 1
            updates = channels * (tokens if per_token else 1) * T
            rows.append(LayerCount(name, "neurons", "-", 0.0, 0.0, 0.0, 0.0, updates,
                                   state_accesses=STATE_ACCESSES_PER_UPDATE * updates))
            continue
        act = activity.nodes.get(name)
        if act is None:
            continue
        kind = _input_kind(graph, preds, name)
        elements = act.input_elements / n
        if isinstance(node, nir.Conv1d):
            c_out, c_in = node.weight.shape[:2]
            dense, fan_out, label = c_in * c_out * tokens * T, c_out, "conv1d"
        elif isinstance(node, (nir.Affine, nir.Linear)):
            m, k = node.weight.shape
            dense, fan_out, label = m * k * T, m, "affine"
        elif isinstance(node, SBSpikeAttention):
            dense = 2 * tokens * tokens * node.dim * T
            acs = (act.qk_accumulates + act.av_accumulates) / n
            rows.append(LayerCount(name, "attention", kind, act.input_rate, dense, 0.0, acs, 0.0,
                                   weight_reads=acs, input_elements=elements))
            continue
        elif isinstance(node, SBTokenMean):
            rows.append(LayerCount(name, "token-mean", kind, act.input_rate, 0.0, 0.0, elements, 0.0,
                                   input_elements=elements))
            continue
        else:
            continue
        if kind == "spike" or (kind == "integer" and residual == "accumulate"):
            count = act.input_abs_sum if kind == "integer" else act.input_nonzeros
            acs = count * fan_out / n
            rows.append(LayerCount(name, label, kind, act.input_rate, dense, 0.0, acs, 0.0,
                                   weight_reads=acs, input_elements=elements))
        else:
            rows.append(LayerCount(name, label, kind, act.input_rate, dense, dense, 0.0, 0.0,
                                   weight_reads=float(node.weight.size * T), input_elements=elements))
    return rows


def teacher_counts(config: dict, lengths: list[int]) -> TeacherCount:
    """Mean operations per sample of a BERT encoder classifier at the given sequence lengths n.

    Per layer: Q, K, V, O projections 4 n d^2; Q K^T and A V 2 n^2 d; FFN 2 n d d_ff MACs.
    Plus pooler d^2 and classifier d C. Embedding lookups, LayerNorm, softmax, GELU, biases not counted.
    Weight reads per layer: 4 d^2 + 2 d d_ff, plus K and V (n d each); pooler d^2, classifier d C.
    """
    if not lengths:
        raise SpikebertError("teacher_counts needs at least one sequence length")
    d, d_ff, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    classes = config.get("num_labels", len(config.get("id2label", {})) or 2)
    macs = reads = 0.0
    for n in lengths:
        macs += layers * (4 * n * d * d + 2 * n * n * d + 2 * n * d * d_ff) + d * d + d * classes
        reads += layers * (4 * d * d + 2 * d * d_ff + 2 * n * d) + d * d + d * classes
    return TeacherCount(macs=macs / len(lengths), weight_reads=reads / len(lengths), method="analytic")


def teacher_macs(config: dict, lengths: list[int]) -> float:
    """Mean MACs per sample of a BERT encoder classifier (:func:`teacher_counts`)."""
    return teacher_counts(config, lengths).macs


@dataclasses.dataclass
class PopulationActivity:
    """Spike counts of a SpikingBERT simulation, summed over the sentences of a run.

    ``populations[name]`` = {"spikes", "neuron_steps", "spikes_x_tokens"}: spikes over real tokens and
    steps, the (neuron, real token, step) triples they could have filled, and the sum over sentences
    of spikes x the sentence's real length (what attention products need). ``token_pairs`` is the
    sum over sentences of n^2."""

    samples: int
    time_steps: int
    real_tokens: float
    token_pairs: float
    populations: dict[str, dict[str, float]]
    backend: str = "torch-simulation"

    def add(self, other: PopulationActivity) -> PopulationActivity:
        """The record of both runs (same T); populations are summed field by field."""
        if other.time_steps != self.time_steps:
            raise SpikebertError(f"cannot add activity at T={other.time_steps} to activity at T={self.time_steps}")
        pops = {k: dict(v) for k, v in self.populations.items()}
        for name, fields in other.populations.items():
            mine = pops.setdefault(name, dict.fromkeys(fields, 0.0))
            for key, value in fields.items():
                mine[key] = mine.get(key, 0.0) + value
        return PopulationActivity(self.samples + other.samples, self.time_steps, self.real_tokens + other.real_tokens,
                                  self.token_pairs + other.token_pairs, pops, self.backend)

    def rate(self, name: str) -> float:
        p = self.populations[name]
        return p["spikes"] / p["neuron_steps"] if p["neuron_steps"] else 0.0

    def to_json(self, path) -> None:
        import json
        from pathlib import Path

        from spikebert.contract.fileio import atomic_write_text

        atomic_write_text(Path(path), json.dumps(dataclasses.asdict(self), indent=1, sort_keys=True) + "\n")

    @classmethod
    def from_json(cls, path) -> PopulationActivity:
        """Read a record written by :meth:`to_json`; anything else (a wrong key or type, a negative or non-finite
        count, a file that is not such JSON) raises ``SpikebertError`` naming the file."""
        from spikebert.contract.jsonfile import check_keys, count, integer, read_json, require_object

        what = "SpikingBERT population activity record"
        data = require_object(read_json(path, what=what), path, what=what)
        check_keys(data, path, where=f"the {what}", required={"samples", "time_steps", "real_tokens", "token_pairs",
                                                               "populations"}, optional={"backend"})
        backend = data.get("backend", "torch-simulation")
        if not isinstance(backend, str):
            raise SpikebertError(f"{path}: backend must be a string, got {backend!r:.40}")
        fields = {"spikes", "neuron_steps", "spikes_x_tokens"}
        pops = require_object(data["populations"], path, what=what + " (its populations)")
        broken = sorted(n for n, p in pops.items() if not isinstance(p, dict) or fields - set(p))
        if broken:
            raise SpikebertError(f"{path}: populations {broken} lack some of {sorted(fields)}; record it again with "
                                 "`spikebert energy model.pt` (it writes activity.json)")
        populations = {}
        for name, pop in pops.items():
            check_keys(pop, path, where=f"population {name!r}", required=fields)
            populations[name] = {k: count(v, path, where=f"{name}.{k}") for k, v in pop.items()}
        return cls(samples=integer(data["samples"], path, where="samples", minimum=0),
                   time_steps=integer(data["time_steps"], path, where="time_steps", minimum=1),
                   real_tokens=count(data["real_tokens"], path, where="real_tokens"),
                   token_pairs=count(data["token_pairs"], path, where="token_pairs"),
                   populations=populations, backend=backend)


@dataclasses.dataclass(frozen=True)
class NonlinearCount:
    """Elements per sample through the operations outside the counting scope (softmax, LayerNorm, GELU)."""

    softmax: float
    layer_norm: float
    gelu: float

    @property
    def total(self) -> float:
        return self.softmax + self.layer_norm + self.gelu


def spikingbert_counts(*, depth: int, dim: int, mlp_dim: int, heads: int, num_classes: int,
                       activity: PopulationActivity) -> tuple[list[LayerCount], NonlinearCount]:
    """Per-sample rows of a SpikingBERT student (module docstring) and its out-of-scope elements.

    Population names as ``spikebert.spikingbert.population_names``: ``embedding.population`` and
    ``layer{i}.{key,value,attention,self_output,intermediate,output}``. Not counted, as biases and
    the teacher's residual adds are not: the residual spikes added into the self-output and output
    currents (one add per input spike, under 1 % of the ACs)."""
    if activity.samples < 1:
        raise SpikebertError("activity records no samples")
    n, T = activity.samples, activity.time_steps
    tokens, pairs = activity.real_tokens / n, activity.token_pairs / n
    pops = activity.populations
    missing = [p for p in ("embedding.population", f"layer{depth - 1}.output") if p not in pops]
    if missing:
        raise SpikebertError(f"activity has no population {missing}: it was recorded from another architecture "
                         f"(depth {depth} expected)")

    def spikes(name: str) -> float:
        return pops[name]["spikes"] / n

    def affine(name: str, source: str, fan_in: int, fan_out: int) -> LayerCount:
        acs = spikes(source) * fan_out
        return LayerCount(name, "affine", "spike", activity.rate(source), fan_in * fan_out * tokens * T, 0.0, acs,
                          0.0, weight_reads=acs, input_elements=fan_in * tokens * T)

    def neurons(name: str, channels: int) -> LayerCount:
        updates = channels * tokens * T
        return LayerCount(name, "neurons", "-", 0.0, 0.0, 0.0, 0.0, updates,
                          state_accesses=STATE_ACCESSES_PER_UPDATE * updates)

    def product(name: str, source: str) -> LayerCount:  # Q s_K^T or softmax(A) s_V, real x spikes
        acs = pops[source]["spikes_x_tokens"] / n
        return LayerCount(name, "attention", "spike", activity.rate(source), pairs * dim * T, 0.0, acs, 0.0,
                          weight_reads=acs, input_elements=dim * tokens * T)

    rows = [neurons("embedding.population", dim)]
    source = "embedding.population"
    for i in range(depth):
        p = f"layer{i}"
        rows += [affine(f"{p}.query", source, dim, dim), affine(f"{p}.key", source, dim, dim),
                 neurons(f"{p}.key.neurons", dim), affine(f"{p}.value", source, dim, dim),
                 neurons(f"{p}.value.neurons", dim), product(f"{p}.scores", f"{p}.key"),
                 product(f"{p}.context", f"{p}.value"), neurons(f"{p}.attention.neurons", dim),
                 affine(f"{p}.out", f"{p}.attention", dim, dim), neurons(f"{p}.self_output.neurons", dim),
                 affine(f"{p}.fc1", f"{p}.self_output", dim, mlp_dim), neurons(f"{p}.intermediate.neurons", mlp_dim),
                 affine(f"{p}.fc2", f"{p}.intermediate", mlp_dim, dim), neurons(f"{p}.output.neurons", dim)]
        source = f"{p}.output"
    head = float(dim * num_classes)  # real-valued [CLS] rates: MACs, once per sentence
    rows.append(LayerCount("classifier", "affine", "real", 1.0, head, head, 0.0, 0.0, weight_reads=head,
                           input_elements=float(dim)))
    other = NonlinearCount(softmax=depth * heads * pairs * T, layer_norm=dim * tokens * (1 + 2 * depth * T),
                           gelu=depth * mlp_dim * tokens * T)
    return rows, other
