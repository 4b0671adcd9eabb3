"""What every student returns and what every teacher target looks like: one type each.

Both student kinds (SpikeBERT, SpikingBERT; ``spikebert.students``) return a :class:`StudentOutput`;
every target source (online, cached, with attention scores; ``spikebert.targets``) returns
:class:`TeacherTargets`. Distillation, evaluation and recording read these fields, never the kind.
"""

from __future__ import annotations

import dataclasses

import torch


@dataclasses.dataclass
class StudentOutput:
    """A student's forward pass on token ids (B, L).

    ``hidden``: the distillation taps, each (B, L, D): SpikeBERT's T-averaged residual stream after
    each block (depth taps); SpikingBERT's average spike rates of the embedding and each layer's
    output (depth + 1 taps). The optional fields are filled by the kinds that have them.
    """

    logits: torch.Tensor  # (B, C)
    hidden: list[torch.Tensor]
    step_logits: torch.Tensor | None = None  # (T, B, C): SpikeBERT's per-step readout; logits is their mean
    scores: list[torch.Tensor] | None = None  # depth x (B, H, L, L) pre-softmax attention (SpikingBERT training)
    spike_counts: dict[str, dict[str, float]] | None = None  # population -> counts (SpikingBERT, record=True)
    rate_gap: list[float] | None = None  # SpikingBERT training: mean |a_SNN - a_eq| per hidden tap


@dataclasses.dataclass
class TeacherTargets:
    """The teacher's outputs for one batch: ``logits`` (B, C) or None (a bare encoder, or a cache of
    hidden states only), ``hidden`` at the mapped layers, each (B, L, H), and pre-softmax attention
    ``scores`` (B, heads, L, L) per mapped layer when asked for."""

    logits: torch.Tensor | None
    hidden: list[torch.Tensor]
    scores: list[torch.Tensor] | None = None
