"""Tokenisation into padded batches with the teacher's tokenizer (the student shares its vocab)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch

from spikebert.data import TextDataset


class Batcher:
    """Turn dataset indices into a tokenised batch: ``(encoding dict, labels)``.

    ``pad_to_max`` pads every batch to ``max_len`` (needed by students without padding masks, whose
    output depends on the number of pads); otherwise batches are padded to their longest sentence.
    """

    def __init__(self, tokenizer, *, max_len: int, pad_to_max: bool = False) -> None:
        self.tokenizer, self.max_len, self.pad_to_max = tokenizer, max_len, pad_to_max

    def encode(self, sentences: Sequence[str]) -> dict[str, torch.Tensor]:
        return dict(self.tokenizer(
            list(sentences),
            padding="max_length" if self.pad_to_max else "longest",
            truncation=True,
            max_length=self.max_len,
            return_tensors="pt",
        ))

    def __call__(self, data: TextDataset, indices) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        indices = [int(i) for i in indices]
        enc = self.encode([data.sentences[i] for i in indices])
        return enc, torch.tensor([data.labels[i] for i in indices])


def tokenizer_fingerprint(tokenizer) -> str:
    """SHA-256 of the sorted vocabulary: a checkpoint records it so a mismatched tokenizer is caught."""
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    return hashlib.sha256("\n".join(tok for tok, _ in vocab).encode("utf-8")).hexdigest()
