import nir
import numpy as np
import pytest

from spikebert.contract.activity import Activity, NodeActivity
from spikebert.contract.extension import SBSpikeAttention
from spikebert.energy.counting import count_operations, teacher_counts, teacher_macs
from spikebert.energy.profiles import PROFILES, Profile, get_profile, select_profiles
from spikebert.energy.report import EnergyReport
from spikebert.hardware import kernels

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
    y, a, vv, _ = kernels.spike_attention(qkv, dim=2, heads=1, scale=0.5, key_mask=None)
    # A[i, j] = sum_d q[d, i] k[d, j]: token0 q=(1,1), token1 q=(0,1); k0=(1,0), k1=(1,1)
    np.testing.assert_array_equal(a[0, 0], [[1, 2], [0, 1]])
    qk, av = kernels.attention_stats(a, vv, None)
    assert qk == 4  # coincidences
    assert av == 1 + 0 + 0  # nonzero A[i, j] times spikes of V at key j: only key 0 has a V spike (1), A[0,0], A[1,0]=0
    np.testing.assert_array_equal(y[0], 0.5 * np.array([[1, 0], [0, 0]]))
    # masking key 1 removes its coincidences
    qk_m, _ = kernels.attention_stats(*kernels.spike_attention(qkv, dim=2, heads=1, scale=0.5,
                                                               key_mask=np.array([[True, False]]))[1:3],
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


@pytest.mark.parametrize("node", [
    nir.Conv2d(input_shape=(4, 4), weight=np.ones((2, 2, 3, 3)), stride=1, padding=1, dilation=1, groups=1,
               bias=np.zeros(2)),
    nir.Conv1d(input_shape=4, weight=np.ones((2, 2, 3)), stride=1, padding=1, dilation=1, groups=1, bias=np.zeros(2)),
])
def test_synapses_it_cannot_count_are_refused_not_left_out(node):
    shape = np.array([2, 4, 4] if isinstance(node, nir.Conv2d) else [2, 4])
    graph = nir.NIRGraph(nodes={"input": nir.Input(input_type=shape), "conv": node,
                                "output": nir.Output(output_type=shape)},
                         edges=[("input", "conv"), ("conv", "output")])
    act = Activity(backend="hand", samples=1, time_steps=1, real_tokens=1.0, nodes={})
    with pytest.raises(ValueError, match="cannot count the operations of Conv"):
        count_operations(graph, act)


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


def _tiny_counts(residual="mac"):
    act = Activity(backend="hand", samples=2, time_steps=3, real_tokens=4.0, nodes={
        "spk_conv": NodeActivity(input_nonzeros=6, input_abs_sum=6, input_elements=24),
        "int_conv": NodeActivity(input_nonzeros=6, input_abs_sum=10, input_elements=24),
        "fc": NodeActivity(input_nonzeros=18, input_abs_sum=30, input_elements=18),
    })
    return {r.name: r for r in count_operations(_tiny_graph(), act, residual=residual)}


def test_memory_counts_hand_computed():
    rows = _tiny_counts()
    # topological order (the Scale join is no row): the LIFs first, the affine after the conv feeding it
    assert list(rows) == ["a", "b", "spk_conv", "fc", "int_conv"]
    # spike input: one weight read per synaptic op (9 per sample)
    assert rows["spk_conv"].weight_reads == 9
    # MAC layers: every weight once per time step: conv 5 x 2 x 1 x 3 steps, affine 4 x 3 x 3 steps
    assert rows["int_conv"].weight_reads == 30 and rows["fc"].weight_reads == 36
    # neurons: membrane read + write per update (12 updates per LIF)
    assert rows["a"].state_accesses == rows["b"].state_accesses == 24
    assert rows["spk_conv"].state_accesses == 0
    # input elements per sample: 24 / 2 samples
    assert rows["spk_conv"].input_elements == 12
    # "accumulate": the integer input's unit spikes each fetch their weights too
    acc = _tiny_counts("accumulate")
    assert acc["int_conv"].weight_reads == acc["int_conv"].acs == 25


def _energy(rows, profile):
    return sum(profile.energy_pj(macs=r.macs, acs=r.acs, neuron_updates=r.neuron_updates,
                                 weight_reads=r.weight_reads, state_accesses=r.state_accesses) for r in rows.values())


def test_profiles_hand_computed():
    rows = _tiny_counts()
    # 96 MACs, 9 ACs, 24 neuron updates, 75 weight reads, 48 state accesses per sample
    assert _energy(rows, get_profile("45nm-fp32")) == pytest.approx(96 * 4.6 + 9 * 0.9)
    assert _energy(rows, get_profile("45nm-int8")) == pytest.approx(96 * 0.23 + 9 * 0.03)
    # Loihi: 23.6 pJ per synaptic op, 81 pJ per neuron update, MACs on a host at 4.6 pJ
    assert _energy(rows, get_profile("loihi")) == pytest.approx(96 * 4.6 + 9 * 23.6 + 24 * 81)
    # memory-aware, 8 KB SRAM: 5 pJ per 32-bit word; a neuron update computes 4.6 + 0.9 pJ
    assert _energy(rows, get_profile("45nm-fp32-mem8k")) == pytest.approx(
        96 * 4.6 + 9 * 0.9 + 24 * 5.5 + 75 * 5 + 48 * 5)
    assert _energy(rows, get_profile("45nm-fp32-mem1m")) == pytest.approx(
        96 * 4.6 + 9 * 0.9 + 24 * 5.5 + 75 * 50 + 48 * 50)
    for p in PROFILES.values():
        assert p.source and (p.memory_aware == p.name.startswith("45nm-fp32-mem"))


def test_select_profiles():
    assert [p.name for p in select_profiles("loihi, 45nm-fp32")] == ["loihi", "45nm-fp32"]
    assert select_profiles("all") == tuple(PROFILES.values())
    for bad, match in (("loihi,loihi", "twice"), (" , ", "name one or more"), ("45nm-fp64", "unknown")):
        with pytest.raises(ValueError, match=match):
            select_profiles(bad)
    with pytest.raises(ValueError, match="must be a number"):
        Profile(name="x", e_mac_pj=-1.0, e_ac_pj=0.0, source="none")


def test_bert_base_teacher_weight_reads():
    count = teacher_counts(BERT_BASE, [128])
    assert count.macs == teacher_macs(BERT_BASE, [128])
    # 12 x (4 d^2 + 2 d d_ff + K, V 2 n d) + pooler d^2 + classifier 2 d
    assert count.weight_reads == 12 * (4 * 768**2 + 2 * 768 * 3072 + 2 * 128 * 768) + 768**2 + 768 * 2 == 87_885_312
    # memory-aware (8 KB SRAM, 5 pJ a word) adds 0.44 mJ to the 51.40 mJ of compute
    mem = get_profile("45nm-fp32-mem8k").energy_pj(macs=count.macs, weight_reads=count.weight_reads) / 1e9
    assert mem == pytest.approx(51.40 + 0.439, abs=0.01)
    # the mean over lengths is the mean of the counts
    mixed = teacher_counts(BERT_BASE, [64, 128])
    assert mixed.weight_reads == pytest.approx((teacher_counts(BERT_BASE, [64]).weight_reads + count.weight_reads) / 2)
    with pytest.raises(ValueError, match="at least one"):
        teacher_counts(BERT_BASE, [])
