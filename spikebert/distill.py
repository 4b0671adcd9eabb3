"""Task distillation of the spiking student from a fine-tuned teacher (SpikeBERT stage 2).

    loss = w_ce * CE(s, y) + w_kd * tau_kd^2 * KL(softmax(t / tau_kd) || softmax(s / tau_kd))
         + w_feat * sum_i MSE(P_i(mean_T block_i), teacher_hidden[map(i)])         (eq. KD)

``s`` are the student's T-averaged logits, ``P_i`` learned projections (Linear + LayerNorm) to the
teacher width, applied to the T-averaged residual stream of block i. With ``mask_padding`` the
feature MSE runs over real tokens only. Unlike the official script, the MSE is not divided by the
batch size a second time.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from spikebert.config import DistillConfig, StudentConfig
from spikebert.data import TextDataset
from spikebert.io import CHECKPOINT_FORMAT, load_checkpoint, save_checkpoint
from spikebert.model import SpikeBERT
from spikebert.teacher import load_teacher, load_tokenizer
from spikebert.tokenize import Batcher, tokenizer_fingerprint

log = logging.getLogger(__name__)


def teacher_layer_map(student_depth: int, teacher_layers: int) -> list[int]:
    """Indices into ``hidden_states`` (0 = embeddings) for each student block.

    Official rule ``hidden_states[1:][::teacher_layers // depth]``: the first layer of each group.
    """
    if student_depth > teacher_layers:
        raise ValueError(f"student depth {student_depth} exceeds the teacher's {teacher_layers} layers")
    step = teacher_layers // student_depth
    return [1 + i * step for i in range(student_depth)]


class FeatureProjector(nn.Module):
    """Per-block Linear(D, D_teacher) + LayerNorm: the distillation taps (not part of inference)."""

    def __init__(self, *, depth: int, dim: int, teacher_dim: int) -> None:
        super().__init__()
        self.proj = nn.ModuleList(
            nn.Sequential(nn.Linear(dim, teacher_dim), nn.LayerNorm(teacher_dim)) for _ in range(depth)
        )

    def forward(self, block_outputs: list[torch.Tensor]) -> list[torch.Tensor]:
        return [p(x) for p, x in zip(self.proj, block_outputs)]


def init_embedding_from_teacher(student: SpikeBERT, teacher) -> None:
    """Copy the teacher's word embeddings (or their top principal components when widths differ).

    Stands in for the official whole-matrix embedding MSE: the student's input spikes become the
    sign pattern of the teacher's embedding.
    """
    w = teacher.get_input_embeddings().weight.detach()
    if w.shape[0] != student.cfg.vocab_size:
        raise ValueError(f"teacher vocab {w.shape[0]} != student vocab {student.cfg.vocab_size}")
    if w.shape[1] != student.cfg.dim:
        centred = w - w.mean(0)
        _, _, v = torch.pca_lowrank(centred, q=student.cfg.dim, center=False)
        w = centred @ v  # (V, D)
        w = w / w.std()
    student.embed.weight.data.copy_(w)


def distill_loss(
    cfg: DistillConfig,
    *,
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    student_feats: list[torch.Tensor],
    teacher_feats: list[torch.Tensor],
    mask: torch.Tensor,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Eq. KD. ``mask`` (B, L) selects the tokens that enter the feature MSE."""
    ce = F.cross_entropy(student_logits, labels)
    tau = cfg.kd_temperature
    kd = F.kl_div(
        F.log_softmax(student_logits / tau, -1), F.softmax(teacher_logits / tau, -1), reduction="batchmean"
    ) * tau**2
    m = mask.unsqueeze(-1).to(student_logits.dtype)  # (B, L, 1)
    feat = sum(
        (((s - t) ** 2) * m).sum() / (m.sum() * s.shape[-1]) for s, t in zip(student_feats, teacher_feats)
    )
    total = cfg.w_ce * ce + cfg.w_kd * kd + cfg.w_feat * feat
    parts = {"ce": ce, "kd": kd, "feat": feat, "loss": total}
    return total, {k: float(v.detach()) if torch.is_tensor(v) else float(v) for k, v in parts.items()}


@torch.no_grad()
def evaluate_student(model: SpikeBERT, batcher: Batcher, data: TextDataset, *, batch_size: int = 64) -> float:
    model.eval()
    correct = 0
    for idx in DataLoader(range(len(data)), batch_size=batch_size):
        enc, labels = batcher(data, idx)
        correct += (model(enc["input_ids"]).logits.argmax(-1) == labels).sum().item()
    return correct / len(data)


def distill(
    student_cfg: StudentConfig,
    cfg: DistillConfig,
    *,
    teacher_dir: str,
    train: TextDataset,
    dev: TextDataset,
    out_path: Path,
    task: str,
) -> dict[str, float]:
    """Train the student, evaluate on dev after every epoch, save the best as ``out_path``."""
    torch.manual_seed(cfg.seed)
    tokenizer = load_tokenizer(teacher_dir)
    teacher = load_teacher(teacher_dir).eval()
    teacher.requires_grad_(False)
    if len(tokenizer) != student_cfg.vocab_size or tokenizer.pad_token_id != student_cfg.pad_token_id:
        raise ValueError(
            f"student vocab/pad ({student_cfg.vocab_size}, {student_cfg.pad_token_id}) do not match the "
            f"teacher tokenizer ({len(tokenizer)}, {tokenizer.pad_token_id})"
        )
    student = SpikeBERT(student_cfg)
    if cfg.embedding_init == "teacher":
        init_embedding_from_teacher(student, teacher)
    layer_map = teacher_layer_map(student_cfg.depth, teacher.config.num_hidden_layers)
    projector = FeatureProjector(depth=student_cfg.depth, dim=student_cfg.dim, teacher_dim=teacher.config.hidden_size)
    params = list(student.parameters()) + list(projector.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    batcher = Batcher(tokenizer, max_len=student_cfg.max_len, pad_to_max=not student_cfg.mask_padding)
    train = train.subset(cfg.train_samples, seed=cfg.seed)
    loader = DataLoader(range(len(train)), batch_size=cfg.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(cfg.seed))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs * len(loader))
    best = {"dev_accuracy": -1.0}
    for epoch in range(cfg.epochs):
        student.train()
        bar = tqdm(loader, desc=f"distill epoch {epoch + 1}/{cfg.epochs}", leave=False)
        for idx in bar:
            enc, labels = batcher(train, idx)
            with torch.no_grad():
                t_out = teacher(**enc, output_hidden_states=True)
            s_out = student(enc["input_ids"])
            mask = enc["attention_mask"].bool()
            if not student_cfg.mask_padding:  # the official loss includes the pads
                mask = torch.ones_like(mask)
            loss, parts = distill_loss(
                cfg,
                student_logits=s_out.logits,
                teacher_logits=t_out.logits,
                labels=labels,
                student_feats=projector(s_out.block_outputs),
                teacher_feats=[t_out.hidden_states[i] for i in layer_map],
                mask=mask,
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            bar.set_postfix(loss=f"{parts['loss']:.3f}")
        acc = evaluate_student(student, batcher, dev)
        log.info("student epoch %d: dev accuracy %.4f (last batch %s)", epoch + 1, acc, parts)
        if acc > best["dev_accuracy"]:
            best = {"dev_accuracy": acc, "epoch": epoch + 1}
            save_student(out_path, student, tokenizer=tokenizer, tokenizer_name=teacher_dir, task=task,
                         metrics=best, distill_cfg=cfg)
    return best


def save_student(path: Path, model: SpikeBERT, *, tokenizer, tokenizer_name: str, task: str,
                 metrics: dict[str, float], distill_cfg: DistillConfig | None = None) -> None:
    """``model.pt``: config + weights + tokenizer identity; loadable with ``weights_only=True``."""
    save_checkpoint(Path(path), {
        "format": CHECKPOINT_FORMAT,
        "config": model.cfg.to_dict(),
        "state_dict": model.state_dict(),
        "tokenizer": str(tokenizer_name),
        "tokenizer_sha256": tokenizer_fingerprint(tokenizer),
        "task": task,
        "metrics": metrics,
        "distill_config": distill_cfg.to_dict() if distill_cfg else {},
    })


def load_student(path: str | Path) -> tuple[SpikeBERT, dict]:
    """Rebuild the student from ``model.pt``; the state dict must match the config exactly."""
    payload = load_checkpoint(path)
    model = SpikeBERT(StudentConfig.from_dict(payload["config"]))
    try:
        model.load_state_dict(payload["state_dict"], strict=True)
    except RuntimeError as err:
        raise ValueError(f"{path}: weights do not match the stored config: {err}") from err
    return model.eval(), payload
