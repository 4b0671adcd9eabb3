"""``attention = "sdsa"`` (Spike-driven Transformer's mask-and-add attention) through the toolchain: the NIR node
``SBSpikeDrivenAttention``, PyTorch = reference executor = NIR->torch import = Lava, and its energy rows."""

import dataclasses

import numpy as np
import pytest
import torch

from spikebert.contract.errors import SpikebertError
from spikebert.contract.extension import SBSpikeDrivenAttention
from spikebert.contract.nirfile import read_graph, write_graph
from spikebert.converters.nir_to_torch import load_nir
from spikebert.converters.torch_to_nir import export_student
from spikebert.energy.counting import count_operations
from spikebert.hardware.reference import ReferenceExecutor
from spikebert.testing import make_ids, make_student
from tests.conftest import assert_file_graph_equals_pytorch, assert_lava_equals_reference


@pytest.fixture(params=[("membrane", "batch"), ("spike", "layer")])
def sdsa_student(tiny_cfg, request):
    residual, norm = request.param
    cfg = dataclasses.replace(tiny_cfg, attention="sdsa", residual=residual, norm=norm, position_encoding="sinusoidal")
    return make_student(cfg, seed=4, attention_bias=1.5)


@pytest.fixture(params=["membrane", "spike"])
def sdsa_batchnorm(tiny_cfg, request):
    """Batch norm (it folds into the weights): the students that Loihi fixed point takes."""
    cfg = dataclasses.replace(tiny_cfg, attention="sdsa", residual=request.param, norm="batch",
                              position_encoding="sinusoidal")
    return make_student(cfg, seed=4, attention_bias=1.5)


def test_sdsa_student_exports_and_equals_pytorch(sdsa_student, tmp_path):
    """The file's graph on the reference executor = PyTorch (logits to 1e-12, every layer's counts), the
    attention's own population fires and its coincidences are counted; NIR->torch import agrees too."""
    graph, ids, logits, activity = assert_file_graph_equals_pytorch(sdsa_student, tmp_path / "s.nir")
    node = graph.nodes["b0_attn"]
    assert isinstance(node, SBSpikeDrivenAttention) and node.tau.shape == (sdsa_student.cfg.dim,)
    assert activity.nodes["b0_attn"].qk_accumulates > 0
    run = ReferenceExecutor(graph).run(ids.numpy(), record=("b0_attn",))
    assert 0 < run.spikes["b0_attn"].mean() < 0.5  # Q masked by the channels that fired: some pass, not all
    imported = load_nir(tmp_path / "s.nir")
    with torch.no_grad():
        np.testing.assert_allclose(imported(ids).numpy(), logits, rtol=0, atol=1e-12)


def test_sdsa_energy_rows(sdsa_student):
    """One accumulate per K-V coincidence (no Q K^T products), its population as a row of its own."""
    graph = export_student(sdsa_student)
    ex = ReferenceExecutor(graph)
    ex.run_batches(make_ids(4, 8, sdsa_student.cfg.vocab_size).numpy(), batch_size=4, progress=False)
    rows = {r.name: r for r in count_operations(graph, ex.activity)}
    attention, population = rows["b0_attn"], rows["b0_attn/population"]
    assert attention.kind == "attention" and attention.acs == ex.activity.nodes["b0_attn"].qk_accumulates / 4
    assert attention.macs == 0 and ex.activity.nodes["b0_attn"].av_accumulates == 0
    cfg = sdsa_student.cfg
    assert population.kind == "neurons" and population.neuron_updates == cfg.dim * cfg.time_steps
    assert rows["b0_proj"].input_kind == "spike" and rows["b0_proj"].macs == 0  # it reads the masked Q spikes


def test_sdsa_node_refuses_bad_parameters(tmp_path, sdsa_student):
    with pytest.raises(SpikebertError, match="one value per channel"):
        SBSpikeDrivenAttention(dim=4, tokens=3, mask_padding=True, tau=np.full(3, 2.0), r=np.ones(4),
                               v_leak=np.zeros(4), v_threshold=np.ones(4), v_reset=np.zeros(4))
    write_graph(tmp_path / "s.nir", export_student(sdsa_student))
    assert isinstance(read_graph(tmp_path / "s.nir").nodes["b1_attn"], SBSpikeDrivenAttention)


@pytest.mark.lava
@pytest.mark.parametrize("mask_padding", [True, False])
def test_sdsa_student_in_lava(sdsa_student, mask_padding):
    """Equal outputs and counts, also without padding masks (Lava's batch-filler rows are not counted)."""
    model = make_student(dataclasses.replace(sdsa_student.cfg, mask_padding=mask_padding), seed=4, attention_bias=1.5)
    ids = make_ids(5, 8, model.cfg.vocab_size).numpy()
    assert_lava_equals_reference(export_student(model), ids, fuse="blocks")


@pytest.mark.lava  # Loihi fixed point uses lava-nc's weight utilities
@pytest.mark.parametrize("mask_padding", [True, False])
def test_sdsa_population_is_exact_in_loihi_fixed_point(sdsa_batchnorm, mask_padding):
    """At tau = 2 (beta = gain = 1/2) and threshold 1/2 the quantised population is exact: 64 units per
    coincidence, threshold 64, decay by a half. Its recorded output equals a float LIF, written out here, fed
    the recorded Q, K, V spikes of the fixed run, step by step (padding tokens' coincidences left out if the
    node masks padding). 16 sentences in batches of 64 and of 5: the state starts at rest in every batch."""
    from spikebert.hardware.quantize import quantize_graph

    cfg = dataclasses.replace(sdsa_batchnorm.cfg, mask_padding=mask_padding)
    student = make_student(cfg, seed=4, attention_bias=1.5)
    graph = quantize_graph(export_student(student))
    fixed = graph.nodes["b0_attn"].metadata["fixed_point"]
    assert (fixed["multiplier"], fixed["vth"], fixed["dv"], fixed["scale"]) == (64, 64, 2048, 128.0)
    ids = make_ids(16, 8, cfg.vocab_size, seed=3).numpy()
    run = ReferenceExecutor(graph).run(ids, record=("b0_qkv_lif", "b0_attn"))
    ex = ReferenceExecutor(graph)  # one executor, batches of 5: no state leaks from one batch into the next
    batched = [ex.run(ids[i:i + 5], record=("b0_attn",)).spikes["b0_attn"] for i in range(0, len(ids), 5)]
    np.testing.assert_array_equal(np.concatenate(batched, axis=1), run.spikes["b0_attn"])
    qkv, out = run.spikes["b0_qkv_lif"], run.spikes["b0_attn"]  # (T, B, 3D, L), (T, B, D, L)
    real = (ids != 0)[:, None, :] if mask_padding else np.ones((ids.shape[0], 1, ids.shape[1]))
    v, D = np.zeros((ids.shape[0], cfg.dim)), cfg.dim
    for t in range(cfg.time_steps):
        q, k, v_ = qkv[t][:, :D], qkv[t][:, D:2 * D], qkv[t][:, 2 * D:]
        v = 0.5 * v + 0.5 * (k * v_ * real).sum(-1)  # beta = 1 - dt/tau, gain = r dt/tau
        s = v > cfg.attn_threshold
        v[s] = 0.0
        np.testing.assert_array_equal(out[t], q * s[:, :, None])
    assert 0 < out.mean() < qkv[:, :, :D].mean()  # Q masked: some channels pass, not all
    float_run = ReferenceExecutor(export_student(student)).run(ids, record=("b0_attn",))
    assert (float_run.spikes["b0_attn"] != out).mean() < 0.05  # upstream 8-bit weights flip a few spikes


@pytest.mark.lava
@pytest.mark.parametrize("fuse", ["none", "blocks"])
def test_sdsa_student_fixed_point_is_bit_exact_in_lava(sdsa_batchnorm, fuse):
    """Lava runs the quantised SDSA (in a NodeGroup, the reference executor's own fixed step) bit for bit as the
    reference executor."""
    from spikebert.hardware.quantize import quantize_graph

    graph = export_student(sdsa_batchnorm)
    ids = make_ids(5, 8, sdsa_batchnorm.cfg.vocab_size).numpy()
    lava, expected = assert_lava_equals_reference(quantize_graph(graph), ids, fuse=fuse, record=("b1_attn",))
    assert lava.fixed_point and expected.spikes["b1_attn"].any()


@pytest.mark.lava
def test_fixed_point_refuses_what_it_cannot_make_exact(sdsa_batchnorm):
    """SDSA fed currents instead of spikes (its counts would not be whole numbers), and a population gain with
    no power-of-two multiple, are refused by name."""
    from spikebert.hardware.quantize import quantize_graph

    graph = export_student(sdsa_batchnorm)
    del graph.nodes["b0_qkv_lif"]  # the attention reads the QKV synapse's currents directly
    graph.edges = [(s, d) for s, d in graph.edges if "b0_qkv_lif" not in (s, d)] + [("b0_qkv", "b0_attn")]
    with pytest.raises(SpikebertError, match=r"'b0_attn' reads \['b0_qkv'\], not spikes"):
        quantize_graph(graph)
    graph = export_student(sdsa_batchnorm)
    graph.nodes["b0_attn"].tau = np.full(sdsa_batchnorm.cfg.dim, 3.0)
    with pytest.raises(SpikebertError, match="b0_attn.*tau = 2\\^k dt"):
        quantize_graph(graph)


@pytest.mark.lava
@pytest.mark.parametrize("quantised", [False, True], ids=["float", "fixed"])
def test_sdsa_student_deploys(sdsa_batchnorm, quantised):
    """``deploy``: SDSA is one custom process (its own population and the Q mask, the reference's step) whose
    binary output lava-nc Convs read; every other synapse and population stays lava-nc's. Fixed point: bit for bit
    the reference executor, the attention's counts included; float: the same outputs up to the order of float
    sums (a join's Convs converge on the population)."""
    from spikebert.hardware.lava_runner import run_lava
    from spikebert.hardware.quantize import quantize_graph

    graph = export_student(sdsa_batchnorm)
    graph = quantize_graph(graph) if quantised else graph
    ids = make_ids(5, 8, sdsa_batchnorm.cfg.vocab_size).numpy()
    ref = ReferenceExecutor(graph)
    expected = ref.run(ids, record=("b0_attn", "b1_attn"))
    assert expected.spikes["b0_attn"].any() and expected.spikes["b1_attn"].any()
    run = run_lava(graph, ids, batch_size=2, fuse="deploy", progress=False)  # 3 windows, filler rows in the last
    if quantised:
        np.testing.assert_array_equal(run.step_outputs, expected.step_outputs)
    else:
        np.testing.assert_allclose(run.step_outputs, expected.step_outputs, rtol=0, atol=1e-12)
    for name in ("b0_attn", "b1_attn", "pool", "classifier"):  # what custom processes compute is recorded
        assert run.activity.nodes[name].same_counts(ref.activity.nodes[name]), name


@pytest.mark.lava
def test_sdsa_deploy_inventory(sdsa_batchnorm):
    """Without running: each SDSA node is one custom process reading its QKV population; the projections that
    read SDSA's spikes are lava-nc Convs, and no population is left custom."""
    from spikebert.hardware.lava_runner import _batched, _token_source
    from spikebert.hardware.nir_to_lava import build_network
    from spikebert.hardware.reference import encode_tokens

    graph = export_student(sdsa_batchnorm)
    ids = make_ids(2, 8, sdsa_batchnorm.cfg.vocab_size).numpy()
    enc = encode_tokens(graph, ids)
    mask = enc.mask if enc.mask is not None else np.ones(ids.shape, bool)
    net = build_network(graph, source_node=enc.first_node, source=_token_source(_batched(enc.spikes, 2), 4, None),
                        batch=2, n_batches=1, time_steps=int(graph.metadata["time_steps"]),
                        dt=graph.metadata.get("dt"), masks=_batched(mask, 2), fuse="deploy")
    attention = [p for p in net.inventory if p.kind == "custom spike-driven attention"]
    assert [(p.nodes, p.source) for p in attention] == [(["b0_attn"], "b0_qkv_lif"), (["b1_attn"], "b1_qkv_lif")]
    convs = [p for p in net.inventory if p.kind == "lava-nc Conv"]
    assert {p.source for p in convs if p.nodes in (["b0_proj"], ["b1_proj"])} == {"b0_attn", "b1_attn"}
    lifs = {p.nodes[0] for p in net.inventory if p.kind == "lava-nc LIFReset"}
    assert lifs == {n for n, node in graph.nodes.items() if type(node).__name__ == "LIF"}
