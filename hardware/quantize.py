"""Quantise a NIR graph to Loihi's fixed-point formats; the result is itself a NIR graph.

What runs in fixed point is every spiking population (``LIF``, ``IF``) and its synapses: the
single ``Affine``/``Linear``/``Conv1d`` producer of each population (8-bit weight mantissas with
a per-layer weight exponent, chosen by lava-nc's own ``optimize_weight_bits`` / ``clip_weights``
/ ``truncate_weights``), or an ``SBSpikeAttention`` producer, whose integer coincidence counts
are multiplied by an integer; likewise the own population of an ``SBSpikeDrivenAttention``, fed by
its integer K*V coincidence counts. The neuron gets Loihi's 12-bit decays (``du = 4095``: no current
memory, ``dv = round((1 - beta) 4096)``), a 17-bit threshold mantissa and a 13-bit bias mantissa
with a 3-bit exponent; its state is 24-bit (``spikebert.hardware.kernels.loihi_lif_step``).

Scale. Each population gets a power-of-two scale ``lam`` (integer voltage units per float unit,
before Loihi's 6-bit MSB alignment): the largest that keeps its largest input weight within
8 bits at weight exponent 0 (and the threshold mantissa within 17 bits), so the float model's
``v > theta`` becomes ``v_int > round(theta lam) << 6`` with weights ``round(gain lam W)``.
For an attention producer ``lam`` makes ``scale * gain * lam`` a whole number (64 units per
float step of one coincidence), so attention is exact.

A stream of currents (``residual = "membrane"``: unit ``Scale`` joins summing synapse outputs and the
token embedding, read by several populations) gets one ``lam`` for all of it, since on Loihi those
populations read the same integer sums (``current_streams``): every synapse of the stream is quantised at
it, the host sends the embedding as integer currents ``rint(gain lam x)`` (``SBTokenEmbedding``'s
``metadata["fixed_point"]["scale"]``), each population's bias is the sum of the biases of the synapses
upstream of it, and the readout's Affine reads the integer sums back as currents (weights ``/ (gain lam)``,
those biases added), so the readout keeps the float graph's meaning.

Everything else keeps its float semantics, integer-valued anyway: the host-side token encoder,
unit ``Scale`` joins (residual sums of spikes), ``Delay``, ``Flatten`` and ``Threshold``. The
readout (synapses that feed no spiking population, e.g. ``SBTokenMean`` -> classifier ``Affine``
-> ``Output``) stays float64 on the host. ``SBLayerNorm``, ``LI``, ``I``, ``CubaLI`` and
``CubaLIF`` are refused: LayerNorm is not Loihi-native (train with ``norm = "batch"``, which
folds into the weights at export).

Layout of the quantised graph: the same nodes and edges; synapse weights hold the mantissas
(biases move to the neuron), and ``metadata["fixed_point"]`` on every quantised node holds the
integers (see :func:`synapse_params`, :func:`neuron_params`); the graph's
``metadata["fixed_point"]`` names the format. Float parameters (tau, thresholds) are kept for
reference; executors must read the integers.
"""

from __future__ import annotations

import copy
import dataclasses
import logging

import nir
import numpy as np

from spikebert.contract.errors import SpikebertError
from spikebert.contract.extension import (
    SBIF,
    SBLayerNorm,
    SBPositionSpikes,
    SBSpikeAttention,
    SBSpikeDrivenAttention,
    SBTokenEmbedding,
    SBTokenMean,
)
from spikebert.contract.graph import is_join, predecessors, topological_order
from spikebert.hardware import kernels
from spikebert.hardware.fixed_point import fixed_params, is_quantised
from spikebert.hardware.lava_env import require_lava

log = logging.getLogger(__name__)

FORMAT = "loihi"
WEIGHT_LIMIT = 254  # largest even 8-bit mixed-sign weight (Lava keeps even values in mixed mode)
VTH_MAX = 2**17 - 1
BIAS_MANT_MAX = 2**12 - 1  # 13-bit signed mantissa
BIAS_EXP_MAX = 7  # 3-bit exponent
DECAY_UNITY = 2**kernels.LOIHI_DECAY_SHIFT
A_IN_LIMIT = kernels.LOIHI_A_IN_LIMIT
SYNAPSES = (nir.Affine, nir.Linear, nir.Conv1d, nir.Conv2d)
SPIKING = (nir.LIF, nir.IF)
# nodes whose outputs are binary spikes (SDSA: masked Q; the host's position population)
BINARY = (*SPIKING, nir.Threshold, SBSpikeDrivenAttention, SBPositionSpikes)
REFUSED = {
    SBLayerNorm: "LayerNorm is not Loihi-native (mean, variance and division per token); train the student with "
                 "norm=batch, which folds into the preceding weights at export",
    nir.LI: "non-spiking leaky integrators have no Loihi fixed-point mapping here",
    nir.I: "non-spiking integrators have no Loihi fixed-point mapping here",
    nir.CubaLI: "non-spiking CUBA integrators have no Loihi fixed-point mapping here",
    nir.CubaLIF: "CubaLIF (a synaptic current with memory) is not quantised yet; use LIF",
    SBIF: "Loihi's and lava-nc's LIF reset the membrane to 0; SBIF's subtraction reset would need a custom neuron "
          "model (Loihi 2 microcode), which is not built; run the float graph (reference executor or Lava)",
}


def quantize_graph(graph: nir.NIRGraph, *, dt: float | None = None, bias_exp_min: int = 0) -> nir.NIRGraph:
    """A copy of ``graph`` with Loihi fixed-point parameters; the input graph is not modified.

    ``bias_exp_min``: smallest bias exponent; 6 makes every bias a whole number of weight units
    (``bias_mant << 6``), the only biases lava-dl's netx format can hold.
    """
    if is_quantised(graph):
        raise SpikebertError("the graph is already quantised (metadata 'fixed_point'); quantise the float graph")
    dt = float(graph.metadata.get("dt", dt if dt is not None else np.nan))
    order = topological_order(graph)
    preds = predecessors(graph)
    succ = {n: [d for s, d in graph.edges if s == n] for n in graph.nodes}
    for name in order:
        node = graph.nodes[name]
        for kind, why in REFUSED.items():
            if isinstance(node, kind):
                raise SpikebertError(f"node {name!r} ({type(node).__name__}) cannot run in Loihi fixed point: {why}")
    nodes = {n: copy.deepcopy(node) for n, node in graph.nodes.items()}
    if np.isnan(dt) and any(isinstance(node, nir.LIF) for node in nodes.values()):
        raise SpikebertError("the graph has LIF time constants but no metadata 'dt': pass quantize_graph(graph, dt=...)")
    streams = current_streams(nodes, order, preds, succ)
    in_stream = {lif for stream in streams for lif in stream.populations}
    scales = {}
    for name in order:
        node = nodes[name]
        if isinstance(node, SBSpikeDrivenAttention):
            currents = [p for p in preds[name] if not isinstance(nodes[p], BINARY)]
            if currents:  # its counts must be whole numbers, or the integer input would round them
                raise SpikebertError(f"SBSpikeDrivenAttention {name!r} reads {currents}, not spikes: in fixed point its "
                                     "population's input is integer K*V coincidence counts of binary Q, K, V spikes")
            scales[name] = _spike_driven_attention(name, node, dt, bias_exp_min=bias_exp_min)
            continue
        if not isinstance(node, SPIKING) or name in in_stream:
            continue
        producer = preds[name][0] if len(preds[name]) == 1 else None
        inputs = (*SYNAPSES, SBSpikeAttention)
        if producer is None or succ[producer] != [name] or not isinstance(nodes[producer], inputs):
            raise SpikebertError(
                f"{type(node).__name__} {name!r}: fixed point needs exactly one producer, an Affine/Linear/Conv1d/"
                f"Conv2d or SBSpikeAttention that feeds only it, or a stream of currents (unit Scale joins of "
                f"synapses and the token embedding; found {preds[name]}); Loihi accumulates synaptic input in "
                "the neuron's units, so every synapse into a population shares its scale")
        beta, gain, vth = population_constants(name, node, dt)
        if isinstance(nodes[producer], SBSpikeAttention):
            lam = _attention(producer, nodes[producer], gain)
            bias = np.zeros(node.v_threshold.shape)
        else:
            lam = _synapse_scale(nodes[producer], gain, vth)
            bias = _neuron_bias(_synapse(producer, nodes[producer], gain, lam), gain, lam, node.v_threshold.shape)
        scales[name] = lam
        node.metadata = {**(node.metadata or {}),
                         "fixed_point": neuron_params(name, beta, vth, lam, bias, bias_exp_min=bias_exp_min)}
    for stream in streams:
        scales.update(_quantise_stream(stream, nodes, preds, succ, dt, bias_exp_min=bias_exp_min))
    for name in order:
        node = nodes[name]
        if isinstance(node, (*SYNAPSES, SBTokenMean, SBSpikeAttention)) and fixed_params(node) is None:
            log.info("%s %s feeds no spiking population: readout, kept in float64", type(node).__name__, name)
    meta = {**graph.metadata, "fixed_point": {
        "format": FORMAT, "act_shift": kernels.LOIHI_ACT_SHIFT, "decay_shift": kernels.LOIHI_DECAY_SHIFT,
        "state_bits": kernels.LOIHI_STATE_BITS, "weight_bits": 8, "populations": len(scales),
        "bias_exp_min": bias_exp_min}}
    if "dt" not in meta and not np.isnan(dt):
        meta["dt"] = dt
    return nir.NIRGraph(nodes=nodes, edges=list(graph.edges), metadata=meta)


def population_constants(name: str, node, dt: float | None) -> tuple[float, float, float]:
    """(beta, input gain, threshold) of a LIF/IF population, each one value, as Loihi's and Lava's LIF
    hold one per population; reset to 0 and no leak towards v_leak, as theirs."""
    if dt is None or np.isnan(dt):
        raise SpikebertError(f"{name!r}: the graph has spiking neurons but no metadata 'dt'")
    if np.any(np.asarray(node.v_reset) != 0):
        raise SpikebertError(f"{name!r}: Loihi resets to 0; v_reset must be 0")
    if isinstance(node, nir.IF):
        beta, gain, bias = kernels.integrator_coefficients(np.asarray(node.r, float), dt)
    else:
        beta, gain, bias = kernels.lif_coefficients(np.asarray(node.tau, float), np.asarray(node.r, float),
                                                    np.asarray(node.v_leak, float), dt)
    if np.any(bias != 0):
        raise SpikebertError(f"{name!r}: v_leak must be 0 for fixed point (give the bias to the synapse instead)")
    values = {}
    for what, arr in (("beta", beta), ("gain", gain), ("v_threshold", np.asarray(node.v_threshold, float))):
        flat = np.ravel(arr)
        if not np.all(flat == flat[0]):
            raise SpikebertError(f"{name!r}: {what} differs across neurons; Loihi holds one value per population")
        values[what] = float(flat[0])
    if not 0.0 <= values["beta"] <= 1.0 or values["v_threshold"] <= 0:
        raise SpikebertError(f"{name!r}: needs 0 <= beta <= 1 and a positive threshold, got {values}")
    return values["beta"], values["gain"], values["v_threshold"]


def _power_of_two_at_most(x: float) -> float:
    return float(2.0 ** np.floor(np.log2(x)))


def _synapse_scale(node, gain: float, vth: float) -> float:
    """The largest power-of-two ``lam`` that keeps ``node``'s largest weight within 8 bits at weight exponent 0
    and the threshold ``vth`` within its 17-bit mantissa."""
    largest = float(np.abs(gain * np.asarray(node.weight, dtype=np.float64)).max())
    lam = _power_of_two_at_most(WEIGHT_LIMIT / largest) if largest > 0 else 64.0
    return min(lam, _power_of_two_at_most(VTH_MAX / vth))


def _synapse(name: str, node, gain: float, lam: float) -> np.ndarray:
    """Quantise the weights of ``node`` in place at ``lam``; returns its float bias per output channel (zeroed
    in the node: the neurons it feeds hold it)."""
    require_lava("Loihi fixed point (spikebert quantize, --fixed-point, --to netx)")
    from lava.utils.weightutils import clip_weights, determine_sign_mode, optimize_weight_bits, truncate_weights

    weight = np.asarray(node.weight, dtype=np.float64)
    bias = np.asarray(getattr(node, "bias", np.zeros(weight.shape[0])), dtype=np.float64)
    scaled = gain * lam * weight  # a_in units
    mixed = scaled.min() < 0 < scaled.max()
    grid = 2.0 if mixed else 1.0  # Lava drops the LSB of mixed-sign 8-bit weights
    integers = (np.round(scaled / grid) * grid).clip(-256, 255).astype(np.int32)
    sign_mode = determine_sign_mode(integers)
    opt = optimize_weight_bits(integers, sign_mode)
    mantissas = truncate_weights(clip_weights(opt.weights, sign_mode, num_bits=8), sign_mode, opt.num_weight_bits)
    if not np.array_equal(kernels.shift_exp(mantissas.astype(np.int64), int(opt.weight_exp)), integers):
        raise AssertionError(f"{name!r}: Lava's weight utilities changed the quantised weights")  # guards the maths
    err = np.abs(integers / (gain * lam) - weight).max() / max(np.abs(weight).max(), 1e-30)
    log.info("%s: lam=2^%d, %s weights, %d bits, exp %d, max rel. error %.3g", name, int(np.log2(lam)),
             sign_mode.name.lower(), opt.num_weight_bits, opt.weight_exp, err)
    node.weight = mantissas.astype(np.float64)
    if hasattr(node, "bias"):
        node.bias = np.zeros_like(bias)
    node.metadata = {**(node.metadata or {}), "fixed_point": synapse_params(
        int(opt.weight_exp), int(opt.num_weight_bits), int(sign_mode.value), gain * lam)}
    return bias


def _neuron_bias(channel_bias: np.ndarray, gain: float, lam: float, neuron_shape) -> np.ndarray:
    """A float bias per channel (the synapse's units) as the population's bias per neuron, in v units (the
    bias is not MSB-aligned)."""
    per_channel = 2**kernels.LOIHI_ACT_SHIFT * gain * lam * np.asarray(channel_bias, dtype=np.float64)
    shape = tuple(neuron_shape)
    per_neuron = per_channel.reshape(-1, *([1] * (len(shape) - 1))) if len(shape) > 1 else per_channel
    return np.broadcast_to(per_neuron, shape).copy()


@dataclasses.dataclass
class CurrentStream:
    """Spiking populations that read a sum of currents (``residual = "membrane"``: the residual stream is
    added to membrane potentials): the unit ``Scale`` joins that form the sums, the synapses and token
    embeddings whose outputs enter them, and the readout nodes that also read them (``readers``)."""

    populations: list[str]
    joins: list[str]
    synapses: list[str]
    embeddings: list[str]
    readers: list[tuple[str, str]]  # (stream node, the readout node that reads it)


def current_streams(nodes: dict, order: list[str], preds: dict, succ: dict) -> list[CurrentStream]:
    """The streams of currents of a graph, each with every population that reads it; populations that read
    one (exclusive) synapse are in none. Populations that share a join, a synapse or an embedding are one
    stream: on Loihi they read the same integer sums, so they share one scale."""
    parent: dict[str, str] = {}

    def root(n: str) -> str:
        while parent.setdefault(n, n) != n:
            n = parent[n]
        return n

    def absorb(name: str, todo: list[str]) -> None:
        """Walk back from ``todo`` through joins into ``name``'s stream; every node met is checked."""
        seen: set[str] = set()
        while todo:
            n = todo.pop()
            if n in seen:
                continue
            seen.add(n)
            if not (is_join(nodes[n]) or isinstance(nodes[n], (*SYNAPSES, SBTokenEmbedding))):
                raise SpikebertError(
                    f"{type(nodes[name]).__name__} {name!r} is part of a sum of currents that includes "
                    f"{type(nodes[n]).__name__} {n!r}: in fixed point such a sum may hold synapse outputs and the "
                    "token embedding only (a membrane-residual stream); spikes joined into currents have no Loihi scale")
            if root(n) != root(name):
                parent[root(n)] = root(name)
            if is_join(nodes[n]):
                todo += preds[n]

    for name in order:
        if isinstance(nodes[name], SPIKING) and len(preds[name]) == 1 and (
                is_join(nodes[preds[name][0]]) or isinstance(nodes[preds[name][0]], SBTokenEmbedding)):
            absorb(name, [preds[name][0]])
    for name in order:  # joins that extend a stream past its last population (into the readout)
        if is_join(nodes[name]) and name not in parent and any(
                p in parent and not isinstance(nodes[p], SPIKING) for p in preds[name]):
            absorb(name, list(preds[name]))
    members: dict[str, list[str]] = {}
    for n in order:
        if n in parent:
            members.setdefault(root(n), []).append(n)
    streams = []
    for names in members.values():
        inside = set(names)
        stream = CurrentStream(
            populations=[n for n in names if isinstance(nodes[n], SPIKING)],
            joins=[n for n in names if is_join(nodes[n])],
            synapses=[n for n in names if isinstance(nodes[n], SYNAPSES)],
            embeddings=[n for n in names if isinstance(nodes[n], SBTokenEmbedding)],
            readers=sorted({(n, d) for n in names if is_join(nodes[n]) or isinstance(nodes[n], SBTokenEmbedding)
                            for d in succ[n] if d not in inside}))
        for n in stream.synapses:
            others = [d for d in succ[n] if d not in inside]
            if others:
                raise SpikebertError(f"{n!r} feeds the stream of currents into {stream.populations} and also {others}: "
                                     "in fixed point its weights take the stream's scale, which its other readers "
                                     "do not share")
            currents = [p for p in preds[n] if not isinstance(nodes[p], BINARY)]
            if currents:
                raise SpikebertError(f"{n!r} adds to the stream of currents into {stream.populations} but reads "
                                     f"{currents}, not spikes: in fixed point a stream's synapses read binary spikes "
                                     "(their integer outputs are then in the stream's scale)")
        streams.append(stream)
    return streams


def _quantise_stream(stream: CurrentStream, nodes: dict, preds: dict, succ: dict, dt: float, *,
                     bias_exp_min: int) -> dict[str, float]:
    """Quantise a stream of currents at one scale ``lam``; returns population -> lam.

    Every synapse of the stream gets 8-bit weights at ``lam`` (the largest power of two that fits all of them,
    every threshold and the embedding's currents), each embedding ``metadata["fixed_point"]["scale"]`` (the
    host sends ``rint(scale x)``, integer input currents), each population as its bias the sum of the
    biases of the synapses upstream of it, and each readout the inverse: its Affine reads the integer sums
    times ``1 / (gain lam)`` plus those biases, so the readout's float semantics are the float graph's."""
    constants = {p: population_constants(p, nodes[p], dt) for p in stream.populations}
    gains = {p: c[1] for p, c in constants.items()}
    gain = gains[stream.populations[0]]
    if any(g != gain for g in gains.values()):
        raise SpikebertError(f"the populations {stream.populations} read one stream of currents but have different "
                             f"input gains {gains}: Loihi sums their input in one integer scale (give them one tau)")
    vth = max(c[2] for c in constants.values())
    limits = [_power_of_two_at_most(VTH_MAX / vth)]
    limits += [_synapse_scale(nodes[s], gain, vth) for s in stream.synapses]
    for e in stream.embeddings:
        largest = float(np.abs(nodes[e].weight).max() + np.abs(nodes[e].position_weight).max())
        if largest > 0:
            limits.append(_power_of_two_at_most(A_IN_LIMIT / (gain * largest)))
    lam = min(limits)
    scale = gain * lam  # a_in units per float unit of current
    offset: dict[str, np.ndarray] = {}  # per stream node: the float bias its current lacks (moved to the neurons)
    for n in stream.synapses:
        offset[n] = _synapse(n, nodes[n], gain, lam)
    for n in stream.embeddings:
        offset[n] = np.zeros(nodes[n].weight.shape[1])
        nodes[n].metadata = {**(nodes[n].metadata or {}), "fixed_point": {"scale": scale}}
    for n in stream.joins:  # in topological order: a join's predecessors come first
        offset[n] = sum((offset[p] for p in preds[n][1:]), offset[preds[n][0]])
    for p in stream.populations:
        beta, _, threshold = constants[p]
        bias = _neuron_bias(offset[preds[p][0]], gain, lam, nodes[p].v_threshold.shape)
        nodes[p].metadata = {**(nodes[p].metadata or {}),
                             "fixed_point": neuron_params(p, beta, threshold, lam, bias, bias_exp_min=bias_exp_min)}
    for source, reader in stream.readers:
        node = nodes[reader]
        targets = [reader] if isinstance(node, (nir.Affine, nir.Linear)) else succ[reader]
        if not isinstance(node, (SBTokenMean, nir.Affine, nir.Linear)) or len(preds[reader]) != 1 or any(
                not isinstance(nodes[t], (nir.Affine, nir.Linear)) or fixed_params(nodes[t]) is not None
                or len(preds[t]) != 1 for t in targets):
            raise SpikebertError(
                f"{type(node).__name__} {reader!r} reads the stream of currents at {source!r}: in fixed point a stream "
                "is read by its populations and by a readout only (an Affine, or an SBTokenMean into Affines, that "
                "reads nothing else and feeds no spiking population), which converts the integer sums back to currents")
        for t in targets:
            weight = np.asarray(nodes[t].weight, dtype=np.float64)
            bias = np.asarray(getattr(nodes[t], "bias", np.zeros(weight.shape[0])), dtype=np.float64)
            nodes[t] = nir.Affine(weight=weight / scale, bias=bias + weight @ offset[source],
                                  metadata=dict(nodes[t].metadata or {}))
    log.info("stream of currents into %s: lam=2^%d, one scale for %d synapses and %d embedding(s)",
             stream.populations, int(np.log2(lam)), len(stream.synapses), len(stream.embeddings))
    return dict.fromkeys(stream.populations, lam)


def _attention(name: str, node: SBSpikeAttention, gain: float) -> float:
    """Set the integer multiplier of the attention counts; returns lam (64 units per coincidence step)."""
    scales = np.ravel(np.asarray(node.scale, dtype=np.float64))
    if not np.all(scales == scales[0]):
        raise SpikebertError(f"{name!r}: the attention scale differs across heads ({scales.tolist()}); Loihi fixed point "
                             "holds one multiplier per population: use --fixed-point only with attn_scale = 'fixed' "
                             "(float Lava and the reference executor run per-head scales)")
    lam, multiplier = _count_scale(name, float(scales[0]) * gain, f"attention scale {scales[0]} x gain {gain}")
    node.metadata = {**(node.metadata or {}), "fixed_point": {"multiplier": multiplier, "scale": lam}}
    return lam


def _spike_driven_attention(name: str, node: SBSpikeDrivenAttention, dt: float, *, bias_exp_min: int) -> float:
    """Quantise the node's own population, whose input is the integer K*V coincidence counts: the counts are
    multiplied by an integer (64 to 127 units per coincidence, as for ``SBSpikeAttention``), so the input is
    exact; the threshold rounds to ``round(v_threshold lam)`` and the decay truncates, as in every Loihi
    population. Returns lam."""
    beta, gain, vth = population_constants(name, node.population(), dt)
    lam, multiplier = _count_scale(name, gain, f"its population's input gain r dt/tau = {gain} (make tau = 2^k dt "
                                               "with r = 1, as the student's neurons are)")
    node.metadata = {**(node.metadata or {}), "fixed_point": {
        **neuron_params(name, beta, vth, lam, np.zeros(node.dim), bias_exp_min=bias_exp_min),
        "multiplier": multiplier}}
    return lam


def _count_scale(name: str, step: float, what: str) -> tuple[float, int]:
    """(lam, multiplier) for a population fed by integer counts worth ``step`` float units each: the
    smallest power-of-two lam with ``step lam`` a whole number of at least ``2^LOIHI_ACT_SHIFT``."""
    lam = 2.0 ** (np.ceil(np.log2(1.0 / step)) + kernels.LOIHI_ACT_SHIFT)
    multiplier = step * lam
    if multiplier != round(multiplier):
        raise SpikebertError(f"{name!r}: {what} has no exact power-of-two multiple")
    return lam, int(multiplier)


def synapse_params(weight_exp: int, num_weight_bits: int, sign_mode: int, scale: float) -> dict:
    """Metadata of a quantised synapse: Lava Dense's weight_exp / num_weight_bits / sign_mode, and
    ``scale`` = a_in units per float unit of the node's output (gain x lam of its neuron)."""
    return {"weight_exp": weight_exp, "num_weight_bits": num_weight_bits, "sign_mode": sign_mode, "scale": scale}


def neuron_params(name: str, beta: float, vth: float, lam: float, bias: np.ndarray, *, bias_exp_min: int = 0) -> dict:
    """Metadata of a quantised population: Lava LIF's du, dv, vth, bias_mant (per neuron), bias_exp."""
    dv = int(round((1.0 - beta) * DECAY_UNITY))
    vth_mant = int(round(vth * lam))
    if not 0 <= dv < DECAY_UNITY or not 0 < vth_mant <= VTH_MAX:
        raise SpikebertError(f"{name!r}: dv={dv} or vth={vth_mant} outside Loihi's 12/17-bit ranges")
    largest = float(np.abs(bias).max(initial=0.0))
    bias_exp = bias_exp_min
    while largest / 2**bias_exp > BIAS_MANT_MAX and bias_exp < BIAS_EXP_MAX:
        bias_exp += 1
    mant = np.round(bias / 2**bias_exp)
    if np.abs(mant).max(initial=0) > BIAS_MANT_MAX:
        log.warning("%s: bias clipped to Loihi's 13-bit mantissa with exponent %d", name, bias_exp)
        mant = mant.clip(-BIAS_MANT_MAX - 1, BIAS_MANT_MAX)
    return {"du": DECAY_UNITY - 1, "dv": dv, "vth": vth_mant, "bias_mant": mant.astype(np.float64),
            "bias_exp": bias_exp, "scale": lam}

