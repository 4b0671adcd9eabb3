"""Import a SpikeBERT NIR graph (token ids in, class scores out) as a PyTorch module.

Nodes map to modules through ``NODE_MAP`` ({NIR node type: builder}); anything else raises,
naming the node. Modules work in NIR's per-sample layout with a leading batch axis, (B, C, L),
and reproduce the student's operations (``spikebert.model``) so that export -> file -> import
gives the student's outputs.

Execution uses nirtorch 2.6's ``nir_to_torch``: it wires the modules into a ``torch.fx``
GraphModule for *one* time step, ``(ids, state) -> (output, state)``, summing fan-in edges with
``torch.add`` and handing every module whose ``forward`` takes ``state`` its own entry of the
state dict. :class:`ImportedGraph` adds what nirtorch leaves to the caller:

- the time loop: T = metadata ``time_steps`` calls with the ids held constant, the LIF membranes
  carried in the state dict, readout = mean over the steps of the output (metadata ``readout``);
- the token mask: nirtorch passes one tensor along each edge, so the mask cannot travel with the
  signal. It is derived from the ids (``SBTokenEmbedding.pad_token_id``) once per call and handed
  to the masking nodes as their state entry, the only per-call channel nirtorch offers besides the
  single graph input. They return it unchanged.

Two nirtorch 2.6 issues are worked around: its default Affine mapping drops the bias (every
builder here is the project's own, and nirtorch's defaults are switched off), and it wires
nodes in dict order, re-queueing any node whose inputs are not wired yet, which is quadratic in
the graph size (about 8 s for a depth-12 student read from file, whose nodes come back in
alphabetical order): nodes are handed over in topological order. Note that nirtorch sums three
or more fan-in edges in set order, which can change the last bit from run to run; SpikeBERT
graphs only join two edges, whose sum is exact in either order.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import nir
import nirtorch
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from spikebert.contract.errors import SpikebertError, UnsupportedError
from spikebert.contract.extension import (
    READOUT,
    SBLayerNorm,
    SBPositionSpikes,
    SBSpikeAttention,
    SBSpikeDrivenAttention,
    SBTokenEmbedding,
    SBTokenMean,
    position_sources,
    relative_matrix,
)
from spikebert.contract.graph import topological_order
from spikebert.contract.nirfile import read_graph
from spikebert.hardware.kernels import lif_coefficients

DEFAULT_DT = 1.0  # step of graphs without a "dt" entry, as spikebert.hardware.reference


def _tensor(a) -> torch.Tensor:
    return torch.from_numpy(np.array(a, dtype=np.float64))  # a copy: the module never aliases the graph


def lif_step(x: torch.Tensor, v: torch.Tensor, *, beta, gain, bias, v_threshold, v_reset):
    """One forward-Euler LIF step, as ``spikebert.hardware.kernels.lif_step``: (current, v[t-1]) -> (spikes, v[t]).

        v = beta * v + gain * x + bias;  z = [v > v_threshold];  v <- v_reset where z = 1
    """
    v = beta * v + x * gain + bias
    z = v > v_threshold
    return z.to(x.dtype), torch.where(z, v_reset, v)


class LIF(nn.Module):
    """NIR ``LIF`` (or ``IF``) with per-neuron parameters over (C, L); state = membrane v (B, C, L)."""

    def __init__(self, *, beta, gain, bias, v_threshold, v_reset) -> None:
        super().__init__()
        for name, value in dict(beta=beta, gain=gain, bias=bias, v_threshold=v_threshold, v_reset=v_reset).items():
            self.register_buffer(name, _tensor(value))

    def initial_state(self, mask: torch.Tensor) -> None:
        return None  # at rest: zeros of the input's shape, made on the first step

    def forward(self, x: torch.Tensor, state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        v = torch.zeros_like(x) if state is None else state
        return lif_step(x, v, beta=self.beta, gain=self.gain, bias=self.bias, v_threshold=self.v_threshold,
                        v_reset=self.v_reset)


class TokenEmbedding(nn.Module):
    """``SBTokenEmbedding``: ids (B, L) -> (E[ids] + P)^T, (B, D, L)."""

    def __init__(self, node: SBTokenEmbedding) -> None:
        super().__init__()
        self.register_buffer("weight", _tensor(node.weight))
        self.register_buffer("position_weight", _tensor(node.position_weight))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return (F.embedding(ids, self.weight) + self.position_weight).transpose(1, 2)  # (B, L, D) -> (B, D, L)


class PositionSpikes(nn.Module):
    """``SBPositionSpikes``: ids (B, L) -> (B, max_len, L), 1 at [l, l] for every real token l."""

    def __init__(self, node: SBPositionSpikes) -> None:
        super().__init__()
        self.pad_token_id = node.pad_token_id
        self.register_buffer("eye", torch.eye(node.max_len, dtype=torch.float64))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        real = (ids != self.pad_token_id).to(self.eye.dtype)[:, None, :]  # (B, 1, L)
        return self.eye[:, : ids.shape[1]] * real  # (B, max_len, L)


class Affine(nn.Module):
    """``Affine`` (``Linear``: b = 0) on per-sentence vectors: y = W x + b, (B, C_in) -> (B, C_out)."""

    def __init__(self, weight, bias) -> None:
        super().__init__()
        self.register_buffer("weight", _tensor(weight))
        self.register_buffer("bias", _tensor(bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)


class TokenAffine(Affine):
    """``Conv1d`` with kernel 1: the same affine map at every token, (B, C_in, L) -> (B, C_out, L)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # channels last, as the student's nn.Linear: (B, L, C_in) -> (B, L, C_out)
        return F.linear(x.transpose(1, 2), self.weight, self.bias).transpose(1, 2)


class Scale(nn.Module):
    """``Scale``: y = x * s (elementwise)."""

    def __init__(self, scale) -> None:
        super().__init__()
        self.register_buffer("scale", _tensor(scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class Threshold(nn.Module):
    """``Threshold``: z = [x > threshold] in x's dtype."""

    def __init__(self, threshold) -> None:
        super().__init__()
        self.register_buffer("threshold", _tensor(threshold))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x > self.threshold).to(x.dtype)


class GroupLayerNorm(nn.Module):
    """``SBLayerNorm``: LayerNorm per group of C / groups channels at every token, (B, C, L) -> (B, C, L)."""

    def __init__(self, node: SBLayerNorm) -> None:
        super().__init__()
        self.groups, self.eps = node.groups, node.eps
        self.register_buffer("weight", _tensor(node.weight))
        self.register_buffer("bias", _tensor(node.bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, L = x.shape
        g = x.transpose(1, 2).reshape(B, L, self.groups, C // self.groups)  # (B, L, G, D)
        y = F.layer_norm(g, (C // self.groups,), eps=self.eps).reshape(B, L, C) * self.weight + self.bias
        return y.transpose(1, 2)  # (B, C, L)


class SpikeAttention(nn.Module):
    """``SBSpikeAttention``: (B, 3D, L) spikes -> (B, D, L); state = token mask (B, L), passed through."""

    def __init__(self, node: SBSpikeAttention) -> None:
        super().__init__()
        self.dim, self.heads, self.mask_padding = node.dim, node.heads, node.mask_padding
        per_head = np.broadcast_to(np.asarray(node.scale, dtype=np.float64), (node.heads,))  # a number: every head
        self.register_buffer("scale", torch.as_tensor(per_head.copy()).reshape(1, -1, 1, 1))  # (1, H, 1, 1)
        relative = relative_matrix(node, node.tokens)  # (H, L, L) at the graph's length, or None
        self.register_buffer("relative", None if relative is None else torch.as_tensor(relative))

    def initial_state(self, mask: torch.Tensor) -> torch.Tensor:
        return mask

    def forward(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B, _, L = x.shape
        q, k, v = x.transpose(1, 2).split(self.dim, dim=-1)  # (B, L, D) each
        if self.mask_padding:
            keep = state[:, :, None].to(x.dtype)  # (B, L, 1)
            k, v = k * keep, v * keep
        q, k, v = (t.reshape(B, L, self.heads, -1).transpose(1, 2) for t in (q, k, v))  # (B, H, L, dh)
        a = q @ k.transpose(-2, -1)  # (B, H, L, L)
        a = a if self.relative is None else a + self.relative[:, :L, :L].to(x.dtype)
        y = (a @ v) * self.scale.to(x.dtype)  # (B, H, L, dh)
        return y.transpose(1, 2).reshape(B, L, self.dim).transpose(1, 2), state  # (B, D, L)


class SpikeDrivenAttention(nn.Module):
    """``SBSpikeDrivenAttention``: (B, 3D, L) spikes -> (B, D, L) spikes; state = (token mask, the membrane of its
    population (B, D))."""

    def __init__(self, node: SBSpikeDrivenAttention, *, dt: float) -> None:
        super().__init__()
        self.dim, self.mask_padding = node.dim, node.mask_padding
        self.population = _lif(node.population(), dt=dt)

    def initial_state(self, mask: torch.Tensor) -> tuple[torch.Tensor, None]:
        return mask, None

    def forward(self, x: torch.Tensor, state) -> tuple[torch.Tensor, tuple]:
        mask, v = state
        q, k, v_ = x.split(self.dim, dim=1)  # (B, D, L) each
        coincide = k * v_
        if self.mask_padding:
            coincide = coincide * mask[:, None, :].to(x.dtype)
        spikes, v = self.population(coincide.sum(dim=2), v)  # (B, D)
        return q * spikes[:, :, None], (mask, v)


class TokenMean(nn.Module):
    """``SBTokenMean``: (B, D, L) -> (B, D), over real tokens if ``mask_padding``; state = token mask."""

    def __init__(self, node: SBTokenMean) -> None:
        super().__init__()
        self.mask_padding = node.mask_padding

    def initial_state(self, mask: torch.Tensor) -> torch.Tensor:
        return mask

    def forward(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.mask_padding:
            return x.mean(dim=2), state
        m = state[:, None, :].to(x.dtype)  # (B, 1, L)
        return (x * m).sum(dim=2) / m.sum(dim=2).clamp(min=1.0), state  # a row of pads only: 0, as the reference


def _conv1d(node: nir.Conv1d, **_) -> nn.Module:
    if (node.weight.shape[2] != 1 or node.groups != 1 or np.any(np.asarray(node.stride) != 1)
            or (not isinstance(node.padding, str) and np.any(np.asarray(node.padding) != 0))):
        raise SpikebertError(
            f"Conv1d with kernel {node.weight.shape[2]}, stride {node.stride}, padding {node.padding}, groups "
            f"{node.groups}: only token-wise Conv1d (kernel 1, stride 1, no padding, groups 1) is supported"
        )
    return TokenAffine(node.weight[:, :, 0], node.bias)


def _affine(node: nir.Affine | nir.Linear, **_) -> nn.Module:
    if node.weight.ndim != 2:
        raise SpikebertError(f"{type(node).__name__} weight must be (out, in), got shape {node.weight.shape}")
    bias = node.bias if isinstance(node, nir.Affine) else np.zeros(node.weight.shape[0])
    return Affine(node.weight, bias)


def _lif(node: nir.LIF, *, dt: float) -> nn.Module:
    beta, gain, bias = lif_coefficients(node.tau, node.r, node.v_leak, dt)
    return LIF(beta=beta, gain=gain, bias=bias, v_threshold=node.v_threshold, v_reset=node.v_reset)


def _if(node: nir.IF, *, dt: float) -> nn.Module:
    """``IF``: dv/dt = r I, i.e. the LIF step with beta = 1, gain = r dt, no leak."""
    return LIF(beta=np.ones_like(node.r), gain=node.r * dt, bias=np.zeros_like(node.r),
               v_threshold=node.v_threshold, v_reset=node.v_reset)


NODE_MAP: dict[type[nir.NIRNode], Callable[..., nn.Module]] = {
    nir.Input: lambda node, **_: nn.Identity(),  # nirtorch makes the graph input a placeholder
    nir.Output: lambda node, **_: nn.Identity(),  # nirtorch returns the Output's input
    SBTokenEmbedding: lambda node, **_: TokenEmbedding(node),
    SBPositionSpikes: lambda node, **_: PositionSpikes(node),
    nir.Threshold: lambda node, **_: Threshold(node.threshold),
    nir.Conv1d: _conv1d,
    nir.Affine: _affine,
    nir.Linear: _affine,
    nir.Scale: lambda node, **_: Scale(node.scale),
    nir.LIF: _lif,
    nir.IF: _if,
    SBLayerNorm: lambda node, **_: GroupLayerNorm(node),
    SBSpikeAttention: lambda node, **_: SpikeAttention(node),
    SBSpikeDrivenAttention: lambda node, *, dt, **_: SpikeDrivenAttention(node, dt=dt),
    SBTokenMean: lambda node, **_: TokenMean(node),
}


class ImportedGraph(nn.Module):
    """A token-id NIR graph as a module: ``forward(input_ids (B, L)) -> logits (B, C)``.

    ``step_outputs`` gives the output of every time step, (T, B, C); the logits are their mean.
    ``step`` is nirtorch's one-step GraphModule. Its stateful modules (``state`` argument) are
    those with ``initial_state(mask)``: LIF membranes start at rest, masking nodes get the mask.
    Every call starts from a fresh state.
    """

    def __init__(self, step: torch.fx.GraphModule, *, embed: SBTokenEmbedding, time_steps: int) -> None:
        super().__init__()
        self.step = step
        self.time_steps = time_steps
        self.max_len, self.vocab_size, self.pad_token_id = embed.max_len, embed.weight.shape[0], embed.pad_token_id

    def step_outputs(self, input_ids: torch.Tensor) -> torch.Tensor:
        if input_ids.dim() != 2 or input_ids.shape[1] != self.max_len:
            raise SpikebertError(f"input_ids must be (batch, {self.max_len}), got shape {tuple(input_ids.shape)}; "
                             "pad to max_len")
        if input_ids.dtype not in (torch.int32, torch.int64):
            raise UnsupportedError(f"input_ids must be integer token ids (int64), got {input_ids.dtype}")
        if input_ids.numel() and (input_ids.min() < 0 or input_ids.max() >= self.vocab_size):
            raise SpikebertError(f"token ids outside the vocabulary of {self.vocab_size}")
        mask = input_ids != self.pad_token_id  # (B, L), True for real tokens
        state = {name: m.initial_state(mask) for name, m in self.step.named_children() if hasattr(m, "initial_state")}
        outputs = []
        for _ in range(self.time_steps):  # the ids are held constant
            y, state = self.step(input_ids, state)
            outputs.append(y)
        return torch.stack(outputs)  # (T, B, C)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.step_outputs(input_ids).mean(dim=0)


def import_graph(graph: nir.NIRGraph, *, dtype: torch.dtype = torch.float64) -> ImportedGraph:
    """The graph as a torch module computing in ``dtype`` (float64 reproduces a float64 student exactly).

    Needs one ``Input`` feeding an ``SBTokenEmbedding`` (the token ids; and any ``SBPositionSpikes``) and one
    ``Output`` with one incoming edge; reads ``dt`` (default 1), ``time_steps`` (default 1, as
    ``spikebert.hardware.reference``) and ``readout`` from the graph metadata.
    """
    for name, node in graph.nodes.items():
        if type(node) not in NODE_MAP:
            raise SpikebertError(
                f"node {name!r} has type {type(node).__name__}, which spikebert.converters.nir_to_torch cannot import; "
                f"supported: {sorted(t.__name__ for t in NODE_MAP)}. Add a builder to NODE_MAP"
            )
    inputs = [n for n, node in graph.nodes.items() if isinstance(node, nir.Input)]
    embeds = [n for n, node in graph.nodes.items() if isinstance(node, SBTokenEmbedding)]
    fed = [d for s, d in graph.edges if inputs and s == inputs[0]]
    if (len(inputs) != 1 or len(embeds) != 1 or embeds[0] not in fed
            or any(d != embeds[0] and not isinstance(graph.nodes[d], SBPositionSpikes) for d in fed)):
        raise SpikebertError(f"graph must have one Input feeding one SBTokenEmbedding (the token ids) and, for "
                             f"positions as spikes, SBPositionSpikes nodes; found inputs {inputs} feeding {fed}, "
                             f"and embeddings {embeds}")
    position_sources(graph, embeds[0])
    outputs = [n for n, node in graph.nodes.items() if isinstance(node, nir.Output)]
    if len(outputs) != 1 or len([s for s, d in graph.edges if d == outputs[0]]) != 1:
        raise SpikebertError(f"graph must have one Output node with one incoming edge, found outputs {outputs}; "
                         "join several edges in a Scale(1) node first (nirtorch does not sum into the Output)")
    readout = graph.metadata.get("readout", READOUT)
    if readout != READOUT:
        raise SpikebertError(f"graph readout {readout!r} is not supported; only {READOUT!r}")
    dt = float(graph.metadata.get("dt", DEFAULT_DT))
    time_steps = int(graph.metadata.get("time_steps", 1))
    ordered = nir.NIRGraph(nodes={n: graph.nodes[n] for n in topological_order(graph)}, edges=list(graph.edges),
                           metadata=dict(graph.metadata), type_check=False)
    node_map = {kind: functools.partial(build, dt=dt) for kind, build in NODE_MAP.items()}
    step = nirtorch.nir_to_torch(ordered, node_map, default_map={}, dtype=dtype)
    return ImportedGraph(step, embed=graph.nodes[embeds[0]], time_steps=time_steps)


def load_nir(path: str | Path, *, dtype: torch.dtype = torch.float64) -> ImportedGraph:
    """``import_graph(read_graph(path))``: a NIR file, extension nodes included, as a torch module."""
    return import_graph(read_graph(path), dtype=dtype)
