"""Task distillation of the SpikingBERT student (eq. SKD in :class:`~spikebert.config.SpikingDistillConfig`).

Same data, teacher, cache, loop and checkpoints as SpikeBERT's stage 2 (``spikebert.distill``);
what differs is the student (``spikebert.spikingbert``: equilibrium rates, eq. IDE gradients), the
layer map (embedding + every (teacher layers / depth)-th layer, TinyBERT's uniform map) and the
losses (hidden MSE through one shared W_Td, attention-score MSE, the official soft cross-entropy).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from spikebert.config import SpikingBERTConfig, SpikingDistillConfig
from spikebert.contract.errors import SpikebertError
from spikebert.data import TextDataset
from spikebert.distill import (
    _cache,
    _loop,
    check_architecture,
    dev_selection,
    feature_loss,
    init_embedding_from_teacher,
    task_teacher,
    training_data,
)
from spikebert.engine import Trainer
from spikebert.evaluation import evaluate_spikingbert
from spikebert.io import load_model, text_sha256, weights_identity
from spikebert.outputs import StudentOutput
from spikebert.spikingbert import SpikingBERT
from spikebert.targets import OnlineScoredTargets, OnlineTargets
from spikebert.tokenize import Batcher

log = logging.getLogger(__name__)


def spiking_layer_map(depth: int, teacher_layers: int) -> tuple[list[int], list[int]]:
    """(``hidden_states`` indices for [embedding, layer 1..depth], encoder-layer indices of the
    attention scores for layers 1..depth): student layer m <-> teacher layer m k, k = teacher / depth."""
    if depth > teacher_layers or teacher_layers % depth:
        raise SpikebertError(f"the teacher's {teacher_layers} layers must be a multiple of the student depth {depth} "
                         "(the official uniform map, which asserts it); choose a depth dividing "
                         f"{teacher_layers}")
    k = teacher_layers // depth
    return [m * k for m in range(depth + 1)], [m * k - 1 for m in range(1, depth + 1)]


def head_groups(student_heads: int, teacher_heads: int) -> int:
    """How many teacher heads are averaged into one student head for the attention MSE."""
    if teacher_heads % student_heads:
        raise SpikebertError(f"attention distillation needs the teacher's {teacher_heads} heads to be a multiple of "
                         f"the student's {student_heads}: choose heads dividing {teacher_heads}, or --set w_att=0")
    return teacher_heads // student_heads


class SpikingDistillModel(nn.Module):
    """The student and the shared hidden map W_Td (a Linear(D, D_teacher), the official ``fit_dense``)."""

    def __init__(self, student: SpikingBERT, *, teacher_dim: int) -> None:
        super().__init__()
        self.student = student
        self.fit_dense = nn.Linear(student.cfg.dim, teacher_dim)

    def forward(self, input_ids: torch.Tensor) -> tuple[StudentOutput, list[torch.Tensor]]:
        out = self.student(input_ids)
        return out, [self.fit_dense(h) for h in out.hidden]


def attention_loss(student_scores: list[torch.Tensor], teacher_scores: list[torch.Tensor],
                   mask: torch.Tensor) -> torch.Tensor:
    """ATT of eq. SKD: per-layer MSE over real (query, key) pairs and heads, summed over layers.

    Teacher heads are averaged in consecutive groups down to the student's count. Restricting to
    real pairs replaces TinyBERT's zeroing of masked scores (<= -100) and leaves pad queries out."""
    pair = (mask[:, None, :, None] & mask[:, None, None, :]).to(student_scores[0].dtype)  # (B, 1, L, L)
    total = student_scores[0].new_zeros(())
    for s, t in zip(student_scores, teacher_scores, strict=True):
        B, Hs, L, _ = s.shape
        g = head_groups(Hs, t.shape[1])
        t = t.to(s.dtype).view(B, Hs, g, L, L).mean(2)  # (B, Hs, L, L)
        total = total + (((s - t) ** 2) * pair).sum() / (pair.sum() * Hs)
    return total


def prediction_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """PRED of eq. SKD: the official soft cross-entropy, a mean over batch x classes (1/C of the usual)."""
    t = F.softmax(teacher_logits.to(student_logits.dtype) / temperature, -1)
    return (-t * F.log_softmax(student_logits / temperature, -1)).mean()


def spiking_distill_loss(cfg: SpikingDistillConfig, *, out: StudentOutput, projected: list[torch.Tensor],
                         teacher_logits: torch.Tensor, teacher_hidden: list[torch.Tensor],
                         teacher_scores: list[torch.Tensor] | None, labels: torch.Tensor,
                         mask: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """Eq. SKD; terms with weight 0 are not computed (their targets may be absent)."""
    parts = {}
    if cfg.w_hid:
        parts["hid"] = (cfg.w_hid, feature_loss(projected, teacher_hidden, mask))
    if cfg.w_att:
        parts["att"] = (cfg.w_att, attention_loss(out.scores, teacher_scores, mask))
    if cfg.w_pred:
        parts["pred"] = (cfg.w_pred, prediction_loss(out.logits, teacher_logits, cfg.temperature))
    if cfg.w_ce:
        parts["ce"] = (cfg.w_ce, F.cross_entropy(out.logits, labels))
    total = sum(w * v for w, v in parts.values())
    logged = {k: float(v.detach()) for k, (_, v) in parts.items()}
    logged["loss"] = float(total.detach())
    if out.rate_gap is not None:  # how far the simulated rates are from the rate network's (the notes' diagnostic)
        logged["rate_gap_last"] = out.rate_gap[-1]
    return total, logged


def distill_spikingbert(
    student_cfg: SpikingBERTConfig,
    cfg: SpikingDistillConfig,
    *,
    teacher_dir: str,
    train: TextDataset,
    dev: TextDataset,
    run_dir: Path,
    task: str,
    init: str | Path | None = None,
    resume: bool = True,
    stop_after_minutes: float = 0.0,
    stop_after_steps: int = 0,
) -> dict[str, float]:
    """Train the SpikingBERT student on ``train``, select on dev accuracy (simulated for T steps).

    ``init``: a SpikingBERT ``model.pt`` of the same architecture (the second official task stage
    starts from the first). The best student goes to ``run_dir/model.pt``; when no loss reaches the
    classifier (``w_pred = w_ce = 0``, the official intermediate stage) its dev accuracy says nothing,
    and ``model.pt`` is the last epoch's, as the official code keeps it.
    """
    run_dir = Path(run_dir)
    if student_cfg.leak != 1.0:
        raise SpikebertError(f"leak={student_cfg.leak}: training backpropagates through the IF equilibrium "
                         "clamp(I/theta, 0, 1), which a leaky neuron does not reach (its rate is lower and zero "
                         "below a current of (1 - leak) theta / leak); train with leak=1 (the paper's IF). A leaky "
                         "student can be evaluated and simulated, not trained here")
    head_trained = bool(cfg.w_pred or cfg.w_ce)
    if not head_trained:
        log.warning("w_pred = w_ce = 0: no loss reaches the classifier, so dev accuracy is that of an untrained "
                    "head; model.pt is the last epoch's (the official intermediate stage), not the best")
    torch.manual_seed(cfg.seed)
    tokenizer, teacher = task_teacher(student_cfg, teacher_dir)
    hidden_layers, score_layers = spiking_layer_map(student_cfg.depth, teacher.config.num_hidden_layers)
    if cfg.w_att:
        head_groups(student_cfg.heads, teacher.config.num_attention_heads)  # fail before any work
    student = SpikingBERT(student_cfg)
    if init:
        _load_init(student, init)
    elif cfg.embedding_init == "teacher":
        init_embedding_from_teacher(student, teacher)
    model = SpikingDistillModel(student, teacher_dim=teacher.config.hidden_size)

    teacher_emb = teacher.get_input_embeddings().weight.detach()
    train, data, is_aug = training_data(train, cfg, tokenizer=tokenizer, teacher_emb=teacher_emb)
    if cfg.w_att:  # scores are (L x L) per head and layer: the teacher runs on every batch
        targets = OnlineScoredTargets(teacher, hidden_layers, score_layers)
    elif cfg.teacher_cache:
        targets = _cache(run_dir, teacher=teacher, teacher_dir=teacher_dir, tokenizer=tokenizer,
                         max_len=student_cfg.max_len, sentences=data.sentences, layers=hidden_layers)
    else:
        targets = OnlineTargets(teacher, hidden_layers)
    batcher = Batcher(tokenizer, max_len=student_cfg.max_len)
    loop = _loop(cfg, schedule=cfg.schedule, warmup_ratio=cfg.warmup_ratio, max_grad_norm=cfg.max_grad_norm)
    trainer = Trainer(run_dir=run_dir, model=model, cfg=loop, n_examples=len(data), desc="distill spikingbert",
                      fingerprint={"method": "spikingbert", "student": student_cfg,
                                   "distill": cfg, "data_sha256": text_sha256(data.sentences),
                                   "teacher": weights_identity(teacher_dir),
                                   "init": weights_identity(init) if init else ""},
                      resume=resume)
    student_cfg.to_json(run_dir / "student_config.json")
    cfg.to_json(run_dir / "distill_config.json")
    device = trainer.acc.device

    def step(m, idx):
        enc, labels = batcher(data, idx)
        t = targets(idx, enc)
        t_logits, t_hidden = t.logits, t.hidden
        t_scores = None if t.scores is None else [s.to(device) for s in t.scores]
        labels = torch.where(is_aug[idx], t_logits.argmax(-1).cpu(), labels)  # teacher labels for augmented rows
        enc = {k: v.to(device) for k, v in enc.items()}
        out, projected = m(enc["input_ids"])
        return spiking_distill_loss(cfg, out=out, projected=projected, teacher_logits=t_logits.to(device),
                                    teacher_hidden=[h.to(device) for h in t_hidden], teacher_scores=t_scores,
                                    labels=labels.to(device), mask=enc["attention_mask"].bool())

    evaluate, save_best = dev_selection(batcher, dev, run_dir=run_dir, tokenizer=tokenizer, teacher_dir=teacher_dir,
                                        task=task, cfg=cfg, evaluate_fn=evaluate_spikingbert)
    state = trainer.fit(step, evaluate, save_best, stop_after_minutes=stop_after_minutes,
                        stop_after_steps=stop_after_steps, keep="best" if head_trained else "last")
    return {"dev_accuracy": state.best_metric, "epoch": state.best_epoch, "train_sentences": len(train),
            "augmented_sentences": len(data) - len(train)}


def _load_init(student: SpikingBERT, path: str | Path) -> None:
    """Weights of an earlier SpikingBERT run of the same architecture (dynamics fields may differ)."""
    previous, _ = load_model(path, SpikingBERT)  # a SpikeBERT checkpoint: an error naming both formats
    check_architecture(f"--init {path}", previous.cfg, student.cfg,
                       ("vocab_size", "num_classes", "max_len", "dim", "depth", "heads", "mlp_ratio"))
    student.load_state_dict(previous.state_dict(), strict=True)
    log.info("initialised from %s", path)
