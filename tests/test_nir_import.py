from dataclasses import replace

import nir
import numpy as np
import pytest
import torch
from nirtorch.nir_interpreter import DEFAULT_MAP

from spikebert.contract.extension import SBTokenEmbedding, SBTokenMean
from spikebert.contract.nirfile import read_graph, write_graph
from spikebert.converters.nir_to_torch import NODE_MAP, import_graph, load_nir
from spikebert.converters.torch_to_nir import export_student
from spikebert.hardware.reference import ReferenceExecutor
from spikebert.model import SpikeBERT
from spikebert.testing import make_ids, make_student

pytestmark = pytest.mark.usefixtures("one_thread")


def _student(cfg, *, seed: int = 0) -> SpikeBERT:
    return make_student(cfg, seed=seed, statistics_batch=6, attention_bias=1.5)


def _roundtrip(model: SpikeBERT, tmp_path):
    path = tmp_path / "student.nir"
    write_graph(path, export_student(model))
    return load_nir(path), path


@pytest.mark.parametrize(
    "norm, mask_padding, positions",
    [("layer", True, False), ("layer", False, False), ("batch", True, False), ("batch", False, False),
     ("layer", True, True), ("batch", False, True)],
)
def test_file_roundtrip_reproduces_the_student(tiny_cfg, tmp_path, norm, mask_padding, positions):
    cfg = replace(tiny_cfg, norm=norm, mask_padding=mask_padding, position_embedding=positions)
    model = _student(cfg)
    imported, path = _roundtrip(model, tmp_path)
    ids = make_ids(5, cfg.max_len, cfg.vocab_size)
    with torch.no_grad():
        expected = model(ids)
        steps = imported.step_outputs(ids)
        logits = imported(ids)
    assert steps.shape == (cfg.time_steps, 5, cfg.num_classes) and steps.dtype == torch.float64
    torch.testing.assert_close(steps, expected.step_logits, rtol=0, atol=1e-12)
    torch.testing.assert_close(logits, expected.logits, rtol=0, atol=1e-12)
    assert torch.equal(logits.argmax(-1), expected.logits.argmax(-1))
    assert expected.logits.std(0).min() > 0.05  # the samples differ: the network is active
    with torch.no_grad():
        torch.testing.assert_close(imported(ids), logits, rtol=0, atol=0)  # no state leaks between calls
    reference = ReferenceExecutor(read_graph(path)).run(ids.numpy(), record=("b0_attn_lif", "b1_attn_lif"))
    np.testing.assert_allclose(steps.numpy(), reference.step_outputs, rtol=0, atol=1e-12)
    assert all(s.mean() > 0.1 for s in reference.spikes.values())  # so the padding mask of the keys matters


def _bag_of_spikes_graph(*, mask_padding: bool) -> nir.NIRGraph:
    """ids (3,) -> E[ids] -> [> 0] -> token mean -> W x + b, over 3 steps."""
    embed = SBTokenEmbedding(weight=np.array([[0.0, 0.0], [1.0, -1.0], [2.0, 3.0]]), max_len=3, pad_token_id=0)
    nodes = {
        "input": nir.Input(input_type={"input": np.array([3])}),
        "embed": embed,
        "spikes": nir.Threshold(threshold=np.zeros((2, 3))),
        "pool": SBTokenMean(dim=2, tokens=3, mask_padding=mask_padding),
        "classifier": nir.Affine(weight=np.array([[1.0, 2.0], [0.0, -1.0]]), bias=np.array([10.0, 20.0])),
        "output": nir.Output(output_type={"output": np.array([2])}),
    }
    edges = [("input", "embed"), ("embed", "spikes"), ("spikes", "pool"), ("pool", "classifier"),
             ("classifier", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"time_steps": 3, "dt": 1.0})


@pytest.mark.parametrize("mask_padding, expected", [(True, [12.0, 19.5]), (False, [34 / 3, 59 / 3])])
def test_hand_computed_graph_keeps_the_affine_bias(mask_padding, expected):
    """ids [1, 2, pad]: spikes [1, 0], [1, 1], [0, 0]; mean [1, 1/2] over real tokens, [2/3, 1/3] over all."""
    imported = import_graph(_bag_of_spikes_graph(mask_padding=mask_padding))
    ids = torch.tensor([[1, 2, 0]])
    assert imported.step_outputs(ids).shape == (3, 1, 2)
    torch.testing.assert_close(imported(ids), torch.tensor([expected], dtype=torch.float64), rtol=0, atol=1e-12)


def test_nirtorch_default_affine_mapping_would_lose_the_bias(tiny_cfg, tmp_path, monkeypatch):
    """The test above and the round trip fail with nirtorch 2.6's own Affine mapping (bias never loaded)."""
    model = _student(tiny_cfg)
    ids = make_ids(5, tiny_cfg.max_len, tiny_cfg.vocab_size)
    monkeypatch.setitem(NODE_MAP, nir.Affine, lambda node, **_: DEFAULT_MAP[nir.Affine](node))
    imported, _ = _roundtrip(model, tmp_path)
    with torch.no_grad():
        assert not torch.allclose(imported(ids), model(ids).logits, rtol=0, atol=1e-6)
    hand = import_graph(_bag_of_spikes_graph(mask_padding=True))(torch.tensor([[1, 2, 0]]))
    assert not torch.allclose(hand, torch.tensor([[12.0, 19.5]], dtype=torch.float64))


def _neuron(node, *, dt: float, current: float, steps: int):
    module = NODE_MAP[type(node)](node, dt=dt).double()
    x, v, out = torch.full((1, 1, 1), current, dtype=torch.float64), None, []
    for _ in range(steps):
        z, v = module(x, state=v)
        out.append((z.item(), v.item()))
    return out


def _lif(**params) -> nir.LIF:
    return nir.LIF(**{k: np.full((1, 1), v) for k, v in params.items()})


def test_lif_impulse_responses():
    # tau=2, dt=1: v <- v/2 + x/2; v = 1.0 exactly at the threshold does not fire (strict >)
    assert _neuron(_lif(tau=2.0, r=1.0, v_leak=0.0, v_threshold=1.0, v_reset=0.0), dt=1.0, current=2.0,
                   steps=3) == [(0.0, 1.0), (1.0, 0.0), (0.0, 1.0)]
    # dt=0.5, r=2, v_leak=0.5: beta 3/4, gain 1/2, bias 1/8; reset to -1/2
    assert _neuron(_lif(tau=2.0, r=2.0, v_leak=0.5, v_threshold=1.0, v_reset=-0.5), dt=0.5, current=1.0,
                   steps=3) == [(0.0, 0.625), (1.0, -0.5), (0.0, 0.25)]
    # IF: v <- v + r dt x
    if_node = nir.IF(r=np.full((1, 1), 2.0), v_threshold=np.full((1, 1), 1.0), v_reset=np.zeros((1, 1)))
    assert _neuron(if_node, dt=0.25, current=0.75, steps=3) == [(0.0, 0.375), (0.0, 0.75), (1.0, 0.0)]


def test_unsupported_nodes_and_inputs_are_clear_errors(tiny_cfg, trained_like_model):
    graph = export_student(trained_like_model)
    shape = graph.nodes["b0_lif1"].tau.shape
    cuba = nir.CubaLIF(tau_syn=np.ones(shape), tau_mem=np.ones(shape), r=np.ones(shape), v_leak=np.zeros(shape),
                       v_threshold=np.ones(shape))
    bad = nir.NIRGraph(nodes={**graph.nodes, "b0_lif1": cuba}, edges=graph.edges, metadata=graph.metadata,
                       type_check=False)
    with pytest.raises(ValueError, match=r"'b0_lif1' has type CubaLIF.*supported: \[.*'LIF'"):
        import_graph(bad)
    conv = graph.nodes["b0_fc1"]
    wide = nir.Conv1d(input_shape=8, weight=np.repeat(conv.weight, 3, axis=2), stride=1, padding=1, dilation=1,
                      groups=1, bias=conv.bias)
    with pytest.raises(ValueError, match="only token-wise Conv1d"):
        import_graph(nir.NIRGraph(nodes={**graph.nodes, "b0_fc1": wide}, edges=graph.edges,
                                  metadata=graph.metadata, type_check=False))
    with pytest.raises(ValueError, match="one Output node with one incoming edge"):
        import_graph(nir.NIRGraph(nodes=graph.nodes, edges=[*graph.edges, ("b1_res2", "output")],
                                  metadata=graph.metadata, type_check=False))
    with pytest.raises(ValueError, match="readout"):
        import_graph(nir.NIRGraph(nodes=graph.nodes, edges=graph.edges, type_check=False,
                                  metadata={**graph.metadata, "readout": "last step"}))
    imported = import_graph(graph)
    with pytest.raises(ValueError, match="pad to max_len"):
        imported(make_ids(2, 5, tiny_cfg.vocab_size))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        imported(torch.full((2, 8), tiny_cfg.vocab_size))
