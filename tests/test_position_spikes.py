"""``position_encoding = "spikes"``: positions delivered as spikes of a position population through a learned
synapse (``SBPositionSpikes`` -> ``Conv1d``), not as host currents. PyTorch = NIR file = reference executor =
Lava, float and Loihi fixed point; the synapse reads binary spikes (accumulates, no MACs)."""

import dataclasses

import numpy as np
import pytest
import torch

from spikebert.contract.errors import SpikebertError
from spikebert.contract.extension import SBPositionSpikes, position_spikes
from spikebert.contract.nirfile import read_graph, write_graph
from spikebert.converters.nir_to_torch import import_graph
from spikebert.converters.torch_to_nir import export_student
from spikebert.energy.counting import count_operations
from spikebert.hardware.reference import ReferenceExecutor, encode_tokens
from spikebert.model import SpikeBERT
from spikebert.testing import make_ids, make_student
from tests.conftest import assert_file_graph_equals_pytorch, assert_lava_equals_reference


@pytest.fixture
def spikes_cfg(tiny_cfg):
    return dataclasses.replace(tiny_cfg, residual="membrane", norm="batch", position_encoding="spikes")


@pytest.fixture
def spikes_student(spikes_cfg):
    return make_student(spikes_cfg, seed=2)


def test_position_population_fires_once_per_real_token(tiny_cfg):
    """Neuron p fires at token l iff p == l and a real token sits there: a pad is silent. PyTorch's
    population (B, L, max_len) is the NIR node's (B, max_len, L)."""
    ids = np.array([[5, 7, 0, 0], [3, 0, 9, 2]])
    s = position_spikes(SBPositionSpikes(max_len=4, pad_token_id=0), ids)  # (B, max_len, L)
    np.testing.assert_array_equal(s[0], np.diag([1.0, 1.0, 0.0, 0.0]))
    np.testing.assert_array_equal(s[1], np.diag([1.0, 0.0, 1.0, 1.0]))
    model = SpikeBERT(dataclasses.replace(tiny_cfg, max_len=4, position_encoding="spikes", residual="membrane"))
    with torch.no_grad():
        np.testing.assert_array_equal(model.position_spikes(torch.from_numpy(ids)).numpy().transpose(0, 2, 1), s)


def test_spikes_need_the_membrane_residual_and_start_as_the_paper(tiny_cfg):
    with pytest.raises(SpikebertError, match="residual='membrane'"):
        dataclasses.replace(tiny_cfg, position_encoding="spikes")
    model = SpikeBERT(dataclasses.replace(tiny_cfg, position_encoding="spikes", residual="membrane"))
    assert model.position is None and model.position_synapse.bias is None
    assert not model.position_synapse.weight.any()  # zero, as a learned table starts
    assert "position_spikes.eye" not in model.state_dict()  # a constant, not a weight


def test_position_spikes_export_round_trip(spikes_student, tmp_path):
    """The population and its synapse reach the NIR file; file -> reference and file -> torch equal PyTorch; the
    graph is order-aware: swapping two tokens changes the logits, as in PyTorch."""
    graph, ids, logits, activity = assert_file_graph_equals_pytorch(spikes_student, tmp_path / "p.nir")
    assert isinstance(graph.nodes["position_spikes"], SBPositionSpikes)
    assert ("input", "position_spikes") in graph.edges and ("position_synapse", "res1") in graph.edges
    weight = spikes_student.position_synapse.weight.detach().numpy()  # (D, max_len)
    np.testing.assert_array_equal(graph.nodes["position_synapse"].weight[:, :, 0], weight)
    assert activity.nodes["position_synapse"].input_nonzeros == 4 * (ids != 0).sum()  # one spike per real token, T=4
    with torch.no_grad():
        imported = import_graph(graph)(ids).numpy()
    np.testing.assert_allclose(imported, logits, rtol=0, atol=1e-12)
    swapped = ids.clone()
    swapped[:, [1, 2]] = swapped[:, [2, 1]]
    ex = ReferenceExecutor(graph)
    with torch.no_grad():
        expected = spikes_student(swapped).logits.numpy()
    np.testing.assert_allclose(ex.run(swapped.numpy()).logits, expected, rtol=0, atol=1e-12)
    assert not np.allclose(expected, logits)


@pytest.mark.parametrize(("mask_padding", "pad"), [(False, 0), (True, 3)])
def test_padding_variants_equal_pytorch(spikes_cfg, mask_padding, pad):
    """Unmasked padding (the official behaviour: pads enter attention and the mean) and another pad id: the
    file graph still equals PyTorch, and a pad position stays silent."""
    cfg = dataclasses.replace(spikes_cfg, mask_padding=mask_padding, pad_token_id=pad, norm="layer")
    model = make_student(cfg, seed=4)
    ids = make_ids(4, 8, cfg.vocab_size, seed=6)
    ids[ids == pad] = pad + 1
    ids[0, 5:], ids[2, 3:] = pad, pad
    graph = export_student(model)
    assert graph.nodes["position_spikes"].pad_token_id == pad
    with torch.no_grad():
        expected = model(ids).logits.numpy()
    np.testing.assert_allclose(ReferenceExecutor(graph).run(ids.numpy()).logits, expected, rtol=0, atol=1e-12)
    with torch.no_grad():
        np.testing.assert_allclose(import_graph(graph)(ids).numpy(), expected, rtol=0, atol=1e-12)
    assert not position_spikes(graph.nodes["position_spikes"], ids.numpy())[0, :, 5:].any()


@pytest.mark.parametrize("fault", ["fed by a synapse", "pad id", "max_len"])
def test_a_position_node_that_disagrees_with_the_embedding_is_refused(spikes_student, fault):
    """Hand-built graphs: a position population not fed by the ids, or with another pad id or length than the
    embedding (the mask comes from the embedding's), is refused by name, not run."""
    graph = export_student(spikes_student)
    node = graph.nodes["position_spikes"]
    if fault == "fed by a synapse":
        graph.edges = [(s, d) for s, d in graph.edges if d != "position_spikes"] + [("embed", "position_spikes")]
    elif fault == "pad id":
        graph.nodes["position_spikes"] = SBPositionSpikes(max_len=node.max_len, pad_token_id=1)
    else:
        graph.nodes["position_spikes"] = SBPositionSpikes(max_len=node.max_len + 1, pad_token_id=0)
    ids = make_ids(2, 8, spikes_student.cfg.vocab_size).numpy()
    with pytest.raises(SpikebertError, match="SBPositionSpikes 'position_spikes'"):
        encode_tokens(graph, ids)
    with pytest.raises(SpikebertError, match="SBPositionSpikes 'position_spikes'"):
        import_graph(graph)


def test_spiking_positions_compute_the_learned_table(spikes_cfg):
    """The synapse on one-hot spikes is the learned table W^T, for the real tokens (a pad gets no position)."""
    spiking = make_student(spikes_cfg, seed=5)
    learned = SpikeBERT(dataclasses.replace(spikes_cfg, position_encoding="learned")).double()
    state = {k: v for k, v in spiking.state_dict().items() if not k.startswith("position_synapse")}
    learned.load_state_dict({**state, "position.weight": spiking.position_synapse.weight.T}, strict=True)
    learned.eval()
    ids = make_ids(3, spikes_cfg.max_len, spikes_cfg.vocab_size, pads=())
    with torch.no_grad():
        torch.testing.assert_close(spiking(ids).logits, learned(ids).logits, rtol=0, atol=1e-12)


def test_position_synapse_reads_spikes_no_macs(spikes_student):
    graph = export_student(spikes_student)
    ex = ReferenceExecutor(graph)
    ex.run_batches(make_ids(4, 8, spikes_student.cfg.vocab_size).numpy(), batch_size=4)
    rows = {r.name: r for r in count_operations(graph, ex.activity, residual="mac")}
    assert rows["position_synapse"].input_kind == "spike" and rows["position_synapse"].macs == 0
    assert rows["position_synapse"].acs == 4 * spikes_student.cfg.dim * (  # one spike per real token and step
        ex.activity.real_tokens / ex.activity.samples)
    assert {n for n, r in rows.items() if r.macs > 0} == {"classifier"}
    # no bias adds (the synapse has none) and no dense MACs (the non-spiking form is a table lookup)
    assert not rows["position_synapse"].has_bias and rows["position_synapse"].dense_macs == 0
    assert rows["b0_qkv"].has_bias and rows["b0_qkv"].dense_macs > 0
    with pytest.raises(SpikebertError, match="token"):  # tensor inputs cannot feed a token graph
        ex.run_inputs(np.zeros((4, 1, 8)))


@pytest.mark.lava  # the quantiser uses Lava's weight utilities
def test_fixed_point_puts_the_position_synapse_in_the_stream(spikes_student):
    """Quantised, the synapse joins the membrane stream at its one scale; fixed-point logits stay near float."""
    from spikebert.hardware.quantize import quantize_graph

    graph = export_student(spikes_student)
    fixed = quantize_graph(graph)
    scale = fixed.nodes["embed"].metadata["fixed_point"]["scale"]
    assert fixed.nodes["position_synapse"].metadata["fixed_point"]["scale"] == scale
    ids = make_ids(16, 8, spikes_student.cfg.vocab_size, seed=3).numpy()
    a, b = ReferenceExecutor(graph).run(ids), ReferenceExecutor(fixed).run(ids)
    assert (a.logits.argmax(-1) == b.logits.argmax(-1)).mean() >= 0.75


@pytest.mark.lava
@pytest.mark.parametrize(("fuse", "fixed"), [("none", False), ("blocks", False), ("all", False), ("none", True),
                                             ("blocks", True), ("deploy", True)])
def test_position_spikes_in_lava(spikes_student, fuse, fixed, tmp_path):
    """A second host source sends the position spikes; Lava equals the reference executor bit for bit (float
    'deploy' reorders float additions, so only its fixed point is bit-exact, as for every student)."""
    from spikebert.hardware.quantize import quantize_graph

    graph = export_student(spikes_student)
    graph = quantize_graph(graph) if fixed else graph
    write_graph(tmp_path / "g.nir", graph)
    ids = make_ids(5, 8, spikes_student.cfg.vocab_size).numpy()
    assert_lava_equals_reference(read_graph(tmp_path / "g.nir"), ids, fuse=fuse, activity=fuse != "deploy")


@pytest.mark.lava
def test_lava_build_refuses_position_spikes_without_their_source(spikes_student):
    from spikebert.hardware.lava_runner import _batched, _token_source
    from spikebert.hardware.nir_to_lava import build_network

    graph = export_student(spikes_student)
    ids = make_ids(2, 8, spikes_student.cfg.vocab_size).numpy()
    enc = encode_tokens(graph, ids)
    source = _token_source(_batched(enc.spikes, 2), 4, None)
    with pytest.raises(SpikebertError, match=r"\['position_spikes'\] are host-side sources"):
        build_network(graph, source_node=enc.first_node, source=source, batch=2, n_batches=1, time_steps=4, dt=1.0,
                      masks=_batched(enc.mask, 2), fuse="blocks")
