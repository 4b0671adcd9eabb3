"""Build a Lava process network from a SpikeBERT-style NIR graph (floating point).

Mapping (one Lava Process per NIR node, batched over B sentences):

| NIR node          | Lava                                                                 |
|-------------------|----------------------------------------------------------------------|
| Input -> SBTokenEmbedding -> Threshold | host encoder, streamed by ``TokenSpikeSource``  |
| Conv1d (kernel 1) | ``TokenDense``                                                       |
| Affine / Linear   | ``BatchDense``                                                       |
| LIF               | lava-nc ``LIFReset`` (du = 1, dv = dt/tau, vth, reset every T steps) |
| SBLayerNorm, SBSpikeAttention, SBTokenMean | the custom Processes of the same name       |
| Scale(1) join     | no Process: Lava sums every OutPort connected to one InPort          |
| Output            | lava-nc ``io.sink.RingBuffer``                                       |

The LIF input gain ``r dt/tau`` is applied by the LIF's single producer as its ``out_gain``
(the last operation, as in the student), so Lava's LIF integrates exactly ``beta v + gain I``.
"""

from __future__ import annotations

import dataclasses
import logging

import nir
import numpy as np

from converters.nir_ext import SBLayerNorm, SBSpikeAttention, SBTokenEmbedding, SBTokenMean
from hardware import kernels
from hardware.reference import predecessors, topological_order

log = logging.getLogger(__name__)


@dataclasses.dataclass
class LavaNetwork:
    source: object
    sink: object
    processes: dict[str, object]  # NIR node name -> Lava Process (joins and the encoder have none)
    num_steps: int

    @property
    def num_processes(self) -> int:
        return len(self.processes) + 2


def _uniform(name: str, what: str, values: np.ndarray) -> float:
    flat = np.asarray(values).ravel()
    if not np.all(flat == flat[0]):
        raise ValueError(
            f"LIF {name!r}: per-neuron {what} differs across neurons; Lava's LIF holds one value per "
            "population. Split the population or fold the differences into the input weights"
        )
    return float(flat[0])


def _lif_params(name: str, node: nir.LIF, dt: float) -> tuple[float, float, float]:
    """(dv, vth, input gain) of a NIR LIF for Lava's LIF with du = 1."""
    if np.any(node.v_reset != 0) or np.any(node.v_leak != 0):
        raise ValueError(f"LIF {name!r}: v_reset and v_leak must be 0 for the Lava backend")
    beta, gain, _ = kernels.lif_coefficients(node.tau, node.r, node.v_leak, dt)
    beta, gain = _uniform(name, "tau", beta), _uniform(name, "r/tau", gain)
    dv = 1.0 - beta
    if 1.0 - dv != beta:
        log.warning("LIF %s: beta=%r is not exactly 1 - dv in float64; Lava's decay differs by one ulp", name, beta)
    return dv, _uniform(name, "v_threshold", node.v_threshold), gain


def build_network(graph: nir.NIRGraph, *, spikes: np.ndarray, mask: np.ndarray, first_node: str) -> LavaNetwork:
    """Processes for every node after the host-encoded ``first_node``; ``spikes`` (nb, B, D, L)."""
    from lava.proc.io.sink import RingBuffer
    from lava.proc.lif.process import LIFReset

    from hardware.lava_procs import process as P

    dt = float(graph.metadata.get("dt", 1.0))
    T = int(graph.metadata.get("time_steps", 1))
    n_batches, B = spikes.shape[:2]
    num_steps = n_batches * T
    order = topological_order(graph)
    preds = predecessors(graph)
    succ = {n: [d for s, d in graph.edges if s == n] for n in graph.nodes}

    gains: dict[str, float] = {}
    lif_params = {}
    for name in order:
        node = graph.nodes[name]
        if isinstance(node, nir.LIF):
            lif_params[name] = _lif_params(name, node, dt)
            (producer,) = preds[name] if len(preds[name]) == 1 else (None,)
            if producer is None or succ[producer] != [name] or producer == first_node:
                raise ValueError(f"LIF {name!r} needs exactly one producer that feeds only it (found "
                                 f"{preds[name]}); insert a Scale(1) join for fan-in")
            gains[producer] = lif_params[name][2]

    source = P.TokenSpikeSource(spikes=spikes, mask=mask, time_steps=T, name="encoder")
    out_ports: dict[str, list] = {first_node: [source.s_out]}
    processes: dict[str, object] = {}
    sink = None
    start = order.index(first_node) + 1
    for name in order[start:]:
        node = graph.nodes[name]
        gain = gains.get(name, 1.0)
        if isinstance(node, nir.Scale):
            if not np.all(node.scale == 1):
                raise ValueError(f"Scale {name!r}: only unit scales (residual joins) are supported by the Lava backend")
            out_ports[name] = [p for src in preds[name] for p in out_ports[src]]
            continue
        if isinstance(node, nir.Output):
            sink = RingBuffer(shape=(B, int(node.output_type["output"][0])), buffer=num_steps)
            _connect(preds[name], out_ports, sink.a_in)
            continue
        proc = _make_process(P, LIFReset, name, node, B=B, T=T, tokens=mask.shape[2], gain=gain,
                             lif=lif_params.get(name))
        in_port = proc.a_in if isinstance(node, nir.LIF) else proc.s_in
        _connect(preds[name], out_ports, in_port)
        if not isinstance(node, nir.LIF):
            source.mask_out.connect(proc.mask_in)
        out_ports[name] = [proc.s_out if isinstance(node, nir.LIF) else proc.a_out]
        processes[name] = proc
    if sink is None:
        raise ValueError("graph has no Output node")
    return LavaNetwork(source=source, sink=sink, processes=processes, num_steps=num_steps)


def _connect(sources: list[str], out_ports: dict[str, list], in_port) -> None:
    for src in sources:
        for port in out_ports[src]:
            port.connect(in_port)


def _make_process(P, LIFReset, name: str, node, *, B: int, T: int, tokens: int, gain: float, lif):
    if isinstance(node, nir.Conv1d):
        if node.weight.shape[2] != 1 or node.groups != 1:
            raise ValueError(f"Conv1d {name!r}: only kernel size 1, groups 1 (token-wise) maps to TokenDense")
        return P.TokenDense(weight=node.weight[:, :, 0], bias=np.asarray(node.bias, float), batch=B,
                            tokens=int(node.input_shape), out_gain=gain, name=name)
    if isinstance(node, (nir.Affine, nir.Linear)):
        bias = node.bias if isinstance(node, nir.Affine) else np.zeros(node.weight.shape[0])
        return P.BatchDense(weight=node.weight, bias=np.asarray(bias, float), batch=B, tokens=tokens, out_gain=gain,
                            name=name)
    if isinstance(node, SBLayerNorm):
        return P.LayerNorm(weight=node.weight, bias=node.bias, groups=node.groups, eps=node.eps, batch=B,
                           tokens=node.tokens, out_gain=gain, name=name)
    if isinstance(node, SBSpikeAttention):
        return P.SpikeAttention(dim=node.dim, heads=node.heads, scale=node.scale, mask_padding=node.mask_padding,
                                batch=B, tokens=node.tokens, out_gain=gain, name=name)
    if isinstance(node, SBTokenMean):
        return P.TokenMean(dim=node.dim, tokens=node.tokens, mask_padding=node.mask_padding, batch=B,
                           out_gain=gain, name=name)
    if isinstance(node, nir.LIF):
        dv, vth, _ = lif
        shape = (B, *node.v_threshold.shape)
        return LIFReset(shape=shape, du=1.0, dv=dv, vth=vth, bias_mant=0.0, reset_interval=T,
                        reset_offset=1 % T, name=name)
    if isinstance(node, SBTokenEmbedding):
        raise ValueError(f"{name!r}: SBTokenEmbedding must be the graph's input encoder, not an inner node")
    raise ValueError(f"node {name!r} of type {type(node).__name__} has no Lava mapping yet")
