"""The Lemaire memory-aware estimator (spikebert.energy.lemaire), hand-computed on tiny rows, in the
report, against the teacher's layers, and the output spikes the counts give every population."""

import pytest
import torch

from spikebert.energy import lemaire
from spikebert.energy.counting import LayerCount, count_operations, teacher_counts, teacher_layers
from spikebert.energy.profiles import PROFILES, get_profile, select_profiles
from spikebert.energy.report import EnergyReport
from spikebert.testing import make_ids, make_student

FIFO = 4000 / 8192 * 2.5  # pJ per byte of the 1000-word spike FIFO: 1.220703125
BERT_BASE = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12,
             "num_labels": 2}


def e(nbytes):  # pJ per byte of a buffer below 8 KB: linear from 0 to 2.5 pJ/B (10 pJ per 32-bit word)
    return nbytes / 8192 * 2.5


def spike_row():
    # 4 -> 3 Linear with bias, 2 tokens, T = 1: 3 input spikes, 9 synaptic ops
    return LayerCount("fc", "affine", "spike", 3 / 8, 24.0, 0.0, 9.0, 0.0, weight_reads=9.0, input_elements=8.0,
                      fan_in=4, fan_out=3, output_elements=6.0, params=15.0, has_bias=True)


def dense_row():
    return LayerCount("fc", "affine", "real", 1.0, 24.0, 24.0, 0.0, 0.0, weight_reads=12.0, input_elements=8.0,
                      fan_in=4, fan_out=3, output_elements=6.0, params=15.0, has_bias=True)


def neuron_row(spikes=5.0, leaky=True):
    return LayerCount("lif", "neurons", "-", 0.0, 0.0, 0.0, 0.0, 12.0, state_accesses=24.0, output_elements=12.0,
                      output_spikes=spikes, leaky=leaky)


def test_memory_cost_curve():
    c = lemaire.LemaireCost()
    assert [c.pj_per_byte(s) for s in (0, 4096, 8192, 20480, 32768)] == [0.0, 1.25, 2.5, 3.75, 5.0]
    assert c.pj_per_byte(1024 * 1024) == c.pj_per_byte(5e6) == 25.0  # 100 pJ per 32-bit word, clamped above 1 MB
    assert c.pj_per_byte(4000) == pytest.approx(FIFO)


def test_spike_input_layer_hand_computed():
    r = lemaire.price_row(spike_row(), time_steps=1, neurons_in_model=True)
    assert (r.ac, r.mac, r.acc_addr) == (9 + 6, 0, 9)  # 9 synaptic ops + 6 bias adds; one addressing per op
    assert r.read_in_bytes == 3 * 4  # the 3 input spikes, from the FIFO
    assert r.params_bytes == (9 + 6) * 4  # a weight per synaptic op, a bias per output
    assert r.potential_bytes == 2 * 9 * 4  # membrane read + write per synaptic op
    assert r.energy_pj == pytest.approx({
        "ops": 15 * 0.1, "addressing": 9 * 0.1, "inout": 12 * FIFO,
        "params": 60 * e(15 * 4),  # buffer: the layer's 15 parameters
        "potential": 72 * e(6 * 4)})  # buffer: one step's 6 membranes
    assert r.total_pj == pytest.approx(18.6744140625)


def test_dense_layer_hand_computed():
    # the FNN rule (teacher): every input read, a weight per MAC, outputs written
    r = lemaire.price_row(dense_row(), time_steps=1, neurons_in_model=False)
    assert (r.ac, r.mac, r.acc_addr) == (6, 24, 8 + 6)
    assert r.energy_pj == pytest.approx({"ops": 6 * 0.1 + 24 * 3.2, "addressing": 14 * 0.1,
                                         "inout": 32 * e(32) + 24 * e(24), "params": 120 * e(60), "potential": 0.0})
    assert r.total_pj == pytest.approx(81.485546875)
    # in an SNN the outputs go into membranes: no output write
    snn = lemaire.price_row(dense_row(), time_steps=1, neurons_in_model=True)
    assert snn.total_pj == pytest.approx(81.485546875 - 24 * e(24))


def test_neurons_hand_computed():
    # 6 LIF neurons over T = 2: 12 updates, 5 spikes
    r = lemaire.price_row(neuron_row(), time_steps=2, neurons_in_model=True)
    assert (r.ac, r.mac) == (5, 12)  # an add per spike, the leak multiply-accumulate per update
    assert r.energy_pj == pytest.approx({"ops": 5 * 0.1 + 12 * 3.2, "addressing": 0.0, "inout": 20 * FIFO,
                                         "params": 0.0, "potential": 96 * e(24)})
    assert r.total_pj == pytest.approx(64.0171875)
    if_row = lemaire.price_row(neuron_row(leaky=False), time_steps=2, neurons_in_model=True)
    assert if_row.total_pj == pytest.approx(64.0171875 - 12 * 3.2)  # IF: no leak
    unknown = lemaire.price_row(neuron_row(spikes=None), time_steps=2, neurons_in_model=True)
    assert unknown.unknown_spikes and unknown.total_pj == pytest.approx(96 * e(24) + 12 * 3.2)  # no spike terms
    t = lemaire.totals(lemaire.price_rows([spike_row(), neuron_row(spikes=None)], time_steps=1))
    assert t["unknown_spike_populations"] == 1 and t["ac"] == 15


def test_report_prices_student_and_teacher_with_lemaire():
    prof = get_profile("lemaire")
    assert prof.per_layer and not prof.memory_aware and "lemaire" in PROFILES
    layers = [spike_row(), neuron_row()]
    report = EnergyReport(profile=get_profile("45nm-fp32"), more_profiles=(prof,), residual_convention="mac",
                          layers=layers, teacher_macs=24.0, teacher_weight_reads=12.0, teacher_layers=[dense_row()],
                          samples=1, time_steps=2, backend="hand")
    student = (lemaire.price_row(spike_row(), time_steps=2, neurons_in_model=True).total_pj
               + lemaire.price_row(neuron_row(), time_steps=2, neurons_in_model=True).total_pj)
    assert report.student_pj(prof) == pytest.approx(student)
    assert report.teacher_pj(prof) == pytest.approx(81.485546875)  # T = 1, outputs written
    assert report.student_pj(get_profile("45nm-fp32")) == pytest.approx(9 * 0.9)  # the linear profile unchanged
    md = report.to_markdown()
    assert "## Lemaire components" in md and "Lemaire estimator" in md
    again = EnergyReport.from_dict(report.to_dict())
    assert again.teacher_pj(prof) == pytest.approx(report.teacher_pj(prof))
    assert again.student_pj(prof) == pytest.approx(student)
    with pytest.raises(ValueError, match="teacher's layers were not given"):
        EnergyReport(profile=prof, residual_convention="mac", layers=layers, teacher_macs=24.0,
                     teacher_weight_reads=12.0, samples=1, time_steps=2, backend="hand")
    assert [p.name for p in select_profiles("45nm-fp32,lemaire")] == ["45nm-fp32", "lemaire"]


def test_teacher_layers_sum_to_the_teacher_counts():
    count = teacher_counts(BERT_BASE, [128, 64, 128])
    assert len(count.layers) == 12 * 8 + 2
    assert sum(r.macs for r in count.layers) == pytest.approx(count.macs)
    assert sum(r.weight_reads for r in count.layers) == pytest.approx(count.weight_reads)
    q = {r.name: r for r in teacher_layers(BERT_BASE, [128])}["l0.query"]
    # one query projection at 128 tokens: 128 x 768 x 768 MACs; its 768 x 769 parameters (2.4 MB) cost the 1 MB
    # price, 25 pJ per byte; every MAC reads its weight (+ a bias per output)
    r = lemaire.price_row(q, time_steps=1, neurons_in_model=False)
    macs, outputs = 128 * 768 * 768, 128 * 768
    assert r.energy_pj["params"] == pytest.approx((macs + outputs) * 4 * 25.0)
    assert r.energy_pj["ops"] == pytest.approx(macs * 3.2 + outputs * 0.1)
    # input and output, 384 KB each: between the 32 KB (5 pJ/B) and 1 MB (25 pJ/B) points
    per_byte = 5 + (outputs * 4 - 32768) / (1048576 - 32768) * 20
    assert r.energy_pj["inout"] == pytest.approx(2 * outputs * 4 * per_byte)


@pytest.mark.parametrize("norm", ["batch", "layer"])
def test_population_spikes_from_the_record(tiny_cfg, norm):
    """Every LIF's output spikes: read where a synapse reads it, through the residual joins otherwise."""
    import dataclasses

    from spikebert.converters.torch_to_nir import export_student
    from spikebert.recording import record_batches, record_spikes

    cfg = dataclasses.replace(tiny_cfg, norm=norm)
    model = make_student(cfg, attention_bias=0.5)
    ids = make_ids(3, cfg.max_len, cfg.vocab_size)
    graph = export_student(model)
    _, act = record_batches(model, ids, graph=graph)
    rows = {r.name: r for r in count_operations(graph, act) if r.kind == "neurons"}
    spikes = record_spikes(model, ids)
    mask = (ids != cfg.pad_token_id)[None, :, :, None].double()
    for name, s in spikes.items():
        if name not in rows:
            continue
        expected = float((s * mask).sum()) / 3
        if norm == "layer" and name == f"b{cfg.depth - 1}_lif2":  # read only through the head's LayerNorm
            assert rows[name].output_spikes is None
        else:
            assert rows[name].output_spikes == pytest.approx(expected), name
    assert all(r.leaky for r in rows.values())


def _write_energy_passes_teacher_layers() -> bool:
    from spikebert import workflows

    return "teacher_layers" in str(workflows._write_energy.__code__.co_consts)  # a keyword of its EnergyReport call


@pytest.mark.skipif(not _write_energy_passes_teacher_layers(),
                    reason="spikebert.workflows._write_energy does not pass teacher_layers to EnergyReport yet "
                           "(issue #18: a one-keyword change in a file outside spikebert.energy)")
def test_energy_cli_lemaire(tmp_path, tiny_teacher, tiny_task):
    from spikebert.cli import main
    from spikebert.config import StudentConfig
    from spikebert.model import SpikeBERT
    from spikebert.students import save_student
    from spikebert.teacher import load_tokenizer
    from spikebert.testing import scale_up_linears

    tok = load_tokenizer(tiny_teacher)
    cfg = StudentConfig(vocab_size=len(tok), pad_token_id=tok.pad_token_id, dim=16, depth=2, heads=2, max_len=8,
                        num_classes=2, time_steps=2)
    torch.manual_seed(0)
    model = SpikeBERT(cfg).eval()
    with torch.no_grad():
        scale_up_linears(model)
    path = tmp_path / "student" / "model.pt"
    path.parent.mkdir()
    save_student(path, model, tokenizer=tok, tokenizer_name=tiny_teacher, task="toy", metrics={})
    out = tmp_path / "energy"
    assert main(["energy", str(path), "--teacher", tiny_teacher, "--data", "toy", "--data-dir", str(tiny_task),
                 "--limit", "4", "--profile", "45nm-fp32,lemaire", "--plots", "--out", str(out)]) == 0
    report = EnergyReport.from_dict(__import__("json").loads((out / "energy_report.json").read_text()))
    assert report.teacher_layers and report.teacher_pj(get_profile("lemaire")) > 0
