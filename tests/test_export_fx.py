"""The traced exporter: the graph it derives from the model's modules, and its errors."""

from dataclasses import replace

import nir
import numpy as np
import pytest
import torch
from torch import nn

from spikebert.contract.extension import READOUT
from spikebert.converters.torch_to_nir import MODULE_MAP, _linear, export_student, node_name
from spikebert.model import MLP, SpikeBERT
from spikebert.testing import make_student

pytestmark = pytest.mark.usefixtures("one_thread")


def _student(cfg, *, seed: int = 0) -> SpikeBERT:
    return make_student(cfg, seed=seed)


# ---- saved expectations ------------------------------------------------------------------------

_LAYER_NORM_GRAPH = (
    "input:Input embed:SBTokenEmbedding spikes:Threshold b0_qkv:Conv1d b0_qkv_norm:SBLayerNorm b0_qkv_lif:LIF "
    "b0_attn:SBSpikeAttention b0_attn_lif:LIF b0_proj:Conv1d b0_proj_norm:SBLayerNorm b0_proj_lif:LIF "
    "b0_res1:Scale b0_fc1:Conv1d b0_fc1_norm:SBLayerNorm b0_lif1:LIF b0_fc2:Conv1d b0_fc2_norm:SBLayerNorm "
    "b0_lif2:LIF b0_res2:Scale head_norm:SBLayerNorm pool:SBTokenMean classifier:Affine output:Output",
    "input>embed embed>spikes spikes>b0_qkv b0_qkv>b0_qkv_norm b0_qkv_norm>b0_qkv_lif b0_qkv_lif>b0_attn "
    "b0_attn>b0_attn_lif b0_attn_lif>b0_proj b0_proj>b0_proj_norm b0_proj_norm>b0_proj_lif spikes>b0_res1 "
    "b0_proj_lif>b0_res1 b0_res1>b0_fc1 b0_fc1>b0_fc1_norm b0_fc1_norm>b0_lif1 b0_lif1>b0_fc2 b0_fc2>b0_fc2_norm "
    "b0_fc2_norm>b0_lif2 b0_res1>b0_res2 b0_lif2>b0_res2 b0_res2>head_norm head_norm>pool pool>classifier "
    "classifier>output",
)
_BATCH_NORM_GRAPH = (  # every norm folded into a Linear: the head norm into the classifier
    "input:Input embed:SBTokenEmbedding spikes:Threshold b0_qkv:Conv1d b0_qkv_lif:LIF b0_attn:SBSpikeAttention "
    "b0_attn_lif:LIF b0_proj:Conv1d b0_proj_lif:LIF b0_res1:Scale b0_fc1:Conv1d b0_lif1:LIF b0_fc2:Conv1d "
    "b0_lif2:LIF b0_res2:Scale pool:SBTokenMean classifier:Affine output:Output",
    "input>embed embed>spikes spikes>b0_qkv b0_qkv>b0_qkv_lif b0_qkv_lif>b0_attn b0_attn>b0_attn_lif "
    "b0_attn_lif>b0_proj b0_proj>b0_proj_lif spikes>b0_res1 b0_proj_lif>b0_res1 b0_res1>b0_fc1 b0_fc1>b0_lif1 "
    "b0_lif1>b0_fc2 b0_fc2>b0_lif2 b0_res1>b0_res2 b0_lif2>b0_res2 b0_res2>pool pool>classifier classifier>output",
)


@pytest.mark.parametrize("norm, expected", [("layer", _LAYER_NORM_GRAPH), ("batch", _BATCH_NORM_GRAPH)])
def test_graph_structure(tiny_cfg, norm, expected):
    """Names follow the module paths; taps, masks, the time broadcast and the readout leave no node."""
    model = _student(replace(tiny_cfg, depth=1, norm=norm, position_embedding=True))
    graph = export_student(model)
    nodes, edges = expected
    assert " ".join(f"{k}:{type(v).__name__}" for k, v in graph.nodes.items()) == nodes
    assert " ".join(f"{a}>{b}" for a, b in graph.edges) == edges
    np.testing.assert_array_equal(graph.nodes["embed"].position_weight, model.position.weight.detach().numpy())
    assert graph.metadata["readout"] == READOUT and graph.metadata["time_steps"] == model.cfg.time_steps


def test_node_names():
    assert [node_name(p) for p in ("blocks.3.attn.qkv_lif", "blocks.0.mlp.fc1", "blocks.2", "encoder",
                                   "head_norm", "extra.linear")] == [
        "b3_qkv_lif", "b0_fc1", "b2", "spikes", "head_norm", "extra_linear"]


def test_export_leaves_a_training_model_untouched(tiny_cfg):
    model = _student(replace(tiny_cfg, norm="batch")).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    export_student(model)
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


# ---- errors and extension ----------------------------------------------------------------------

class _GeluMLP(MLP):
    """An MLP with a GELU in front: a module type no mapper knows."""

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.act = nn.GELU()

    def forward(self, x, mask):
        return super().forward(self.act(x), mask)


class _TanhMLP(MLP):
    """An MLP with a bare function on the signal."""

    def forward(self, x, mask):
        return torch.tanh(super().forward(x, mask))


class _Doubler(nn.Module):
    def forward(self, x):
        return 2 * x


class _DoublingMLP(_GeluMLP):
    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.act = _Doubler()


class _BranchingMLP(MLP):
    def forward(self, x, mask):
        return super().forward(x, mask) if x.sum() > 0 else x


def _with_mlp(cfg, mlp_type) -> SpikeBERT:
    model = SpikeBERT(cfg).double().eval()
    model.blocks[0].mlp = mlp_type(cfg).double()
    return model


def test_unmapped_module_is_a_clear_error(tiny_cfg):
    with pytest.raises(TypeError, match=r"module blocks\.0\.mlp\.act \(fx node 'blocks_0_mlp_act'\) of type GELU "
                                        r"to NIR: no mapper\. Add one to "
                                        r"spikebert\.converters\.torch_to_nir\.MODULE_MAP"):
        export_student(_with_mlp(tiny_cfg, _GeluMLP))


def test_unmapped_operation_is_a_clear_error(tiny_cfg):
    with pytest.raises(TypeError, match=r"fx node 'tanh' \(call_function tanh in module blocks\.0\.mlp\) has no "
                                        r"NIR mapping.*MODULE_MAP"):
        export_student(_with_mlp(tiny_cfg, _TanhMLP))
    # an unmapped custom module is traced through: the error names the op and the module it sits in
    with pytest.raises(TypeError, match=r"fx node 'mul' \(call_function mul in module blocks\.0\.mlp\.act\).*"
                                        r"MODULE_MAP for a module type that holds it, _Doubler \(as blocks"):
        export_student(_with_mlp(tiny_cfg, _DoublingMLP))


def test_untraceable_core_is_a_clear_error(tiny_cfg):
    with pytest.raises(TypeError, match=r"torch\.fx cannot trace SpikeBERT\.core.*MODULE_MAP"):
        export_student(_with_mlp(tiny_cfg, _BranchingMLP))


def test_a_mapper_makes_a_new_module_exportable(tiny_cfg, monkeypatch):
    monkeypatch.setitem(MODULE_MAP, _Doubler, lambda m, *, channels, tokens, **_: nir.Scale(
        scale=np.full((channels, tokens), 2.0)))
    graph = export_student(_with_mlp(tiny_cfg, _DoublingMLP))
    assert type(graph.nodes["b0_act"]) is nir.Scale and np.all(graph.nodes["b0_act"].scale == 2.0)
    assert ("b0_res1", "b0_act") in graph.edges and ("b0_act", "b0_fc1") in graph.edges
    assert ("b0_res1", "b0_res2") in graph.edges  # the residual still skips the MLP


def test_linear_after_pooling_is_affine():
    layer = nn.Linear(4, 2)
    assert type(_linear(layer, tokens=None)) is nir.Affine and type(_linear(layer, tokens=8)) is nir.Conv1d
