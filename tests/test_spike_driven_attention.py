"""``attention = "sdsa"`` (Spike-driven Transformer's mask-and-add attention) through the toolchain: the NIR node
``SBSpikeDrivenAttention``, PyTorch = reference executor = NIR->torch import = Lava, and its energy rows."""

import dataclasses

import numpy as np
import pytest
import torch
from spikebert.converters.nir_to_torch import load_nir
from spikebert.converters.torch_to_nir import export_student
from spikebert.energy.counting import count_operations
from spikebert.hardware.reference import ReferenceExecutor

from spikebert.contract.errors import SpikebertError
from spikebert.contract.extension import SBSpikeDrivenAttention, read_graph, write_graph
from tests.conftest import assert_file_graph_equals_pytorch, assert_lava_equals_reference, make_ids, make_student


@pytest.fixture(params=[("membrane", "batch"), ("spike", "layer")])
def sdsa_student(tiny_cfg, request):
    residual, norm = request.param
    cfg = dataclasses.replace(tiny_cfg, attention="sdsa", residual=residual, norm=norm, position_encoding="sinusoidal")
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


@pytest.mark.lava
def test_sdsa_is_refused_where_it_has_no_mapping(tiny_cfg):
    """Loihi fixed point and the deployable build say so by name."""
    from spikebert.hardware.lava_runner import run_lava
    from spikebert.hardware.quantize import quantize_graph

    cfg = dataclasses.replace(tiny_cfg, attention="sdsa", residual="membrane", norm="batch")
    sdsa_student = make_student(cfg, seed=4, attention_bias=1.5)
    graph = export_student(sdsa_student)
    with pytest.raises(SpikebertError, match="SBSpikeDrivenAttention"):
        quantize_graph(graph)
    with pytest.raises(SpikebertError, match="b0_attn"):
        run_lava(graph, make_ids(2, 8, sdsa_student.cfg.vocab_size).numpy(), batch_size=2, fuse="deploy",
                 progress=False)
