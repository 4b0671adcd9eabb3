import os

import pytest
import torch

from hardware.lava_runner import prepare_lava

prepare_lava()  # Lava must fix the multiprocessing start method before tqdm or torch use it

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(2)


@pytest.fixture
def tiny_cfg():
    from spikebert.config import StudentConfig

    return StudentConfig(vocab_size=60, dim=16, depth=2, heads=2, max_len=8, num_classes=3)


def make_ids(batch: int, length: int, vocab: int, *, seed: int = 0, pads=((0, 5), (2, 3))):
    """Random token ids in [1, vocab) with padding (id 0) from the given positions on."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab, (batch, length), generator=g)
    for row, start in pads:
        if row < batch:
            ids[row, start:] = 0
    return ids


@pytest.fixture
def trained_like_model(tiny_cfg):
    """A tiny float64 student whose neurons fire (random weights scaled up so every layer is active)."""
    from spikebert.model import SpikeBERT

    torch.manual_seed(0)
    model = SpikeBERT(tiny_cfg).double().eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Linear):
                m.weight.normal_(0, 0.5)
                m.bias.normal_(0, 0.5)
    return model
