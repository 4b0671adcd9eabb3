"""Freshly initialised students that fire, for tests and for benchmarks of the hardware path that need no
trained student: random weights large enough that every layer spikes, and batch-norm statistics from a
batch. Nothing in the package imports this module (tests/test_layering.py)."""

from __future__ import annotations

import torch

from spikebert.model import SpikeBERT, TokenBatchNorm


def make_ids(batch: int, length: int, vocab: int, *, seed: int = 0, pads=((0, 5), (2, 3))):
    """Random token ids in [1, vocab) with padding (id 0) from the given positions on."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab, (batch, length), generator=g)
    for row, start in pads:
        if row < batch:
            ids[row, start:] = 0
    return ids


def scale_up_linears(model: torch.nn.Module, std: float = 0.5) -> None:
    """Draw every Linear's weight and bias from N(0, std): tiny random students then fire in every layer."""
    for m in model.modules():
        if isinstance(m, torch.nn.Linear):
            m.weight.normal_(0, std)
            if m.bias is not None:
                m.bias.normal_(0, std)


def make_student(cfg, *, seed: int = 0, statistics_batch: int = 4, attention_bias: float = 0.0):
    """A float64 student with non-trivial weights, positions and batch-norm statistics (running estimates
    from one training-mode batch of ``statistics_batch`` sentences); ``attention_bias`` is added to the
    Q/K/V norm bias so that Q, K and V fire often enough for the attention LIFs to fire."""
    torch.manual_seed(seed)
    model = SpikeBERT(cfg).double()
    with torch.no_grad():
        scale_up_linears(model)
        if model.position is not None:
            model.position.weight.normal_(0, 1.0)
        if model.position_synapse is not None:
            model.position_synapse.weight.normal_(0, 1.0)
        if cfg.norm == "batch":
            model.train()
            model(make_ids(statistics_batch, cfg.max_len, cfg.vocab_size, seed=3))
            for m in model.modules():
                if isinstance(m, TokenBatchNorm):
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.normal_(0, 0.3)
        if attention_bias:
            for block in model.blocks:
                block.attn.qkv_norm.bias.add_(attention_bias)
    return model.eval()
