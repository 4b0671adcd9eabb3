"""Operation counts per layer from a NIR graph and recorded activity (per sample, averaged).

For every synapse node (Conv1d, Affine, Linear, SBSpikeAttention, SBTokenMean):
- ``dense_macs``: the multiply-accumulates a non-spiking network of the same shape would do, T steps.
- spike input (from LIF/Threshold nodes): ``acs = input nonzeros x fan-out`` (synaptic operations).
- real-valued input (embedding, LayerNorm output, ...): ``macs = dense_macs``.
- integer input (a residual join of spike trains; SpikeBERT's stream): convention ``residual``:
  ``"mac"`` counts it as dense MACs (NeuroBench/syops view), ``"accumulate"`` as k accumulates per
  value k (``acs = sum|x| x fan-out``, the multi-spike view).
- attention: ``acs`` = exact accumulates of Q K^T (coincidences) and (A + B) V (nonzeros x fan-out; B = relative
  positions, absent by default).
- spike-driven attention: ``acs`` = the K * V coincidences it sums over the tokens (masking Q is an AND, not
  counted); its own population (D neurons per step) is the row ``<name>/population``.
- token mean: one accumulate per input element.
LIF nodes contribute ``neuron_updates`` = neurons x real tokens' share x T.

Memory accesses, for the memory-aware profiles (``spikebert.energy.profiles``):
- ``weight_reads``: one per accumulate (each input spike fetches its fan-out weights; attention
  fetches one stored K or V spike per accumulate); a MAC layer reads each weight once per time step
  (reused over the tokens of that step); the token mean reads none.
- ``state_accesses``: a membrane read and a write per neuron update.
Rows come in the graph's topological order.

Shapes, for the Lemaire-style estimator (:mod:`spikebert.energy.lemaire`): a synapse row carries
``fan_in`` and ``fan_out`` (an attention row: the stationary operand's length), ``output_elements``
(per sample, real tokens x T), ``params`` (weights + biases it stores; attention: its K and V
spikes of one step) and ``has_bias``; a neuron row its ``output_spikes`` (None where the activity
cannot tell: a population whose spikes only enter a residual sum that no synapse reads whole)
and ``leaky`` (LIF, one leak multiply per update; IF none).

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
from spikebert.contract.extension import SBPositionSpikes, SBSpikeAttention, SBSpikeDrivenAttention, SBTokenMean
from spikebert.contract.graph import is_join, predecessors, topological_order

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
    fan_in: float = 0.0
    fan_out: float = 0.0
    output_elements: float = 0.0
    params: float = 0.0
    has_bias: bool = False
    output_spikes: float | None = None
    leaky: bool = False


@dataclasses.dataclass(frozen=True)
class TeacherCount:
    """Teacher operations per sample: MACs of its matrix products and the reads of their stationary
    operand (each weight once per sample; K and V once per attention product); ``method`` says how
    they were counted; ``layers`` the same per matrix product (mean over the sentences' lengths), for
    estimators that price each layer by its shape (:mod:`spikebert.energy.lemaire`)."""

    macs: float
    weight_reads: float
    method: str
    layers: tuple[LayerCount, ...] = ()


def _input_kind(graph: nir.NIRGraph, preds: dict, name: str) -> str:
    kinds = set()
    for p in preds[name]:
        node = graph.nodes[p]
        # SDSA: masked Q spikes; SBPositionSpikes: the position population's
        if isinstance(node, (nir.LIF, nir.IF, nir.Threshold, SBSpikeDrivenAttention, SBPositionSpikes)):
            kinds.add("spike")
        elif is_join(node):
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
    _refuse_uncounted(graph)
    preds = predecessors(graph)
    n, T = activity.samples, activity.time_steps
    tokens = activity.real_tokens / n  # real tokens per sample
    spikes = _population_spikes(graph, preds, activity)
    rows = []
    for name in topological_order(graph):
        node = graph.nodes[name]
        if isinstance(node, (nir.LIF, nir.IF)):
            channels = int(np.prod(node.v_threshold.shape[:-1])) if node.v_threshold.ndim > 1 else node.v_threshold.size
            per_token = node.v_threshold.ndim > 1
            updates = channels * (tokens if per_token else 1) * T
            rows.append(LayerCount(name, "neurons", "-", 0.0, 0.0, 0.0, 0.0, updates,
                                   state_accesses=STATE_ACCESSES_PER_UPDATE * updates,
                                   output_elements=updates, leaky=isinstance(node, nir.LIF),
                                   output_spikes=None if spikes.get(name) is None else spikes[name] / n))
            continue
        act = activity.nodes.get(name)
        if act is None:
            continue
        kind = _input_kind(graph, preds, name)
        elements = act.input_elements / n
        if isinstance(node, nir.Conv1d):
            c_out, c_in = node.weight.shape[:2]
            dense, fan_out, label = c_in * c_out * tokens * T, c_out, "conv1d"
            # a position population's synapse: its non-spiking form is a table lookup (no MACs, as the host-side
            # table of position_encoding="learned"), and it has no bias (exported as zeros)
            positions = bool(preds[name]) and all(isinstance(graph.nodes[p], SBPositionSpikes) for p in preds[name])
            dense = 0.0 if positions else dense
            has_bias = node.bias is not None and not (positions and not np.any(node.bias))
            shape = dict(fan_in=float(np.prod(node.weight.shape[1:])), fan_out=float(c_out),
                         output_elements=c_out * tokens * T, has_bias=has_bias,
                         params=float(node.weight.size + (0 if node.bias is None else np.size(node.bias))))
        elif isinstance(node, (nir.Affine, nir.Linear)):
            m, k = node.weight.shape
            dense, fan_out, label = m * k * T, m, "affine"
            bias = getattr(node, "bias", None)
            shape = dict(fan_in=float(k), fan_out=float(m), output_elements=float(m * T), has_bias=bias is not None,
                         params=float(node.weight.size + (0 if bias is None else np.size(bias))))
        elif isinstance(node, SBSpikeAttention):
            dense = 2 * tokens * tokens * node.dim * T
            acs = (act.qk_accumulates + act.av_accumulates) / n
            rows.append(LayerCount(name, "attention", kind, act.input_rate, dense, 0.0, acs, 0.0,
                                   weight_reads=acs, input_elements=elements, fan_in=tokens, fan_out=tokens,
                                   output_elements=node.dim * tokens * T,
                                   params=2 * node.dim * tokens + float(np.count_nonzero(node.relative_bias))))
            continue
        elif isinstance(node, SBSpikeDrivenAttention):
            # K * V summed over the tokens per channel, then Q masked by the channels that fired: the non-spiking
            # equivalent is 2 D L multiplies per step; spike-driven, one accumulate per K-V coincidence (the mask
            # is an AND, no sum). Its own population (D neurons per step) is a row of its own, "<name>/population".
            acs, updates = act.qk_accumulates / n, float(node.dim * T)
            rows.append(LayerCount(name, "attention", kind, act.input_rate, 2 * tokens * node.dim * T, 0.0, acs, 0.0,
                                   input_elements=elements, fan_in=tokens, fan_out=1.0,
                                   output_elements=node.dim * tokens * T, params=2 * node.dim * tokens))
            rows.append(LayerCount(f"{name}/population", "neurons", "-", 0.0, 0.0, 0.0, 0.0, updates,
                                   state_accesses=STATE_ACCESSES_PER_UPDATE * updates, output_elements=updates,
                                   leaky=True, output_spikes=None))
            continue
        elif isinstance(node, SBTokenMean):
            rows.append(LayerCount(name, "token-mean", kind, act.input_rate, 0.0, 0.0, elements, 0.0,
                                   input_elements=elements, fan_in=tokens, fan_out=1.0,
                                   output_elements=float(node.dim * T)))
            continue
        else:
            continue
        if kind == "spike" or (kind == "integer" and residual == "accumulate"):
            count = act.input_abs_sum if kind == "integer" else act.input_nonzeros
            acs = count * fan_out / n
            rows.append(LayerCount(name, label, kind, act.input_rate, dense, 0.0, acs, 0.0,
                                   weight_reads=acs, input_elements=elements, **shape))
        else:
            rows.append(LayerCount(name, label, kind, act.input_rate, dense, dense, 0.0, 0.0,
                                   weight_reads=float(node.weight.size * T), input_elements=elements, **shape))
    return rows


def _refuse_uncounted(graph: nir.NIRGraph) -> None:
    """Synapses whose operations these rows cannot count are refused, not left out of the totals: Conv2d
    maps, and Conv1d other than token-wise (kernel 1, stride 1, one group), whose fan-out per input differs
    at the borders and with the stride."""
    for name, node in graph.nodes.items():
        if isinstance(node, nir.Conv2d):
            raise SpikebertError(f"cannot count the operations of Conv2d {name!r}: energy reports cover token-wise "
                                 "synapses (Conv1d kernel 1, Affine, Linear), spike attention and token means")
        if isinstance(node, nir.Conv1d) and (np.shape(node.weight)[2:] != (1,) or int(np.max(node.stride)) != 1
                                             or int(node.groups) != 1):
            raise SpikebertError(f"cannot count the operations of Conv1d {name!r} (kernel {np.shape(node.weight)[2:]}, "
                                 f"stride {node.stride}, groups {node.groups}): energy reports count token-wise "
                                 "Conv1d (kernel 1, stride 1, one group)")


def _population_spikes(graph: nir.NIRGraph, preds: dict, activity: Activity) -> dict[str, float | None]:
    """Spikes (totals over the record) of every LIF/IF/Threshold node the activity determines.

    A node whose value a synapse node reads alone has the nonzeros (spikes) / absolute sum (a sum of
    spike trains) recorded there; a unit Scale join sums nonnegative spike counts, so its value is the
    sum of its inputs' and one unknown input is the join's value less the others'. Propagated to a
    fixed point; populations still unknown are None."""
    known: dict[str, float] = {}
    spiking = (nir.LIF, nir.IF, nir.Threshold)

    valued: dict[str, bool] = {}

    def spike_valued(name: str) -> bool:  # spikes, or a unit join of spike-valued nodes (a count >= 0)
        if name not in valued:
            node = graph.nodes[name]
            valued[name] = isinstance(node, spiking) or (
                is_join(node) and bool(preds[name])
                and all(spike_valued(p) for p in preds[name]))
        return valued[name]

    for name, act in activity.nodes.items():
        if name in graph.nodes and len(preds[name]) == 1 and spike_valued(preds[name][0]):
            known.setdefault(preds[name][0], act.input_abs_sum)
    joins = [name for name, node in graph.nodes.items() if not isinstance(node, spiking) and spike_valued(name)]
    changed = True
    while changed:
        changed = False
        for j in joins:
            inputs = preds[j]
            missing = [p for p in inputs if p not in known]
            if j not in known and not missing:
                known[j], changed = sum(known[p] for p in inputs), True
            elif j in known and len(missing) == 1:
                known[missing[0]] = known[j] - sum(known[p] for p in inputs if p in known)
                changed = True
    return {name: known.get(name) for name, node in graph.nodes.items() if isinstance(node, (nir.LIF, nir.IF))}


def teacher_counts(config: dict, lengths: list[int]) -> TeacherCount:
    """Mean operations per sample of a BERT encoder classifier at the given sequence lengths n.

    Per layer: Q, K, V, O projections 4 n d^2; Q K^T and A V 2 n^2 d; FFN 2 n d d_ff MACs.
    Plus pooler d^2 and classifier d C. Embedding lookups, LayerNorm, softmax, GELU, biases not counted.
    Weight reads per layer: 4 d^2 + 2 d d_ff, plus K and V (n d each); pooler d^2, classifier d C.
    ``layers``: the same per matrix product (:func:`teacher_layers`).
    """
    if not lengths:
        raise SpikebertError("teacher_counts needs at least one sequence length")
    d, d_ff, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    classes = config.get("num_labels", len(config.get("id2label", {})) or 2)
    macs = reads = 0.0
    for n in lengths:
        macs += layers * (4 * n * d * d + 2 * n * n * d + 2 * n * d * d_ff) + d * d + d * classes
        reads += layers * (4 * d * d + 2 * d * d_ff + 2 * n * d) + d * d + d * classes
    return TeacherCount(macs=macs / len(lengths), weight_reads=reads / len(lengths), method="analytic",
                        layers=tuple(teacher_layers(config, lengths)))


def teacher_layers(config: dict, lengths: list[int]) -> list[LayerCount]:
    """The teacher's matrix products as rows, per sample (mean over ``lengths``): per encoder layer
    ``l{i}.query/key/value/out/ffn1/ffn2`` (affine, real input, with bias) and ``l{i}.scores``
    (Q K^T: fan-in d_h, the stored K of n d values) and ``l{i}.context`` (A V: fan-in n, the stored
    V); then ``pooler`` and ``classifier`` on the [CLS] vector. Their MACs and weight reads sum to
    :func:`teacher_counts`' (a weight once per sample; K and V once per product)."""
    if not lengths:
        raise SpikebertError("teacher_layers needs at least one sequence length")
    d, d_ff, depth = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    heads = config.get("num_attention_heads", 12)
    classes = config.get("num_labels", len(config.get("id2label", {})) or 2)

    def linear(name: str, n: int, k: int, m: int) -> LayerCount:
        return LayerCount(name, "affine", "real", 1.0, n * k * m, n * k * m, 0.0, 0.0, weight_reads=k * m,
                          input_elements=n * k, fan_in=k, fan_out=m, output_elements=n * m, params=k * m + m,
                          has_bias=True)

    def product(name: str, n: int, inputs: float, fan_in: float, outputs: float) -> LayerCount:
        macs = outputs * fan_in
        return LayerCount(name, "attention", "real", 1.0, macs, macs, 0.0, 0.0, weight_reads=n * d,
                          input_elements=inputs, fan_in=fan_in, fan_out=n, output_elements=outputs, params=n * d)

    from collections import Counter

    histogram = Counter(int(n) for n in lengths)
    per_length = []
    for n in histogram:
        rows = []
        for i in range(depth):
            p = f"l{i}"
            rows += [linear(f"{p}.query", n, d, d), linear(f"{p}.key", n, d, d), linear(f"{p}.value", n, d, d),
                     product(f"{p}.scores", n, n * d, d / heads, heads * n * n),
                     product(f"{p}.context", n, heads * n * n, n, n * d),
                     linear(f"{p}.out", n, d, d), linear(f"{p}.ffn1", n, d, d_ff), linear(f"{p}.ffn2", n, d_ff, d)]
        rows += [linear("pooler", 1, d, d), linear("classifier", 1, d, classes)]
        per_length.append(rows)
    return mean_rows(per_length, weights=list(histogram.values()))


def mean_rows(runs: list[list[LayerCount]], weights: list[float] | None = None) -> list[LayerCount]:
    """Field-by-field (weighted) mean of runs with the same rows (names and kinds in the same order)."""
    weights = [1.0] * len(runs) if weights is None else [float(w) for w in weights]
    first, total = runs[0], sum(weights)
    if any([(r.name, r.kind) for r in run] != [(r.name, r.kind) for r in first] for run in runs):
        raise SpikebertError("mean_rows: the runs do not have the same rows")
    out = []
    for i, row in enumerate(first):
        values = {}
        for f in dataclasses.fields(LayerCount):
            x = getattr(row, f.name)
            if isinstance(x, float) or (isinstance(x, int) and not isinstance(x, bool)):
                values[f.name] = float(sum(w * getattr(run[i], f.name) for w, run in zip(weights, runs)) / total)
            else:
                values[f.name] = x
        out.append(LayerCount(**values))
    return out


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
                       activity: PopulationActivity, leak: float = 1.0) -> tuple[list[LayerCount], NonlinearCount]:
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
                          0.0, weight_reads=acs, input_elements=fan_in * tokens * T, fan_in=fan_in, fan_out=fan_out,
                          output_elements=fan_out * tokens * T, params=fan_in * fan_out + fan_out, has_bias=True)

    def neurons(name: str, channels: int, population: str) -> LayerCount:
        updates = channels * tokens * T
        return LayerCount(name, "neurons", "-", 0.0, 0.0, 0.0, 0.0, updates,
                          state_accesses=STATE_ACCESSES_PER_UPDATE * updates, output_elements=updates,
                          output_spikes=spikes(population), leaky=leak != 1)

    def product(name: str, source: str, stored: float, outputs: float) -> LayerCount:  # Q s_K^T, softmax(A) s_V
        acs = pops[source]["spikes_x_tokens"] / n
        return LayerCount(name, "attention", "spike", activity.rate(source), pairs * dim * T, 0.0, acs, 0.0,
                          weight_reads=acs, input_elements=dim * tokens * T, fan_in=tokens, fan_out=tokens,
                          output_elements=outputs * T, params=stored)

    rows = [neurons("embedding.population", dim, "embedding.population")]
    source = "embedding.population"
    for i in range(depth):
        p = f"layer{i}"
        scores = heads * pairs  # per step: the score matrices Q s_K^T (real-valued Q of tokens x dim stored)
        rows += [affine(f"{p}.query", source, dim, dim), affine(f"{p}.key", source, dim, dim),
                 neurons(f"{p}.key.neurons", dim, f"{p}.key"), affine(f"{p}.value", source, dim, dim),
                 neurons(f"{p}.value.neurons", dim, f"{p}.value"),
                 product(f"{p}.scores", f"{p}.key", dim * tokens, scores),
                 product(f"{p}.context", f"{p}.value", scores, dim * tokens),
                 neurons(f"{p}.attention.neurons", dim, f"{p}.attention"),
                 affine(f"{p}.out", f"{p}.attention", dim, dim),
                 neurons(f"{p}.self_output.neurons", dim, f"{p}.self_output"),
                 affine(f"{p}.fc1", f"{p}.self_output", dim, mlp_dim),
                 neurons(f"{p}.intermediate.neurons", mlp_dim, f"{p}.intermediate"),
                 affine(f"{p}.fc2", f"{p}.intermediate", mlp_dim, dim),
                 neurons(f"{p}.output.neurons", dim, f"{p}.output")]
        source = f"{p}.output"
    head = float(dim * num_classes)  # real-valued [CLS] rates: MACs, once per sentence
    rows.append(LayerCount("classifier", "affine", "real", 1.0, head, head, 0.0, 0.0, weight_reads=head,
                           input_elements=float(dim), fan_in=dim, fan_out=num_classes, output_elements=num_classes,
                           params=head + num_classes, has_bias=True))
    other = NonlinearCount(softmax=depth * heads * pairs * T, layer_norm=dim * tokens * (1 + 2 * depth * T),
                           gelu=depth * mlp_dim * tokens * T)
    return rows, other
