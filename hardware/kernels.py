"""NumPy kernels of the supported NIR node set, batched: arrays are (B, C, L) or (B, C).

Each equation is written once here and used by both the reference executor and the Lava
process models, so the two backends cannot drift apart. Float64 throughout.
"""

from __future__ import annotations

import functools

import numpy as np


def lif_coefficients(tau: np.ndarray, r: np.ndarray, v_leak: np.ndarray, dt: float):
    """Forward-Euler coefficients of NIR's LIF, ``tau dv/dt = (v_leak - v) + r I``:

        v[t] = beta * v[t-1] + gain * I[t] + bias,
        beta = 1 - dt/tau,  gain = r dt/tau,  bias = v_leak dt/tau.
    """
    return 1.0 - dt / tau, r * dt / tau, v_leak * dt / tau


def integrator_coefficients(r: np.ndarray, dt: float):
    """Forward-Euler coefficients of NIR's I and IF, ``dv/dt = r I``: beta = 1, gain = r dt, bias = 0."""
    return np.ones_like(r), r * dt, np.zeros_like(r)


def leaky_integrate(v: np.ndarray, current: np.ndarray, *, beta, gain, bias) -> np.ndarray:
    """One Euler step of a leaky integrator, ``v[t] = beta * v[t-1] + gain * I[t] + bias``.

    The membrane of LIF, LI, IF and I, and the synaptic current of CubaLIF and CubaLI (whose
    ``tau_syn dI/dt = -I + w_in S`` is this equation with ``r = w_in`` and ``v_leak = 0``).
    """
    return beta * v + current * gain + bias


def lif_step(v: np.ndarray, current: np.ndarray, *, beta, gain, bias, v_threshold, v_reset):
    """One LIF step: charge, fire on ``v > v_threshold``, reset the fired neurons to ``v_reset``."""
    v = leaky_integrate(v, current, beta=beta, gain=gain, bias=bias)
    spikes = v > v_threshold
    return spikes.astype(np.float64), np.where(spikes, v_reset, v)


def if_subtract_step(u: np.ndarray, current: np.ndarray, *, r, v_threshold, leak):
    """One SBIF step: ``v = u + r I``; fire on ``v >= v_threshold``; subtract the threshold from the
    fired neurons, then leak: returns (spikes, u)."""
    v = u + r * current
    spikes = (v >= v_threshold).astype(np.float64)
    return spikes, leak * (v - v_threshold * spikes)


def delay_step(history: np.ndarray, x: np.ndarray, steps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """NIR Delay in whole steps, ``y[t] = x[t - steps]`` per element, zero before the first input.

    ``history`` (D+1, B, ...) holds the last D+1 inputs, newest first, D = max(steps); returns
    (y, the updated history).
    """
    history = np.concatenate([x[None], history[:-1]])  # (D+1, B, ...)
    index = np.broadcast_to(steps, x.shape)[None]  # (1, B, ...)
    return np.take_along_axis(history, index, axis=0)[0], history


def flatten(x: np.ndarray, start_dim: int, end_dim: int) -> np.ndarray:
    """NIR Flatten of a batch: dims count per sample, as in NIR (no batch axis).

    (B, *s) -> (B, *s[:a], prod(s[a:b+1]), *s[b+1:]) with a = start_dim, b = end_dim (negative
    values count from the end of s).
    """
    s = x.shape[1:]
    a, b = start_dim % len(s), end_dim % len(s)
    return x.reshape(x.shape[0], *s[:a], int(np.prod(s[a:b + 1])), *s[b + 1:])


def conv1d(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, *, stride: int, padding: int | str,
           dilation: int, groups: int) -> np.ndarray:
    """NIR/PyTorch Conv1d (cross-correlation): (B, C_in, L) -> (B, C_out, L_out).

        y[b, o, l] = bias[o] + sum_{c, k} W[o, c, k] x_pad[b, g(o) C_in/groups + c, l stride + k dilation]

    ``weight`` (C_out, C_in/groups, K); g(o) is the group of output channel o; ``padding`` is zeros
    on both sides, or 'valid' (none) or 'same' (PyTorch: the odd extra zero on the right).
    With K = 1 and no padding, stride or groups this is :func:`token_linear`, bit for bit.
    """
    c_out, c_group, k_size = weight.shape
    if padding == "valid":
        left = right = 0
    elif padding == "same":
        left = dilation * (k_size - 1) // 2
        right = dilation * (k_size - 1) - left
    else:
        left = right = int(padding)
    if left or right:
        x = np.pad(x, ((0, 0), (0, 0), (left, right)))
    length = (x.shape[2] - dilation * (k_size - 1) - 1) // stride + 1
    out_group = c_out // groups
    ys = []
    for g in range(groups):
        w = weight[g * out_group:(g + 1) * out_group]  # (C_out/groups, C_in/groups, K)
        xg = x[:, g * c_group:(g + 1) * c_group]  # (B, C_in/groups, L_pad)
        taps = (np.matmul(w[:, :, k], xg[:, :, k * dilation:k * dilation + stride * (length - 1) + 1:stride])
                for k in range(k_size))  # K x (B, C_out/groups, L_out)
        ys.append(functools.reduce(np.add, taps))
    y = ys[0] if groups == 1 else np.concatenate(ys, axis=1)
    return y + bias[:, None]


def pair(v) -> tuple[int, int]:
    a = np.ravel(np.asarray(v))
    return (int(a[0]), int(a[0])) if a.size == 1 else (int(a[0]), int(a[1]))


def conv2d_padding(padding, kernel: tuple[int, int], dilation: tuple[int, int]) -> tuple[tuple[int, int], ...]:
    """NIR/PyTorch Conv2d padding -> ((top, bottom), (left, right)): ints (both sides), 'valid' or 'same'."""
    if isinstance(padding, bytes):
        padding = padding.decode()
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0), (0, 0)
        if padding != "same":
            raise ValueError(f"Conv2d padding {padding!r}: use an int pair, 'valid' or 'same'")
        total = [d * (k - 1) for k, d in zip(kernel, dilation)]
        return tuple((t // 2, t - t // 2) for t in total)
    ph, pw = pair(padding)
    return (ph, ph), (pw, pw)


def conv2d(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, *, stride, padding, dilation,
           groups: int) -> np.ndarray:
    """NIR/PyTorch Conv2d (cross-correlation): (B, C_in, H, W) -> (B, C_out, H_out, W_out).

        y[b, o, i, j] = bias[o] + sum_{c, p, q} W[o, c, p, q] x_pad[b, g(o) C_in/groups + c, i s_h + p d_h, j s_w + q d_w]

    ``weight`` (C_out, C_in/groups, K_h, K_w); ``stride``, ``dilation``: int or pair; ``padding``: zeros, an
    int or pair (both sides), 'valid' or 'same'. Summed tap by tap (p, q in order), each tap a matmul
    over the input channels.
    """
    c_out, c_group, kh, kw = weight.shape
    sh, sw = pair(stride)
    dh, dw = pair(dilation)
    (top, bottom), (left, right) = conv2d_padding(padding, (kh, kw), (dh, dw))
    if top or bottom or left or right:
        x = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    h_out = (x.shape[2] - dh * (kh - 1) - 1) // sh + 1
    w_out = (x.shape[3] - dw * (kw - 1) - 1) // sw + 1
    out_group = c_out // groups
    ys = []
    for g in range(groups):
        w = weight[g * out_group:(g + 1) * out_group]  # (C_out/groups, C_in/groups, K_h, K_w)
        xg = x[:, g * c_group:(g + 1) * c_group]
        y = None
        for p in range(kh):
            for q in range(kw):
                patch = xg[:, :, p * dh:p * dh + sh * (h_out - 1) + 1:sh, q * dw:q * dw + sw * (w_out - 1) + 1:sw]
                tap = np.einsum("oc,bchw->bohw", w[:, :, p, q], patch, optimize=False)
                y = tap if y is None else y + tap
        ys.append(y)
    y = ys[0] if groups == 1 else np.concatenate(ys, axis=1)
    return y + bias[:, None, None]


def sum_pool2d(x: np.ndarray, *, kernel_size, stride, padding) -> np.ndarray:
    """NIR SumPool2d: sum over each window of (B, C, H, W), zero padding on both sides (PyTorch's
    pooling arithmetic): H_out = (H + 2 p - k) // s + 1. NIR AvgPool2d is this divided by k_h k_w."""
    kh, kw = pair(kernel_size)
    sh, sw = pair(stride)
    ph, pw = pair(padding)
    if ph or pw:
        x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    h_out = (x.shape[2] - kh) // sh + 1
    w_out = (x.shape[3] - kw) // sw + 1
    y = None
    for p in range(kh):
        for q in range(kw):
            tap = x[:, :, p:p + sh * (h_out - 1) + 1:sh, q:q + sw * (w_out - 1) + 1:sw]
            y = tap.copy() if y is None else y + tap
    return y


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


def spike_attention(qkv: np.ndarray, *, dim: int, heads: int, scale, key_mask: np.ndarray | None,
                    relative: np.ndarray | None = None, count_unit: int = 1):
    """SBSpikeAttention on (B, 3D, L) spikes -> ((B, D, L) output, counts A (B, H, L, L), V (B, H, dh, L), what
    multiplies V (B, H, L, L)): y = scale ((count_unit A + relative) V); ``scale`` one number or one per head,
    ``relative`` the (H, L, L) bias of relative positions or None. Fixed point passes the integer multiplier as
    ``count_unit`` and the bias in its units, so every product is a whole number."""
    B, _, L = qkv.shape
    dh = dim // heads
    q = qkv[:, :dim].reshape(B, heads, dh, L)
    k = qkv[:, dim:2 * dim].reshape(B, heads, dh, L)
    v = qkv[:, 2 * dim:].reshape(B, heads, dh, L)
    if key_mask is not None:
        keep = key_mask[:, None, None, :]  # (B, 1, 1, L)
        k, v = k * keep, v * keep
    a = q.transpose(0, 1, 3, 2) @ k  # (B, H, L, L): A[i, j] = #coincidences of query i and key j
    w = a * count_unit if relative is None else a * count_unit + relative[None, :, :L, :L]  # (B, H, L, L)
    per_head = np.asarray(scale, dtype=np.float64)
    y = (w @ v.transpose(0, 1, 3, 2)) * (per_head.reshape(1, heads, 1, 1) if per_head.ndim else scale)  # (B, H, L, dh)
    return y.transpose(0, 1, 3, 2).reshape(B, dim, L), a, v, w


def kv_coincidences(qkv: np.ndarray, *, dim: int, mask: np.ndarray | None, mask_padding: bool):
    """SBSpikeDrivenAttention's input on (B, 3D, L) spikes -> (Q (B, D, L), c (B, D), accumulates).

    ``c`` sums K * V over the tokens (real tokens only if ``mask_padding``: the node's own mask); the
    accumulates are the coincidences on real tokens whatever ``mask_padding`` says, so Lava's batch-filler
    rows are never counted."""
    q, k, v = qkv[:, :dim], qkv[:, dim:2 * dim], qkv[:, 2 * dim:]  # (B, D, L) each
    coincide = k * v
    real = coincide if mask is None else coincide * mask[:, None, :]
    return q, (real if mask_padding else coincide).sum(axis=-1), float(real.sum())


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


def attention_stats(a: np.ndarray, v: np.ndarray, mask: np.ndarray | None, *,
                    mixing: np.ndarray | None = None) -> tuple[float, float]:
    """Exact accumulate counts of the attention products, over real query tokens.

    Q K^T: one accumulate per coincident spike pair, i.e. sum(A).
    W V, W = ``mixing`` (A + B with relative positions; A without): one accumulate of W[i, j] per spike of V at
    key j, for every nonzero W[i, j].
    """
    w = a if mixing is None else mixing
    nnz_v = np.count_nonzero(v, axis=2)  # (B, H, L): spikes of V per key token
    rows = (w != 0) if mask is None else (w != 0) & mask[:, None, :, None]
    qk = a.sum() if mask is None else (a * mask[:, None, :, None]).sum()
    av = (rows * nnz_v[:, :, None, :]).sum()
    return float(qk), float(av)


# --- Loihi fixed point (lava-nc 0.10 ``PyLifModelBitAcc`` / ``PyDenseModelBitAcc``, bit for bit) ----

LOIHI_ACT_SHIFT = 6  # synaptic input and threshold are MSB-aligned by 6 bits
LOIHI_DECAY_SHIFT = 12  # du, dv are 12-bit fractions of 4096
LOIHI_STATE_BITS = 24  # u, v
LOIHI_A_IN_LIMIT = 2 ** (LOIHI_STATE_BITS - 1 - LOIHI_ACT_SHIFT) - 1  # largest |input| u holds without wrapping


def shift_exp(x: np.ndarray, exp: int) -> np.ndarray:
    """``x << exp`` for exp >= 0, arithmetic ``x >> -exp`` otherwise (Loihi's weight exponent)."""
    return np.left_shift(x, exp) if exp > 0 else np.right_shift(x, -exp)


def dense_fixed(x: np.ndarray, weight: np.ndarray, weight_exp: int) -> np.ndarray:
    """Loihi dense synapses on integer input (spikes or graded messages): ``(W x) << weight_exp``.

    ``weight`` holds the 8-bit mantissas after Lava's clip/truncate; x is (B, C_in, L) or (B, C_in).
    The products run through float64 BLAS, exact for integers: |W x| <= 2^8 * 2^24 * fan-in < 2^53
    for any fan-in below 2^21, so the sum is the integer Lava's int32 dot computes.
    """
    w = np.asarray(weight, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    acc = np.matmul(w, x) if x.ndim == 3 else x @ w.T
    return shift_exp(acc.astype(np.int64), int(weight_exp))


def _decay(x: np.ndarray, decay: int) -> np.ndarray:
    """Loihi decay ``sign(x d) (|x d| >> 12)`` with d = 4096 - decay: truncation toward zero."""
    prod = x.astype(np.int64) * (2**LOIHI_DECAY_SHIFT - int(decay))
    return np.sign(prod) * np.right_shift(np.abs(prod), LOIHI_DECAY_SHIFT)


def loihi_lif_step(u: np.ndarray, v: np.ndarray, a_in: np.ndarray, *, du: int, dv: int, vth: int,
                   bias: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One step of Lava's bit-accurate LIF: returns (spikes, u, v), all int64.

        u = wrap24(decay(u, du + 1) + (a_in << 6));  v = clip24(decay(v, dv) + u + bias)
        s = v > (vth << 6);  v = 0 where s

    ``bias`` is the effective bias ``bias_mant << bias_exp`` (not shifted by 6).
    """
    top = 2 ** (LOIHI_STATE_BITS - 1)
    u = _decay(u, du + 1) + np.left_shift(np.asarray(a_in, dtype=np.int64), LOIHI_ACT_SHIFT)
    u = np.where(u > top, u - 2 * top, u)
    u = np.where(u <= -top, u + 2 * top, u)
    v = np.clip(_decay(v, dv) + u + bias, -top + 1, top - 1)
    spikes = v > (int(vth) << LOIHI_ACT_SHIFT)
    return spikes.astype(np.int64), u, np.where(spikes, 0, v)
