"""Fine-tune the BERT-family teacher on a task with dropout on, selecting on dev."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import torch

from spikebert.config import TeacherConfig
from spikebert.contract.fileio import replace_folder
from spikebert.data import TextDataset, task_classes
from spikebert.engine import LoopConfig, Trainer
from spikebert.io import text_sha256, weights_identity
from spikebert.teacher import evaluate_teacher, extend_vocabulary, load_teacher, load_tokenizer
from spikebert.tokenize import Batcher


def finetune_teacher(cfg: TeacherConfig, train: TextDataset, dev: TextDataset, run_dir: Path, *,
                     resume: bool = True, stop_after_minutes: float = 0.0, stop_after_steps: int = 0) -> float:
    """Fine-tune with dropout on in every epoch, select on dev; the best model goes to ``run_dir/model``.

    Resumable (``run_dir/state.pt``), metrics in ``run_dir/metrics.jsonl``. Returns the best dev accuracy.
    """
    run_dir = Path(run_dir)
    torch.manual_seed(cfg.seed)
    tokenizer = load_tokenizer(cfg.model)
    model = load_teacher(cfg.model, num_labels=task_classes(train, dev))
    added = extend_vocabulary(tokenizer, train.sentences, policy=cfg.extend_vocab, unk_threshold=cfg.unk_threshold,
                              min_count=cfg.new_token_min_count)
    if added:  # the new rows start at the mean embedding (transformers' default); the student reads len(tokenizer)
        model.resize_token_embeddings(len(tokenizer))
    batcher = Batcher(tokenizer, max_len=cfg.max_len)
    train = train.subset(cfg.train_samples, seed=cfg.seed)
    loop = LoopConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=cfg.weight_decay,
                      seed=cfg.seed, schedule="linear", warmup_ratio=cfg.warmup_ratio, max_grad_norm=1.0,
                      mixed_precision=cfg.mixed_precision)
    trainer = Trainer(run_dir=run_dir, model=model, cfg=loop, n_examples=len(train), desc="teacher",
                      fingerprint={"teacher": cfg, "base_model": weights_identity(cfg.model),
                                   "train_sha256": text_sha256(train.sentences)}, resume=resume)
    cfg.to_json(run_dir / "teacher_config.json")

    def step(m, idx):
        enc, labels = batcher(train, idx)
        enc, labels = {k: v.to(trainer.acc.device) for k, v in enc.items()}, labels.to(trainer.acc.device)
        loss = torch.nn.functional.cross_entropy(m(**enc).logits, labels)
        return loss, {"loss": float(loss.detach())}

    def evaluate(m):
        acc = evaluate_teacher(m, batcher, dev)
        return {"metric": acc, "dev_accuracy": acc}

    def save_best(m, metrics):
        _save_atomically(m, tokenizer, run_dir / "model")

    state = trainer.fit(step, evaluate, save_best, stop_after_minutes=stop_after_minutes,
                        stop_after_steps=stop_after_steps)
    return state.best_metric


def _save_atomically(model, tokenizer, out_dir: Path) -> None:
    """save_pretrained into a sibling temporary folder, then swap it in: never a half-written teacher."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        replace_folder(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
