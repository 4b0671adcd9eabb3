import nir
import numpy as np
import pytest

from converters.nir_ext import SBSpikeAttention
from energy.counting import count_operations, teacher_macs
from energy.profiles import get_profile
from energy.report import EnergyReport
from hardware import kernels
from hardware.activity import Activity, NodeActivity

BERT_BASE = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_labels": 2}


def test_bert_base_analytic_energy():
    macs = teacher_macs(BERT_BASE, [128])
    # 12 x (4 n d^2 + 2 n^2 d + 2 n d d_ff) = 11.174 GMAC, plus pooler + classifier (0.59 M)
    assert macs == pytest.approx(11.174e9 + 768 * 768 + 768 * 2, rel=1e-4)
    assert macs * 4.6 / 1e9 == pytest.approx(51.40, abs=0.01)


def test_attention_counts_hand_computed():
    # one head, D = 2, L = 2. Q = [[1,0],[1,1]] (token columns), K = [[1,1],[0,1]], V = [[1,0],[0,0]]
    q = np.array([[1, 0], [1, 1]])
    k = np.array([[1, 1], [0, 1]])
    v = np.array([[1, 0], [0, 0]])
    qkv = np.concatenate([q, k, v])[None].astype(float)  # (1, 6, 2)
    y, a, vv = kernels.spike_attention(qkv, dim=2, heads=1, scale=0.5, key_mask=None)
    # A[i, j] = sum_d q[d, i] k[d, j]: token0 q=(1,1), token1 q=(0,1); k0=(1,0), k1=(1,1)
    np.testing.assert_array_equal(a[0, 0], [[1, 2], [0, 1]])
    qk, av = kernels.attention_stats(a, vv, None)
    assert qk == 4  # coincidences
    assert av == 1 + 0 + 0  # nonzero A[i, j] times spikes of V at key j: only key 0 has a V spike (1), A[0,0], A[1,0]=0
    np.testing.assert_array_equal(y[0], 0.5 * np.array([[1, 0], [0, 0]]))
    # masking key 1 removes its coincidences
    qk_m, _ = kernels.attention_stats(*kernels.spike_attention(qkv, dim=2, heads=1, scale=0.5,
                                                               key_mask=np.array([[True, False]]))[1:],
                                      np.array([[True, True]]))
    assert qk_m == 1


def _tiny_graph():
    """spikes (LIF) -> conv (spike input); join of two LIFs -> conv (integer input); affine on real input."""
    L = 2
    nodes = {
        "a": nir.LIF(tau=np.full((2, L), 2.0), r=np.ones((2, L)), v_leak=np.zeros((2, L)),
                     v_threshold=np.ones((2, L))),
        "b": nir.LIF(tau=np.full((2, L), 2.0), r=np.ones((2, L)), v_leak=np.zeros((2, L)),
                     v_threshold=np.ones((2, L))),
        "spk_conv": nir.Conv1d(input_shape=L, weight=np.ones((3, 2, 1)), stride=1, padding=0, dilation=1,
                               groups=1, bias=np.zeros(3)),
        "join": nir.Scale(scale=np.ones((2, L))),
        "int_conv": nir.Conv1d(input_shape=L, weight=np.ones((5, 2, 1)), stride=1, padding=0, dilation=1,
                               groups=1, bias=np.zeros(5)),
        "fc": nir.Affine(weight=np.ones((4, 3)), bias=np.zeros(4)),
    }
    edges = [("a", "spk_conv"), ("a", "join"), ("b", "join"), ("join", "int_conv"), ("spk_conv", "fc")]
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def test_counts_hand_computed():
    graph = _tiny_graph()
    act = Activity(backend="hand", samples=2, time_steps=3, real_tokens=4.0, nodes={
        "spk_conv": NodeActivity(input_nonzeros=6, input_abs_sum=6, input_elements=24),
        "int_conv": NodeActivity(input_nonzeros=6, input_abs_sum=10, input_elements=24),
        "fc": NodeActivity(input_nonzeros=18, input_abs_sum=30, input_elements=18),
    })
    rows = {r.name: r for r in count_operations(graph, act, residual="mac")}
    # spike input: 6 spikes x fan-out 3 / 2 samples = 9 ACs per sample; dense 2*3*2 tokens*3 steps = 36
    assert (rows["spk_conv"].input_kind, rows["spk_conv"].acs, rows["spk_conv"].dense_macs) == ("spike", 9, 36)
    assert rows["spk_conv"].input_rate == 0.25
    # integer input under "mac": dense 2*5*2*3 = 60 MACs
    assert (rows["int_conv"].input_kind, rows["int_conv"].macs, rows["int_conv"].acs) == ("integer", 60, 0)
    # real input: 3*4*3 = 36 MACs
    assert (rows["fc"].input_kind, rows["fc"].macs) == ("real", 36)
    # neurons: 2 channels x 2 tokens x 3 steps
    assert rows["a"].neuron_updates == 12
    acc = {r.name: r for r in count_operations(graph, act, residual="accumulate")}
    assert acc["int_conv"].acs == 10 * 5 / 2 and acc["int_conv"].macs == 0
    report = EnergyReport(profile=get_profile("45nm-fp32"), residual_convention="mac",
                          layers=list(rows.values()), teacher_macs=1e3, samples=2, time_steps=3, backend="hand",
                          extra={})
    assert report.student_mj == pytest.approx((96 * 4.6 + 9 * 0.9) / 1e9)
    assert "integer" in report.to_markdown()
    with pytest.raises(ValueError, match="residual convention"):
        count_operations(graph, act, residual="spikes")


def test_unknown_profile():
    with pytest.raises(ValueError, match="unknown energy profile"):
        get_profile("7nm")


def test_attention_row_counts_from_graph():
    g = nir.NIRGraph(nodes={"att": SBSpikeAttention(dim=4, heads=2, scale=0.125, tokens=3, mask_padding=True)},
                     edges=[], type_check=False)
    act = Activity(backend="hand", samples=1, time_steps=2, real_tokens=3.0,
                   nodes={"att": NodeActivity(qk_accumulates=7, av_accumulates=5, input_elements=72)})
    (row,) = count_operations(g, act)
    assert row.acs == 12 and row.dense_macs == 2 * 3 * 3 * 4 * 2
