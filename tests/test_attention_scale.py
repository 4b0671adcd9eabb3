"""``attn_scale = "learned-per-head"``: one trained scale per attention head (equivalently a per-head threshold of
the attention LIF). It trains, exports as SBSpikeAttention's per-head scale, and PyTorch = reference executor =
NIR-rebuilt torch = float Lava; Loihi fixed point holds one multiplier per population and refuses it by name."""

import dataclasses

import numpy as np
import pytest
import torch

from spikebert.contract.errors import SpikebertError
from spikebert.contract.extension import SBSpikeAttention
from spikebert.converters.torch_to_nir import export_student
from spikebert.hardware.reference import ReferenceExecutor
from spikebert.testing import make_ids, make_student
from tests.conftest import assert_file_graph_equals_pytorch, assert_lava_equals_reference

SCALES = [0.5, 2.0, 0.25, 4.0]  # distinct per head: a swapped or broadcast-wrong scale changes the output


@pytest.fixture
def per_head_student(tiny_cfg):
    cfg = dataclasses.replace(tiny_cfg, attn_scale="learned-per-head", residual="membrane", heads=4, norm="batch")
    model = make_student(cfg, seed=5, attention_bias=1.0)
    with torch.no_grad():
        for block in model.blocks:
            block.attn.attn.head_scale.copy_(torch.tensor(SCALES, dtype=torch.float64))
    return model


def test_head_scales_are_parameters_that_train(tiny_cfg):
    from spikebert.model import SpikeBERT

    cfg = dataclasses.replace(tiny_cfg, attn_scale="learned-per-head", heads=4)
    model = SpikeBERT(cfg)
    scales = [b.attn.attn.head_scale for b in model.blocks]
    assert all(s.shape == (4,) and torch.all(s == cfg.qk_scale) for s in scales)
    assert all(any(s is p for p in model.parameters()) for s in scales)
    fixed = SpikeBERT(tiny_cfg)
    assert all(b.attn.attn.head_scale is None and b.attn.attn.scale == tiny_cfg.qk_scale for b in fixed.blocks)


def test_each_head_gets_its_own_scale(per_head_student):
    """The per-head product equals the fixed-scale product times that head's scale, head by head."""
    attn = per_head_student.blocks[0].attn.attn
    T, B, L, D = 2, 3, 5, per_head_student.cfg.dim
    qkv = (torch.rand(T, B, L, 3 * D, dtype=torch.float64) < 0.5).double()
    mask = torch.ones(B, L, dtype=torch.bool)
    y = attn(qkv, mask)
    attn_scale, attn.head_scale = attn.head_scale, None
    attn.scale = 1.0
    unit = attn(qkv, mask)
    attn.head_scale, attn.scale = attn_scale, None
    dh = D // len(SCALES)
    for h, s in enumerate(SCALES):
        torch.testing.assert_close(y[..., h * dh:(h + 1) * dh], s * unit[..., h * dh:(h + 1) * dh], rtol=0, atol=0)


def test_per_head_scale_round_trips_through_nir_and_equals_pytorch(per_head_student, tmp_path):
    from spikebert.converters.nir_to_torch import import_graph

    graph, ids, ref_logits, activity = assert_file_graph_equals_pytorch(per_head_student, tmp_path / "s.nir")
    node = graph.nodes["b0_attn"]
    assert isinstance(node, SBSpikeAttention)
    np.testing.assert_array_equal(node.scale, SCALES)
    assert activity.nodes["b0_proj"].input_nonzeros, "the attention LIF must fire for the test to mean anything"
    with torch.no_grad():
        rebuilt = import_graph(graph)(ids).numpy()
    np.testing.assert_allclose(rebuilt, ref_logits, rtol=0, atol=1e-12)
    # the same student with every head at one scale differs: the file carries the per-head values
    with torch.no_grad():
        for block in per_head_student.blocks:
            block.attn.attn.head_scale.fill_(1.0)
    assert not np.allclose(ReferenceExecutor(export_student(per_head_student)).run_batches(ids.numpy(), batch_size=4),
                           ref_logits)


def test_scale_of_the_wrong_length_is_refused():
    with pytest.raises(SpikebertError, match="one per head"):
        SBSpikeAttention(dim=8, heads=4, scale=np.ones(3), tokens=5, mask_padding=True)
    assert SBSpikeAttention(dim=8, heads=4, scale=np.float64(0.125), tokens=5, mask_padding=True).scale == 0.125


def test_sdsa_has_no_scale_to_learn(tiny_cfg):
    with pytest.raises(SpikebertError, match="has no scale"):
        dataclasses.replace(tiny_cfg, attention="sdsa", attn_scale="learned-per-head")


@pytest.mark.lava  # quantisation uses lava-nc's weight utilities
def test_fixed_point_refuses_per_head_scales_by_name(per_head_student):
    from spikebert.hardware.quantize import quantize_graph

    sew = make_student(dataclasses.replace(per_head_student.cfg, residual="spike"), seed=5)  # fixed point runs SEW
    with torch.no_grad():
        for block in sew.blocks:
            block.attn.attn.head_scale.copy_(torch.tensor(SCALES, dtype=torch.float64))
    with pytest.raises(SpikebertError, match="b0_attn.*differs across heads"):
        quantize_graph(export_student(sew))
    with torch.no_grad():  # one value in every head: one multiplier, as the fixed scale
        for block in sew.blocks:
            block.attn.attn.head_scale.fill_(0.125)
    quantize_graph(export_student(sew))


@pytest.mark.lava
def test_per_head_scale_in_lava_float(per_head_student):
    ids = make_ids(5, 8, per_head_student.cfg.vocab_size).numpy()
    assert_lava_equals_reference(export_student(per_head_student), ids, fuse="none")
