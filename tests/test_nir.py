import nir
import numpy as np
import pytest
import torch

from converters.nir_ext import SBSpikeAttention, SBTokenEmbedding, read_graph, write_graph
from converters.torch_to_nir import export_student
from hardware.reference import ReferenceExecutor
from tests.conftest import make_ids


def test_export_roundtrips_through_file(tmp_path, trained_like_model):
    graph = export_student(trained_like_model)
    path = tmp_path / "m.nir"
    write_graph(path, graph)
    for loaded in (read_graph(path), nir.read(path)):  # nir.read works once the extension is imported
        assert set(loaded.nodes) == set(graph.nodes)
        assert sorted(loaded.edges) == sorted(graph.edges)
        for name, node in graph.nodes.items():
            assert type(loaded.nodes[name]) is type(node), name
        assert isinstance(loaded.nodes["embed"], SBTokenEmbedding)
        np.testing.assert_array_equal(loaded.nodes["b0_qkv"].weight, graph.nodes["b0_qkv"].weight)
        assert loaded.nodes["b1_attn"].heads == 2 and loaded.nodes["b1_attn"].mask_padding is True
        assert float(loaded.metadata["dt"]) == 1.0


def test_lif_parameters_are_full_arrays(trained_like_model):
    lif = export_student(trained_like_model).nodes["b0_qkv_lif"]
    assert lif.tau.shape == (3 * 16, 8) and np.all(lif.tau == 2.0)
    assert np.all(lif.v_threshold == 1.0) and np.all(lif.r == 1.0)
    assert np.all(export_student(trained_like_model).nodes["b0_attn_lif"].v_threshold == 0.5)


@pytest.mark.parametrize("mask_padding", [True, False])
def test_reference_executor_equals_pytorch_spike_for_spike(trained_like_model, mask_padding):
    from dataclasses import replace

    from spikebert.model import SpikeBERT

    model = SpikeBERT(replace(trained_like_model.cfg, mask_padding=mask_padding)).double().eval()
    model.load_state_dict(trained_like_model.state_dict())
    ids = make_ids(5, 8, model.cfg.vocab_size)
    spikes = {}
    hook = model.blocks[1].mlp.lif1.register_forward_hook(lambda m, i, o: spikes.setdefault("lif1", o))
    with torch.no_grad():
        out = model(ids)
    hook.remove()
    run = ReferenceExecutor(export_student(model)).run(ids.numpy(), record=("b1_lif1",))
    torch_spikes = spikes["lif1"].permute(0, 1, 3, 2).numpy()  # (T, B, L, C) -> (T, B, C, L)
    assert torch_spikes.sum() > 0
    np.testing.assert_array_equal(run.spikes["b1_lif1"], torch_spikes)
    np.testing.assert_allclose(run.step_outputs, out.step_logits.numpy(), rtol=0, atol=1e-12)


def test_unknown_node_type_is_a_clear_error(tmp_path):
    import dataclasses

    @dataclasses.dataclass(eq=False)
    class Mystery(nir.NIRNode):
        w: np.ndarray

        def __post_init__(self):
            self.input_type = {"input": np.array(self.w.shape)}
            self.output_type = {"output": np.array(self.w.shape)}

    g = nir.NIRGraph(nodes={"i": nir.Input(np.array([3])), "m": Mystery(np.ones(3)), "o": nir.Output(np.array([3]))},
                     edges=[("i", "m"), ("m", "o")])
    path = tmp_path / "m.nir"
    write_graph(path, g)
    with pytest.raises(ValueError, match="unknown NIR node type 'Mystery'"):
        read_graph(path)
    with pytest.raises(ValueError, match="'m' has type Mystery"):
        ReferenceExecutor(g)


def test_corrupt_and_foreign_files(tmp_path):
    bad = tmp_path / "bad.nir"
    bad.write_bytes(b"not hdf5 at all")
    with pytest.raises(ValueError, match="not a readable NIR"):
        read_graph(bad)
    with pytest.raises(FileNotFoundError):
        read_graph(tmp_path / "none.nir")


def test_attention_node_validates_shapes():
    with pytest.raises(ValueError, match="not divisible"):
        SBSpikeAttention(dim=10, heads=3, scale=0.125, tokens=4, mask_padding=True)
