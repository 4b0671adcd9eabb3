import nir
import numpy as np
import pytest
import torch

from spikebert.contract.extension import SBSpikeAttention, SBTokenEmbedding
from spikebert.contract.nirfile import read_graph, write_graph
from spikebert.converters.torch_to_nir import export_student
from spikebert.hardware.reference import ReferenceExecutor
from spikebert.testing import make_ids, scale_up_linears


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


@pytest.mark.parametrize("mask_padding", [True, False])
def test_batch_norm_folds_and_positions_export(trained_like_model, tmp_path, mask_padding):
    """norm="batch" folds into the Linear layers (no norm node left); positions reach the encoder."""
    from dataclasses import replace

    from spikebert.model import SpikeBERT, TokenBatchNorm

    cfg = replace(trained_like_model.cfg, norm="batch", position_embedding=True, mask_padding=mask_padding)
    torch.manual_seed(1)
    model = SpikeBERT(cfg).double()
    with torch.no_grad():
        scale_up_linears(model)
        model.position.weight.normal_(0, 1.0)
    model.train()
    model(make_ids(6, 8, cfg.vocab_size, seed=3))  # batch statistics -> running estimates
    model.eval()
    for m in model.modules():
        if isinstance(m, TokenBatchNorm):
            assert not torch.allclose(m.running_var, torch.ones_like(m.running_var))
            with torch.no_grad():  # non-trivial affine parameters, so folding is really tested
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.3)
    path = tmp_path / "bn.nir"
    write_graph(path, export_student(model))
    graph = read_graph(path)
    assert not any(type(n).__name__ == "SBLayerNorm" for n in graph.nodes.values())
    ids = make_ids(5, 8, cfg.vocab_size)
    with torch.no_grad():
        out = model(ids)
    run = ReferenceExecutor(graph).run(ids.numpy())
    np.testing.assert_allclose(run.step_outputs, out.step_logits.numpy(), rtol=0, atol=1e-9)
    assert np.abs(out.step_logits.numpy()).max() > 0.1


def test_batch_norm_statistics_ignore_padding(tiny_cfg):
    """With masking, pads do not move the batch-norm statistics (they do without masking)."""
    from dataclasses import replace

    from spikebert.model import TokenBatchNorm

    bn = TokenBatchNorm(features=4, eps=1e-5, momentum=1.0).double()
    x = torch.randn(2, 3, 5, 4, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 0, 0]] * 3, dtype=torch.bool)
    bn(x, mask)
    real = x[:, :, :3].reshape(-1, 4)
    torch.testing.assert_close(bn.running_mean, real.mean(0))
    torch.testing.assert_close(bn.running_var, real.var(0, unbiased=True))
    x2 = x.clone()
    x2[:, :, 3:] = 100.0
    bn2 = TokenBatchNorm(features=4, eps=1e-5, momentum=1.0).double()
    bn2(x2, mask)
    torch.testing.assert_close(bn2.running_mean, bn.running_mean)
    assert replace(tiny_cfg, norm="batch").norm == "batch"
