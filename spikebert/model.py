"""The SpikeBERT student: a Spikformer for text (Lv et al., arXiv 2308.15122).

Read in architecture order: token embedding -> Heaviside spikes repeated over T steps ->
``depth`` blocks of spiking self-attention and MLP with residual sums -> head. Tensor layout is
(T, B, L, D): time, batch, tokens, features.

Equivalences with the official code (kept exact, chosen for a clean NIR export):
- Q, K and V are one ``Linear(D, 3D)``, one ``GroupLayerNorm`` with three groups of D and one
  LIF over 3D: the same maths as three Linear -> LayerNorm -> LIF stacks.
- The residual stream carries integers (sums of spikes), as in the official code
  (``residual = "spike"``). ``residual = "membrane"`` adds the shortcut to a real-valued membrane
  stream instead and spikes it with an LIF at each block input (Spike-driven Transformer V1), so
  every synaptic layer reads binary spikes:

      spike:     x = x + SN(W SN(x...))          (x: sums of spikes)
      membrane:  u = u + BN(W SN(u)...)          (u: membrane currents; SN at each block input)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from spikebert.config import StudentConfig
from spikebert.contract.errors import SpikebertError
from spikebert.neurons import LIF, HeavisideEncoder
from spikebert.outputs import StudentOutput


class GroupLayerNorm(nn.Module):
    """LayerNorm applied separately to ``groups`` consecutive chunks of ``dim`` features.

    y_g = (x_g - mean(x_g)) / sqrt(var(x_g) + eps) * w_g + b_g   for each chunk g   (eq. LN)
    """

    def __init__(self, *, groups: int, dim: int, eps: float) -> None:
        super().__init__()
        self.groups, self.dim, self.eps = groups, dim, eps
        self.weight = nn.Parameter(torch.ones(groups * dim))
        self.bias = nn.Parameter(torch.zeros(groups * dim))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        shape = x.shape
        x = x.reshape(*shape[:-1], self.groups, self.dim)  # (..., G, D)
        x = F.layer_norm(x, (self.dim,), eps=self.eps)
        return x.reshape(shape) * self.weight + self.bias


class TokenBatchNorm(nn.Module):
    """BatchNorm over features with statistics over the real tokens of every step and sentence:

        y = (x - mu) / sqrt(var + eps) * weight + bias                                   (eq. BN)

    Training uses the batch's mean and biased variance over the (T, B, L) positions where ``mask``
    is true and updates running estimates (momentum ``momentum``, unbiased variance, as
    ``nn.BatchNorm1d``); evaluation uses the running estimates, so at inference the norm is a fixed
    per-feature affine map that folds into the preceding Linear at export (the deployable choice).
    """

    def __init__(self, *, features: int, eps: float, momentum: float = 0.1) -> None:
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.weight = nn.Parameter(torch.ones(features))
        self.bias = nn.Parameter(torch.zeros(features))
        self.register_buffer("running_mean", torch.zeros(features))
        self.register_buffer("running_var", torch.ones(features))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.training:
            x_in, x = x, x.to(torch.promote_types(x.dtype, torch.float32))  # half-precision sums overflow
            ones = torch.ones_like(x[..., :1])  # (T, B, L, 1)
            m = ones if mask is None else mask[None, :, :, None].to(x.dtype) * ones
            n = m.sum()  # real positions, (T, B, L) flattened
            dims = tuple(range(x.dim() - 1))
            mean = (x * m).sum(dims) / n
            var = (((x - mean) ** 2) * m).sum(dims) / n
            with torch.no_grad():
                unbiased = var * n / (n - 1).clamp(min=1)
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), self.momentum)
                self.running_var.lerp_(unbiased.detach().to(self.running_var.dtype), self.momentum)
            x = x_in
        else:
            mean, var = self.running_mean, self.running_var
        scale = self.weight * torch.rsqrt(var + self.eps)
        return ((x - mean) * scale + self.bias).to(x.dtype)

    def affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The inference map ``y = a * x + c`` as (a, c), for folding into the preceding Linear."""
        a = self.weight * torch.rsqrt(self.running_var + self.eps)
        return a, self.bias - a * self.running_mean


def make_norm(cfg: StudentConfig, *, groups: int, dim: int) -> nn.Module:
    """The config's norm after a Linear of ``groups * dim`` outputs (``groups`` LayerNorms of ``dim``)."""
    if cfg.norm == "layer":
        return GroupLayerNorm(groups=groups, dim=dim, eps=cfg.layer_norm_eps)
    return TokenBatchNorm(features=groups * dim, eps=cfg.layer_norm_eps)


def relative_offsets(length: int, distance: int) -> torch.Tensor:
    """(L, L) indices into a (2R + 1)-wide relative table: R + clip(j - i, -R, R) for query i, key j."""
    pos = torch.arange(length)
    return (pos[None, :] - pos[:, None]).clamp(-distance, distance) + distance


def shift_offsets(heads: int, distance: int) -> list[int]:
    """The offsets the "shift" start gives the heads in turn: 0, -1, +1, -2, +2, ..., +-(R - 1), then again.

    Offsets +-R are left out: their table entries are the clipped buckets, which hold every key at distance R
    or more, so a head started there would sum all the far V spikes on one side instead of copying one."""
    cycle = [(k + 1) // 2 * (-1 if k % 2 else 1) for k in range(2 * distance - 1)]
    return [cycle[h % len(cycle)] for h in range(heads)]


class SpikeAttention(nn.Module):
    """Spiking self-attention core over tokens, no softmax (eq. SSA):

        A_h = Q_h K_h^T            (integer coincidence counts, L x L per head)
        B_h[i, j] = b_h[R + clip(j - i, -R, R)]   (relative positions; absent when R = 0)
        Y_h = scale * ((A_h + B_h) V_h)

    Input: concatenated spikes [Q; K; V] of shape (T, B, L, 3D); output (T, B, L, D).
    With ``mask_padding``, padded tokens are removed from K and V, so they reach no real token.
    """

    def __init__(self, *, dim: int, heads: int, scale: float, mask_padding: bool, learn_scale: bool = False,
                 relative_distance: int = 0, relative_init: str = "shift") -> None:
        super().__init__()
        self.dim, self.heads, self.mask_padding = dim, heads, mask_padding
        # learn_scale: one trained scale per head (StudentConfig.attn_scale = "learned-per-head"), starting at scale
        self.scale = None if learn_scale else scale
        self.head_scale = nn.Parameter(torch.full((heads,), float(scale))) if learn_scale else None
        self.relative_distance = relative_distance
        self.relative_bias = None  # (H, 2R + 1) in coincidence units (StudentConfig.relative_distance)
        if relative_distance:
            table = torch.zeros(heads, 2 * relative_distance + 1)
            if relative_init == "shift":  # each head copies one neighbour's V at first (one coincidence per spike)
                for h, offset in enumerate(shift_offsets(heads, relative_distance)):
                    table[h, relative_distance + offset] = 1.0 / scale
            self.relative_bias = nn.Parameter(table)

    def mixing(self, a: torch.Tensor) -> torch.Tensor:
        """A_h + B_h: what multiplies V, (..., H, L, L) like ``a``."""
        if self.relative_bias is None:
            return a
        L = a.shape[-1]
        return a + self.relative_bias[:, relative_offsets(L, self.relative_distance).to(a.device)].to(a.dtype)

    def export_relative(self):
        """The relative table as SBSpikeAttention holds it: (H, 2R + 1) float64, or None."""
        return None if self.relative_bias is None else self.relative_bias.detach().double().cpu().numpy()

    def export_scale(self):
        """The scale as SBSpikeAttention holds it: a float, or one float64 per head."""
        return self.scale if self.head_scale is None else self.head_scale.detach().double().cpu().numpy()

    def split_heads(self, qkv: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(Q, K, V) per head, each (T, B, H, L, dh), with padded keys and values removed if masking."""
        T, B, L, _ = qkv.shape
        q, k, v = qkv.split(self.dim, dim=-1)
        if self.mask_padding:
            keep = mask[None, :, :, None].to(qkv.dtype)  # (1, B, L, 1)
            k, v = k * keep, v * keep
        return tuple(t.reshape(T, B, L, self.heads, -1).transpose(2, 3) for t in (q, k, v))  # (T, B, H, L, dh)

    def forward(self, qkv: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        T, B, L, _ = qkv.shape
        q, k, v = self.split_heads(qkv, mask)
        y = self.mixing(q @ k.transpose(-2, -1)) @ v  # (T, B, H, L, dh)
        y = y * (self.scale if self.head_scale is None else self.head_scale[:, None, None])
        return y.transpose(2, 3).reshape(T, B, L, self.dim)


class SpikeDrivenAttention(nn.Module):
    """Spike-driven self-attention (Yao et al., NeurIPS 2023, as their official code computes it):

        s = SN( sum_l K[l] * V[l] )      (per channel: coincidences of K and V over the real tokens)
        Y[l] = Q[l] * s                   (a mask: Q's spikes pass where the channel fired)

    Only accumulates and masks, linear in the sequence length. ``SN`` is an LIF over the time steps
    (threshold ``threshold``). Input [Q; K; V] spikes (T, B, L, 3D); output spikes (T, B, L, D).
    """

    def __init__(self, *, dim: int, lif: nn.Module, mask_padding: bool) -> None:
        super().__init__()
        self.dim, self.mask_padding = dim, mask_padding
        self.lif = lif

    def forward(self, qkv: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        q, k, v = qkv.split(self.dim, dim=-1)  # (T, B, L, D) each
        if self.mask_padding:
            keep = mask[None, :, :, None].to(qkv.dtype)  # (1, B, L, 1)
            k, v = k * keep, v * keep
        s = self.lif((k * v).sum(dim=2, keepdim=True))  # (T, B, 1, D) spikes
        return q * s


class TokenMean(nn.Module):
    """Mean over tokens, over real tokens only when ``mask_padding``: (T, B, L, D) -> (T, B, D)."""

    def __init__(self, *, mask_padding: bool) -> None:
        super().__init__()
        self.mask_padding = mask_padding

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if not self.mask_padding:
            return x.mean(dim=2)
        m = mask[None, :, :, None].to(x.dtype)  # (1, B, L, 1)
        return (x * m).sum(dim=2) / m.sum(dim=2).clamp(min=1)  # an all-padding row gives 0, as the reference


class PositionSpikes(nn.Module):
    """The position population: ids (B, L) -> spikes (B, L, max_len), 1 where the neuron of position l meets a
    real token at l (``SBPositionSpikes``; held over the time steps, as the ids)."""

    def __init__(self, *, max_len: int, pad_token_id: int) -> None:
        super().__init__()
        self.max_len, self.pad_token_id = max_len, pad_token_id
        self.register_buffer("eye", torch.eye(max_len), persistent=False)  # follows the model's dtype and device

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        real = (input_ids != self.pad_token_id).to(self.eye.dtype)[:, :, None]  # (B, L, 1)
        return real * self.eye[: input_ids.shape[1]]  # (B, L, max_len)


def make_lif(cfg: StudentConfig, *, threshold: float | None = None) -> LIF:
    return LIF(tau=cfg.tau, threshold=cfg.threshold if threshold is None else threshold,
               surrogate_alpha=cfg.surrogate_alpha, neuron=cfg.neuron)


class SpikingSelfAttention(nn.Module):
    """QKV Linear -> norm -> LIF; SpikeAttention -> LIF(attn threshold); Linear -> norm -> LIF.

    ``residual = "membrane"``: an LIF spikes the block input first (``in_lif``), and the projection
    ends at its norm: its output is a current added to the membrane stream."""

    def __init__(self, cfg: StudentConfig) -> None:
        super().__init__()
        D = cfg.dim
        self.in_lif = make_lif(cfg) if cfg.residual == "membrane" else None
        self.qkv = nn.Linear(D, 3 * D)
        self.qkv_norm = make_norm(cfg, groups=3, dim=D)
        self.qkv_lif = make_lif(cfg)
        if cfg.attention == "sdsa":  # its output is already spikes: no LIF after it
            self.attn = SpikeDrivenAttention(dim=D, lif=make_lif(cfg, threshold=cfg.attn_threshold),
                                             mask_padding=cfg.mask_padding)
            self.attn_lif = None
        else:
            self.attn = SpikeAttention(dim=D, heads=cfg.heads, scale=cfg.qk_scale, mask_padding=cfg.mask_padding,
                                       learn_scale=cfg.attn_scale == "learned-per-head",
                                       relative_distance=cfg.relative_distance, relative_init=cfg.relative_init)
            self.attn_lif = make_lif(cfg, threshold=cfg.attn_threshold)
        self.proj = nn.Linear(D, D)
        self.proj_norm = make_norm(cfg, groups=1, dim=D)
        self.proj_lif = make_lif(cfg) if cfg.residual == "spike" else None

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.in_lif is not None:
            x = self.in_lif(x)  # (T, B, L, D) spikes of the membrane stream
        qkv = self.qkv_lif(self.qkv_norm(self.qkv(x), mask))  # (T, B, L, 3D) spikes
        y = self.attn(qkv, mask)
        y = y if self.attn_lif is None else self.attn_lif(y)  # (T, B, L, D) spikes
        y = self.proj_norm(self.proj(y), mask)
        return y if self.proj_lif is None else self.proj_lif(y)


class MLP(nn.Module):
    """Linear(D, H) -> norm -> LIF -> Linear(H, D) -> norm -> LIF (``residual = "membrane"``: an LIF
    before fc1, none after norm2)."""

    def __init__(self, cfg: StudentConfig) -> None:
        super().__init__()
        D, H = cfg.dim, cfg.mlp_dim
        self.in_lif = make_lif(cfg) if cfg.residual == "membrane" else None
        self.fc1 = nn.Linear(D, H)
        self.norm1 = make_norm(cfg, groups=1, dim=H)
        self.lif1 = make_lif(cfg)
        self.fc2 = nn.Linear(H, D)
        self.norm2 = make_norm(cfg, groups=1, dim=D)
        self.lif2 = make_lif(cfg) if cfg.residual == "spike" else None

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.in_lif is not None:
            x = self.in_lif(x)
        h = self.lif1(self.norm1(self.fc1(x), mask))
        y = self.norm2(self.fc2(h), mask)
        return y if self.lif2 is None else self.lif2(y)


class Block(nn.Module):
    """x = x + SSA(x); x = x + MLP(x). ``residual = "spike"``: sums of spikes, the stream carries
    integers; ``"membrane"``: sums of currents, spiked at each block input."""

    def __init__(self, cfg: StudentConfig) -> None:
        super().__init__()
        self.attn = SpikingSelfAttention(cfg)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(x, mask)
        return x + self.mlp(x, mask)


def sinusoidal_table(length: int, dim: int) -> torch.Tensor:
    """Vaswani et al.'s positions: P[l, 2i] = sin(l / 10000^(2i/D)), P[l, 2i+1] = cos(...), (L, D)."""
    position = torch.arange(length, dtype=torch.float64)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float64) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim, dtype=torch.float64)
    table[:, 0::2] = torch.sin(position * freq)
    table[:, 1::2] = torch.cos(position * freq[: dim // 2])
    return table.float()


class SpikeBERT(nn.Module):
    """The student. ``forward(input_ids)`` with ids of shape (B, L)."""

    KIND = "spikebert"  # its name in the student registry (spikebert.students)
    CHECKPOINT_FORMAT = "spikebert-student/1"
    CONFIG = StudentConfig

    def __init__(self, cfg: StudentConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.position = nn.Embedding(cfg.max_len, cfg.dim) if cfg.positions in ("learned", "sinusoidal") else None
        if cfg.positions == "learned":  # start as the paper's student: positions must not drown the tokens
            nn.init.zeros_(self.position.weight)
        elif cfg.positions == "sinusoidal":  # a fixed table, not trained (exported as the learned one)
            self.position.weight.data.copy_(cfg.position_scale * sinusoidal_table(cfg.max_len, cfg.dim))
            self.position.weight.requires_grad_(False)
        # positions as spikes: the population and its synapse into the membrane stream (no bias; zeroed below)
        spiking = cfg.positions == "spikes"
        self.position_spikes = PositionSpikes(max_len=cfg.max_len, pad_token_id=cfg.pad_token_id) if spiking else None
        self.position_synapse = nn.Linear(cfg.max_len, cfg.dim, bias=False) if spiking else None
        # residual = "membrane": the embedding's currents start the membrane stream, spiked at each block input
        self.encoder = HeavisideEncoder(surrogate_alpha=cfg.surrogate_alpha) if cfg.residual == "spike" else None
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.head_norm = make_norm(cfg, groups=1, dim=cfg.dim)
        self.pool = TokenMean(mask_padding=cfg.mask_padding)
        self.classifier = nn.Linear(cfg.dim, cfg.num_classes)
        self.apply(self._init_weights)
        if self.position_synapse is not None:  # start as the paper's student, as a learned table does
            nn.init.zeros_(self.position_synapse.weight)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        # Official init: Linear N(0, 0.02) with zero bias; LayerNorm (1, 0); embedding N(0, 1).
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def embed_tokens(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Real-valued token embedding plus the positions' currents (a table, or the position population's
        spikes through their synapse), (B, L) -> (B, L, D)."""
        e = self.embed(input_ids)
        if self.position is not None:
            e = e + self.position.weight[: input_ids.shape[1]]
        if self.position_synapse is not None:
            e = e + self.position_synapse(self.position_spikes(input_ids))  # (B, L, max_len) -> (B, L, D)
        return e

    def token_mask(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B, L) bool, True for real tokens."""
        return input_ids != self.cfg.pad_token_id

    def forward(self, input_ids: torch.Tensor) -> StudentOutput:
        if input_ids.dim() != 2:
            raise SpikebertError(f"input_ids must be (batch, length), got shape {tuple(input_ids.shape)}")
        if input_ids.shape[1] > self.cfg.max_len:
            raise SpikebertError(f"sequence length {input_ids.shape[1]} exceeds max_len={self.cfg.max_len}")
        return StudentOutput(**self.core(input_ids, self.token_mask(input_ids)))

    def core(self, input_ids: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        """``forward`` without its input checks, as the fields of :class:`StudentOutput`.

        Traceable by ``torch.fx`` (no Python branch on tensor values): the NIR exporter derives the
        graph from this trace. ``mask`` is :meth:`token_mask` of ``input_ids``.
        """
        # Without masking (the official behaviour) pads also enter the batch-norm statistics.
        norm_mask = mask if self.cfg.mask_padding else torch.ones_like(mask)
        T = self.cfg.time_steps
        e = self.embed_tokens(input_ids)  # (B, L, D) currents
        e = e if self.encoder is None else self.encoder(e)  # spikes, constant over time (residual = "spike")
        x = e.unsqueeze(0).expand(T, -1, -1, -1)  # (T, B, L, D)
        hidden = []
        for block in self.blocks:
            x = block(x, norm_mask)
            hidden.append(x.mean(dim=0))  # (B, L, D): the distillation tap
        step_logits = self.classifier(self.pool(self.head_norm(x, norm_mask), mask))  # (T, B, C)
        return {"logits": step_logits.mean(dim=0), "step_logits": step_logits, "hidden": hidden}
