"""Export a trained SpikeBERT student to a NIR graph (standard primitives + the SB extension).

Leaf modules map to nodes through ``MODULE_MAP`` ({module type: mapper}); anything unknown raises,
naming the module. The wiring follows the student's forward pass: encoder -> blocks (residual
joins are fan-in sums into an explicit ``Scale(1)`` node) -> head. Per-sample layout (C, L).

Discretisation recorded in the graph metadata: forward Euler with ``dt = 1`` step, so a NIR ``LIF``
with ``tau``, ``r = 1``, ``v_leak = 0`` is ``v <- (1 - 1/tau) v + I / tau``, the student's neuron.
"""

from __future__ import annotations

from collections.abc import Callable

import nir
import numpy as np
from torch import nn

from converters.nir_ext import (
    EXTENSION_VERSION,
    READOUT,
    SBLayerNorm,
    SBSpikeAttention,
    SBTokenEmbedding,
    SBTokenMean,
)
from spikebert.model import GroupLayerNorm, SpikeAttention, SpikeBERT, TokenBatchNorm, TokenMean
from spikebert.neurons import DT, LIF, HeavisideEncoder


def _np(t) -> np.ndarray:
    return t.detach().cpu().double().numpy()


def _linear(m: nn.Linear, *, tokens: int) -> nir.NIRNode:
    """Token-wise Linear as Conv1d with kernel 1 over (C_in, L)."""
    bias = _np(m.bias) if m.bias is not None else np.zeros(m.out_features)
    return nir.Conv1d(input_shape=tokens, weight=_np(m.weight)[:, :, None], stride=1, padding=0,
                      dilation=1, groups=1, bias=bias)


def _linear_with_norm(linear: nn.Linear, norm: TokenBatchNorm, *, tokens: int) -> nir.NIRNode:
    """Linear followed by an inference-mode batch norm ``y = a * x + c``, folded into one Linear:
    ``W' = diag(a) W``, ``b' = a * b + c``."""
    a, c = (_np(t) for t in norm.affine())
    w = _np(linear.weight) * a[:, None]
    b = a * (_np(linear.bias) if linear.bias is not None else 0.0) + c
    return nir.Conv1d(input_shape=tokens, weight=w[:, :, None], stride=1, padding=0, dilation=1, groups=1, bias=b)


def _lif(m: LIF, *, channels: int, tokens: int) -> nir.NIRNode:
    shape = (channels, tokens)
    return nir.LIF(tau=np.full(shape, m.tau), r=np.ones(shape), v_leak=np.zeros(shape),
                   v_threshold=np.full(shape, m.threshold), v_reset=np.zeros(shape))


def _layer_norm(m: GroupLayerNorm, *, tokens: int, **_) -> nir.NIRNode:
    return SBLayerNorm(weight=_np(m.weight), bias=_np(m.bias), groups=m.groups, eps=m.eps, tokens=tokens)


def _attention(m: SpikeAttention, *, tokens: int, **_) -> nir.NIRNode:
    return SBSpikeAttention(dim=m.dim, heads=m.heads, scale=m.scale, tokens=tokens, mask_padding=m.mask_padding)


def _token_mean(m: TokenMean, *, channels: int, tokens: int) -> nir.NIRNode:
    return SBTokenMean(dim=channels, tokens=tokens, mask_padding=m.mask_padding)


def _heaviside(m: HeavisideEncoder, *, channels: int, tokens: int) -> nir.NIRNode:
    return nir.Threshold(threshold=np.zeros((channels, tokens)))


MODULE_MAP: dict[type, Callable[..., nir.NIRNode]] = {
    nn.Linear: lambda m, *, tokens, **_: _linear(m, tokens=tokens),
    LIF: _lif,
    GroupLayerNorm: _layer_norm,
    SpikeAttention: _attention,
    TokenMean: _token_mean,
    HeavisideEncoder: _heaviside,
}


class _GraphBuilder:
    def __init__(self, tokens: int) -> None:
        self.tokens = tokens
        self.nodes: dict[str, nir.NIRNode] = {}
        self.edges: list[tuple[str, str]] = []

    def add(self, name: str, node: nir.NIRNode, sources: list[str]) -> str:
        self.nodes[name] = node
        self.edges += [(s, name) for s in sources]
        return name

    def module(self, name: str, module: nn.Module, sources: list[str], *, channels: int) -> str:
        mapper = MODULE_MAP.get(type(module))
        if mapper is None:
            raise TypeError(
                f"cannot export module {name} of type {type(module).__name__} to NIR; supported: "
                f"{sorted(t.__name__ for t in MODULE_MAP)}. Add a mapper to converters.torch_to_nir.MODULE_MAP"
            )
        return self.add(name, mapper(module, channels=channels, tokens=self.tokens), sources)

    def linear_norm(self, name: str, linear: nn.Linear, norm: nn.Module, sources: list[str], *,
                    channels: int) -> str:
        """Linear -> norm: two nodes for LayerNorm, one folded Conv1d for batch norm."""
        if isinstance(norm, TokenBatchNorm):
            return self.add(name, _linear_with_norm(linear, norm, tokens=self.tokens), sources)
        x = self.module(name, linear, sources, channels=channels)
        return self.module(name + "_norm", norm, [x], channels=channels)

    def join(self, name: str, sources: list[str], *, channels: int) -> str:
        """Residual join: the incoming edges are summed (NIR fan-in); Scale(1) makes the sum a node."""
        return self.add(name, nir.Scale(scale=np.ones((channels, self.tokens))), sources)


def export_student(model: SpikeBERT, *, metadata: dict | None = None) -> nir.NIRGraph:
    """The student's inference graph (distillation projections are not part of it)."""
    cfg = model.cfg
    L, D = cfg.max_len, cfg.dim
    g = _GraphBuilder(L)
    g.add("input", nir.Input(input_type={"input": np.array([L])}), [])
    positions = _np(model.position.weight) if model.position is not None else None
    g.add("embed", SBTokenEmbedding(weight=_np(model.embed.weight), max_len=L, pad_token_id=cfg.pad_token_id,
                                    position_weight=positions), ["input"])
    stream = g.module("spikes", model.encoder, ["embed"], channels=D)
    for i, block in enumerate(model.blocks):
        p, a, m = f"b{i}_", block.attn, block.mlp
        x = g.linear_norm(p + "qkv", a.qkv, a.qkv_norm, [stream], channels=3 * D)
        x = g.module(p + "qkv_lif", a.qkv_lif, [x], channels=3 * D)
        x = g.module(p + "attn", a.attn, [x], channels=D)
        x = g.module(p + "attn_lif", a.attn_lif, [x], channels=D)
        x = g.linear_norm(p + "proj", a.proj, a.proj_norm, [x], channels=D)
        x = g.module(p + "proj_lif", a.proj_lif, [x], channels=D)
        stream = g.join(p + "res1", [stream, x], channels=D)
        x = g.linear_norm(p + "fc1", m.fc1, m.norm1, [stream], channels=cfg.mlp_dim)
        x = g.module(p + "lif1", m.lif1, [x], channels=cfg.mlp_dim)
        x = g.linear_norm(p + "fc2", m.fc2, m.norm2, [x], channels=D)
        x = g.module(p + "lif2", m.lif2, [x], channels=D)
        stream = g.join(p + "res2", [stream, x], channels=D)
    w, b = _np(model.classifier.weight), _np(model.classifier.bias)
    if isinstance(model.head_norm, TokenBatchNorm):
        # a per-feature affine map commutes with the token mean: fold it into the classifier
        a, c = (_np(t) for t in model.head_norm.affine())
        w, b = w * a[None, :], b + w @ c
        x = g.module("pool", model.pool, [stream], channels=D)
    else:
        x = g.module("head_norm", model.head_norm, [stream], channels=D)
        x = g.module("pool", model.pool, [x], channels=D)
    g.add("classifier", nir.Affine(weight=w, bias=b), [x])
    g.add("output", nir.Output(output_type={"output": np.array([cfg.num_classes])}), ["classifier"])
    meta = {
        "spikebert_extension": EXTENSION_VERSION,
        "producer": "spikebert",
        "dt": DT,
        "discretisation": "forward-euler",
        "time_steps": cfg.time_steps,
        "input": "token ids, held constant over the time steps",
        "readout": READOUT,
        "spike_condition": "v > v_threshold",
        "reset": "to v_reset, same step",
        **(metadata or {}),
    }
    return nir.NIRGraph(nodes=g.nodes, edges=g.edges, metadata=meta)
