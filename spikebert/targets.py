"""Teacher targets for distillation: logits and hidden states, online or cached once on disk.

The cache (``teacher_cache/`` in the run folder) holds, for every training sentence, the teacher's
logits (N, C) float32 and its hidden states at the mapped layers for the real tokens only, packed
as (total tokens, layers, H) float16 with row offsets (N + 1). Plain ``.npy`` files read with
``allow_pickle=False`` and memory-mapped, so a cache never executes code and need not fit in RAM.
``meta.json`` fingerprints the teacher, the sentences, the tokenisation and the layers; a cache
that does not match is rebuilt, never silently reused. The folder is written under a temporary
name and renamed into place, so an interrupted build leaves nothing half-written.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from spikebert.contract.errors import SpikebertError
from spikebert.contract.fileio import replace_folder
from spikebert.io import text_sha256, weights_identity
from spikebert.outputs import TeacherTargets
from spikebert.tokenize import Batcher

log = logging.getLogger(__name__)

CACHE_VERSION = 1


def teacher_outputs(teacher, enc: dict[str, torch.Tensor], layers: list[int]) -> TeacherTargets:
    """Logits (None for a bare encoder) and ``hidden_states[i] for i in layers`` for one batch."""
    device = next(teacher.parameters()).device
    out = teacher(**{k: v.to(device) for k, v in enc.items()}, output_hidden_states=True)
    return TeacherTargets(getattr(out, "logits", None), [out.hidden_states[i] for i in layers])


class OnlineTargets:
    """Runs the frozen teacher on every batch (one pass over a corpus: nothing to reuse)."""

    def __init__(self, teacher, layers: list[int]) -> None:
        self.teacher, self.layers = teacher, layers

    @torch.no_grad()
    def __call__(self, idx: torch.Tensor, enc: dict[str, torch.Tensor]) -> TeacherTargets:
        return teacher_outputs(self.teacher, enc, self.layers)


ATTENTION_MASK_VALUE = -10000.0  # BERT's additive mask on padded keys, as in the scores TinyBERT distils


class OnlineScoredTargets:
    """Runs the frozen teacher on every batch and also returns the pre-softmax attention scores of
    ``score_layers`` (encoder layer indices), A = Q K^T / sqrt(d_h) + M of shape (B, heads, L, L),
    read with forward hooks on those layers' query and key projections (HF attention modules
    return post-softmax probabilities at most). Scores are L x L per head: never cached."""

    def __init__(self, teacher, layers: list[int], score_layers: list[int]) -> None:
        self.teacher, self.layers = teacher, layers
        encoder_layers = teacher.base_model.encoder.layer
        self.attention = [encoder_layers[i].attention.self for i in score_layers]
        self.heads = teacher.config.num_attention_heads

    @torch.no_grad()
    def __call__(self, idx: torch.Tensor, enc: dict[str, torch.Tensor]) -> TeacherTargets:
        seen: dict[tuple[str, int], torch.Tensor] = {}

        def keep(key):
            return lambda _module, _inputs, out: seen.__setitem__(key, out)

        hooks = [m.register_forward_hook(keep((name, j))) for j, a in enumerate(self.attention)
                 for name, m in (("q", a.query), ("k", a.key))]
        try:
            targets = teacher_outputs(self.teacher, enc, self.layers)
        finally:
            for h in hooks:
                h.remove()
        B, L = enc["input_ids"].shape
        hidden = targets.hidden
        mask = enc["attention_mask"].to(hidden[0].device)
        bias = ((1 - mask.to(hidden[0].dtype)) * ATTENTION_MASK_VALUE)[:, None, None, :]  # (B, 1, 1, L)
        scores = []
        for j in range(len(self.attention)):
            q, k = (seen[(n, j)].view(B, L, self.heads, -1).transpose(1, 2) for n in ("q", "k"))  # (B, H, L, dh)
            scores.append(q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5 + bias)
        return TeacherTargets(targets.logits, hidden, scores)


class CachedTargets:
    """Targets read from a cache folder; batches are re-padded to the batch's token length."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.logits = np.load(self.folder / "logits.npy", allow_pickle=False, mmap_mode="r")
        self.features = np.load(self.folder / "features.npy", allow_pickle=False, mmap_mode="r")
        self.offsets = np.load(self.folder / "offsets.npy", allow_pickle=False)
        self.meta = json.loads((self.folder / "meta.json").read_text(encoding="utf-8"))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __call__(self, idx: torch.Tensor, enc: dict[str, torch.Tensor]) -> TeacherTargets:
        idx = idx.tolist()
        B, L = enc["input_ids"].shape
        n_layers, H = self.features.shape[1:]
        feats = np.zeros((B, L, n_layers, H), dtype=np.float32)
        for row, i in enumerate(idx):
            a, b = self.offsets[i], self.offsets[i + 1]
            if b - a != int(enc["attention_mask"][row].sum()):
                raise SpikebertError(f"teacher cache {self.folder}: sentence {i} has {b - a} tokens cached but "
                                 f"{int(enc['attention_mask'][row].sum())} now; delete the cache to rebuild it")
            feats[row, : b - a] = self.features[a:b]
        logits = torch.from_numpy(np.ascontiguousarray(self.logits[idx])) if self.logits.shape[1] else None
        feats_t = torch.from_numpy(feats)
        return TeacherTargets(logits, [feats_t[:, :, j] for j in range(n_layers)])


def cache_fingerprint(*, teacher_dir: str, sentences: list[str], max_len: int, layers: list[int]) -> dict:
    return {"version": CACHE_VERSION, "teacher": weights_identity(teacher_dir), "sentences_sha256":
            text_sha256(sentences), "n": len(sentences), "max_len": max_len, "layers": layers}


@torch.no_grad()
def build_cache(folder: Path, *, teacher, teacher_dir: str, batcher: Batcher, sentences: list[str],
                layers: list[int], batch_size: int = 128) -> CachedTargets:
    """Compute (or reuse, when the fingerprint matches) the teacher cache for ``sentences``."""
    folder = Path(folder)
    fp = cache_fingerprint(teacher_dir=teacher_dir, sentences=sentences, max_len=batcher.max_len, layers=layers)
    if (folder / "meta.json").is_file():
        cached = CachedTargets(folder)
        if cached.meta.get("fingerprint") == fp:
            log.info("teacher cache %s: reused (%d sentences)", folder, len(cached))
            return cached
        log.info("teacher cache %s: stale (different teacher, data or layers), rebuilding", folder)
    if batcher.tokenizer.padding_side != "right":
        raise SpikebertError("the teacher cache stores real tokens first: the tokenizer must pad on the right")
    teacher.eval()
    lengths = np.array([len(x) for x in batcher.tokenizer(sentences, truncation=True, max_length=batcher.max_len)
                        ["input_ids"]], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    H = teacher.config.hidden_size
    probe_logits = teacher_outputs(teacher, batcher.encode(sentences[:1]), layers).logits
    num_labels = 0 if probe_logits is None else probe_logits.shape[-1]
    folder.parent.mkdir(parents=True, exist_ok=True)
    need = int(offsets[-1]) * len(layers) * H * 2 + len(sentences) * (num_labels * 4 + 8)
    free = shutil.disk_usage(folder.parent).free
    if need > 0.9 * free:
        raise SpikebertError(f"the teacher cache needs {need / 2**30:.1f} GiB but {folder.parent} has "
                         f"{free / 2**30:.1f} GiB free; set teacher_cache=false (the teacher then runs "
                         "every step), or fewer train_samples / augmentation copies")
    for stale in folder.parent.glob(f".{folder.name}.*"):  # left by a killed build
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        features = np.lib.format.open_memmap(tmp / "features.npy", mode="w+", dtype=np.float16,
                                             shape=(int(offsets[-1]), len(layers), H))
        logits = np.zeros((len(sentences), num_labels), dtype=np.float32)
        order = np.argsort(lengths, kind="stable")  # similar lengths together: little padding
        for start in tqdm(range(0, len(order), batch_size), desc="teacher cache", leave=False):
            idx = order[start:start + batch_size]
            enc = batcher.encode([sentences[i] for i in idx])
            t = teacher_outputs(teacher, enc, layers)
            out_logits, hidden = t.logits, t.hidden
            stacked = torch.stack(hidden, dim=2).float().cpu().numpy()  # (B, L, layers, H)
            for row, i in enumerate(idx):
                features[offsets[i]:offsets[i + 1]] = stacked[row, : lengths[i]]
            if num_labels:
                logits[idx] = out_logits.float().cpu().numpy()
        features.flush()
        del features
        np.save(tmp / "logits.npy", logits)
        np.save(tmp / "offsets.npy", offsets)
        (tmp / "meta.json").write_text(json.dumps({"fingerprint": fp, "hidden": H}, indent=2), encoding="utf-8")
        replace_folder(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("teacher cache %s: %d sentences, %d tokens", folder, len(sentences), int(offsets[-1]))
    return CachedTargets(folder)
