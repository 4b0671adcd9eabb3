"""``fuse="deploy"``: the deployable Lava build. Every synaptic layer is a lava-nc ``Conv`` process and every
neuron population a lava-nc ``LIFReset``; only what lava-nc has no process for stays custom.

Mapping (token tensors are NIR's (B, C, L); lava-nc processes hold them as (L, B, C), W = tokens, H = the
batch, C = channels, so that one 1 x 1 ``Conv`` is a token-wise layer for a whole batch of sentences):

* ``LIF`` / ``IF`` population -> lava-nc ``LIFReset`` (float: du = 1, dv = 1 - beta, vth; fixed: the
  quantised 12-bit decays, 17-bit threshold, per-neuron bias mantissa), reset at the first step of every
  sentence window, which also wipes the bias that acts before the delayed input arrives.
* ``Conv1d`` (kernel 1, stride 1, no padding, groups 1), ``Affine``, ``Linear`` feeding populations ->
  lava-nc ``Conv`` with a 1 x 1 kernel (token-wise, weight-shared; an (B, C) vector is (1, B, C)). The bias
  moves to the population's bias; the float LIF input gain r dt / tau is folded into the weights.
* a residual join (a ``Scale`` of ones summing several inputs) is no process: a synaptic layer that reads
  a join becomes one ``Conv`` per spiking source of the join, all converging on the same population
  (``a_in`` sums every connected port); each of them reads binary spikes of one population, so every
  synaptic operation is spike-driven. A population that reads a join of synaptic outputs (a
  membrane-residual student) gets each synapse's ``Conv`` directly.
* ``SBSpikeAttention`` (Q K^T V, a product of two spike tensors) -> a custom ``NodeGroup``: lava-nc has no
  process for it. On Loihi 2 it could run as graded spikes through ``ProdNeuron``-style neurons (the
  elementwise products) with the sums over keys in dendritic accumulation, or on the host/embedded CPU.
* ``SBSpikeDrivenAttention`` (Spike-driven Transformer's mask-and-add: its own population of Σ K ⊙ V and the Q
  mask) -> a custom ``NodeGroup`` reading its QKV population's spikes; its output is binary, so the projection
  after it is a lava-nc ``Conv`` like any other.
* the readout (``SBTokenMean`` -> classifier ``Affine`` -> Output) -> a custom host ``NodeGroup``: a mean over
  tokens and a float classifier, which on Loihi 2 reads the final spikes (or graded sums) off-chip.
* the token encoder (embedding + threshold) is the host ``TokenSpikeSource``, as in every build; a position
  population (``SBPositionSpikes``) is a second one, whose spikes reach the stream through a lava-nc ``Conv``.
* branch alignment: a source read at two latencies is delayed by a custom ``Delay`` group (Loihi 2 has
  axonal delays; lava-nc's ``DelayDense`` would need an N x N identity matrix here).

lava-nc's ``Conv`` ProcessModels loop over every (output, input) channel pair with ``scipy`` (262,144
``convolve2d`` calls per step for a 256 -> 1024 layer); this build selects ``PyConv1x1Model*``
(``lava_procs/models.py``), CPU models of the same lava-nc ``Conv`` process that compute a 1 x 1 kernel as
one matrix product, with lava-nc's semantics otherwise (one step of delay, 24-bit clamp in fixed point,
binary input unless ``num_message_bits``). The process, its parameters and its ports are lava-nc's; on
Loihi 2 the compiler maps the process, not the CPU model.

Under fixed point (a graph quantised by ``spikebert.hardware.quantize``) the build is bit-exact with the
reference executor's fixed mode: every synapse is an integer matrix product (W (a + b) = W a + W b for a
join), the populations are lava-nc's bit-accurate LIF. In float, the split joins, moved biases and folded
gains change the order of float additions, so spikes may differ where a membrane sits within rounding
of its threshold.
"""

from __future__ import annotations

import dataclasses
import logging

import nir
import numpy as np

from spikebert.contract.errors import SpikebertError
from spikebert.contract.extension import SBSpikeAttention, SBSpikeDrivenAttention, SBTokenMean
from spikebert.contract.graph import is_join, port_shape
from spikebert.hardware.fixed_point import fixed_params, is_quantised
from spikebert.hardware.lava_network import GroupSpec, LavaNetwork
from spikebert.hardware.quantize import BINARY, SPIKING, population_constants

log = logging.getLogger(__name__)

SYNAPSES = (nir.Conv1d, nir.Affine, nir.Linear)
TO_LAVA = (2, 0, 1)  # (B, C, L) -> (L, B, C)
TO_NIR = (1, 2, 0)  # (L, B, C) -> (B, C, L)


@dataclasses.dataclass
class DeployProcess:
    """One process of the deployable build, for the inventory (shares of operations, docs)."""

    name: str
    kind: str  # "lava-nc Conv" | "lava-nc LIFReset" | "custom attention" | "custom readout" | "custom delay" | ...
    nodes: list[str]  # the NIR nodes it computes
    source: str | None = None  # for a Conv: the population (or encoder) whose spikes it reads
    consumer: str | None = None  # for a Conv: the population it feeds
    lava_nc: bool = False


def _token_syn(node) -> bool:
    if isinstance(node, nir.Conv1d):
        w = np.asarray(node.weight)
        padding = node.padding.decode() if isinstance(node.padding, bytes) else node.padding
        return (w.ndim == 3 and w.shape[2] == 1 and int(node.stride) == 1 and int(node.groups) == 1
                and int(node.dilation) == 1 and padding in (0, "valid", "same"))
    return isinstance(node, (nir.Affine, nir.Linear)) and np.asarray(node.weight).ndim == 2


def _matrix(node) -> np.ndarray:
    w = np.asarray(node.weight, dtype=np.float64)
    return w[:, :, 0] if w.ndim == 3 else w


def _bias(node) -> np.ndarray:
    w = _matrix(node)
    return np.asarray(getattr(node, "bias", np.zeros(w.shape[0])), dtype=np.float64)


def lava_shape(nir_shape: tuple[int, ...], batch: int) -> tuple[int, int, int]:
    """(C, L) -> (L, B, C); (C,) -> (1, B, C)."""
    if len(nir_shape) == 2:
        return (nir_shape[1], batch, nir_shape[0])
    if len(nir_shape) == 1:
        return (1, batch, nir_shape[0])
    raise SpikebertError(f"fuse='deploy' maps token tensors (C, L) and vectors (C,), not shape {nir_shape}")


def build_deploy(graph: nir.NIRGraph, *, sources: dict[str, object], batch: int, n_batches: int, T: int, dt,
                 masks, error_path, steps, compute: list[str], output: str, sink_cls, float_sink_model):
    """The processes of ``fuse="deploy"`` (see the module docstring); returns a ``LavaNetwork``.

    ``sources``: host-side node -> the Lava process sending its output; the first is the token encoder."""
    source = next(iter(sources.values()))
    from lava.proc.conv.process import Conv
    from lava.proc.lif.process import LIFReset

    from spikebert.hardware.lava_procs.models import PyConv1x1ModelFixed, PyConv1x1ModelFloat
    from spikebert.hardware.lava_procs.process import NodeGroup, ReadoutGroup

    fixed = is_quantised(graph)
    if steps.recurrent:
        raise SpikebertError(f"fuse='deploy' does not map recurrent edges {steps.recurrent} yet; use fuse='none' or "
                             "'blocks'")
    preds = steps.preds
    nodes = graph.nodes
    inventory: list[DeployProcess] = []
    exceptions: dict = {}
    groups: dict[str, object] = {}
    lava_processes: dict[str, object] = {}
    # node -> (OutPort, layout "nir" | "lava", latency)
    ports: dict[str, tuple[object, str, int]] = {n: (p.s_out, "nir", 0) for n, p in sources.items()}
    delays: dict[tuple[str, int, str], object] = {}
    covered: set[str] = set()

    def leaves(name: str) -> list[str]:
        if is_join(nodes[name]):
            covered.add(name)
            return [leaf for p in preds[name] for leaf in leaves(p)]
        return [name]

    pseudo_shapes: dict[str, tuple[int, ...]] = {}  # values no NIR node holds (a host-scaled copy)

    def nir_shape(name: str) -> tuple[int, ...]:
        if name in pseudo_shapes:
            return pseudo_shapes[name]
        shape = port_shape(nodes[name], "output")
        if shape is None:
            raise SpikebertError(f"node {name!r} has no defined output shape; Lava ports need one")
        return shape

    def port(name: str, layout: str, at: int):
        """``name``'s output in ``layout``, delayed to arrive at latency ``at``."""
        out, have, lat = ports[name]
        lag = at - lat
        if lag < 0:
            raise AssertionError(f"{name} arrives at {lat}, after {at}")
        if lag:
            key = (name, lag, have)
            if key not in delays:
                shape = tuple(out.shape[1:]) if have == "nir" else tuple(out.shape)
                delay_name = f"{name}__delay{lag}"
                node = nir.Delay(delay=np.full(shape, float(lag)))
                spec = GroupSpec(nodes={delay_name: node}, order=[delay_name], internal_preds={delay_name: []},
                                 entries={delay_name}, recorded=[], dt=1.0, time_steps=T, latency=lat,
                                 n_batches=n_batches, masks=masks, reset=False, error_path=error_path)
                proc = NodeGroup(spec=spec, in_shape=tuple(out.shape), out_shape=tuple(out.shape), name=delay_name)
                out.connect(proc.s_in)
                groups[delay_name] = proc
                delays[key] = proc
                inventory.append(DeployProcess(delay_name, "custom delay", [], source=name))
            out = delays[key].a_out
        if have == layout:
            return out
        if len(nir_shape(name)) == 2:  # token tensors: (B, C, L) <-> (L, B, C)
            return out.transpose(TO_LAVA if layout == "lava" else TO_NIR)
        if layout == "lava":  # vectors: (B, C) -> (1, B, C)
            return out.reshape((1, *out.shape))
        return out.reshape(tuple(out.shape[1:]))

    def constants(pop: str) -> tuple[float, float, float, np.ndarray]:
        """Float (beta, input gain, threshold, per-neuron leak bias v_leak dt / tau) of a population lava-nc's LIF
        holds: one beta, gain and threshold, reset to 0."""
        node = nodes[pop]
        leak = np.zeros(np.shape(node.v_threshold))
        if isinstance(node, nir.LIF) and np.any(np.asarray(node.v_leak) != 0):
            leak = np.asarray(node.v_leak, float) * dt / np.asarray(node.tau, float)
            node = nir.LIF(tau=node.tau, r=node.r, v_leak=np.zeros_like(leak), v_threshold=node.v_threshold,
                           v_reset=node.v_reset)
        try:
            beta, gain, vth = population_constants(pop, node, dt)
        except SpikebertError as err:
            raise SpikebertError(f"fuse='deploy': lava-nc's LIF cannot hold population {pop!r}: {err}; use "
                                 "fuse='blocks'") from None
        return beta, gain, vth, leak

    def gain_of(pop: str) -> float:
        return 1.0 if fixed else constants(pop)[1]

    def conv(syn: str, src: str, pop: str | None, scale: float):
        """A lava-nc Conv (1 x 1) computing ``syn``'s weights on ``src``'s output."""
        w = _matrix(nodes[syn])
        if fixed:
            p = fixed_params(nodes[syn])
            if p is None:
                raise SpikebertError(f"{syn!r} has no fixed-point parameters; quantise the graph")
            from spikebert.hardware import kernels

            weight = kernels.shift_exp(w.astype(np.int64), int(p["weight_exp"])).astype(np.int32)
        else:
            weight = scale * w
        in_shape = lava_shape(nir_shape(src), batch)
        if in_shape[2] != w.shape[1]:
            raise SpikebertError(f"{syn!r} takes {w.shape[1]} channels, {src!r} gives {in_shape[2]}")
        graded = not isinstance(nodes[src], BINARY)
        name = f"{syn}__from__{src}" + (f"__to__{pop}" if pop else "")
        proc = Conv(weight=weight[:, None, None, :], input_shape=in_shape, weight_exp=0, num_weight_bits=8,
                    num_message_bits=24 if graded else 0, name=name)
        exceptions[proc] = PyConv1x1ModelFixed if fixed else PyConv1x1ModelFloat
        lava_processes[name] = proc
        inventory.append(DeployProcess(name, "lava-nc Conv", [syn], source=src, consumer=pop, lava_nc=True))
        covered.add(syn)
        return proc

    def group(names: list[str], *, entry_shape, out_name: str, at: int, gain: float | None = None,
              readout: bool = False, bias: np.ndarray | None = None):
        """A custom NodeGroup over ``names`` (NIR layout), optionally adding ``bias`` first and ``gain`` last."""
        group_nodes = {n: nodes[n] for n in names}
        order = list(names)
        internal = {n: [p for p in preds[n] if p in group_nodes] for n in names}
        entries = {names[0]}
        if bias is not None:  # the biases of synaptic outputs that reach a host node directly
            key = f"{names[0]}__bias"
            shape = entry_shape
            w = np.eye(shape[0])
            group_nodes[key] = nir.Conv1d(input_shape=shape[1], weight=w[:, :, None], stride=1, padding=0, dilation=1,
                                          groups=1, bias=bias) if len(shape) == 2 else nir.Affine(w, bias)
            order.insert(0, key)
            internal[key], internal[names[0]], entries = [], [key], {key}
        out = out_name
        if gain is not None and gain != 1.0:
            key = f"{out_name}__gain"
            group_nodes[key] = nir.Scale(scale=np.full(nir_shape(out_name), gain))
            internal[key] = [out_name]
            order.append(key)
            out = key
        recorded = [n for n in names
                    if isinstance(nodes[n], (*SYNAPSES, SBSpikeAttention, SBSpikeDrivenAttention, SBTokenMean))]
        spec = GroupSpec(nodes=group_nodes, order=order, internal_preds=internal, entries=entries, recorded=recorded,
                         dt=dt, time_steps=T, latency=at, n_batches=n_batches, masks=masks, error_path=error_path,
                         output=out)
        cls = ReadoutGroup if (readout and fixed) else NodeGroup
        proc = cls(spec=spec, in_shape=(batch, *entry_shape), out_shape=(batch, *nir_shape(out_name)),
                   name=f"group_{names[0]}")
        groups[names[-1]] = proc
        covered.update(names)
        return proc

    def scaled(leaf: str, gain: float) -> str:
        """A pseudo-node: ``leaf``'s output times ``gain``, a custom host group at ``leaf``'s latency (lava-nc's
        LIF has no input gain); returns its key in ``ports``."""
        key = f"{leaf}__x{gain:g}"
        if key not in ports:
            at = ports[leaf][2]
            spec = GroupSpec(nodes={key: nir.Scale(scale=np.full(nir_shape(leaf), gain))}, order=[key],
                             internal_preds={key: []}, entries={key}, recorded=[], dt=dt, time_steps=T, latency=at,
                             n_batches=n_batches, masks=masks, error_path=error_path)
            proc = NodeGroup(spec=spec, in_shape=(batch, *nir_shape(leaf)), out_shape=(batch, *nir_shape(leaf)),
                             name=key)
            port(leaf, "nir", at).connect(proc.s_in)
            groups[key] = proc
            inventory.append(DeployProcess(key, "custom host scale", [], source=leaf))
            ports[key] = (proc.a_out, "nir", at)
            pseudo_shapes[key] = nir_shape(leaf)
        return key

    for pop in [n for n in compute if isinstance(nodes[n], (*SPIKING, SBSpikeDrivenAttention))]:
        if isinstance(nodes[pop], SBSpikeDrivenAttention):  # a spike source of its own, read by lava-nc Convs
            (src,) = preds[pop]
            if src not in ports or not isinstance(nodes[src], BINARY):
                raise SpikebertError(f"fuse='deploy': spike-driven attention {pop!r} reads {src!r}, which is not a "
                                     "population; use fuse='blocks'")
            at = ports[src][2]
            proc = group([pop], entry_shape=nir_shape(src), out_name=pop, at=at)
            port(src, "nir", at).connect(proc.s_in)
            ports[pop] = (proc.a_out, "nir", at)
            inventory.append(DeployProcess(proc.name, "custom spike-driven attention", [pop], source=src))
            continue
        gain = gain_of(pop)
        terms = []  # (port-maker, latency, description)
        bias = np.zeros(nir_shape(pop)[0])
        for leaf in (leaf for p in preds[pop] for leaf in leaves(p)):
            node = nodes[leaf]
            if isinstance(node, SYNAPSES) and _token_syn(node):
                if not fixed:
                    bias = bias + gain * _bias(node)
                srcs = [s for p in preds[leaf] for s in leaves(p)]
                for src in srcs:
                    if src not in ports:
                        raise SpikebertError(f"fuse='deploy': {leaf!r} reads {src!r}, which is not a population or "
                                             "the encoder; use fuse='blocks'")
                    terms.append(("conv", leaf, src, ports[src][2] + 1))
            elif isinstance(node, SBSpikeAttention):
                (src,) = preds[leaf]
                terms.append(("attention", leaf, src, ports[src][2]))
            elif leaf in ports:  # a value another process already sends (host currents, a population)
                terms.append(("direct", leaf, leaf, ports[leaf][2]))
            else:
                raise SpikebertError(f"fuse='deploy' cannot map {type(node).__name__} {leaf!r} (feeding {pop!r}) to a "
                                     "lava-nc process; use fuse='blocks'")
        at = max(t[3] for t in terms)
        lif_shape = lava_shape(nir_shape(pop), batch)
        common = dict(shape=lif_shape, reset_interval=T, reset_offset=(1 + at) % T, name=pop)
        if fixed:
            p = fixed_params(nodes[pop])
            mant = np.asarray(p["bias_mant"], dtype=np.int64)
            mant = np.broadcast_to(mant, nir_shape(pop))
            mant = mant.T[:, None, :] if mant.ndim == 2 else mant[None, None, :]
            lif = LIFReset(du=int(p["du"]), dv=int(p["dv"]), vth=int(p["vth"]),
                           bias_mant=np.broadcast_to(mant, lif_shape).astype(np.int32).copy(),
                           bias_exp=np.full(lif_shape, int(p["bias_exp"]), np.int32), **common)
        else:
            beta, _, vth, leak = constants(pop)
            leak = leak.T[:, None, :] if leak.ndim == 2 else leak[None, None, :]  # (C, L) / (C,) -> lava layout
            lif = LIFReset(du=1.0, dv=1.0 - beta, vth=vth,
                           bias_mant=np.broadcast_to(bias[None, None, :] + leak, lif_shape).copy(), **common)
        lava_processes[pop] = lif
        inventory.append(DeployProcess(pop, "lava-nc LIFReset", [pop], lava_nc=True))
        covered.add(pop)
        for kind, leaf, src, _ in terms:
            if kind == "conv":
                proc = conv(leaf, src, pop, gain)
                port(src, "lava", at - 1).connect(proc.s_in)
                proc.a_out.connect(lif.a_in)
            elif kind == "attention":
                proc = group([leaf], entry_shape=nir_shape(src), out_name=leaf, at=at, gain=None if fixed else gain)
                port(src, "nir", at).connect(proc.s_in)
                proc.a_out.transpose(TO_LAVA).connect(lif.a_in)
                inventory.append(DeployProcess(proc.name, "custom attention", [leaf], source=src, consumer=pop))
            elif fixed or gain == 1.0:
                port(leaf, "lava", at).connect(lif.a_in)
            else:  # host currents (a membrane-residual student's embedding) times the LIF's input gain, on the host
                port(scaled(leaf, gain), "lava", at).connect(lif.a_in)
        ports[pop] = (lif.s_out, "lava", at)

    # the readout: the nodes between the last join/population and the Output, on the host
    chain, name = [], preds[output][0]
    while not is_join(nodes[name]) and not isinstance(nodes[name], SPIKING) and name not in sources:
        chain.insert(0, name)
        if len(preds[name]) != 1:
            raise SpikebertError(f"fuse='deploy': the readout node {name!r} has inputs {preds[name]}; use fuse='blocks'")
        name = preds[name][0]
    if not chain:
        out_port, out_layout, out_at = ports[name]
        sink_port = port(name, "nir", out_at)
        sink_shape = nir_shape(name)
    else:
        inputs = leaves(name)
        terms, bias = [], None
        for leaf in inputs:
            if leaf in ports:
                terms.append((leaf, None, ports[leaf][2]))
            elif isinstance(nodes[leaf], SYNAPSES) and _token_syn(nodes[leaf]):  # fixed: integer sums, bias 0
                bias = _bias(nodes[leaf]) if bias is None else bias + _bias(nodes[leaf])
                for src in (s for p in preds[leaf] for s in leaves(p)):
                    terms.append((src, leaf, ports[src][2] + 1))
            else:
                raise SpikebertError(f"fuse='deploy': the readout reads {type(nodes[leaf]).__name__} {leaf!r}, which "
                                     "is not a population, the encoder or a token-wise synapse; use "
                                     "fuse='blocks'")
        at = max(t[2] for t in terms)
        proc = group(chain, entry_shape=nir_shape(name), out_name=chain[-1], at=at, readout=True, bias=bias)
        for src, syn, _ in terms:
            if syn is None:
                port(src, "nir", at).connect(proc.s_in)
            else:
                c = conv(syn, src, None, 1.0)
                port(src, "lava", at - 1).connect(c.s_in)
                c.a_out.transpose(TO_NIR).connect(proc.s_in)
        inventory.append(DeployProcess(proc.name, "custom readout", chain))
        sink_port, sink_shape, out_at = proc.a_out, nir_shape(chain[-1]), at
    missing = sorted(set(compute) - covered - set(sources))
    if missing:
        raise SpikebertError(f"fuse='deploy' left nodes {missing} unmapped; use fuse='blocks'")
    num_steps = n_batches * T + out_at
    sink = sink_cls(shape=(batch, *sink_shape), buffer=num_steps)
    sink_port.connect(sink.a_in)
    if fixed:
        exceptions[sink] = float_sink_model
    net = LavaNetwork(source=source, sink=sink, groups=groups, lava_processes=lava_processes, num_steps=num_steps,
                      output_latency=out_at, exceptions=exceptions)
    net.inventory = inventory
    return net
