import pytest
import torch

from spikebert.model import SpikeBERT
from spikebert.neurons import LIF
from spikebert.testing import make_ids


def test_lif_impulse_response_matches_hand_computation():
    # tau = 2: v = 0.5 v + 0.5 x; constant x = 1.5, threshold 1:
    # v1 = 0.75; v2 = 0.375 + 0.75 = 1.125 > 1 -> spike, reset; v3 = 0.75; v4 = 1.125 -> spike
    lif = LIF(tau=2.0, threshold=1.0, surrogate_alpha=2.0)
    x = torch.full((4, 1), 1.5, dtype=torch.float64)
    assert lif(x).squeeze(1).tolist() == [0.0, 1.0, 0.0, 1.0]


def test_lif_fires_strictly_above_threshold():
    lif = LIF(tau=2.0, threshold=1.0, surrogate_alpha=2.0)
    x = torch.tensor([[2.0], [2.0]], dtype=torch.float64)  # v1 = 1.0 exactly: no spike
    assert lif(x).squeeze(1).tolist() == [0.0, 1.0]


def test_shapes(tiny_cfg):
    model = SpikeBERT(tiny_cfg)
    out = model(make_ids(3, 8, tiny_cfg.vocab_size))
    assert out.logits.shape == (3, tiny_cfg.num_classes)
    assert out.step_logits.shape == (tiny_cfg.time_steps, 3, tiny_cfg.num_classes)
    assert [h.shape for h in out.hidden] == [(3, 8, tiny_cfg.dim)] * tiny_cfg.depth


def test_gradients_flow_through_surrogates(tiny_cfg):
    model = SpikeBERT(tiny_cfg)
    model(make_ids(2, 8, tiny_cfg.vocab_size)).logits.sum().backward()
    assert model.embed.weight.grad.abs().sum() > 0
    assert model.blocks[0].attn.qkv.weight.grad.abs().sum() > 0


def test_masking_makes_output_independent_of_padding(trained_like_model):
    model = trained_like_model
    ids = make_ids(2, 5, model.cfg.vocab_size, pads=())
    padded = torch.cat([ids, torch.zeros(2, 3, dtype=ids.dtype)], dim=1)
    with torch.no_grad():
        a, b = model(ids).logits, model(padded).logits
    torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_without_masking_pads_change_the_output(tiny_cfg):
    from dataclasses import replace

    torch.manual_seed(0)
    model = SpikeBERT(replace(tiny_cfg, mask_padding=False)).double().eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Linear):
                m.weight.normal_(0, 0.5)
    ids = make_ids(2, 5, tiny_cfg.vocab_size, pads=())
    padded = torch.cat([ids, torch.zeros(2, 3, dtype=ids.dtype)], dim=1)
    with torch.no_grad():
        assert not torch.allclose(model(ids).logits, model(padded).logits)


def test_rejects_bad_input(tiny_cfg):
    model = SpikeBERT(tiny_cfg)
    with pytest.raises(ValueError, match="exceeds max_len"):
        model(torch.ones(1, 9, dtype=torch.long))
    with pytest.raises(ValueError, match="batch, length"):
        model(torch.ones(9, dtype=torch.long))
