"""Lava Processes for what lava-nc lacks: token-wise synapses, spiking attention, LayerNorm.

Every Process works on a batch of B sentences at once (a leading batch axis on every port), which
keeps the semantics (sentences never interact) and divides the per-step messaging cost by B.
Synapse Processes here send in the same step they receive (no synaptic delay), matching the
reference executor; ``out_gain`` multiplies the output last, so the input gain ``dt/tau`` of a
following Lava LIF is applied exactly as the student applies it. ``stats`` accumulates
(input nonzeros, input |x| sum, input elements[, QK^T accumulates, AV accumulates]) over real tokens.
"""

from __future__ import annotations

import numpy as np
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var

N_STATS = 3  # input nonzeros, input |x| sum, input elements
N_ATTENTION_STATS = 5  # ... plus QK^T and AV accumulates


class TokenSpikeSource(AbstractProcess):
    """Streams host-encoded token spikes: batch k is sent, unchanged, during steps kT+1 .. kT+T.

    spikes: (n_batches, B, D, L) binary; mask: (n_batches, B, L), 1 for real tokens.
    """

    def __init__(self, *, spikes: np.ndarray, mask: np.ndarray, time_steps: int, name: str | None = None) -> None:
        super().__init__(time_steps=time_steps, name=name)
        _, B, D, L = spikes.shape
        self.spikes = Var(shape=spikes.shape, init=spikes.astype(np.uint8))
        self.mask = Var(shape=mask.shape, init=mask.astype(np.uint8))
        self.s_out = OutPort(shape=(B, D, L))
        self.mask_out = OutPort(shape=(B, L))


class _Synapse(AbstractProcess):
    def __init__(self, *, in_shape, out_shape, tokens: int, out_gain: float, n_stats: int = N_STATS, name=None,
                 **params):
        super().__init__(name=name, **params)
        self.s_in = InPort(shape=in_shape)
        self.mask_in = InPort(shape=(in_shape[0], tokens))  # token validity: masking and statistics
        self.a_out = OutPort(shape=out_shape)
        self.out_gain = Var(shape=(1,), init=np.array([out_gain], dtype=float))
        self.stats = Var(shape=(n_stats,), init=np.zeros(n_stats))


class TokenDense(_Synapse):
    """Token-wise dense synapses (NIR Conv1d, kernel 1): y[b, :, l] = W x[b, :, l] + bias."""

    def __init__(self, *, weight: np.ndarray, bias: np.ndarray, batch: int, tokens: int,
                 out_gain: float = 1.0, name: str | None = None) -> None:
        c_out, c_in = weight.shape
        super().__init__(in_shape=(batch, c_in, tokens), out_shape=(batch, c_out, tokens), tokens=tokens,
                         out_gain=out_gain, name=name)
        self.weight = Var(shape=weight.shape, init=weight)
        self.bias = Var(shape=bias.shape, init=bias)


class BatchDense(_Synapse):
    """Dense synapses on per-sentence vectors (NIR Affine/Linear): y[b] = W x[b] + bias."""

    def __init__(self, *, weight: np.ndarray, bias: np.ndarray, batch: int, tokens: int, out_gain: float = 1.0,
                 name: str | None = None) -> None:
        m, n = weight.shape
        super().__init__(in_shape=(batch, n), out_shape=(batch, m), tokens=tokens, out_gain=out_gain, name=name)
        self.weight = Var(shape=weight.shape, init=weight)
        self.bias = Var(shape=bias.shape, init=bias)


class LayerNorm(_Synapse):
    """SBLayerNorm over channels of (B, C, L). Floating point only: not a Loihi-native operation."""

    def __init__(self, *, weight: np.ndarray, bias: np.ndarray, groups: int, eps: float, batch: int,
                 tokens: int, out_gain: float = 1.0, name: str | None = None) -> None:
        c = weight.shape[0]
        super().__init__(in_shape=(batch, c, tokens), out_shape=(batch, c, tokens), tokens=tokens, out_gain=out_gain,
                         groups=groups, eps=eps, name=name)
        self.weight = Var(shape=weight.shape, init=weight)
        self.bias = Var(shape=bias.shape, init=bias)


class SpikeAttention(_Synapse):
    """SBSpikeAttention: (B, 3D, L) spikes -> scale * (Q K^T) V, (B, D, L) graded output."""

    def __init__(self, *, dim: int, heads: int, scale: float, mask_padding: bool, batch: int, tokens: int,
                 out_gain: float = 1.0, name: str | None = None) -> None:
        super().__init__(in_shape=(batch, 3 * dim, tokens), out_shape=(batch, dim, tokens), tokens=tokens,
                         out_gain=out_gain,
                         n_stats=N_ATTENTION_STATS, dim=dim, heads=heads, scale=scale,
                         mask_padding=mask_padding, name=name)


class TokenMean(_Synapse):
    """SBTokenMean: (B, D, L) -> (B, D), over real tokens when ``mask_padding``."""

    def __init__(self, *, dim: int, tokens: int, mask_padding: bool, batch: int, out_gain: float = 1.0,
                 name: str | None = None) -> None:
        super().__init__(in_shape=(batch, dim, tokens), out_shape=(batch, dim), tokens=tokens, out_gain=out_gain,
                         mask_padding=mask_padding, name=name)
