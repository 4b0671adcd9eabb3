"""``residual = "membrane"`` (Spike-driven Transformer V1's membrane shortcut) and position encodings:
PyTorch = reference executor = Lava spike for spike, and every synaptic layer reads binary spikes."""

import dataclasses

import numpy as np
import pytest
import torch

from spikebert.contract.nirfile import read_graph, write_graph
from spikebert.converters.torch_to_nir import export_student
from spikebert.energy.counting import count_operations
from spikebert.hardware.reference import ReferenceExecutor
from spikebert.testing import make_ids, make_student
from tests.conftest import assert_file_graph_equals_pytorch, assert_lava_equals_reference


@pytest.fixture(params=["layer", "batch"])
def membrane_student(tiny_cfg, request):
    return make_student(dataclasses.replace(tiny_cfg, residual="membrane", norm=request.param), seed=2)


def test_membrane_student_equals_reference_spike_for_spike(membrane_student, tmp_path):
    _, _, _, activity = assert_file_graph_equals_pytorch(membrane_student, tmp_path / "m.nir")
    spiking_inputs = [n for n in ("b0_qkv", "b0_fc1", "b1_qkv", "b1_fc1") if activity.nodes[n].input_nonzeros]
    assert spiking_inputs, "the tiny student must fire for the test to mean anything"


def test_membrane_student_reads_only_spikes(membrane_student):
    """No integer- or real-valued synaptic inputs outside the embedding and the classifier: the energy
    report counts MACs only for the classifier (the SEW student has integer inputs at b*_fc1, b1_qkv)."""
    graph = export_student(membrane_student)
    ex = ReferenceExecutor(graph)
    ex.run_batches(make_ids(4, 8, membrane_student.cfg.vocab_size).numpy(), batch_size=4)
    rows = count_operations(graph, ex.activity, residual="mac")
    synaptic = [r for r in rows if r.kind in ("affine", "conv1d", "attention")]
    assert {r.name for r in synaptic if r.macs > 0} == {"classifier"}
    assert all(r.input_kind == "spike" for r in synaptic if r.name != "classifier")
    sew = make_student(dataclasses.replace(membrane_student.cfg, residual="spike"), seed=2)
    sew_graph = export_student(sew)
    ex = ReferenceExecutor(sew_graph)
    ex.run_batches(make_ids(4, 8, sew.cfg.vocab_size).numpy(), batch_size=4)
    assert "integer" in {r.input_kind for r in count_operations(sew_graph, ex.activity)}


@pytest.mark.lava
@pytest.mark.parametrize("fuse", ["none", "blocks"])
def test_membrane_student_in_lava(membrane_student, fuse):
    ids = make_ids(5, 8, membrane_student.cfg.vocab_size).numpy()
    assert_lava_equals_reference(export_student(membrane_student), ids, fuse=fuse)


@pytest.mark.parametrize("positions", ["learned", "sinusoidal"])
def test_positions_export_round_trip(tiny_cfg, positions, tmp_path):
    """Positions reach the NIR file (SBTokenEmbedding.position_weight) and the graph is order-aware:
    swapping two tokens changes the encoder's output, as in PyTorch."""
    cfg = dataclasses.replace(tiny_cfg, position_encoding=positions, residual="membrane")
    model = make_student(cfg, seed=3)
    if positions == "learned":
        with torch.no_grad():
            model.position.weight.normal_(0, 0.5)
    table = model.position.weight.detach().double().numpy()
    write_graph(tmp_path / "p.nir", export_student(model))
    graph = read_graph(tmp_path / "p.nir")
    np.testing.assert_allclose(graph.nodes["embed"].position_weight, table, rtol=0, atol=1e-7)
    ids = make_ids(3, 8, cfg.vocab_size, pads=())
    swapped = ids.clone()
    swapped[:, [1, 2]] = swapped[:, [2, 1]]
    ex = ReferenceExecutor(graph)
    a, b = ex.run_batches(ids.numpy(), batch_size=3), ex.run_batches(swapped.numpy(), batch_size=3)
    with torch.no_grad():
        ta, tb = model(ids).logits.numpy(), model(swapped).logits.numpy()
    np.testing.assert_allclose(a, ta, atol=1e-12)
    np.testing.assert_allclose(b, tb, atol=1e-12)
    assert not np.array_equal(a, b)


def test_sinusoidal_table_is_not_trained(tiny_cfg):
    from spikebert.model import SpikeBERT, sinusoidal_table

    model = SpikeBERT(dataclasses.replace(tiny_cfg, position_encoding="sinusoidal", position_scale=0.5))
    assert not model.position.weight.requires_grad
    torch.testing.assert_close(model.position.weight, 0.5 * sinusoidal_table(tiny_cfg.max_len, tiny_cfg.dim))
    assert sinusoidal_table(4, 4)[1, 0] == pytest.approx(np.sin(1.0)) and sinusoidal_table(4, 4)[1, 1] == pytest.approx(
        np.cos(1.0))


# --- Loihi fixed point: one integer scale for the whole stream of currents -------------------------------


@pytest.fixture
def membrane_batchnorm(tiny_cfg):
    cfg = dataclasses.replace(tiny_cfg, residual="membrane", norm="batch", position_encoding="sinusoidal")
    return make_student(cfg, seed=2)


@pytest.mark.lava
def test_membrane_student_quantises_as_one_stream(membrane_batchnorm, tmp_path):
    """Every population that reads the stream shares one scale; the embedding sends integer currents; the
    biases of the synapses upstream of a population are its bias; the readout reads the integer sums back
    as currents, so the fixed-point logits stay near the float ones (8-bit weights)."""
    from spikebert.hardware.quantize import quantize_graph
    from spikebert.hardware.reference import encode_tokens

    graph = export_student(membrane_batchnorm)
    fixed = quantize_graph(graph)
    stream = ["b0_in_lif", "b0_in_lif_1", "b1_in_lif", "b1_in_lif_1"]
    scales = {fixed.nodes[p].metadata["fixed_point"]["scale"] for p in stream}
    assert len(scales) == 1
    ids = make_ids(16, 8, membrane_batchnorm.cfg.vocab_size, seed=3).numpy()
    currents = encode_tokens(fixed, ids).spikes
    assert np.array_equal(currents, np.rint(currents)) and np.abs(currents).max() > 1
    assert not fixed.nodes["b0_in_lif"].metadata["fixed_point"]["bias_mant"].any()  # the embedding has no bias
    assert fixed.nodes["b1_in_lif"].metadata["fixed_point"]["bias_mant"].any()  # b0_proj's and b0_fc2's biases
    assert not np.any(fixed.nodes["b0_fc2"].bias)
    write_graph(tmp_path / "q.nir", fixed)  # the quantised graph is a NIR file like any other
    again = read_graph(tmp_path / "q.nir")
    float_run = ReferenceExecutor(graph).run(ids, record=("b1_in_lif",))
    fixed_run = ReferenceExecutor(again).run(ids, record=("b1_in_lif",))
    assert (float_run.spikes["b1_in_lif"] != fixed_run.spikes["b1_in_lif"]).mean() < 0.05
    assert (float_run.logits.argmax(-1) == fixed_run.logits.argmax(-1)).mean() >= 0.75
    np.testing.assert_allclose(fixed_run.logits, float_run.logits, atol=0.5)


@pytest.mark.lava
@pytest.mark.parametrize("fuse", ["none", "blocks", "deploy"])
def test_membrane_student_fixed_point_is_bit_exact_in_lava(membrane_batchnorm, fuse):
    from spikebert.hardware.quantize import quantize_graph

    graph = quantize_graph(export_student(membrane_batchnorm))
    ids = make_ids(5, 8, membrane_batchnorm.cfg.vocab_size).numpy()
    lava, expected = assert_lava_equals_reference(graph, ids, fuse=fuse, record=("b1_in_lif_1",),
                                                  activity=fuse != "deploy")  # deploy: lava-nc Convs record none
    assert lava.fixed_point and expected.spikes["b1_in_lif_1"].any()


@pytest.mark.lava
def test_fixed_point_refuses_a_stream_it_cannot_scale(membrane_batchnorm):
    """A stream read by something other than its populations and a readout, and populations of one stream with
    different input gains, are refused by name, not quantised wrongly."""
    from spikebert.contract.errors import SpikebertError
    from spikebert.hardware.quantize import quantize_graph

    graph = export_student(membrane_batchnorm)
    graph.nodes["b1_in_lif_1"].tau = graph.nodes["b1_in_lif_1"].tau * 2
    with pytest.raises(SpikebertError, match="different input gains"):
        quantize_graph(graph)
    graph = export_student(membrane_batchnorm)
    graph.edges.append(("b0_res1", "b1_fc1"))  # a stream read by a synapse of spikes: no single scale
    with pytest.raises(SpikebertError, match="b1_fc1"):
        quantize_graph(graph)
    graph = export_student(membrane_batchnorm)
    graph.edges.append(("b1_res1", "pool"))  # the readout reads the stream twice: its fold would be applied twice
    with pytest.raises(SpikebertError, match="pool"):
        quantize_graph(graph)
    graph = export_student(membrane_batchnorm)
    graph.edges.insert(0, ("b0_in_lif_1", "b0_res2"))  # a population's spikes joined into the currents
    with pytest.raises(SpikebertError, match="spikes joined into currents"):
        quantize_graph(graph)
    graph = export_student(membrane_batchnorm)  # a stream synapse reading currents: its output is not in the scale
    graph.nodes["extra"] = dataclasses.replace(graph.nodes["b0_proj"])
    graph.edges += [("b0_res1", "extra"), ("extra", "b0_res2")]
    with pytest.raises(SpikebertError, match="not spikes"):
        quantize_graph(graph)


@pytest.mark.lava
def test_fixed_point_says_when_an_input_current_wraps(membrane_batchnorm, caplog):
    """Loihi's 24-bit current wraps beyond 2^17 - 1 input units; the run stays bit-exact with the chip, but the
    neurons no longer follow the float graph, and the log says so."""
    from spikebert.hardware.quantize import quantize_graph
    from spikebert.hardware.reference import encode_tokens

    graph = quantize_graph(export_student(membrane_batchnorm))
    ids = make_ids(2, 8, membrane_batchnorm.cfg.vocab_size).numpy()
    ReferenceExecutor(graph).run(ids)
    assert "wraps" not in caplog.text
    graph.nodes["embed"].metadata["fixed_point"]["scale"] *= 2**12  # currents far beyond 24 bits
    assert np.abs(encode_tokens(graph, ids).spikes).max() > 2**17
    ReferenceExecutor(graph).run(ids)
    assert "b0_in_lif: input" in caplog.text and "wraps" in caplog.text
