"""SpikeBERT's NIR extension: the node types NIR 1.0.8 lacks (spec: docs/nir-extension.md).

Layout convention, as NIR's ``Conv1d``: per-sample tensors are (channels, tokens) = (D, L), no
batch axis. Token validity (which positions are padding) is derived from the token ids at the
graph input by ``SBTokenEmbedding.pad_token_id``; nodes with ``mask_padding`` consult it.

Importing this module registers the node types with ``nir.read``. That uses NIR's private
registry list; when a future NIR changes it, :func:`spikebert.contract.nirfile.read_graph` still works
through its own dispatcher.
"""

from __future__ import annotations

import dataclasses

import nir
import numpy as np

from spikebert.contract.errors import SpikebertError

# 2 adds SBIF (SpikingBERT's neuron), 3 SBPositionSpikes; every graph of an earlier version is one of a later
EXTENSION_VERSION = "3"


@dataclasses.dataclass(eq=False)
class SBTokenEmbedding(nir.NIRNode):
    """Token (+ position) lookup, the host-side encoder: ids (L,) -> (E[ids] + P)^T of shape (D, L).

    ``weight``: (V, D) embedding table; ``position_weight``: (max_len, D) learned position table,
    all zeros for students without positions (the paper's). Position ``l`` is padding iff
    ``ids[l] == pad_token_id``. The output is real-valued; a following ``Threshold`` turns it into spikes.
    """

    weight: np.ndarray
    max_len: int
    pad_token_id: int
    position_weight: np.ndarray | None = None

    def __post_init__(self):
        self.weight = np.asarray(self.weight)
        if self.weight.ndim != 2:
            raise SpikebertError(f"SBTokenEmbedding.weight must be (vocab, dim), got shape {self.weight.shape}")
        self.max_len, self.pad_token_id = int(self.max_len), int(self.pad_token_id)
        if self.position_weight is None:
            self.position_weight = np.zeros((self.max_len, self.weight.shape[1]))
        self.position_weight = np.asarray(self.position_weight)
        if self.position_weight.shape != (self.max_len, self.weight.shape[1]):
            raise SpikebertError(f"SBTokenEmbedding.position_weight must be (max_len, dim) = "
                             f"{(self.max_len, self.weight.shape[1])}, got {self.position_weight.shape}")
        self.input_type = {"input": np.array([self.max_len])}
        self.output_type = {"output": np.array([self.weight.shape[1], self.max_len])}


@dataclasses.dataclass(eq=False)
class SBPositionSpikes(nir.NIRNode):
    """A position population, the host-side spike source of positions: ids (L,) -> S of shape (max_len, L),

        S[p, l] = 1  if p == l and ids[l] != pad_token_id,  else 0

    held over the time steps as the ids are: neuron ``p`` fires at every step while a real token sits at
    position ``p``. Its spikes reach the network through a synapse (a token-wise ``Conv1d`` of kernel 1:
    the learned position table as weights), so positions arrive as accumulates on binary spikes, not as
    currents added on the host (``SBTokenEmbedding.position_weight``).
    """

    max_len: int
    pad_token_id: int

    def __post_init__(self):
        self.max_len, self.pad_token_id = int(self.max_len), int(self.pad_token_id)
        if self.max_len < 1 or self.pad_token_id < 0:
            raise SpikebertError(f"SBPositionSpikes: max_len must be >= 1 and pad_token_id >= 0, got "
                                 f"{self.max_len}, {self.pad_token_id}")
        self.input_type = {"input": np.array([self.max_len])}
        self.output_type = {"output": np.array([self.max_len, self.max_len])}


def position_sources(graph: nir.NIRGraph, embed: str) -> list[str]:
    """The graph's ``SBPositionSpikes`` nodes, each checked against the token embedding ``embed``: fed by the
    embedding's ``Input`` alone, with its ``max_len`` and ``pad_token_id`` (the token mask comes from the
    embedding's, so a different pad id would fire position neurons at tokens the network treats as padding)."""
    feeds = [s for s, d in graph.edges if d == embed]
    names = [n for n, node in graph.nodes.items() if isinstance(node, SBPositionSpikes)]
    for name in names:
        node, reference = graph.nodes[name], graph.nodes[embed]
        fed = [s for s, d in graph.edges if d == name]
        if fed != feeds or len(fed) != 1:
            raise SpikebertError(f"SBPositionSpikes {name!r} is fed by {fed}: it must read the token ids, from the "
                                 f"Input that feeds {embed!r} ({feeds}) alone")
        if (node.max_len, node.pad_token_id) != (reference.max_len, reference.pad_token_id):
            raise SpikebertError(f"SBPositionSpikes {name!r} has max_len={node.max_len}, pad_token_id="
                                 f"{node.pad_token_id}; the embedding {embed!r} has {reference.max_len}, "
                                 f"{reference.pad_token_id}: they must agree")
    return names


def position_spikes(node: SBPositionSpikes, ids: np.ndarray) -> np.ndarray:
    """The spikes of ``node`` for token ids (B, L), as float64 (B, max_len, L)."""
    ids = np.asarray(ids)
    B, L = ids.shape
    spikes = np.zeros((B, node.max_len, L))
    tokens = np.arange(L)
    spikes[:, tokens, tokens] = ids != node.pad_token_id  # (B, L) on the diagonal
    return spikes


@dataclasses.dataclass(eq=False)
class SBLayerNorm(nir.NIRNode):
    """LayerNorm over channels, separately for ``groups`` chunks of D = C / groups channels:

        y[g, :, l] = (x[g, :, l] - mean) / sqrt(var + eps) * weight[g, :] + bias[g, :]

    with the biased mean and variance over the D channels of chunk g at token l. Input and output
    (C, L). Floating point only: not a Loihi-native operation.
    """

    weight: np.ndarray
    bias: np.ndarray
    groups: int
    eps: float
    tokens: int

    def __post_init__(self):
        self.weight, self.bias = np.asarray(self.weight), np.asarray(self.bias)
        self.groups, self.eps, self.tokens = int(self.groups), float(self.eps), int(self.tokens)
        if self.weight.shape != self.bias.shape or self.weight.ndim != 1 or self.weight.size % self.groups:
            raise SpikebertError(
                f"SBLayerNorm: weight {self.weight.shape} and bias {self.bias.shape} must be equal 1-D "
                f"shapes divisible by groups={self.groups}"
            )
        shape = np.array([self.weight.size, self.tokens])
        self.input_type, self.output_type = {"input": shape}, {"output": shape.copy()}


@dataclasses.dataclass(eq=False)
class SBSpikeAttention(nir.NIRNode):
    """Spiking self-attention without softmax, per head h (Lv et al. 2023, eq. SSA):

        Q, K, V = x[0:D], x[D:2D], x[2D:3D]          (binary spikes, (D, L) each)
        K[:, l] = V[:, l] = 0 for padding tokens l    (only if mask_padding)
        A_h = Q_h^T K_h                               (L x L coincidence counts)
        B_h[i, j] = relative_bias[h, R + clip(j - i, -R, R)]   (relative positions, coincidence units)
        y_h = scale_h * ((A_h + B_h) V_h^T)^T         ((D/heads, L))

    Input (3D, L) spikes, output (D, L) graded values. Heads split the channel axis in order.
    ``scale``: one number for every head (the paper's), or one per head (``heads`` values: a student with
    ``attn_scale = "learned-per-head"``). ``relative_bias``: (heads, 2R + 1), the learned bias per head and
    clipped distance j - i (a student with ``relative_distance = R``); absent, or all zeros, for none (the paper's).
    """

    dim: int
    heads: int
    scale: float | np.ndarray
    tokens: int
    mask_padding: bool
    relative_bias: np.ndarray | None = None

    def __post_init__(self):
        self.dim, self.heads, self.tokens = int(self.dim), int(self.heads), int(self.tokens)
        self.mask_padding = bool(self.mask_padding)
        if self.dim % self.heads:
            raise SpikebertError(f"SBSpikeAttention: dim {self.dim} not divisible by heads {self.heads}")
        scale = np.asarray(self.scale, dtype=np.float64)
        if scale.ndim == 0:
            self.scale = float(scale)
        elif scale.shape == (self.heads,):
            self.scale = scale
        else:
            raise SpikebertError(f"SBSpikeAttention: scale must be one number or one per head ({self.heads}), "
                                 f"got shape {scale.shape}")
        if self.relative_bias is None:  # written as a zero table of distance 0, which biases nothing
            self.relative_bias = np.zeros((self.heads, 1))
        self.relative_bias = np.asarray(self.relative_bias, dtype=np.float64)
        rows, width = self.relative_bias.shape if self.relative_bias.ndim == 2 else (None, None)
        if rows != self.heads or width % 2 != 1:
            raise SpikebertError(f"SBSpikeAttention: relative_bias must be (heads, 2R + 1) = ({self.heads}, odd), got "
                                 f"shape {self.relative_bias.shape}")
        self.input_type = {"input": np.array([3 * self.dim, self.tokens])}
        self.output_type = {"output": np.array([self.dim, self.tokens])}


def relative_matrix(node: SBSpikeAttention, length: int) -> np.ndarray | None:
    """B of ``SBSpikeAttention`` for ``length`` tokens, (H, L, L) float64; None when the table is all zeros."""
    table = node.relative_bias
    if not np.any(table):
        return None
    distance = table.shape[1] // 2
    pos = np.arange(length)
    return table[:, np.clip(pos[None, :] - pos[:, None], -distance, distance) + distance]


@dataclasses.dataclass(eq=False)
class SBSpikeDrivenAttention(nir.NIRNode):
    """Spike-driven self-attention (Yao et al., NeurIPS 2023: mask and add, linear in the length), stateful:

        Q, K, V = x[0:D], x[D:2D], x[2D:3D]          (binary spikes, (D, L) each)
        K[:, l] = V[:, l] = 0 for padding tokens l    (only if mask_padding)
        c = sum_l K[:, l] * V[:, l]                   ((D,) coincidence counts)
        s = LIF(c)                                    ((D,) spikes of the node's own population)
        y[:, l] = Q[:, l] * s                         ((D, L) spikes: Q masked by the channels that fired)

    The population has NIR ``LIF`` semantics with the per-channel parameters ``tau``, ``r``, ``v_leak``,
    ``v_threshold`` and ``v_reset`` (each (D,)); its membrane carries over the time steps of a sample.
    Input (3D, L), output (D, L).
    """

    dim: int
    tokens: int
    mask_padding: bool
    tau: np.ndarray
    r: np.ndarray
    v_leak: np.ndarray
    v_threshold: np.ndarray
    v_reset: np.ndarray

    def __post_init__(self):
        self.dim, self.tokens, self.mask_padding = int(self.dim), int(self.tokens), bool(self.mask_padding)
        for field in ("tau", "r", "v_leak", "v_threshold", "v_reset"):
            value = np.asarray(getattr(self, field), dtype=np.float64)
            if value.shape != (self.dim,):
                raise SpikebertError(f"SBSpikeDrivenAttention: {field} must have one value per channel ({self.dim},), "
                                     f"got shape {value.shape}")
            setattr(self, field, value)
        if not np.all(self.tau > 0) or not np.all(self.v_threshold > 0):
            raise SpikebertError("SBSpikeDrivenAttention: tau and v_threshold must be positive")
        self.input_type = {"input": np.array([3 * self.dim, self.tokens])}
        self.output_type = {"output": np.array([self.dim, self.tokens])}

    def population(self) -> nir.LIF:
        """The node's own population, as a NIR ``LIF`` of shape (D,)."""
        return nir.LIF(tau=self.tau, r=self.r, v_leak=self.v_leak, v_threshold=self.v_threshold, v_reset=self.v_reset)


@dataclasses.dataclass(eq=False)
class SBTokenMean(nir.NIRNode):
    """Mean over tokens: (D, L) -> (D,); over real tokens only if ``mask_padding``."""

    dim: int
    tokens: int
    mask_padding: bool

    def __post_init__(self):
        self.dim, self.tokens, self.mask_padding = int(self.dim), int(self.tokens), bool(self.mask_padding)
        self.input_type = {"input": np.array([self.dim, self.tokens])}
        self.output_type = {"output": np.array([self.dim])}


@dataclasses.dataclass(eq=False)
class SBIF(nir.NIRNode):
    """Integrate-and-fire with subtraction reset, one update per step (SpikingBERT's neuron, eq. IF):

        v[t] = u[t-1] + r I[t];   y[t] = [v[t] >= v_threshold];   u[t] = leak (v[t] - v_threshold y[t])

    ``u`` starts at 0. NIR's ``IF`` fires on ``v > v_threshold`` and sets v to ``v_reset``; this
    node keeps the residue above the threshold, which is what makes the average rate over T
    steps of an IF neuron (``leak`` = 1) converge to clamp(r I / v_threshold, 0, 1) under a
    constant current. 0 < leak < 1 leaks after the reset (and fires less). Discrete time: no time
    constant, the step ``dt`` plays no role. All three parameters are per neuron and share one
    shape (the input's).
    """

    r: np.ndarray
    v_threshold: np.ndarray
    leak: np.ndarray

    def __post_init__(self):
        self.r = np.asarray(self.r, dtype=np.float64)
        self.v_threshold = np.asarray(self.v_threshold, dtype=np.float64)
        self.leak = np.asarray(self.leak, dtype=np.float64)
        if not self.r.shape == self.v_threshold.shape == self.leak.shape:
            raise SpikebertError(f"SBIF: r {self.r.shape}, v_threshold {self.v_threshold.shape} and leak "
                             f"{self.leak.shape} must share one shape")
        if not np.all(self.v_threshold > 0):
            raise SpikebertError("SBIF: v_threshold must be positive")
        if not np.all((self.leak > 0) & (self.leak <= 1)):
            raise SpikebertError("SBIF: leak must lie in (0, 1]")
        shape = np.array(self.r.shape)
        self.input_type, self.output_type = {"input": shape}, {"output": shape.copy()}


READOUT = "mean over time steps of the output"  # metadata "readout" of every exported student

EXTENSION_NODES: dict[str, type[nir.NIRNode]] = {
    cls.__name__: cls for cls in (SBTokenEmbedding, SBPositionSpikes, SBLayerNorm, SBSpikeAttention, SBSpikeDrivenAttention,
                                  SBTokenMean, SBIF)
}


def _register_with_nir() -> None:
    registry = vars(nir.ir).get("__all_ir")
    if not isinstance(registry, list):
        return  # a future NIR without the private list: read_graph still works
    for name, cls in EXTENSION_NODES.items():
        if name not in registry:
            registry.append(name)
        setattr(nir.ir, name, cls)


_register_with_nir()
