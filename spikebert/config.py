"""Frozen, keyword-only configuration dataclasses, saved as JSON beside the weights.

Every stage has one config. ``from_dict`` rejects unknown keys and wrong types with a message
that names the key, so a stale or hand-edited JSON file fails loudly instead of being ignored.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from spikebert.contract.errors import SpikebertError, UnsupportedError

C = TypeVar("C", bound="ConfigBase")
Precision = typing.Literal["no", "fp16", "bf16"]  # accelerate's mixed_precision


@dataclasses.dataclass(frozen=True, kw_only=True)
class ConfigBase:
    """Shared JSON (de)serialisation with strict key and type checks."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def field_defaults(cls) -> dict[str, Any]:
        """The fields that have a default, as :meth:`to_dict` writes them. A run folder's fingerprint uses them: a
        field added after the run started, at its default, is the run that started (spikebert.engine)."""
        out = {}
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING:
                value = f.default
            elif f.default_factory is not dataclasses.MISSING:
                value = f.default_factory()
            else:
                continue
            out[f.name] = dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
        return out

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any]) -> C:
        """The config of ``data`` (a JSON object's content): unknown and missing keys, wrong types (an int is not a
        bool or 3.0), non-finite floats and values outside a field's domain (:data:`DOMAINS`) raise SpikebertError."""
        if not isinstance(data, dict):
            raise UnsupportedError(f"{cls.__name__}: expected a JSON object, got {type(data).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(map(str, set(data) - set(fields)))
        if unknown:
            raise SpikebertError(
                f"{cls.__name__}: unknown key(s) {unknown}; valid keys are {sorted(fields)}"
            )
        missing = sorted(name for name, f in fields.items() if name not in data and f.default is dataclasses.MISSING
                         and f.default_factory is dataclasses.MISSING)
        if missing:
            raise SpikebertError(f"{cls.__name__}: required key(s) {missing} missing")
        hints = typing.get_type_hints(cls)
        data = dict(data)
        domains = DOMAINS.get(cls.__name__, {})
        for key, value in data.items():
            nested = _nested_config(hints[key])
            if nested is not None and isinstance(value, dict):
                data[key] = nested.from_dict(value)
                continue
            _check_type(cls.__name__, key, value, hints[key])
            if key in domains and value is not None and not domains[key][0](value):
                raise SpikebertError(f"{cls.__name__}.{key} must be {domains[key][1]}, got {value!r:.60}")
        config = cls(**data)
        for rule, why in RULES.get(cls.__name__, ()):
            if not rule(config):
                raise SpikebertError(f"{cls.__name__}: {why}")
        return config

    def to_json(self, path: str | Path) -> None:
        from spikebert.contract.fileio import atomic_write_text

        atomic_write_text(Path(path), json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def from_json(cls: type[C], path: str | Path) -> C:
        """The config in a JSON file; every error (unreadable file, invalid JSON, a :meth:`from_dict` error) is a
        SpikebertError naming the file."""
        from spikebert.contract.jsonfile import read_json

        data = read_json(path, what=f"{cls.__name__} file")
        try:
            return cls.from_dict(data)
        except SpikebertError as err:
            raise type(err)(f"{path}: {err}") from err


def _nested_config(hint: Any) -> type[ConfigBase] | None:
    """The ConfigBase subclass in ``hint`` (``X`` or ``X | None``), if any."""
    for h in (hint, *typing.get_args(hint)):
        if isinstance(h, type) and issubclass(h, ConfigBase):
            return h
    return None


def _check_type(owner: str, key: str, value: Any, hint: Any) -> None:
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        allowed = typing.get_args(hint)
        if value not in allowed:
            raise SpikebertError(f"{owner}.{key}: {value!r} is not one of {allowed}")
        return
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return
        hint = next(a for a in args if a is not type(None))
    if isinstance(hint, type) and issubclass(hint, ConfigBase):
        if not isinstance(value, hint):
            raise UnsupportedError(f"{owner}.{key}: expected a {hint.__name__} object, got {type(value).__name__}")
        return
    expected = {float: (int, float), int: (int,), bool: (bool,), str: (str,)}.get(hint)
    if expected is None:
        return
    if isinstance(value, bool) and hint is not bool:
        raise UnsupportedError(f"{owner}.{key}: expected {hint.__name__}, got bool {value!r}")
    if not isinstance(value, expected):
        raise UnsupportedError(f"{owner}.{key}: expected {hint.__name__}, got {type(value).__name__} {value!r:.60}")
    if hint is float and isinstance(value, float) and not math.isfinite(value):
        raise SpikebertError(f"{owner}.{key}: {value!r} is not a finite number")
    if hint in (int, float) and isinstance(value, int) and not -(2**63) <= value < 2**63:
        raise SpikebertError(f"{owner}.{key}: an integer of {value.bit_length()} bits does not fit in 64 bits")


def _at_least(n: int) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: v >= n), f">= {n}"


_POSITIVE = ((lambda v: v > 0), "> 0")
_RATE = ((lambda v: 0 <= v <= 1), "in [0, 1]")
_SEED = ((lambda v: 0 <= v < 2**32), "in [0, 2**32)")
_NAME = ((lambda v: bool(v.strip())), "a non-empty string")
# the students' sizes, also checked by their __post_init__, but here before it runs (heads = 0 would divide by zero)
_SIZES = dict(vocab_size=_at_least(1), num_classes=_at_least(1), max_len=_at_least(1), dim=_at_least(1),
              depth=_at_least(1), heads=_at_least(1), time_steps=_at_least(1), pad_token_id=_at_least(0))
_MLP_WIDTH = ((lambda c: 0.5 < c.dim * c.mlp_ratio < 2**63),
              "dim * mlp_ratio must round to a width of at least 1 that fits in 64 bits")

# class -> field -> (test, what the value must be): the domain of each field, checked by ``from_dict`` (every config
# file and --set value) besides the class's own ``__post_init__`` rules
DOMAINS: dict[str, dict[str, tuple[Callable[[Any], bool], str]]] = {
    "StudentConfig": dict(**_SIZES, mlp_ratio=_POSITIVE, threshold=_POSITIVE, attn_threshold=_POSITIVE, qk_scale=_POSITIVE,
                          surrogate_alpha=_POSITIVE, layer_norm_eps=_POSITIVE),
    "TeacherConfig": dict(model=_NAME, max_len=_at_least(1), train_samples=_at_least(0), epochs=_at_least(1),
                          batch_size=_at_least(1), lr=_POSITIVE, weight_decay=_at_least(0), warmup_ratio=_RATE,
                          seed=_SEED),
    "AugmentConfig": dict(seed=_SEED),
    "PretrainConfig": dict(teacher=_NAME, corpus=_NAME, max_samples=_at_least(0), epochs=_at_least(1),
                           batch_size=_at_least(1), lr=_POSITIVE, weight_decay=_at_least(0), w_feat=_POSITIVE,
                           checkpoint_every=_at_least(0), seed=_SEED),
    "DistillConfig": dict(train_samples=_at_least(0), epochs=_at_least(1), batch_size=_at_least(1), lr=_POSITIVE,
                          weight_decay=_at_least(0), w_ce=_at_least(0), w_kd=_at_least(0), w_feat=_at_least(0),
                          w_emb=_at_least(0), kd_temperature=_POSITIVE, kd_temperature_final=_at_least(0),
                          checkpoint_every=_at_least(0), seed=_SEED, ema_decay=((lambda v: 0 <= v < 1), "in [0, 1)"),
                          ema_bn_batches=_at_least(0)),
    "SpikingBERTConfig": dict(**_SIZES, mlp_ratio=_POSITIVE, layer_norm_eps=_POSITIVE),
    "SpikingDistillConfig": dict(train_samples=_at_least(0), epochs=_at_least(1), batch_size=_at_least(1),
                                 lr=_POSITIVE, warmup_ratio=_RATE, weight_decay=_at_least(0),
                                 max_grad_norm=_at_least(0), checkpoint_every=_at_least(0), seed=_SEED),
}
# class -> (test of the whole config, why it fails): rules across fields, checked by ``from_dict``
RULES: dict[str, tuple[tuple[Callable[[Any], bool], str], ...]] = {
    "StudentConfig": (_MLP_WIDTH,),
    "SpikingBERTConfig": (_MLP_WIDTH,),
    "DistillConfig": (((lambda c: c.w_ce + c.w_kd + c.w_feat + c.w_emb > 0),
                       "every loss weight is 0; set at least one of w_ce, w_kd, w_feat, w_emb"),),
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class StudentConfig(ConfigBase):
    """SpikeBERT student (Spikformer for text). Defaults follow the official stage-2 code where
    it is unambiguous; every departure is a field (see README, "Faithfulness decisions")."""

    vocab_size: int
    num_classes: int = 2
    max_len: int = 64
    dim: int = 384
    depth: int = 2
    heads: int = 8  # official code: 8 heads (not BERT's 12)
    mlp_ratio: float = 4.0  # official MLP width cannot be read from the repo (bug); 4x assumed
    time_steps: int = 4  # T
    tau: float = 2.0  # official stage 2: tau = 2 -> beta = 1 - 1/tau = 0.5, input scaled by 1/tau
    threshold: float = 1.0
    attn_threshold: float = 0.5  # official: common_thr / 2
    qk_scale: float = 0.125  # official: applied after (Q K^T) V
    # "fixed": qk_scale for every head (official); "learned-per-head": one trained scale per head, starting at qk_scale.
    # With the attention LIF's reset to zero, a head's scale s and the threshold attn_threshold / s are the same
    # neuron, so this is also a learned per-head attention threshold. Exported as SBSpikeAttention's per-head scale;
    # Loihi fixed point holds one multiplier per population and refuses it.
    attn_scale: typing.Literal["fixed", "learned-per-head"] = "fixed"
    norm: typing.Literal["layer", "batch"] = "layer"  # paper: LayerNorm; "batch" folds into the Linear at export
    mask_padding: bool = True  # official code lets pads into attention and the token mean
    position_embedding: bool = False  # official: none; True adds a learned (max_len, D) table before the spikes
    # Positions added to the token embedding before the spikes (currents): "none" (official), "learned" (the same as
    # position_embedding=True), "sinusoidal" (Vaswani et al.'s fixed table, scaled by position_scale). "spikes": a
    # position population (neuron l fires at every step while a real token sits at position l) whose spikes reach
    # the membrane stream through a learned synapse (max_len -> dim, no bias, starting at zero): the learned table
    # as accumulates on binary spikes instead of host-side currents. Needs residual="membrane" (with "spike" the
    # encoder's threshold runs on the host, before any synapse). Exported as SBPositionSpikes -> Conv1d.
    position_encoding: typing.Literal["none", "learned", "sinusoidal", "spikes"] = "none"
    position_scale: float = 1.0  # sinusoidal table scale (the token embedding is N(0, 1) per feature)
    # "spike": SEW sums of spikes (official; the stream carries integers); "membrane": the shortcut adds to the
    # membrane stream and an LIF at each block input spikes it, so every synaptic layer reads binary spikes
    # (Spike-driven Transformer V1's membrane shortcut)
    residual: typing.Literal["spike", "membrane"] = "spike"
    # the snnTorch neuron of every population (spikebert.neurons.NEURONS); "leaky" = snn.Leaky, reset to zero (the
    # paper's LIF, with a fused fast path), the only one with a NIR/Lava form
    neuron: typing.Literal["leaky", "leaky-subtract", "synaptic"] = "leaky"
    # "ssa": the paper's spiking self-attention (Q K^T) V * scale -> LIF, quadratic in length; "sdsa": Spike-driven
    # Transformer's spike-driven self-attention as its official code computes it, SN(sum over tokens of K * V) * Q
    # (mask and add, linear in length; SN = an LIF at attn_threshold), exported as SBSpikeDrivenAttention.
    attention: typing.Literal["ssa", "sdsa"] = "ssa"
    # Relative positions in the 'ssa' attention (Shaw et al. 2018's relative bias, without softmax): head h adds
    # a learned b_h[clip(j - i, -R, R)] to its coincidence counts, Y_h = scale (Q_h K_h^T + B_h) V_h, with
    # R = relative_distance (0 = off, the paper). V is binary, so B_h V is accumulates: a learned mixing of the
    # neighbours' V spikes that depends on their distance, not on the content. Exported as SBSpikeAttention's
    # relative_bias, in coincidence units.
    relative_distance: int = 0
    # "shift": head h starts with 1/qk_scale at offset 0, -1, +1, -2, +2, ..., +-(R - 1), cycling when there are
    # more heads (one coincidence's worth of current per V spike: each head first copies one neighbour's V, so
    # order is read from the first step; +-R are the clipped buckets, so no head starts there); "zero": starts
    # at 0 (at the student's learning rate it then moves by about lr per step, in coincidence units)
    relative_init: typing.Literal["shift", "zero"] = "shift"
    pad_token_id: int = 0
    surrogate_alpha: float = 2.0  # ATan surrogate, as SpikingJelly's default in the official code
    layer_norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        if self.dim % self.heads:
            raise SpikebertError(f"StudentConfig: dim={self.dim} is not divisible by heads={self.heads}")
        for name in ("vocab_size", "num_classes", "max_len", "dim", "depth", "heads", "time_steps"):
            if getattr(self, name) < 1:
                raise SpikebertError(f"StudentConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.tau < 1.0:
            raise SpikebertError(f"StudentConfig.tau must be >= 1 (beta = 1 - 1/tau in [0, 1)), got {self.tau}")
        if not 0 <= self.pad_token_id < self.vocab_size:
            raise SpikebertError(f"StudentConfig.pad_token_id={self.pad_token_id} outside the vocabulary")
        if self.attn_scale != "fixed" and self.attention != "ssa":
            raise SpikebertError(f"StudentConfig: attn_scale={self.attn_scale!r} scales the 'ssa' attention product; "
                                 f"attention={self.attention!r} has no scale")
        if self.relative_distance < 0:
            raise SpikebertError(f"StudentConfig.relative_distance must be >= 0 (0 = off), got {self.relative_distance}")
        if self.relative_distance >= self.max_len:
            raise SpikebertError(f"StudentConfig.relative_distance={self.relative_distance} reaches past max_len="
                                 f"{self.max_len}: distances are at most max_len - 1")
        if self.relative_distance and self.attention != "ssa":
            raise SpikebertError(f"StudentConfig: relative_distance={self.relative_distance} biases the 'ssa' "
                                 f"attention's counts; attention={self.attention!r} has none (set relative_distance=0)")
        if self.position_encoding == "spikes" and self.residual != "membrane":
            raise SpikebertError(f"StudentConfig: position_encoding='spikes' sends positions through a synapse into "
                                 f"the membrane stream; residual={self.residual!r} thresholds the embedding on the "
                                 "host first. Use residual='membrane', or positions as currents ('learned')")
        if self.position_embedding and self.position_encoding not in ("none", "learned"):
            raise SpikebertError(f"StudentConfig: position_embedding=true (a learned table) contradicts "
                                 f"position_encoding={self.position_encoding!r}; set only position_encoding")

    @property
    def positions(self) -> str:
        """The position encoding in force: ``position_embedding=True`` is the older spelling of "learned"."""
        return "learned" if self.position_embedding else self.position_encoding

    @property
    def mlp_dim(self) -> int:
        return int(round(self.dim * self.mlp_ratio))


@dataclasses.dataclass(frozen=True, kw_only=True)
class TeacherConfig(ConfigBase):
    """Teacher fine-tuning (BERT family from the HF hub or a local path)."""

    model: str = "minilm-offline"  # resolved by spikebert.teacher.resolve_teacher_name
    max_len: int = 64
    train_samples: int = 0  # 0 = the whole train split
    epochs: int = 3
    batch_size: int = 32
    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    mixed_precision: Precision = "no"
    seed: int = 42
    # Scripts the teacher's vocabulary does not cover (spikebert.teacher.extend_vocabulary): "auto" adds the task's
    # uncovered characters as tokens when at least unk_threshold of its training tokens are [UNK] (the offline
    # English MiniLM on Chinese reviews: 66 %); "always", "off". Teacher and student share the extended vocabulary.
    extend_vocab: typing.Literal["auto", "always", "off"] = "auto"
    unk_threshold: float = 0.2
    new_token_min_count: int = 2  # a character is added when it occurs at least this often in the training text


@dataclasses.dataclass(frozen=True, kw_only=True)
class AugmentConfig(ConfigBase):
    """Tang et al. 2019 augmentation. Defaults are the official script's (``n_iter``, ``p_mask``,
    ``p_pos``, ``p_ng``); see the module docstring for the procedure."""

    n_samples: int = 20  # copies drawn per sentence, before duplicates are dropped
    p_mask: float = 0.1
    p_replace: float = 0.1
    p_ngram: float = 0.25
    max_ngram: int = 5
    replacement: typing.Literal["neighbours", "pos"] = "neighbours"
    neighbours: int = 15  # k of the k-nearest-neighbour substitutes
    dedupe: typing.Literal["corpus", "sentence"] = "corpus"
    seed: int = 42

    def __post_init__(self) -> None:
        for name in ("p_mask", "p_replace", "p_ngram"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise SpikebertError(f"AugmentConfig.{name} must be in [0, 1], got {getattr(self, name)}")
        if self.p_mask + self.p_replace > 1.0:
            raise SpikebertError(
                f"AugmentConfig: p_mask + p_replace = {self.p_mask + self.p_replace} > 1; lower one of them"
            )
        for name in ("n_samples", "max_ngram", "neighbours"):
            if getattr(self, name) < 1:
                raise SpikebertError(f"AugmentConfig.{name} must be >= 1, got {getattr(self, name)}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class PretrainConfig(ConfigBase):
    """Stage 1, pre-training distillation: T-averaged block outputs, through learned projections,
    matched to the base (not fine-tuned) teacher's hidden states on unlabelled text (eq. FEAT only).

    ``corpus``: "+"-joined sources: ``wikitext-2`` (the raw WikiText-2 files under the data dir),
    ``task`` (the task's training sentences, labels unused), ``hf:<name>[:<config>]`` (an HF text
    dataset's train split, online). Official: BookCorpus + Wikipedia, one pass, lr 5e-5, batch 16.
    """

    teacher: str = "minilm-offline"  # the base model, before task fine-tuning
    corpus: str = "wikitext-2+task"
    max_samples: int = 0  # 0 = all
    epochs: int = 1
    batch_size: int = 16
    lr: float = 5e-5
    weight_decay: float = 0.01
    w_feat: float = 1.0  # official .sh rep_weight
    teacher_cache: bool = False  # one pass over the corpus: the teacher runs online
    embedding_init: typing.Literal["teacher", "random"] = "teacher"
    mixed_precision: Precision = "no"
    checkpoint_every: int = 200
    seed: int = 42


@dataclasses.dataclass(frozen=True, kw_only=True)
class DistillConfig(ConfigBase):
    """Stage 2, task distillation. Loss weights and optimiser are the official script's values:

        loss = w_ce CE + w_kd KL_tau + w_feat FEAT + w_emb EMB                                (eq. KD)

    ``augment``: Tang et al. augmentation of the training sentences, labelled by the teacher's soft
    outputs (``None`` = off, as the official SST-2 script; the official default is on).
    """

    train_samples: int = 0  # 0 = the whole train split (before augmentation)
    epochs: int = 30
    batch_size: int = 32
    lr: float = 5e-4
    weight_decay: float = 5e-3
    w_ce: float = 0.1
    w_kd: float = 1.0
    # official: w_feat 0.1 on an MSE divided by the batch size (32) a second time; our MSE is a plain
    # mean, so the official balance of the terms is w_feat = 0.1 / 32
    w_feat: float = 0.003125
    w_emb: float = 0.1
    kd_temperature: float = 1.0  # official: no temperature
    # 0 = off (the temperature stays kd_temperature). With a value > 0 the temperature moves linearly, step by
    # step, from kd_temperature at the first step to this at the last (softer targets early, sharper late)
    kd_temperature_final: float = 0.0
    emb_rows: typing.Literal["vocab", "batch"] = "vocab"  # official: the whole vocabulary matrix
    embedding_init: typing.Literal["teacher", "random"] = "teacher"  # official: random N(0, 1)
    augment: AugmentConfig | None = AugmentConfig()
    teacher_cache: bool = True  # teacher logits and features computed once, reused every epoch
    mixed_precision: Precision = "no"
    checkpoint_every: int = 200
    seed: int = 42
    # 0 = off (official: the trained weights are the student). With 0 < d < 1 the student that is evaluated,
    # selected on dev and saved is an exponential moving average of the trained weights, batch-norm statistics
    # included: avg <- d avg + (1 - d) w after every step (torch.optim.swa_utils.AveragedModel)
    ema_decay: float = 0.0
    # with ema_decay > 0: 0 = the average's batch-norm statistics are averaged along with its weights; N > 0 =
    # recomputed for the averaged weights on N training batches before each evaluation (as SWA's update_bn). The
    # averaged statistics keep (ema_decay ** steps) of the first step's, which were still near their start (var 1)
    ema_bn_batches: int = 0


@dataclasses.dataclass(frozen=True, kw_only=True)
class SpikingBERTConfig(ConfigBase):
    """SpikingBERT student. Defaults follow the official ``SpikingBERT4`` code where it is
    unambiguous (IF, theta 1, dropout 0.1, LayerNorm eps 1e-12, GELU); size fields are free."""

    vocab_size: int
    num_classes: int = 2
    max_len: int = 64
    dim: int = 256
    depth: int = 2
    heads: int = 4  # d_h = 64 as BERT; a divisor of the teacher's heads keeps attention distillation
    mlp_ratio: float = 4.0  # BERT: intermediate 3072 = 4 x 768
    time_steps: int = 16  # T_conv: official default 100 (README example 125); notes: ~16 is near the best
    threshold: float = 1.0  # V_th, the same for every population (official --vth, fac = 1)
    leak: float = 1.0  # gamma: 1 = IF (every released model); 0 < gamma < 1 = LIF
    hidden_dropout: float = 0.1
    attention_dropout: float = 0.1  # a new mask every simulated step, as the official forward
    layer_norm_eps: float = 1e-12
    pooling: typing.Literal["cls", "mean"] = "cls"  # official: the [CLS] rate; "mean": mean over real tokens
    train_forward: typing.Literal["snn", "rate"] = "snn"  # "rate": train the rate network alone (no simulation)
    pad_token_id: int = 0

    def __post_init__(self) -> None:
        for name in ("vocab_size", "num_classes", "max_len", "dim", "depth", "heads", "time_steps"):
            if getattr(self, name) < 1:
                raise SpikebertError(f"SpikingBERTConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.dim % self.heads:
            raise SpikebertError(f"SpikingBERTConfig: dim={self.dim} is not divisible by heads={self.heads}")
        if not self.threshold > 0:
            raise SpikebertError(f"SpikingBERTConfig.threshold must be > 0, got {self.threshold}")
        if not 0 < self.leak <= 1:
            raise SpikebertError(f"SpikingBERTConfig.leak must be in (0, 1] (1 = IF), got {self.leak}")
        for name in ("hidden_dropout", "attention_dropout"):
            if not 0 <= getattr(self, name) < 1:
                raise SpikebertError(f"SpikingBERTConfig.{name} must be in [0, 1), got {getattr(self, name)}")
        if not 0 <= self.pad_token_id < self.vocab_size:
            raise SpikebertError(f"SpikingBERTConfig.pad_token_id={self.pad_token_id} outside the vocabulary")

    @property
    def mlp_dim(self) -> int:
        return int(round(self.dim * self.mlp_ratio))


@dataclasses.dataclass(frozen=True, kw_only=True)
class SpikingDistillConfig(ConfigBase):
    """Task distillation of the SpikingBERT student (``spikebert train distill --method spikingbert``):

        loss = w_hid HID + w_att ATT + w_pred PRED + w_ce CE                              (eq. SKD)

    HID = sum_m MSE(a_m W_Td, H_teacher[g(m)]) over real tokens, one shared W_Td, m = embedding and
    every layer, g(m) = m x (teacher layers / depth); ATT = sum_m MSE(A_m, A_teacher[g(m)]) of the
    pre-softmax scores over real (query, key) pairs, the teacher's heads averaged in groups when it
    has a multiple of the student's (the official code needs equal counts); PRED = the official soft
    cross-entropy, mean over batch x classes of -softmax(t/tau) log_softmax(s/tau); CE on the labels
    (the official ``--train_true_labels``, off by default).

    The official task stages are IKD (HID + ATT, 10 epochs) then prediction distillation (PRED);
    the default here sums them in one run, and the two stages are ``--set w_pred=0`` then
    ``--set w_hid=0 --set w_att=0 --init RUN/model.pt``. Optimiser as the official BertAdam: lr 5e-5,
    constant, weight decay 0.01, gradient norm clipped at 1.
    """

    train_samples: int = 0  # 0 = the whole train split (before augmentation)
    epochs: int = 10
    batch_size: int = 32
    lr: float = 5e-5
    schedule: typing.Literal["constant", "linear", "cosine"] = "constant"  # official stage 2: constant
    warmup_ratio: float = 0.0
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    w_hid: float = 1.0
    w_att: float = 1.0  # needs teacher heads = a multiple of student heads; 0 lets the teacher targets be cached
    w_pred: float = 1.0
    w_ce: float = 0.0
    temperature: float = 1.0
    embedding_init: typing.Literal["teacher", "random"] = "teacher"  # official: from general distillation
    augment: AugmentConfig | None = None  # whether the paper augmented is unknown (official: train_aug.tsv optional)
    teacher_cache: bool = True  # logits and hidden states cached when w_att = 0 (scores are L x L: always online)
    mixed_precision: Precision = "no"
    checkpoint_every: int = 200
    seed: int = 42

    def __post_init__(self) -> None:
        for name in ("w_hid", "w_att", "w_pred", "w_ce"):
            if getattr(self, name) < 0:
                raise SpikebertError(f"SpikingDistillConfig.{name} must be >= 0, got {getattr(self, name)}")
        if not self.w_hid + self.w_att + self.w_pred + self.w_ce > 0:
            raise SpikebertError("SpikingDistillConfig: every loss weight is 0; set at least one of w_hid, w_att, "
                             "w_pred, w_ce")
        if not self.temperature > 0:
            raise SpikebertError(f"SpikingDistillConfig.temperature must be > 0, got {self.temperature}")
