"""NumPy kernels of the supported NIR node set, batched: arrays are (B, C, L) or (B, C).

Each equation is written once here and used by both the reference executor and the Lava
process models, so the two backends cannot drift apart. Float64 throughout.
"""

from __future__ import annotations

import numpy as np


def lif_coefficients(tau: np.ndarray, r: np.ndarray, v_leak: np.ndarray, dt: float):
    """Forward-Euler coefficients of NIR's LIF, ``tau dv/dt = (v_leak - v) + r I``:

        v[t] = beta * v[t-1] + gain * I[t] + bias,
        beta = 1 - dt/tau,  gain = r dt/tau,  bias = v_leak dt/tau.
    """
    return 1.0 - dt / tau, r * dt / tau, v_leak * dt / tau


def lif_step(v: np.ndarray, current: np.ndarray, *, beta, gain, bias, v_threshold, v_reset):
    """One LIF step: charge, fire on ``v > v_threshold``, reset the fired neurons to ``v_reset``."""
    v = beta * v + current * gain + bias
    spikes = v > v_threshold
    return spikes.astype(np.float64), np.where(spikes, v_reset, v)


def token_linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Conv1d with kernel 1: (B, C_in, L) -> (B, C_out, L); weight (C_out, C_in)."""
    return np.matmul(weight, x) + bias[:, None]


def affine(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """(B, N) -> (B, M); weight (M, N)."""
    return x @ weight.T + bias


def layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, *, groups: int, eps: float) -> np.ndarray:
    """SBLayerNorm over the channel axis of (B, C, L), per group of C / groups channels."""
    B, C, L = x.shape
    g = x.reshape(B, groups, C // groups, L)  # (B, G, D, L)
    mean = g.mean(axis=2, keepdims=True)
    var = ((g - mean) ** 2).mean(axis=2, keepdims=True)
    y = ((g - mean) / np.sqrt(var + eps)).reshape(B, C, L)
    return y * weight[:, None] + bias[:, None]


def spike_attention(qkv: np.ndarray, *, dim: int, heads: int, scale: float, key_mask: np.ndarray | None):
    """SBSpikeAttention on (B, 3D, L) spikes -> ((B, D, L) output, attention counts A (B, H, L, L))."""
    B, _, L = qkv.shape
    dh = dim // heads
    q = qkv[:, :dim].reshape(B, heads, dh, L)
    k = qkv[:, dim:2 * dim].reshape(B, heads, dh, L)
    v = qkv[:, 2 * dim:].reshape(B, heads, dh, L)
    if key_mask is not None:
        keep = key_mask[:, None, None, :]  # (B, 1, 1, L)
        k, v = k * keep, v * keep
    a = q.transpose(0, 1, 3, 2) @ k  # (B, H, L, L): A[i, j] = #coincidences of query i and key j
    y = (a @ v.transpose(0, 1, 3, 2)) * scale  # (B, H, L, dh)
    return y.transpose(0, 1, 3, 2).reshape(B, dim, L), a, v


def token_mean(x: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """(B, D, L) -> (B, D): mean over tokens, real tokens only when a mask is given."""
    if mask is None:
        return x.mean(axis=2)
    m = mask[:, None, :].astype(x.dtype)
    return (x * m).sum(axis=2) / np.maximum(m.sum(axis=2), 1.0)  # batch filler rows have no real token


def input_stats(x: np.ndarray, mask: np.ndarray | None) -> tuple[float, float, float]:
    """(nonzeros, sum of |x|, elements) of a (B, C, L) or (B, C) input, over real tokens only."""
    if mask is not None and x.ndim == 3:
        m = mask[:, None, :]
        return float(np.count_nonzero(x * m)), float(np.abs(x * m).sum()), float(m.sum() * x.shape[1])
    if mask is not None:  # per-sentence vectors: rows with no real token are batch filler
        x = x[mask.any(axis=1)]
    return float(np.count_nonzero(x)), float(np.abs(x).sum()), float(x.size)


def attention_stats(a: np.ndarray, v: np.ndarray, mask: np.ndarray | None) -> tuple[float, float]:
    """Exact accumulate counts of the attention products, over real query tokens.

    Q K^T: one accumulate per coincident spike pair, i.e. sum(A).
    A V: one accumulate of A[i, j] per spike of V at key j, for every nonzero A[i, j].
    """
    nnz_v = np.count_nonzero(v, axis=2)  # (B, H, L): spikes of V per key token
    rows = (a != 0) if mask is None else (a != 0) & mask[:, None, :, None]
    qk = a.sum() if mask is None else (a * mask[:, None, :, None]).sum()
    av = (rows * nnz_v[:, :, None, :]).sum()
    return float(qk), float(av)
