"""Reference executor: runs a NIR graph of the supported node set in discrete time with NumPy.

Time. Every step advances the graph by ``dt``. ``dt`` comes from the graph metadata (``"dt"``),
else from the ``dt`` argument of :class:`ReferenceExecutor`; a graph with time constants or
delays and neither is rejected (NIR stores no dt; snnTorch's ``export_to_nir`` writes none and
derives its time constants from dt = 1e-4). :func:`resolve_dt` is that rule, for the Lava
backend too. The number of steps T is the input's (``run_inputs``), or the metadata's
``"time_steps"`` for token ids (``run``, :func:`metadata_time_steps`). Continuous NIR dynamics
are discretised by forward Euler, with the equations of ``spikebert.hardware.kernels``.

Steps. At every step the nodes run in topological order; a node's input I is the sum of its
predecessors' outputs in the same step (edges carry no delay, only Delay nodes do). All state
starts at 0 in every run.

Recurrence. An edge that closes a cycle carries its source's output of the *previous* step (zero
at step 0), the convention of the NIR paper's platforms (nirtorch's interpreter keeps it in its
state) and of every recurrent SNN: ``lif[t]`` reads ``w_rec(lif[t-1])``. Which edges close cycles
(:func:`recurrent_edges`): a depth-first walk from the Input nodes, in the graph's node and edge
order, marks every edge into a node on its current path; the rest is ordered topologically
(:func:`schedule`). For the usual ``fc -> lif <-> w_rec`` loop that is ``w_rec -> lif``: the
recurrent synapse's output, bias included, reaches the population one step later (snnTorch's
``RLeaky``/``RSynaptic`` instead add the recurrent bias already at step 0: ``W 0 + b``).

Per node type:

    Input, Output    y = I
    Affine, Linear   y = W I + b, y = W I
    Conv1d, Conv2d   PyTorch Conv1d / Conv2d (cross-correlation), ``kernels.conv1d`` / ``kernels.conv2d``
    SumPool2d        window sums, zero padding, ``kernels.sum_pool2d``; AvgPool2d: divided by the window size
    Scale            y = scale * I
    Flatten          reshape, dims counted per sample as in NIR (e.g. (C, H, W) maps), ``kernels.flatten``
    Threshold        y = [I > threshold]
    LIF              v += dt/tau (v_leak - v + r I);  y = [v > v_threshold];  v = v_reset where y
    IF               v += dt r I;  then fire and reset as LIF
    LI, I            v += dt/tau (v_leak - v + r I), resp. v += dt r I;  y = v
    CubaLIF          i += dt/tau_syn (w_in I - i);  then LIF with tau_mem on the new i
    CubaLI           the same without threshold;  y = v
    Delay            y[t] = I[t - d], d = delay/dt whole steps per element (an error otherwise); 0 before
    SBIF             v = u + r I;  y = [v >= v_threshold];  u = leak (v - v_threshold y)  (no dt)
    SB* extension    converters/nir_ext.py; SBTokenEmbedding -> Threshold is the host-side encoder

Written as ``v = beta v + gain I + bias`` (``kernels.leaky_integrate``), the coefficients are
``(1 - dt/tau, r dt/tau, v_leak dt/tau)`` (``kernels.lif_coefficients``; the synapse uses r = w_in,
v_leak = 0) or ``(1, r dt, 0)`` for IF and I (``kernels.integrator_coefficients``).

snnTorch. ``snntorch.export_nir.export_to_nir`` (1.0.0) writes Leaky as LIF(tau = dt/(1 - beta),
r = tau/dt, v_leak = 0, v_reset = 0) and Synaptic as CubaLIF(tau_syn = dt/(1 - alpha), w_in =
tau_syn/dt, ...) with dt = 1e-4, and stores no dt. Run with ``dt=1e-4`` and the steps above are
snnTorch's ``v = beta v + I`` (``i = alpha i + I`` first) with its spike test ``v > threshold``.
NIR 1.0.8 resets to v_reset in the step of the spike: that is snnTorch's ``reset_mechanism="zero"``
(Leaky with either ``reset_delay``, Synaptic only with ``reset_delay=False``). "subtract", "none"
and Synaptic's delayed zero reset export to the same graph, so they are not representable and
run as reset to zero (tests/test_reference_standard.py).

Fixed point. In a graph quantised by ``spikebert.hardware.quantize`` (metadata ``"fixed_point"``), every
node that carries ``metadata["fixed_point"]`` (spiking populations and their synapses) runs the
integer step of ``spikebert.hardware.fixed_point``, bit for bit as lava-nc's ``fixed_pt`` models; the rest
(host-side encoder, joins, readout) keeps its float step.

Entry points: :meth:`ReferenceExecutor.run` takes token ids (SpikeBERT graphs): the encoder runs
once per sample and its spikes are held over ``time_steps`` (metadata). :meth:`~ReferenceExecutor.run_inputs`
takes a tensor x (T, B, *input shape) whose step t drives the Input node at step t.
"""

from __future__ import annotations

import dataclasses
import logging
import types
from collections.abc import Callable
from typing import Any

import nir
import numpy as np

from spikebert.contract.activity import Activity, NodeActivity
from spikebert.contract.errors import SpikebertError
from spikebert.contract.extension import (
    SBIF,
    SBLayerNorm,
    SBPositionSpikes,
    SBSpikeAttention,
    SBSpikeDrivenAttention,
    SBTokenEmbedding,
    SBTokenMean,
    position_sources,
    position_spikes,
    relative_matrix,
)
from spikebert.contract.graph import SYNAPSE_TYPES, check_edge_shapes, port_shape, predecessors, topological_order
from spikebert.hardware import kernels
from spikebert.hardware.fixed_point import FIXED_STEP_BUILDERS, fixed_params, is_quantised

log = logging.getLogger(__name__)

TIMED_TYPES = (nir.LIF, nir.IF, nir.LI, nir.I, nir.CubaLIF, nir.CubaLI, nir.Delay,
               SBSpikeDrivenAttention)  # their step depends on dt
DELAY_TOLERANCE = 1e-9  # relative: delay/dt within this of a whole number of steps counts as whole (float dt)


@dataclasses.dataclass
class EncodedInput:
    """Host-side encoding of token ids: spikes (B, D, L) held over time (the embedding's currents when
    no Threshold follows it), validity mask (B, L), and the spikes of any position population."""

    spikes: np.ndarray
    mask: np.ndarray | None
    first_node: str  # the node the encoded values stand for (the Threshold after the embedding, or the embedding)
    positions: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)  # SBPositionSpikes -> (B, max_len, L)

    @property
    def sources(self) -> dict[str, np.ndarray]:
        """Every host-side value the network reads, by the node it stands for: (B, C, L) each."""
        return {self.first_node: self.spikes, **self.positions}


def encode_tokens(graph: nir.NIRGraph, ids: np.ndarray) -> EncodedInput:
    """Run the host-side prefix of a SpikeBERT graph: Input -> SBTokenEmbedding (-> Threshold), and the
    position populations (``SBPositionSpikes``) the Input also feeds."""
    embed_name = next((n for n, node in graph.nodes.items() if isinstance(node, SBTokenEmbedding)), None)
    if embed_name is None:
        raise SpikebertError("graph has no SBTokenEmbedding node: token ids cannot be encoded; "
                         "feed a graph with a tensor Input through ReferenceExecutor.run_inputs")
    embed: SBTokenEmbedding = graph.nodes[embed_name]
    succ = [d for s, d in graph.edges if s == embed_name]
    spiking = len(succ) == 1 and isinstance(graph.nodes[succ[0]], nir.Threshold)
    if not succ or (not spiking and any(isinstance(graph.nodes[d], nir.Threshold) for d in succ)):
        raise SpikebertError(f"{embed_name} must feed exactly one Threshold node (the spike encoder) or only "
                             f"nodes that take its currents (a membrane-residual student), found {succ}")
    ids = np.asarray(ids)
    if ids.ndim != 2 or ids.shape[1] != embed.max_len:
        raise SpikebertError(f"token ids must be (batch, {embed.max_len}), got {ids.shape}; pad to max_len")
    if ids.min() < 0 or ids.max() >= embed.weight.shape[0]:
        raise SpikebertError(f"token ids outside the vocabulary of {embed.weight.shape[0]}")
    x = (embed.weight[ids] + embed.position_weight[None]).transpose(0, 2, 1)  # (B, D, L)
    masked = any(getattr(n, "mask_padding", False) for n in graph.nodes.values())
    mask = (ids != embed.pad_token_id) if masked else None
    positions = {n: position_spikes(graph.nodes[n], ids) for n in position_sources(graph, embed_name)}
    if not spiking:  # the embedding's currents enter the network (residual = "membrane")
        fixed = fixed_params(embed)
        if fixed is not None:  # Loihi fixed point: integer input currents, rint(gain lam x) (hardware.quantize)
            x = np.rint(float(fixed["scale"]) * x)
        return EncodedInput(spikes=x.astype(np.float64), mask=mask, first_node=embed_name, positions=positions)
    spikes = (x > graph.nodes[succ[0]].threshold).astype(np.float64)
    return EncodedInput(spikes=spikes, mask=mask, first_node=succ[0], positions=positions)


@dataclasses.dataclass
class RunResult:
    step_outputs: np.ndarray  # (T, B, *output shape)
    spikes: dict[str, np.ndarray]  # recorded node outputs (T, B, ...), only for requested nodes

    @property
    def logits(self) -> np.ndarray:
        return self.step_outputs.mean(axis=0)


# --- steps: one pure function per node type, (I, state, context) -> (y, state) ------------------


@dataclasses.dataclass(frozen=True)
class StepContext:
    mask: np.ndarray | None  # (B, L) real tokens, token graphs only
    activity: NodeActivity | None  # the node's record, synapse nodes only


Step = Callable[[np.ndarray, Any, StepContext], tuple[np.ndarray, Any]]
"""(summed input I (B, ...), the node's state, None at the first step; context) -> (output, state)."""


def _f64(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)  # exporters write float32 parameters; kernels are float64


def _stateless(f: Callable[[np.ndarray, StepContext], np.ndarray]) -> Step:
    return lambda x, state, ctx: (f(x, ctx), None)


def _identity(name: str, node, dt: float | None) -> Step:
    return _stateless(lambda x, ctx: x)


def _affine(name: str, node: nir.Affine | nir.Linear, dt: float | None) -> Step:
    weight = _f64(node.weight)
    if weight.ndim != 2:
        raise SpikebertError(f"{type(node).__name__} {name!r}: weight {weight.shape} is not (out, in); "
                         "batched weights are not supported, split the node")
    bias = _f64(node.bias) if isinstance(node, nir.Affine) else np.zeros(weight.shape[0])
    return _stateless(lambda x, ctx: kernels.affine(x, weight, bias))


def _conv1d(name: str, node: nir.Conv1d, dt: float | None) -> Step:
    weight, bias = _f64(node.weight), _f64(node.bias)
    padding = node.padding.decode() if isinstance(node.padding, bytes) else node.padding
    padding = padding if isinstance(padding, str) else int(padding)
    stride, dilation, groups = int(node.stride), int(node.dilation), int(node.groups)
    if weight.ndim != 3 or weight.shape[0] % groups:
        raise SpikebertError(f"Conv1d {name!r}: weight {weight.shape} must be (C_out, C_in/groups, K) with C_out "
                         f"divisible by groups={groups}")
    return _stateless(lambda x, ctx: kernels.conv1d(x, weight, bias, stride=stride, padding=padding,
                                                   dilation=dilation, groups=groups))


def _conv2d(name: str, node: nir.Conv2d, dt: float | None) -> Step:
    weight, bias = _f64(node.weight), _f64(node.bias)
    groups = int(node.groups)
    if weight.ndim != 4 or weight.shape[0] % groups:
        raise SpikebertError(f"Conv2d {name!r}: weight {weight.shape} must be (C_out, C_in/groups, K_h, K_w) with C_out "
                             f"divisible by groups={groups}")
    try:
        kernels.conv2d_padding(node.padding, weight.shape[2:], kernels.pair(node.dilation))
    except ValueError as err:
        raise SpikebertError(f"Conv2d {name!r}: {err}") from None
    return _stateless(lambda x, ctx: kernels.conv2d(x, weight, bias, stride=node.stride, padding=node.padding,
                                                   dilation=node.dilation, groups=groups))


def _pool2d(name: str, node: nir.SumPool2d | nir.AvgPool2d, dt: float | None) -> Step:
    params = {"kernel_size": node.kernel_size, "stride": node.stride, "padding": node.padding}
    if isinstance(node, nir.SumPool2d):
        return _stateless(lambda x, ctx: kernels.sum_pool2d(x, **params))
    area = float(np.prod(kernels.pair(node.kernel_size)))
    return _stateless(lambda x, ctx: kernels.sum_pool2d(x, **params) / area)


def _scale(name: str, node: nir.Scale, dt: float | None) -> Step:
    scale = _f64(node.scale)
    return _stateless(lambda x, ctx: x * scale)


def _flatten(name: str, node: nir.Flatten, dt: float | None) -> Step:
    start, end = int(node.start_dim), int(node.end_dim)
    return _stateless(lambda x, ctx: kernels.flatten(x, start, end))


def _threshold(name: str, node: nir.Threshold, dt: float | None) -> Step:
    threshold = _f64(node.threshold)
    return _stateless(lambda x, ctx: (x > threshold).astype(np.float64))


def _layer_norm(name: str, node: SBLayerNorm, dt: float | None) -> Step:
    return _stateless(lambda x, ctx: kernels.layer_norm(x, node.weight, node.bias, groups=node.groups, eps=node.eps))


def _token_mean(name: str, node: SBTokenMean, dt: float | None) -> Step:
    return _stateless(lambda x, ctx: kernels.token_mean(x, ctx.mask if node.mask_padding else None))


def _attention(name: str, node: SBSpikeAttention, dt: float | None) -> Step:
    relative = relative_matrix(node, node.tokens)

    def step(x, state, ctx):
        y, a, v, w = kernels.spike_attention(x, dim=node.dim, heads=node.heads, scale=node.scale,
                                            key_mask=ctx.mask if node.mask_padding else None, relative=relative)
        qk, av = kernels.attention_stats(a, v, ctx.mask, mixing=w)
        ctx.activity.add(NodeActivity(qk_accumulates=qk, av_accumulates=av))
        return y, None

    return step


def _spike_driven_attention(name: str, node: SBSpikeDrivenAttention, dt: float) -> Step:
    """Q masked by the spikes of a population (D,) driven by the K*V coincidences summed over the tokens;
    state = the population's membrane. Activity: the coincidences, as accumulates (``qk_accumulates``)."""
    population = _spiking(name, node.population(), dt)

    def step(x, v, ctx):
        q, counts, accumulates = kernels.kv_coincidences(x, dim=node.dim, mask=ctx.mask,
                                                         mask_padding=node.mask_padding)
        spikes, v = population(counts, v, ctx)  # (B, D)
        ctx.activity.add(NodeActivity(qk_accumulates=accumulates))
        return q * spikes[:, :, None], v

    return step


def _membrane(node, dt: float) -> dict[str, np.ndarray]:
    """Euler coefficients of the membrane: leaky (LIF, LI, CubaLIF, CubaLI) or integrator (IF, I)."""
    if isinstance(node, (nir.IF, nir.I)):
        beta, gain, bias = kernels.integrator_coefficients(_f64(node.r), dt)
    else:
        tau = node.tau_mem if isinstance(node, (nir.CubaLIF, nir.CubaLI)) else node.tau
        beta, gain, bias = kernels.lif_coefficients(_f64(tau), _f64(node.r), _f64(node.v_leak), dt)
    return {"beta": beta, "gain": gain, "bias": bias}


def _synapse(node: nir.CubaLIF | nir.CubaLI, dt: float) -> dict[str, np.ndarray]:
    """Euler coefficients of ``tau_syn di/dt = -i + w_in I``: the leaky equation with r = w_in, v_leak = 0."""
    beta, gain, bias = kernels.lif_coefficients(_f64(node.tau_syn), _f64(node.w_in), 0.0, dt)
    return {"beta": beta, "gain": gain, "bias": bias}


def _spiking(name: str, node, dt: float) -> Step:
    """LIF, IF, CubaLIF: state v, or (i, v) with a synaptic current."""
    membrane = _membrane(node, dt)
    fire = {"v_threshold": _f64(node.v_threshold), "v_reset": _f64(node.v_reset)}
    if not isinstance(node, nir.CubaLIF):
        def step(x, v, ctx):
            return kernels.lif_step(np.zeros_like(x) if v is None else v, x, **membrane, **fire)

        return step
    synapse = _synapse(node, dt)

    def cuba_step(x, state, ctx):
        i, v = (np.zeros_like(x), np.zeros_like(x)) if state is None else state
        i = kernels.leaky_integrate(i, x, **synapse)
        spikes, v = kernels.lif_step(v, i, **membrane, **fire)
        return spikes, (i, v)

    return cuba_step


def _integrating(name: str, node, dt: float) -> Step:
    """LI, I, CubaLI: no threshold, the output is the membrane v."""
    membrane = _membrane(node, dt)
    if not isinstance(node, nir.CubaLI):
        def step(x, v, ctx):
            v = kernels.leaky_integrate(np.zeros_like(x) if v is None else v, x, **membrane)
            return v, v

        return step
    synapse = _synapse(node, dt)

    def cuba_step(x, state, ctx):
        i, v = (np.zeros_like(x), np.zeros_like(x)) if state is None else state
        i = kernels.leaky_integrate(i, x, **synapse)
        v = kernels.leaky_integrate(v, i, **membrane)
        return v, (i, v)

    return cuba_step


def _subtract_if(name: str, node: SBIF, dt: float | None) -> Step:
    params = {"r": _f64(node.r), "v_threshold": _f64(node.v_threshold), "leak": _f64(node.leak)}

    def step(x, u, ctx):
        return kernels.if_subtract_step(np.zeros_like(x) if u is None else u, x, **params)

    return step


def delay_steps(name: str, delay: np.ndarray, dt: float) -> np.ndarray:
    """NIR Delay (seconds, per element) as whole steps of ``dt``; anything else is an error naming the fix."""
    ratio = _f64(delay) / dt
    steps = np.rint(ratio)
    if np.any(steps < 0) or not np.allclose(ratio, steps, rtol=DELAY_TOLERANCE, atol=DELAY_TOLERANCE):
        raise SpikebertError(
            f"Delay {name!r}: delays {np.unique(delay)} are not whole, non-negative numbers of steps of "
            f"dt={dt} (delay/dt = {np.unique(ratio)}); round the delays to multiples of dt, or run with a dt "
            "that divides them"
        )
    return steps.astype(np.int64)


def _delay(name: str, node: nir.Delay, dt: float) -> Step:
    steps = delay_steps(name, node.delay, dt)

    def step(x, history, ctx):
        if history is None:
            history = np.zeros((int(steps.max(initial=0)) + 1, *x.shape))  # (D+1, B, ...)
        return kernels.delay_step(history, x, steps)

    return step


STEP_BUILDERS: dict[type, Callable[[str, Any, float | None], Step]] = {
    nir.Input: _identity,
    nir.Output: _identity,
    nir.Affine: _affine,
    nir.Linear: _affine,
    nir.Conv1d: _conv1d,
    nir.Conv2d: _conv2d,
    nir.SumPool2d: _pool2d,
    nir.AvgPool2d: _pool2d,
    nir.Scale: _scale,
    nir.Flatten: _flatten,
    nir.Threshold: _threshold,
    nir.LIF: _spiking,
    nir.IF: _spiking,
    nir.CubaLIF: _spiking,
    nir.LI: _integrating,
    nir.I: _integrating,
    nir.CubaLI: _integrating,
    nir.Delay: _delay,
    SBTokenEmbedding: _identity,  # host-side: run() starts after it, run_inputs() refuses token graphs
    SBPositionSpikes: _identity,  # host-side, as the embedding
    SBLayerNorm: _layer_norm,
    SBSpikeAttention: _attention,
    SBSpikeDrivenAttention: _spike_driven_attention,
    SBTokenMean: _token_mean,
    SBIF: _subtract_if,
}
"""node type -> (name, node, dt) -> step; the node set the executor supports."""

SUPPORTED = tuple(STEP_BUILDERS)


def step_builder(node: nir.NIRNode) -> Callable[[str, Any, float | None], Step]:
    """The float step of a node, or its fixed-point step when a quantised graph marks it
    (``metadata["fixed_point"]``, written by ``spikebert.hardware.quantize``;
    see ``spikebert.hardware.fixed_point``)."""
    if fixed_params(node) is not None:
        return FIXED_STEP_BUILDERS[type(node)]
    return STEP_BUILDERS[type(node)]


# --- the executor ---------------------------------------------------------------------------------


def recurrent_edges(graph: nir.NIRGraph) -> list[tuple[str, str]]:
    """The edges that close a cycle, in edge order: a depth-first walk from the Input nodes (then from
    any node not reached yet), in the graph's node and edge order, marks every edge into a node on
    its current path (a self-loop included). Without them the graph is acyclic. Each carries its
    source's output of the previous step (zero at step 0)."""
    succ: dict[str, list[tuple[str, int]]] = {n: [] for n in graph.nodes}
    for i, (src, dst) in enumerate(graph.edges):
        if src in succ and dst in succ:
            succ[src].append((dst, i))
    on_path, done, back = set(), set(), []
    starts = [n for n, node in graph.nodes.items() if isinstance(node, nir.Input)] + list(graph.nodes)
    for start in starts:
        if start in on_path or start in done:
            continue
        on_path.add(start)
        stack = [(start, iter(succ[start]))]
        while stack:
            node, pending = stack[-1]
            for dst, i in pending:
                if dst in on_path:
                    back.append(i)
                elif dst not in done:
                    on_path.add(dst)
                    stack.append((dst, iter(succ[dst])))
                    break
            else:
                on_path.discard(node)
                done.add(node)
                stack.pop()
    return [graph.edges[i] for i in sorted(back)]


@dataclasses.dataclass(frozen=True)
class Schedule:
    """How a graph steps: ``order`` (topological without the recurrent edges), each node's
    same-step predecessors ``preds`` and its previous-step ones ``recurrent_preds`` (the sources of
    its recurrent edges), both in edge order with repeats for repeated edges."""

    order: list[str]
    preds: dict[str, list[str]]
    recurrent_preds: dict[str, list[str]]
    recurrent: list[tuple[str, str]]

    @property
    def recurrent_sources(self) -> list[str]:
        return sorted({src for src, _ in self.recurrent}, key=self.order.index)


def schedule(graph: nir.NIRGraph) -> Schedule:
    """The :class:`Schedule` of any NIR graph, acyclic or recurrent (:func:`recurrent_edges`).

    An acyclic graph gets exactly ``spikebert.contract.graph.topological_order``'s order.
    """
    preds = predecessors(graph)  # also checks that every edge names existing nodes
    back = recurrent_edges(graph)
    if not back:
        return Schedule(topological_order(graph), preds, {n: [] for n in graph.nodes}, [])
    forward, remaining = [], list(back)
    for edge in graph.edges:
        if tuple(edge) in remaining:
            remaining.remove(tuple(edge))
        else:
            forward.append(edge)
    acyclic = types.SimpleNamespace(nodes=graph.nodes, edges=forward)
    order = topological_order(acyclic)
    recurrent_preds: dict[str, list[str]] = {n: [] for n in graph.nodes}
    for src, dst in back:
        recurrent_preds[dst].append(src)
    log.debug("recurrent edges (previous step's output): %s", back)
    return Schedule(order, predecessors(acyclic), recurrent_preds, [tuple(e) for e in back])



def resolve_dt(graph: nir.NIRGraph, dt: float | None) -> float | None:
    """The step of a run, for every backend (the reference executor, Lava): the graph's metadata ``"dt"``,
    else the ``dt`` argument; None for a graph with no time constants or delays and neither.

    Raises SpikebertError for a graph with time constants or delays and no dt, a dt argument that
    contradicts the metadata, or a dt that is not positive.
    """
    meta = graph.metadata.get("dt")
    if meta is not None and dt is not None and float(meta) != float(dt):
        raise SpikebertError(f"dt={dt} contradicts the graph metadata dt={float(meta)}; drop the dt argument")
    resolved = meta if meta is not None else dt
    if resolved is None:
        timed = sorted(n for n, node in graph.nodes.items() if isinstance(node, TIMED_TYPES))
        if timed:
            raise SpikebertError(
                f"nodes {timed} have time constants or delays, but the graph metadata has no 'dt' and no dt "
                "was passed: pass ReferenceExecutor(graph, dt=...) or run_lava(graph, ..., dt=...), the step the "
                "graph was exported for (snnTorch's export_to_nir assumes dt=1e-4)"
            )
        return None
    if not float(resolved) > 0:
        raise SpikebertError(f"dt must be positive, got {resolved}")
    return float(resolved)


def metadata_time_steps(graph: nir.NIRGraph) -> int:
    """T of a token-id run (``run(ids)``): the graph's ``"time_steps"``, the T the student was exported
    for (1 if absent). A run on a tensor input takes T from the input instead."""
    return int(graph.metadata.get("time_steps", 1))


def host_nodes(order: list[str], preds: dict[str, list[str]], sources) -> set[str]:
    """``sources`` and their ancestors in ``order`` (topological): what the host computes to send them."""
    host = set(sources)
    for name in reversed(order):
        if name in host:
            host.update(preds[name])
    return host


class ReferenceExecutor:
    """Run a NIR graph of the supported node set batch by batch, recording activity.

    ``dt`` (seconds, or the graph's time unit): the step; required when the graph has time
    constants or delays and its metadata holds no ``"dt"``. Must agree with the metadata if both
    are given.
    """

    def __init__(self, graph: nir.NIRGraph, *, dt: float | None = None) -> None:
        self.graph = graph
        self.dt = resolve_dt(graph, dt)
        self.time_steps = metadata_time_steps(graph)
        plan = schedule(graph)
        self.order, self.preds, self.recurrent_preds = plan.order, plan.preds, plan.recurrent_preds
        self.recurrent_sources = plan.recurrent_sources
        for name in self.order:
            node = graph.nodes[name]
            if type(node) not in STEP_BUILDERS:
                raise SpikebertError(
                    f"node {name!r} has type {type(node).__name__}, which the reference executor does "
                    f"not support; supported: {sorted(t.__name__ for t in SUPPORTED)}. Replace the node "
                    "(nested NIRGraphs: inline their nodes), or add a step for it in hardware/reference.py"
                )
            if not self.preds[name] and not self.recurrent_preds[name] and not isinstance(node, nir.Input):
                raise SpikebertError(f"node {name!r} has no incoming edge; connect it or remove it from the graph")
        check_edge_shapes(graph)
        self.fixed_point = is_quantised(graph)
        self.steps = {n: step_builder(graph.nodes[n])(n, graph.nodes[n], self.dt) for n in self.order}
        outputs = [n for n in self.order if isinstance(graph.nodes[n], nir.Output)]
        if len(outputs) != 1:
            raise SpikebertError(f"graph must have exactly one Output node, found {outputs}")
        self.output = outputs[0]
        backend = "reference-fixed_pt" if self.fixed_point else "reference"
        self.activity = Activity(backend=backend, samples=0, time_steps=self.time_steps, real_tokens=0.0,
                                 nodes={n: NodeActivity() for n in self.order
                                        if isinstance(graph.nodes[n], SYNAPSE_TYPES)})

    def run(self, ids: np.ndarray, *, record: tuple[str, ...] = ()) -> RunResult:
        """Token ids (B, L) through a SpikeBERT graph: encoded once, held for ``time_steps`` steps."""
        enc = encode_tokens(self.graph, ids)
        held = {n: np.broadcast_to(x, (self.time_steps, *x.shape)) for n, x in enc.sources.items()}  # (T, B, C, L)
        tokens = float(enc.mask.sum()) if enc.mask is not None else float(ids.size)
        return self._simulate(held, mask=enc.mask, record=record, tokens=tokens)

    def run_batches(self, ids: np.ndarray, *, batch_size: int = 64, progress: bool = True) -> np.ndarray:
        """Logits (N, C) of token ids (N, L), ``batch_size`` sentences per run; activity accumulates."""
        from tqdm.auto import tqdm

        starts = tqdm(range(0, len(ids), batch_size), desc="reference batches", disable=not progress, leave=False)
        return np.concatenate([self.run(ids[i:i + batch_size]).logits for i in starts])

    def run_inputs(self, x: np.ndarray, *, record: tuple[str, ...] = ()) -> RunResult:
        """A tensor x (T, B, *input shape) through a graph with one Input node: x[t] drives step t.

        Returns the Output node's value at every step, (T, B, *output shape). Activity counts
        B samples of T steps, with one position per sample, or L for (C, L) inputs.
        """
        inputs = [n for n in self.order if isinstance(self.graph.nodes[n], nir.Input)]
        token_graph = any(isinstance(node, (SBTokenEmbedding, SBPositionSpikes)) for node in self.graph.nodes.values())
        if token_graph or len(inputs) != 1:
            raise SpikebertError(f"run_inputs needs a graph with exactly one Input node (found {inputs}) and no token "
                             "encoder; SpikeBERT token graphs take token ids through run(ids)")
        x = np.asarray(x, dtype=np.float64)
        expected = port_shape(self.graph.nodes[inputs[0]], "output")
        if x.ndim < 2 or x.shape[0] < 1 or (expected is not None and x.shape[2:] != expected):
            shape = "*input shape" if expected is None else ", ".join(map(str, expected))
            raise SpikebertError(f"inputs for Input {inputs[0]!r} must be (T, B, {shape}), got {x.shape}")
        positions = int(np.prod(x.shape[3:]))  # (C,) inputs: 1; (C, L): L
        return self._simulate({inputs[0]: x}, mask=None, record=record, tokens=float(x.shape[1] * positions))

    def _simulate(self, drives: dict[str, np.ndarray], *, mask: np.ndarray | None, record: tuple[str, ...],
                  tokens: float) -> RunResult:
        """The time loop: ``drives[n][t]`` (B, ...) is the output of node n at step t; every node downstream of
        them steps (the nodes upstream, the host side, do not).

        Activity gains B samples and ``tokens`` real positions.
        """
        host = host_nodes(self.order, self.preds, drives)
        compute = [n for n in self.order if n not in host]
        unknown = sorted(set(record) - set(compute) - set(drives))
        if unknown:
            raise SpikebertError(f"cannot record {unknown}: not nodes this run computes ({[*drives, *compute]})")
        T, B = next(iter(drives.values())).shape[:2]
        if self.activity.samples and T != self.activity.time_steps:
            raise SpikebertError(f"this executor's activity holds runs of {self.activity.time_steps} steps, got {T}; "
                             "use one executor per number of steps")
        contexts = {n: StepContext(mask=mask, activity=self.activity.nodes.get(n)) for n in compute}
        state: dict[str, Any] = dict.fromkeys(compute)
        steps, recorded = [], {n: [] for n in record}
        previous: dict[str, np.ndarray] = {}  # the recurrent edges' sources at the last step; none at step 0
        for t in range(T):
            out = {n: x[t] for n, x in drives.items()}
            for name in compute:
                x = self._fan_in(name, out, previous, batch=B)
                ctx = contexts[name]
                if ctx.activity is not None:
                    nnz, abs_sum, elements = kernels.input_stats(x, mask)
                    ctx.activity.add(NodeActivity(input_nonzeros=nnz, input_abs_sum=abs_sum, input_elements=elements))
                out[name], state[name] = self.steps[name](x, state[name], ctx)
            steps.append(out[self.output])
            previous = {n: out[n] for n in self.recurrent_sources}
            for n in record:
                recorded[n].append(out[n])
        self.activity.time_steps = T
        self.activity.samples += B
        self.activity.real_tokens += tokens
        return RunResult(np.stack(steps), {n: np.stack(v) for n, v in recorded.items()})

    def _fan_in(self, name: str, out: dict[str, np.ndarray], previous: dict[str, np.ndarray], *,
                batch: int) -> np.ndarray:
        """Sum of the predecessors' outputs of this step and, over recurrent edges, of the last step (zero
        at step 0); unequal shapes are an error, never broadcast."""
        xs = [out[p] for p in self.preds[name]]
        xs += [previous[p] for p in self.recurrent_preds[name] if p in previous]
        if not xs:  # step 0 of a node fed by recurrent edges only
            shape = port_shape(self.graph.nodes[self.recurrent_preds[name][0]], "output")
            if shape is None:
                raise SpikebertError(f"node {name!r} is fed by recurrent edges only, from "
                                     f"{self.recurrent_preds[name]}, whose output shape is undefined")
            return np.zeros((batch, *shape))
        if any(x.shape != xs[0].shape for x in xs[1:]):
            shapes = {p: out[p].shape[1:] for p in self.preds[name]}
            shapes.update({f"{p} (previous step)": previous[p].shape[1:] for p in self.recurrent_preds[name]
                           if p in previous})
            raise SpikebertError(f"node {name!r} sums inputs of different shapes {shapes}; make them equal "
                             "(a Flatten or an Affine on the odd one out)")
        return xs[0] if len(xs) == 1 else sum(xs[1:], xs[0])
