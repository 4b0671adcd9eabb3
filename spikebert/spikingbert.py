"""The SpikingBERT student (Bal & Sengupta, AAAI 2024): IF populations trained at equilibrium.

Read in architecture order: BERT embedding -> a constant input current -> the embedding
population -> ``depth`` spiking encoder (SE) layers of six populations each -> classifier on the
[CLS] rate of the last population. Tensor layout (B, L, D); the time loop runs over T steps and
never materialises a time axis. Equations (the official code, ``../shared/notes`` section 5.1):

    v[t] = u[t-1] + I[t],   s[t] = H(v[t] - theta),   u[t] = gamma (v[t] - theta s[t])      (eq. IF)

IF neurons (gamma = 1; 0 < gamma < 1 is LIF), subtraction reset, firing at v >= theta, membranes
start at 0. A population's average spike rate (ASR) is a = (1/T) sum_t s[t] (eq. ASR).
One SE layer with input spikes s (the same equations with rates a give the rate network):

    s_K = IF(W_K s + b_K),  s_V = IF(W_V s + b_V),  Q = W_Q s + b_Q       (Q is not spiked)
    A   = Q s_K^T / sqrt(d_h) + M       (per head; M = -10000 on padded keys)             (eq. ATT)
    s_att = IF(softmax(A) s_V)
    s_so  = IF(LN(W_O s_att + b_O + s))          (the residual adds the earlier spikes)
    s_I   = IF(GELU(W_1 s_so + b_1))
    s_out = IF(LN(W_2 s_I + b_2 + s_so))
    logits = W_c ReLU(a_out[CLS]) + b_c

Within one step the spikes travel through every population (no synaptic delay). At equilibrium an
IF population with mean input current u fires at sigma(u / theta), sigma(x) = clamp(x, 0, 1) (eq. EQ);
replacing every IF by eq. EQ gives the *rate network*, exact for affine currents as T grows and
approximate through softmax, LayerNorm and GELU.

Training (eq. IDE): the network is simulated for T steps without gradients; the forward value of
every distilled quantity is the simulation's ASR, its gradient is the rate network's,

    a_hat = a_SNN + (a_eq - stopgrad(a_eq))

the official ``Replace``. Implicit differentiation through the equilibrium a* = f(a*, x) needs
(I - J_f)^-1; without feedback connections J_f = 0 and it is plain backprop through the rate
network, which is what this module does: memory does not grow with T and no surrogate is tuned.
The official model builds a feedback connection (last layer -> first population) but disables it
in every released configuration; it is not built here, so no Broyden solver is needed.

Departures, each explicit: no token-type embedding (single-sentence tasks: a constant row); the
rate network runs once per step and every hidden rate and attention map is read from that one
pass (the official code recomputes it per layer; the gradients are identical without dropout, while
with dropout the official recomputations draw their own masks). The simulation and the rate network
draw their dropout masks independently, so the logged rate gap includes dropout noise in training.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from spikebert.config import SpikingBERTConfig
from spikebert.contract.errors import SpikebertError
from spikebert.outputs import StudentOutput

MASK_VALUE = -10000.0  # BERT's additive mask on padded keys (the official extended attention mask)
POPULATIONS = ("key", "value", "attention", "self_output", "intermediate", "output")  # per SE layer, in order


# -- neurons ---------------------------------------------------------------------------------------
def if_step(current: torch.Tensor, u: torch.Tensor, *, threshold: float,
            leak: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. IF for one step: (spikes, membrane after reset and leak)."""
    v = u + current
    s = (v >= threshold).to(v.dtype)
    return s, leak * (v - threshold * s)


def equilibrium_rate(current: torch.Tensor, *, threshold: float) -> torch.Tensor:
    """Eq. EQ: the ASR an IF population settles at under a constant mean current."""
    return torch.clamp(current / threshold, 0.0, 1.0)


Activation = Callable[[str, torch.Tensor], torch.Tensor]  # (population name, current) -> spikes or rates


class IFPopulations:
    """The simulation's activation: one IF membrane per named population (zero before the first
    step) and its spikes summed over steps (the ASR numerators)."""

    def __init__(self, *, threshold: float, leak: float) -> None:
        self.threshold, self.leak = threshold, leak
        self.membranes: dict[str, torch.Tensor] = {}
        self.spike_sums: dict[str, torch.Tensor] = {}  # name -> (B, L, C) spikes summed over steps

    def __call__(self, name: str, current: torch.Tensor) -> torch.Tensor:
        # membranes and spike sums in at least float32: under fp16/bf16 autocast a half-precision state
        # would integrate with an 8- or 11-bit mantissa and count spikes inexactly past 256 / 2048
        current = current.to(torch.promote_types(current.dtype, torch.float32))
        u = self.membranes.get(name)
        s, self.membranes[name] = if_step(current, torch.zeros_like(current) if u is None else u,
                                          threshold=self.threshold, leak=self.leak)
        self.spike_sums[name] = s if name not in self.spike_sums else self.spike_sums[name] + s
        return s

    def scoped(self, prefix: str) -> Activation:
        return lambda name, current: self(f"{prefix}.{name}", current)


# -- the network ---------------------------------------------------------------------------------
class SpikingEmbeddings(nn.Module):
    """Word + learned position embedding, LayerNorm, dropout: the constant input current (B, L, D)."""

    def __init__(self, cfg: SpikingBERTConfig) -> None:
        super().__init__()
        self.embed = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.position = nn.Embedding(cfg.max_len, cfg.dim)
        self.norm = nn.LayerNorm(cfg.dim, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.hidden_dropout)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        e = self.embed(input_ids) + self.position.weight[: input_ids.shape[1]]  # (B, L, D)
        return self.dropout(self.norm(e))


class SpikingEncoderLayer(nn.Module):
    """One SE layer (eq. ATT and the lines after it), written once for spikes and for rates: ``act``
    turns each population's current into its output (IF spikes in the simulation, eq. EQ rates in
    the rate network)."""

    def __init__(self, cfg: SpikingBERTConfig) -> None:
        super().__init__()
        D, F_ = cfg.dim, cfg.mlp_dim
        self.heads, self.head_dim = cfg.heads, D // cfg.heads
        self.query, self.key, self.value = nn.Linear(D, D), nn.Linear(D, D), nn.Linear(D, D)
        self.attn_dropout = nn.Dropout(cfg.attention_dropout)
        self.out = nn.Linear(D, D)
        self.out_dropout = nn.Dropout(cfg.hidden_dropout)
        self.out_norm = nn.LayerNorm(D, eps=cfg.layer_norm_eps)
        self.fc1 = nn.Linear(D, F_)
        self.fc2 = nn.Linear(F_, D)
        self.fc2_dropout = nn.Dropout(cfg.hidden_dropout)
        self.fc2_norm = nn.LayerNorm(D, eps=cfg.layer_norm_eps)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        B, L, _ = x.shape
        return x.view(B, L, self.heads, self.head_dim).transpose(1, 2)  # (B, H, L, dh)

    def forward(self, x: torch.Tensor, mask_bias: torch.Tensor,
                act: Activation) -> tuple[torch.Tensor, torch.Tensor]:
        """(output population, pre-softmax scores A of shape (B, H, L, L)) for input ``x`` (B, L, D)."""
        B, L, D = x.shape
        k = act("key", self.key(x))
        v = act("value", self.value(x))
        q = self.query(x)
        scores = self._split(q) @ self._split(k).transpose(-2, -1) / math.sqrt(self.head_dim) + mask_bias
        probs = self.attn_dropout(scores.softmax(-1))
        context = (probs @ self._split(v)).transpose(1, 2).reshape(B, L, D)  # (B, L, D)
        att = act("attention", context)
        so = act("self_output", self.out_norm(self.out_dropout(self.out(att)) + x))
        inter = act("intermediate", F.gelu(self.fc1(so)))
        out = act("output", self.fc2_norm(self.fc2_dropout(self.fc2(inter)) + so))
        return out, scores


class SpikingBERT(nn.Module):
    """The student. ``forward(input_ids)`` with ids of shape (B, L)."""

    KIND = "spikingbert"  # its name in the student registry (spikebert.students)
    CHECKPOINT_FORMAT = "spikingbert-student/1"
    CONFIG = SpikingBERTConfig

    def __init__(self, cfg: SpikingBERTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embeddings = SpikingEmbeddings(cfg)
        self.layers = nn.ModuleList(SpikingEncoderLayer(cfg) for _ in range(cfg.depth))
        self.classifier = nn.Linear(cfg.dim, cfg.num_classes)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        # BERT's init, as the official model: N(0, 0.02) weights, zero biases, LayerNorm (1, 0)
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear):
            nn.init.zeros_(module.bias)

    @property
    def embed(self) -> nn.Embedding:
        """The word embedding table (what teacher-initialisation fills)."""
        return self.embeddings.embed

    def token_mask(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B, L) bool, True for real tokens."""
        return input_ids != self.cfg.pad_token_id

    def _mask_bias(self, mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return ((~mask).to(dtype) * MASK_VALUE)[:, None, None, :]  # (B, 1, 1, L)

    def _network(self, current: torch.Tensor, mask: torch.Tensor,
                 act: Callable[[str], Activation]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Every population once: ([embedding, layer outputs], [scores]); ``act(scope)`` activates."""
        mask_bias = self._mask_bias(mask, current.dtype)
        x = act("embedding")("population", current)
        hidden, scores = [x], []
        for i, layer in enumerate(self.layers):
            x, a = layer(x, mask_bias, act(f"layer{i}"))
            hidden.append(x)
            scores.append(a)
        return hidden, scores

    def simulate(self, input_ids: torch.Tensor, *,
                 time_steps: int | None = None) -> tuple[list[torch.Tensor], dict[str, dict[str, float]]]:
        """Eq. IF over T steps with the same input current each step: (hidden ASRs, per population
        the spikes over real tokens and steps, the neuron steps they could fill, and the sum over
        sentences of spikes x real length). No gradient flows through it."""
        T = self.cfg.time_steps if time_steps is None else time_steps
        if T < 1:
            raise SpikebertError(f"time_steps must be >= 1, got {T}")
        mask = self.token_mask(input_ids)
        with torch.no_grad():
            current = self.embeddings(input_ids)
            pops = IFPopulations(threshold=self.cfg.threshold, leak=self.cfg.leak)
            sums = None
            for _ in range(T):
                hidden, _ = self._network(current, mask, pops.scoped)
                sums = hidden if sums is None else [s + h for s, h in zip(sums, hidden)]
            m = mask[:, :, None].to(current.dtype)  # (B, L, 1)
            lengths = m.sum((1, 2))  # (B,) real tokens per sentence
            counts = {}
            for name, s in pops.spike_sums.items():
                per_sentence = (s * m).sum((1, 2))  # (B,)
                counts[name] = {"spikes": float(per_sentence.sum()),
                                "neuron_steps": float(lengths.sum()) * T * s.shape[-1],
                                "spikes_x_tokens": float((per_sentence * lengths).sum())}
        return [s / T for s in sums], counts

    def rate_network(self, input_ids: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Eq. EQ in place of every IF population, with gradients: (hidden rates, scores)."""
        rate = lambda _name, current: equilibrium_rate(current, threshold=self.cfg.threshold)  # noqa: E731
        return self._network(self.embeddings(input_ids), self.token_mask(input_ids), lambda _scope: rate)

    def head(self, last: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Logits from the last population's rates (B, L, D): W_c ReLU(a[CLS]) + b_c (ReLU of a rate
        is the identity; kept as the official head), or of their mean over real tokens (``pooling``)."""
        if self.cfg.pooling == "cls":
            return self.classifier(F.relu(last[:, 0]))
        m = mask[:, :, None].to(last.dtype)  # (B, L, 1)
        return self.classifier((last * m).sum(1) / m.sum(1).clamp(min=1))

    def forward(self, input_ids: torch.Tensor, *, time_steps: int | None = None,
                record: bool = False) -> StudentOutput:
        """Training: simulation values with rate-network gradients (eq. IDE), scores from the rate
        network. Evaluation: the simulation alone; ``record`` adds spike counts per population."""
        if input_ids.dim() != 2:
            raise SpikebertError(f"input_ids must be (batch, length), got shape {tuple(input_ids.shape)}")
        if input_ids.shape[1] > self.cfg.max_len:
            raise SpikebertError(f"sequence length {input_ids.shape[1]} exceeds max_len={self.cfg.max_len}")
        if time_steps is not None and time_steps < 1:
            raise SpikebertError(f"time_steps must be >= 1, got {time_steps}")
        if not self.training or not torch.is_grad_enabled():
            hidden, counts = self.simulate(input_ids, time_steps=time_steps)
            return StudentOutput(self.head(hidden[-1], self.token_mask(input_ids)), hidden,
                                 spike_counts=counts if record else None)
        eq_hidden, scores = self.rate_network(input_ids)
        counts = None
        if self.cfg.train_forward == "snn":
            snn_hidden, counts = self.simulate(input_ids, time_steps=time_steps)
            hidden = [s + e - e.detach() for s, e in zip(snn_hidden, eq_hidden)]  # eq. IDE (Replace)
            m = self.token_mask(input_ids)[:, :, None]
            gap = [float(((s - e.detach()).abs() * m).sum() / (m.sum() * s.shape[-1]))
                   for s, e in zip(snn_hidden, eq_hidden)]
        else:
            hidden, gap = eq_hidden, None
        return StudentOutput(self.head(hidden[-1], self.token_mask(input_ids)), hidden, scores=scores,
                             spike_counts=counts if record else None, rate_gap=gap)


def population_names(depth: int) -> list[str]:
    """Every population in simulation order, as :class:`IFPopulations` names them."""
    return ["embedding.population", *(f"layer{i}.{p}" for i in range(depth) for p in POPULATIONS)]
