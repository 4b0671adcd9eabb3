"""Fixed-point steps of the reference executor for graphs quantised by ``spikebert.hardware.quantize``.

A node whose ``metadata["fixed_point"]`` is set runs in integers, bit for bit as lava-nc's
``fixed_pt`` ProcessModels (Dense, LIF) and the project's own fixed models; every other node
keeps its float step (host-side encoder, joins, readout). Same step signature as
``spikebert.hardware.reference``: (summed input, state, context) -> (output, state).
"""

from __future__ import annotations

import logging

import nir
import numpy as np

from spikebert.contract.activity import NodeActivity
from spikebert.contract.errors import SpikebertError
from spikebert.contract.extension import SBSpikeAttention, SBSpikeDrivenAttention, SBTokenEmbedding, relative_matrix
from spikebert.hardware import kernels

log = logging.getLogger(__name__)


def is_quantised(graph: nir.NIRGraph) -> bool:
    return "fixed_point" in graph.metadata


def fixed_params(node: nir.NIRNode) -> dict | None:
    """The fixed-point integers of a quantised node; None for nodes that keep float semantics."""
    return (node.metadata or {}).get("fixed_point")


def _dense(name: str, node, dt):
    p = fixed_params(node)
    weight = np.asarray(node.weight, dtype=np.int64)
    if isinstance(node, nir.Conv1d):
        if weight.shape[2] != 1 or int(node.groups) != 1 or int(node.stride) != 1:
            raise SpikebertError(f"Conv1d {name!r}: fixed point supports token-wise convolutions (kernel 1, stride 1, "
                             "groups 1)")
        weight = weight[:, :, 0]
    exp = int(p["weight_exp"])
    return lambda x, state, ctx: (kernels.dense_fixed(x, weight, exp), None)


def _conv2d(name: str, node: nir.Conv2d, dt):
    """Integer Conv2d: the products of integers in float64 are exact (|sum| < 2^53), then ``<< weight_exp``."""
    p = fixed_params(node)
    weight = np.asarray(node.weight, dtype=np.float64)
    zero, exp, groups = np.zeros(weight.shape[0]), int(p["weight_exp"]), int(node.groups)

    def step(x, state, ctx):
        acc = kernels.conv2d(np.asarray(x, dtype=np.float64), weight, zero, stride=node.stride, padding=node.padding,
                             dilation=node.dilation, groups=groups)
        return kernels.shift_exp(np.rint(acc).astype(np.int64), exp), None

    return step


def _attention(name: str, node: SBSpikeAttention, dt):
    multiplier = int(fixed_params(node)["multiplier"])
    relative = relative_matrix(node, node.tokens)  # coincidence units -> whole input units, rounded once
    relative = None if relative is None else np.rint(relative * multiplier)

    def step(x, state, ctx):
        counts, a, v, w = kernels.spike_attention(x, dim=node.dim, heads=node.heads, scale=1.0,
                                                 key_mask=ctx.mask if node.mask_padding else None,
                                                 relative=relative, count_unit=multiplier)
        qk, av = kernels.attention_stats(a, v, ctx.mask, mixing=w)
        ctx.activity.add(NodeActivity(qk_accumulates=qk, av_accumulates=av))
        return np.rint(counts).astype(np.int64), None  # whole numbers in float64

    return step


def neuron_bias(p: dict) -> np.ndarray:
    """Effective bias ``bias_mant << bias_exp`` per neuron, int64."""
    return kernels.shift_exp(np.asarray(p["bias_mant"], dtype=np.int64), int(p["bias_exp"]))


def _spiking(name: str, node, dt):
    p = fixed_params(node)
    du, dv, vth, bias = int(p["du"]), int(p["dv"]), int(p["vth"]), neuron_bias(p)

    warned = []

    def step(x, state, ctx):
        u, v = (np.zeros(x.shape, np.int64), np.zeros(x.shape, np.int64)) if state is None else state
        if not warned and max(x.max(initial=0), -x.min(initial=0)) > kernels.LOIHI_A_IN_LIMIT:  # no |x| copy
            warned.append(True)  # once per population and run: the chip wraps too, so the run stays bit-exact
            log.warning("%s: input %d exceeds the %d that Loihi's 24-bit current holds: it wraps, as on the chip, and "
                        "these neurons no longer follow the float graph (quantise with smaller weights or currents)",
                        name, int(np.abs(x).max()), kernels.LOIHI_A_IN_LIMIT)
        spikes, u, v = kernels.loihi_lif_step(u, v, x, du=du, dv=dv, vth=vth, bias=bias)
        return spikes, (u, v)

    return step


def _spike_driven_attention(name: str, node: SBSpikeDrivenAttention, dt):
    """The node's population in Loihi integers (as ``_spiking``), driven by its integer K*V coincidence counts
    times the multiplier ``hardware.quantize`` chose; Q is masked by its spikes as in float."""
    multiplier = int(fixed_params(node)["multiplier"])
    population = _spiking(name, node, dt)

    def step(x, state, ctx):
        q, counts, accumulates = kernels.kv_coincidences(x, dim=node.dim, mask=ctx.mask,
                                                         mask_padding=node.mask_padding)
        spikes, state = population(np.rint(counts).astype(np.int64) * multiplier, state, ctx)  # (B, D)
        ctx.activity.add(NodeActivity(qk_accumulates=accumulates))
        return np.asarray(q, dtype=np.int64) * spikes[:, :, None], state

    return step


def _host_embedding(name: str, node: SBTokenEmbedding, dt):
    """The token embedding runs on the host before the graph's first step: ``encode_tokens`` sends its
    integer currents ``rint(scale x)`` as the run's input, so inside the time loop it passes them on."""
    return lambda x, state, ctx: (x, None)


FIXED_STEP_BUILDERS = {
    SBTokenEmbedding: _host_embedding,
    nir.Affine: _dense,
    nir.Linear: _dense,
    nir.Conv1d: _dense,
    nir.Conv2d: _conv2d,
    SBSpikeAttention: _attention,
    SBSpikeDrivenAttention: _spike_driven_attention,
    nir.LIF: _spiking,
    nir.IF: _spiking,
}
"""node type -> step for quantised nodes (those with ``metadata["fixed_point"]``)."""
