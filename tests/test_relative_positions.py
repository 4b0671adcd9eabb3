"""``relative_distance = R``: relative positions in the spiking attention, Y_h = scale (Q_h K_h^T + B_h) V_h with
B_h[i, j] = b_h[R + clip(j - i, -R, R)]. Hand-computed on one head; the "shift" start; exported as
SBSpikeAttention's ``relative_bias``, and PyTorch = NIR file = reference executor = NIR-rebuilt torch = Lava, float
and (against the reference's integer step) Loihi fixed point; the accumulates of the bias are counted."""

import dataclasses

import numpy as np
import pytest
import torch

from spikebert.contract.errors import SpikebertError
from spikebert.contract.extension import SBSpikeAttention, relative_matrix
from spikebert.contract.nirfile import read_graph, write_graph
from spikebert.converters.torch_to_nir import export_student
from spikebert.hardware import kernels
from spikebert.hardware.reference import ReferenceExecutor
from spikebert.model import SpikeAttention, relative_offsets, shift_offsets
from spikebert.testing import make_ids, make_student
from tests.conftest import assert_file_graph_equals_pytorch, assert_lava_equals_reference


def _relative_student(cfg, *, seed: int = 6, **overrides):
    """A student with a random (non-zero, distinct per head and distance) relative table in every block."""
    cfg = dataclasses.replace(cfg, relative_distance=2, position_encoding="sinusoidal", **overrides)
    model = make_student(cfg, seed=seed, attention_bias=1.0)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for block in model.blocks:
            table = block.attn.attn.relative_bias
            table.copy_(torch.randn(table.shape, generator=g, dtype=torch.float64) * 4)
    return model


@pytest.fixture(params=[("membrane", "batch"), ("spike", "layer")], ids=lambda p: "+".join(p))
def relative_student(tiny_cfg, request):
    residual, norm = request.param
    return _relative_student(tiny_cfg, residual=residual, norm=norm)


def test_offsets_clip_at_the_distance():
    # query i (rows), key j (columns), R = 1: index R + clip(j - i, -1, 1)
    np.testing.assert_array_equal(relative_offsets(4, 1).numpy(),
                                  [[1, 2, 2, 2], [0, 1, 2, 2], [0, 0, 1, 2], [0, 0, 0, 1]])
    # the shift start skips +-R (the clipped buckets) and cycles: no head starts as a sum over all far keys
    assert shift_offsets(6, 2) == [0, -1, 1, 0, -1, 1]
    assert shift_offsets(8, 8) == [0, -1, 1, -2, 2, -3, 3, -4]
    assert shift_offsets(3, 1) == [0, 0, 0]


def test_the_shift_start_copies_one_neighbour_even_with_more_heads_than_offsets():
    # R = 1, 4 heads of 2 channels: every head starts at offset 0, so with Q silent Y = V, token by token
    attn = SpikeAttention(dim=8, heads=4, scale=0.25, mask_padding=False, relative_distance=1)
    T, B, L, D = 1, 1, 7, 8
    v = (torch.rand(T, B, L, D, generator=torch.Generator().manual_seed(1)) < 0.5).float()
    y = attn(torch.cat([torch.zeros(T, B, L, 2 * D), v], dim=-1), torch.ones(B, L, dtype=torch.bool))
    assert torch.equal(y, v)


def test_one_head_hand_computed():
    """L = 3, one head of 2 channels, R = 1: y = scale (A + B) V, every entry computed by hand."""
    attn = SpikeAttention(dim=2, heads=1, scale=0.5, mask_padding=False, relative_distance=1, relative_init="zero")
    with torch.no_grad():
        attn.relative_bias.copy_(torch.tensor([[10.0, 20.0, 30.0]]))  # b[-1], b[0], b[+1]
    q = torch.tensor([[1, 0], [0, 1], [1, 1]], dtype=torch.float64)  # (L, channels)
    k = torch.tensor([[1, 1], [0, 0], [0, 1]], dtype=torch.float64)
    v = torch.tensor([[1, 0], [0, 1], [1, 1]], dtype=torch.float64)
    qkv = torch.cat([q, k, v], dim=-1)[None, None]  # (T=1, B=1, L, 3D)
    with torch.no_grad():
        y = attn.double()(qkv, torch.ones(1, 3, dtype=torch.bool))[0, 0]
    a = np.array([[1, 0, 0], [1, 0, 1], [2, 0, 1]])  # A[i, j] = q_i . k_j
    b = np.array([[20, 30, 30], [10, 20, 30], [10, 10, 20]])  # b[clip(j - i)]
    expected = 0.5 * (a + b) @ v.numpy()
    np.testing.assert_array_equal(y.numpy(), expected)
    # the kernel the executors share gives the same, and counts one accumulate per nonzero (A + B)[i, j] and V spike
    node = SBSpikeAttention(dim=2, heads=1, scale=0.5, tokens=3, mask_padding=False,
                            relative_bias=np.array([[10.0, 20.0, 30.0]]))
    out, counts, values, mixing = kernels.spike_attention(qkv[0].transpose(1, 2).numpy(), dim=2, heads=1, scale=0.5,
                                                         key_mask=None, relative=relative_matrix(node, 3))
    np.testing.assert_array_equal(out[0].T, expected)
    qk, av = kernels.attention_stats(counts, values, None, mixing=mixing)
    assert (qk, av) == (a.sum(), 3 * 4)  # every (A + B)[i, j] is nonzero; V spikes per key 1, 1, 2: 4 per row


def test_shift_start_copies_one_neighbour_per_head(tiny_cfg):
    from spikebert.model import SpikeBERT

    cfg = dataclasses.replace(tiny_cfg, relative_distance=3, heads=4, dim=16)
    attn = SpikeBERT(cfg).blocks[0].attn.attn
    table = attn.relative_bias.detach()
    assert table.shape == (4, 7) and attn.relative_bias.requires_grad
    for h, offset in enumerate([0, -1, 1, -2]):  # one entry of 1/qk_scale per head, at its offset
        assert table[h, 3 + offset] == 1 / cfg.qk_scale and torch.count_nonzero(table[h]) == 1
    # with Q silent, head h's output is V of the token at i + offset (times scale 1/qk_scale = one spike's worth)
    T, B, L, D = 1, 1, 6, 16
    v = (torch.rand(T, B, L, D, generator=torch.Generator().manual_seed(0)) < 0.5).float()
    qkv = torch.cat([torch.zeros(T, B, L, 2 * D), v], dim=-1)
    y = attn(qkv, torch.ones(B, L, dtype=torch.bool))[0, 0]  # (L, D)
    assert torch.equal(y[:, 0:4], v[0, 0, :, 0:4])  # head 0, offset 0
    assert torch.equal(y[1:, 4:8], v[0, 0, :-1, 4:8]) and not y[0, 4:8].any()  # -1: the first token has no left
    zero = SpikeBERT(dataclasses.replace(cfg, relative_init="zero")).blocks[0].attn.attn.relative_bias
    assert not zero.any()


def test_a_zero_table_is_the_student_without_relative_positions(tiny_cfg):
    cfg = dataclasses.replace(tiny_cfg, position_encoding="sinusoidal", residual="membrane")
    plain = make_student(cfg, seed=2, attention_bias=1.0)
    relative = make_student(dataclasses.replace(cfg, relative_distance=3, relative_init="zero"), seed=2,
                            attention_bias=1.0)
    relative.load_state_dict(plain.state_dict(), strict=False)  # the same weights; the tables stay zero
    ids = make_ids(4, 8, cfg.vocab_size)
    with torch.no_grad():
        assert torch.equal(plain(ids).logits, relative(ids).logits)
        relative.blocks[0].attn.attn.relative_bias[1, 0] = 5.0  # a bias at distance <= -3 changes the output
        assert not torch.equal(plain(ids).logits, relative(ids).logits)


def test_relative_student_round_trips_through_nir_and_equals_pytorch(relative_student, tmp_path):
    from spikebert.converters.nir_to_torch import import_graph

    graph, ids, ref_logits, activity = assert_file_graph_equals_pytorch(relative_student, tmp_path / "s.nir")
    node = graph.nodes["b0_attn"]
    np.testing.assert_array_equal(node.relative_bias,
                                  relative_student.blocks[0].attn.attn.relative_bias.detach().numpy())
    assert activity.nodes["b0_proj"].input_nonzeros, "the attention LIF must fire for the test to mean anything"
    with torch.no_grad():
        rebuilt = import_graph(graph)(ids).numpy()
    np.testing.assert_allclose(rebuilt, ref_logits, rtol=0, atol=1e-12)
    with torch.no_grad():  # without its tables the same student differs: the file carries them
        for block in relative_student.blocks:
            block.attn.attn.relative_bias.zero_()
    assert not np.allclose(ReferenceExecutor(export_student(relative_student)).run_batches(ids.numpy(), batch_size=4),
                           ref_logits)


def test_graphs_without_the_field_read_as_no_relative_positions(tiny_cfg, tmp_path):
    """Files written before the field (or by students without it) have no ``relative_bias``: a zero table of
    distance 0, which the executors skip."""
    plain = make_student(dataclasses.replace(tiny_cfg, residual="membrane"), seed=1)
    graph = export_student(plain)
    node = graph.nodes["b0_attn"]
    assert node.relative_bias.shape == (tiny_cfg.heads, 1) and relative_matrix(node, 8) is None
    import h5py

    write_graph(tmp_path / "p.nir", graph)
    with h5py.File(tmp_path / "p.nir", "r+") as f:  # drop the field, as an older writer did
        del f["node/nodes/b0_attn/relative_bias"]
    again = read_graph(tmp_path / "p.nir").nodes["b0_attn"]
    assert again.relative_bias.shape == (tiny_cfg.heads, 1) and not again.relative_bias.any()


@pytest.mark.parametrize("shape", [(3, 5), (2, 4), (2,)])
def test_relative_table_of_the_wrong_shape_is_refused(shape):
    with pytest.raises(SpikebertError, match=r"relative_bias must be \(heads, 2R \+ 1\)"):
        SBSpikeAttention(dim=8, heads=2, scale=0.125, tokens=5, mask_padding=True, relative_bias=np.ones(shape))


@pytest.mark.parametrize(("overrides", "message"), [
    ({"relative_distance": -1}, "must be >= 0"),
    ({"relative_distance": 8}, "reaches past max_len=8"),
    ({"relative_distance": 2, "attention": "sdsa"}, "'sdsa' has none"),
])
def test_config_refuses_what_it_cannot_build(tiny_cfg, overrides, message):
    with pytest.raises(SpikebertError, match=message):
        dataclasses.replace(tiny_cfg, **overrides)


def test_the_table_trains(tiny_cfg):
    from spikebert.model import SpikeBERT

    model = SpikeBERT(dataclasses.replace(tiny_cfg, relative_distance=2, residual="membrane", attn_threshold=0.1))
    ids = make_ids(4, 8, tiny_cfg.vocab_size)
    model(ids).logits.square().sum().backward()
    assert all(block.attn.attn.relative_bias.grad.abs().sum() > 0 for block in model.blocks)


def test_energy_counts_the_bias_accumulates(relative_student):
    """The (A + B) V accumulates exceed A V's: every V spike now reaches the rows where only B is nonzero. The
    reference executor and the PyTorch recording count the same."""
    from spikebert.recording import record_batches

    ids = make_ids(6, 8, relative_student.cfg.vocab_size)
    graph = export_student(relative_student)
    ex = ReferenceExecutor(graph)
    ex.run_batches(ids.numpy(), batch_size=4)
    with_bias = ex.activity.nodes["b0_attn"].av_accumulates
    _, recorded = record_batches(relative_student, ids, batch_size=4, graph=graph)
    assert recorded.nodes["b0_attn"].av_accumulates == with_bias
    graph.nodes["b0_attn"].relative_bias = np.zeros_like(graph.nodes["b0_attn"].relative_bias)
    plain = ReferenceExecutor(graph)
    plain.run_batches(ids.numpy(), batch_size=4)
    assert with_bias > plain.activity.nodes["b0_attn"].av_accumulates


@pytest.mark.lava
def test_relative_student_in_lava_float(relative_student):
    ids = make_ids(5, 8, relative_student.cfg.vocab_size).numpy()
    assert_lava_equals_reference(export_student(relative_student), ids, fuse="none")


@pytest.mark.lava  # quantisation uses lava-nc's weight utilities
@pytest.mark.parametrize("fuse", ["none", "blocks"])
def test_relative_student_fixed_point_is_bit_exact_in_lava(tiny_cfg, fuse):
    """In Loihi fixed point the table is rounded once to whole input units (its value times the attention's
    integer multiplier); Lava runs the reference's integer step bit for bit."""
    from spikebert.hardware.quantize import quantize_graph

    student = _relative_student(tiny_cfg, residual="membrane", norm="batch")
    graph = quantize_graph(export_student(student))
    ids = make_ids(5, 8, student.cfg.vocab_size).numpy()
    lava, expected = assert_lava_equals_reference(graph, ids, fuse=fuse, record=("b1_attn_lif",))
    assert lava.fixed_point and expected.spikes["b1_attn_lif"].any()
    float_run = ReferenceExecutor(export_student(student)).run(ids, record=("b1_attn_lif",))
    assert (float_run.spikes["b1_attn_lif"] != expected.spikes["b1_attn_lif"]).mean() < 0.1


@pytest.mark.lava  # quantisation uses lava-nc's weight utilities
@pytest.mark.parametrize("mask_padding", [True, False])
def test_fixed_point_attention_written_out(tiny_cfg, mask_padding):
    """The integer attention input, written out with loops from the recorded Q, K, V spikes:
    y[i] = sum_j (multiplier A[i, j] + rint(multiplier b[R + clip(j - i)])) V[j], padded keys left out
    when ``mask_padding`` is on (off, as in the official code, they take part like any key)."""
    from spikebert.hardware.quantize import quantize_graph

    student = _relative_student(tiny_cfg, residual="membrane", norm="batch", mask_padding=mask_padding)
    graph = quantize_graph(export_student(student))
    node = graph.nodes["b1_attn"]
    multiplier, table = node.metadata["fixed_point"]["multiplier"], node.relative_bias
    R, D, H = table.shape[1] // 2, node.dim, node.heads
    dh = D // H
    ids = make_ids(5, 8, student.cfg.vocab_size).numpy()
    run = ReferenceExecutor(graph).run(ids, record=("b1_qkv_lif", "b1_attn"))
    qkv, out = run.spikes["b1_qkv_lif"], run.spikes["b1_attn"]  # (T, B, 3D, L), (T, B, D, L)
    expected = np.zeros_like(out)
    T, B, _, L = qkv.shape
    for t in range(T):
        for b in range(B):
            for h in range(H):
                q, k, v = (qkv[t, b, part * D + h * dh:part * D + (h + 1) * dh] for part in range(3))
                for i in range(L):
                    for j in range(L):
                        if mask_padding and ids[b, j] == 0:  # a padded key reaches no query
                            continue
                        bias = int(np.rint(multiplier * table[h, R + min(R, max(-R, j - i))]))
                        w = multiplier * int(q[:, i] @ k[:, j]) + bias
                        expected[t, b, h * dh:(h + 1) * dh, i] += w * v[:, j]
    np.testing.assert_array_equal(out, expected)
    assert np.abs(out).max() > 0 and np.any(table)
    assert (ids == 0).any()  # the batch has padding, so both settings are exercised


@pytest.mark.lava
@pytest.mark.slow
def test_relative_student_deploys_in_lava_nc_processes(tiny_cfg):
    """``fuse='deploy'`` (lava-nc Conv and LIFReset processes; the attention a NodeGroup running the reference's
    integer step): bit for bit in fixed point, the bias's accumulates recorded as the reference counts them."""
    from spikebert.hardware.lava_runner import run_lava
    from spikebert.hardware.quantize import quantize_graph

    graph = quantize_graph(export_student(_relative_student(tiny_cfg, residual="membrane", norm="batch")))
    ids = make_ids(5, 8, tiny_cfg.vocab_size).numpy()
    ref = ReferenceExecutor(graph)
    expected = ref.run(ids)
    run = run_lava(graph, ids, batch_size=2, fuse="deploy", progress=False)
    np.testing.assert_array_equal(run.step_outputs, expected.step_outputs)
    for name in ("b0_attn", "b1_attn"):
        assert run.activity.nodes[name].same_counts(ref.activity.nodes[name]), name
