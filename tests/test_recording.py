import dataclasses

import numpy as np
import pytest
import torch

from spikebert.converters.torch_to_nir import export_student
from spikebert.hardware import kernels
from spikebert.hardware.reference import ReferenceExecutor
from spikebert.model import SpikeBERT, TokenBatchNorm
from spikebert.recording import ActivityRecorder, record_activity, record_attention, record_spikes, step_rates
from spikebert.testing import make_ids

PADS = ((0, 5), (2, 3), (4, 0))  # row 4 is all padding: batch filler for the pooled classifier input


def _student(trained_like_model, *, norm: str, mask_padding: bool) -> SpikeBERT:
    """The fixture's weights in a layer- or batch-norm student whose attention neurons fire."""
    cfg = dataclasses.replace(trained_like_model.cfg, norm=norm, mask_padding=mask_padding)
    torch.manual_seed(1)
    model = SpikeBERT(cfg).double()
    state = {k: v for k, v in trained_like_model.state_dict().items() if "norm" not in k}
    model.load_state_dict(state, strict=False)
    if norm == "batch":
        model.train()
        model(make_ids(6, cfg.max_len, cfg.vocab_size, seed=3))  # batch statistics -> running estimates
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, TokenBatchNorm):  # non-trivial affine maps, so the folds are really tested
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.normal_(0, 0.3)
    with torch.no_grad():
        for block in model.blocks:
            block.attn.qkv_norm.bias.fill_(1.5)  # dense Q, K, V: the attention LIF fires
    return model.eval()


def _assert_same(activity, reference, *, rtol: float = 1e-12) -> None:
    assert (activity.samples, activity.time_steps, activity.real_tokens) == \
        (reference.samples, reference.time_steps, reference.real_tokens)
    assert set(activity.nodes) == set(reference.nodes)
    for name, ref in reference.nodes.items():
        for field in dataclasses.fields(ref):
            got, want = getattr(activity.nodes[name], field.name), getattr(ref, field.name)
            assert got == pytest.approx(want, rel=rtol, abs=rtol), f"{name}.{field.name}"


@pytest.mark.parametrize("norm", ["layer", "batch"])
@pytest.mark.parametrize("mask_padding", [True, False])
def test_hook_activity_equals_reference_executor(trained_like_model, norm, mask_padding):
    model = _student(trained_like_model, norm=norm, mask_padding=mask_padding)
    graph = export_student(model)
    ids = make_ids(5, model.cfg.max_len, model.cfg.vocab_size, pads=PADS)
    executor = ReferenceExecutor(graph)
    executor.run(ids.numpy())
    activity = record_activity(model, ids, graph=graph)
    assert activity.backend == "torch"
    _assert_same(activity, executor.activity)
    nodes = activity.nodes
    assert nodes["b1_attn"].qk_accumulates > 0 and nodes["b1_attn"].av_accumulates > 0
    assert nodes["b1_proj"].input_nonzeros > 0 and nodes["classifier"].input_abs_sum > 0


def test_batch_norm_carried_to_the_classifier_counts_the_stream_before_it(trained_like_model):
    """head_norm folds through the pool into the classifier: both count the un-normed stream."""
    model = _student(trained_like_model, norm="batch", mask_padding=True)
    graph = export_student(model)
    assert "head_norm" not in graph.nodes
    ids = make_ids(4, model.cfg.max_len, model.cfg.vocab_size)
    stream = {}
    hook = model.head_norm.register_forward_hook(lambda m, i, o: stream.setdefault("x", i[0]))
    activity = record_activity(model, ids, graph=graph)
    hook.remove()
    x, real = stream["x"], ids != 0  # (T, B, L, D)
    assert activity.nodes["pool"].input_abs_sum == pytest.approx(float((x * real[None, :, :, None]).abs().sum()))
    pooled = (x * real[None, :, :, None]).sum(2) / real.sum(1)[None, :, None]  # (T, B, D)
    assert activity.nodes["classifier"].input_abs_sum == pytest.approx(float(pooled.abs().sum()))


def test_recorder_accumulates_over_batches(trained_like_model):
    model = _student(trained_like_model, norm="layer", mask_padding=True)
    graph = export_student(model)
    batches = [make_ids(3, 8, model.cfg.vocab_size, seed=s) for s in (1, 2)]
    executor = ReferenceExecutor(graph)
    with ActivityRecorder(model, graph=graph) as recorder:
        for ids in batches:
            executor.run(ids.numpy())
            recorder(ids)
    _assert_same(recorder.activity, executor.activity)
    assert recorder.activity.samples == 6


def test_float32_student_on_a_larger_batch(trained_like_model):
    """float32 spikes may differ from the float64 graph's at a threshold: counts agree closely."""
    model = _student(trained_like_model, norm="layer", mask_padding=True)
    graph = export_student(model)
    g = torch.Generator().manual_seed(5)
    ids = torch.randint(1, model.cfg.vocab_size, (64, model.cfg.max_len), generator=g)
    lengths = torch.randint(0, model.cfg.max_len + 1, (64,), generator=g)
    ids[torch.arange(model.cfg.max_len)[None] >= lengths[:, None]] = 0
    executor = ReferenceExecutor(graph)
    executor.run(ids.numpy())
    activity = record_activity(model.float(), ids, graph=graph)
    _assert_same(activity, executor.activity, rtol=1e-2)
    for name, ref in executor.activity.nodes.items():
        assert activity.nodes[name].input_elements == ref.input_elements, name


def test_wrong_graph_and_outside_context_are_errors(trained_like_model):
    model = _student(trained_like_model, norm="layer", mask_padding=True)
    other = SpikeBERT(dataclasses.replace(model.cfg, depth=1)).double()
    ids = make_ids(2, 8, model.cfg.vocab_size)
    with pytest.raises(ValueError, match="not a synapse node of the graph"):
        record_activity(model, ids, graph=export_student(other))
    with pytest.raises(ValueError, match="got no input from the student"):
        record_activity(other, ids, graph=export_student(model))
    with pytest.raises(ValueError, match="inside its context"):
        ActivityRecorder(model)(ids)


def test_attention_maps_and_spikes_match_the_reference(trained_like_model):
    model = _student(trained_like_model, norm="layer", mask_padding=True)
    ids = make_ids(3, 8, model.cfg.vocab_size)
    graph = export_student(model)
    run = ReferenceExecutor(graph).run(ids.numpy(), record=("b1_qkv_lif",))
    qkv = run.spikes["b1_qkv_lif"]  # (T, B, 3D, L)
    expected = np.stack([kernels.spike_attention(q, dim=16, heads=2, scale=1.0, key_mask=ids.numpy() != 0)[1]
                         for q in qkv])  # (T, B, H, L, L)
    maps = record_attention(model, ids)
    assert sorted(maps) == ["b0_attn", "b1_attn"] and expected.sum() > 0
    np.testing.assert_array_equal(maps["b1_attn"].numpy(), expected)
    spikes = record_spikes(model, ids)
    assert list(spikes)[:3] == ["spikes", "b0_qkv_lif", "b0_attn_lif"]
    np.testing.assert_array_equal(spikes["b1_qkv_lif"].permute(0, 1, 3, 2).numpy(), qkv)


def test_step_rates_count_real_tokens(trained_like_model):
    model = _student(trained_like_model, norm="layer", mask_padding=True)
    batches = [make_ids(3, 8, model.cfg.vocab_size, seed=s) for s in (1, 2)]
    rates = step_rates(model, batches)
    fired, positions = torch.zeros(model.cfg.time_steps, dtype=torch.float64), 0
    for ids in batches:
        s = record_spikes(model, ids)["b0_lif1"]  # (T, B, L, H)
        real = ids != 0
        fired += s[:, real].sum(dim=(1, 2))
        positions += int(real.sum()) * s.shape[-1]
    torch.testing.assert_close(rates["b0_lif1"], fired / positions)
    assert rates["b0_lif1"].shape == (model.cfg.time_steps,)


def test_attention_accumulates_hand_computed():
    """Q K^T: one accumulate per coincidence of a real query; A V: one per spike of V behind a nonzero A."""
    from spikebert.model import SpikeAttention
    from spikebert.recording import attention_counts, attention_stats

    q = [[1, 1, 0, 1], [0, 1, 1, 1], [1, 0, 0, 0]]
    k = [[1, 0, 1, 1], [1, 1, 0, 1], [1, 1, 1, 1]]
    v = [[1, 0, 1, 1], [0, 0, 0, 1], [1, 1, 1, 1]]
    qkv = torch.tensor([[a + b + c for a, b, c in zip(q, k, v)]], dtype=torch.float64)[None]  # (1, 1, 3, 12)
    mask = torch.tensor([[True, True, False]])
    a, values = attention_counts(SpikeAttention(dim=4, heads=2, scale=1.0, mask_padding=True), qkv, mask)
    # head 0: A = [[1, 2, 0], [0, 1, 0], [1, 1, 0]], V spikes per key (1, 0, 0) -> A V: 1 + 0 (queries 0, 1)
    # head 1: A = [[1, 1, 0], [2, 1, 0], [0, 0, 0]], V spikes per key (2, 1, 0) -> A V: 3 + 3
    qk, av = attention_stats(a, values, mask).tolist()
    assert (qk, av) == (4.0 + 5.0, 1.0 + 6.0)
    qk_all, _ = attention_stats(a, values, None).tolist()
    assert qk_all == 9.0 + 2.0  # query 2 counted too
