"""Energy report formats (md, tex, csv, json) and plots, on hand-made counts."""

import csv
import io
import json

import pytest

from spikebert.energy.counting import LayerCount
from spikebert.energy.profiles import get_profile
from spikebert.energy.report import FORMATS, RESIDUAL_STATEMENTS, EnergyReport, parse_formats

PROFILE_NAMES = ("45nm-fp32", "loihi", "45nm-fp32-mem8k")


def _report(**overrides) -> EnergyReport:
    layers = [
        LayerCount("b0_qkv", "conv1d", "spike", 0.25, 600.0, 0.0, 150.0, 0.0, weight_reads=150.0, input_elements=40.0),
        LayerCount("b0_qkv_lif", "neurons", "-", 0.0, 0.0, 0.0, 0.0, 120.0, state_accesses=240.0),
        LayerCount("b0_fc1", "conv1d", "integer", 0.5, 800.0, 800.0, 0.0, 0.0, weight_reads=80.0, input_elements=40.0),
        LayerCount("classifier", "affine", "real", 1.0, 20.0, 20.0, 0.0, 0.0, weight_reads=20.0, input_elements=10.0),
    ]
    kwargs = dict(profile=get_profile(PROFILE_NAMES[0]), more_profiles=tuple(map(get_profile, PROFILE_NAMES[1:])),
                  residual_convention="mac", layers=layers, teacher_macs=5000.0, teacher_weight_reads=900.0,
                  teacher_method="analytic, at 4 tokens", samples=3, time_steps=4, backend="hand", accuracy=0.75,
                  extra={"data": "toy dev"})
    return EnergyReport(**(kwargs | overrides))


def test_summary_hand_computed():
    r = _report()
    # fp32: 820 MACs x 4.6 + 150 ACs x 0.9 pJ; teacher 5000 x 4.6 pJ
    assert r.student_mj == pytest.approx((820 * 4.6 + 150 * 0.9) / 1e9)
    assert r.ratio == pytest.approx((820 * 4.6 + 150 * 0.9) / (5000 * 4.6))
    # loihi adds 120 neuron updates at 81 pJ, and prices the 150 synaptic ops at 23.6 pJ
    assert r.student_pj(get_profile("loihi")) == pytest.approx(820 * 4.6 + 150 * 23.6 + 120 * 81)
    # memory-aware: 250 weight reads, 240 state accesses at 5 pJ; the teacher's 900 weight reads too
    mem = get_profile("45nm-fp32-mem8k")
    assert r.student_pj(mem) == pytest.approx(820 * 4.6 + 150 * 0.9 + 120 * 5.5 + 250 * 5 + 240 * 5)
    assert r.teacher_pj(mem) == pytest.approx(5000 * 4.6 + 900 * 5)
    # activation sparsity over spike inputs only: 1 - 0.25
    assert r.activation_sparsity == pytest.approx(0.75)
    rows = {row.quantity: row for row in r.summary_rows()}
    assert rows["accuracy"].student == 0.75 and rows["synaptic operations (ACs)"].student == 150
    assert rows["energy loihi (mJ)"].ratio == pytest.approx((820 * 4.6 + 150 * 23.6 + 120 * 81) / (5000 * 4.6))


def test_report_checks_its_inputs():
    with pytest.raises(ValueError, match="teacher_weight_reads"):
        _report(teacher_weight_reads=0.0)  # a memory-aware profile would price the teacher's weights at 0
    with pytest.raises(ValueError, match="residual convention"):
        _report(residual_convention="spikes")
    with pytest.raises(ValueError, match="twice"):
        _report(more_profiles=(get_profile("45nm-fp32"),))
    with pytest.raises(ValueError, match="must be positive"):
        _report(teacher_macs=0.0)


def test_formats_written(tmp_path):
    r = _report()
    paths = r.write(tmp_path, formats=FORMATS, stem="rep")
    assert [p.name for p in paths] == ["rep.md", "rep.tex", "rep.csv", "rep_layers.csv", "rep.json"]
    statement = RESIDUAL_STATEMENTS["mac"]

    md = (tmp_path / "rep.md").read_text()
    assert statement in md and "Student / teacher energy (45nm-fp32)" in md
    assert "synaptic operations" in md and "activation sparsity" in md and "Davies et al." in md

    tex = (tmp_path / "rep.tex").read_text()
    for rule in ("\\toprule", "\\midrule", "\\bottomrule"):
        assert tex.count(rule) >= 2  # both tables
    assert tex.count("\\begin{table}") == tex.count("\\end{table}") == 2
    assert statement in tex and "45nm-fp32-mem8k" in tex
    assert "_" not in tex.replace("\\_", "")  # layer names escaped

    summary = list(csv.DictReader(io.StringIO((tmp_path / "rep.csv").read_text())))
    assert [row["quantity"] for row in summary] == [row.quantity for row in r.summary_rows()]
    assert {row["residual_convention"] for row in summary} == {"mac"}
    energy = {row["profile"]: float(row["student_over_teacher"]) for row in summary if row["profile"]}
    assert energy["45nm-fp32"] == pytest.approx(r.ratio)
    layers = list(csv.DictReader(io.StringIO((tmp_path / "rep_layers.csv").read_text())))
    assert [row["name"] for row in layers] == [lc.name for lc in r.layers]
    for name in PROFILE_NAMES:
        assert sum(float(row[f"share_{name}"]) for row in layers) == pytest.approx(1.0)

    data = json.loads((tmp_path / "rep.json").read_text())
    assert EnergyReport.from_dict(data) == r
    assert data["residual_convention"] == "mac" and statement in data["conventions"]
    assert data["energy"]["loihi"]["student_mj"] == pytest.approx(r.student_pj(get_profile("loihi")) / 1e9)
    assert data["energy_ratio_student_over_teacher"] == pytest.approx(r.ratio)
    with pytest.raises(ValueError, match="not a spikebert-energy/2"):
        EnergyReport.from_dict({"format": "x"})


def test_parse_formats():
    assert parse_formats("md, tex") == ("md", "tex") and parse_formats("all") == FORMATS
    with pytest.raises(ValueError, match="--format"):
        parse_formats("md,html")


def test_plots_written(tmp_path):
    from spikebert.energy.plots import write_plots

    paths = write_plots(_report(), tmp_path, stem="e")
    assert sorted(p.name for p in paths) == ["e_breakdown.pdf", "e_breakdown.png", "e_firing_rates.pdf",
                                             "e_firing_rates.png"]
    for p in paths:
        assert p.read_bytes()[:4] == (b"\x89PNG" if p.suffix == ".png" else b"%PDF")
    assert not list(tmp_path.glob(".*"))  # no temporary files left


def test_every_report_states_both_integer_input_conventions(tmp_path):
    """The same activity counted with integer inputs as accumulates: b0_fc1's 800 MACs become k ACs per value k
    (here 300), and the summary, the conventions and the JSON state that energy beside the headline."""
    other = [LayerCount("b0_fc1", "conv1d", "integer", 0.5, 800.0, 0.0, 300.0, 0.0, weight_reads=80.0,
                        input_elements=40.0) if r.name == "b0_fc1" else r for r in _report().layers]
    r = _report(other_convention_layers=other)
    assert r.other_convention == "accumulate" and r.integer_input_macs == 800
    fp32 = get_profile("45nm-fp32")
    assert r.other_convention_mj(fp32) == pytest.approx((20 * 4.6 + 450 * 0.9) / 1e9)
    rows = {row.quantity: row for row in r.summary_rows()}
    both = rows["energy 45nm-fp32 (mJ), integer inputs as accumulates"]
    assert both.ratio == pytest.approx((20 * 4.6 + 450 * 0.9) / (5000 * 4.6))
    assert rows["energy 45nm-fp32 (mJ)"].ratio == pytest.approx(r.ratio)
    assert any("Counted instead as accumulates" in c and f"{both.ratio:.2%}" in c for c in r.conventions())
    r.write(tmp_path, formats=("md", "json"), stem="rep")
    md = (tmp_path / "rep.md").read_text()
    assert "integer inputs as accumulates" in md and "Integer-input MACs: 800" in md
    back = EnergyReport.from_dict(json.loads((tmp_path / "rep.json").read_text()))
    assert back.other_convention_mj(fp32) == pytest.approx(r.other_convention_mj(fp32))
    # a student with no integer inputs says the conventions agree, and a report without the second count says nothing
    spikes_only = [r_ for r_ in r.layers if r_.input_kind != "integer"]
    same = _report(layers=spikes_only, other_convention_layers=spikes_only)
    assert any("both conventions" in c and "give the same figures" in c for c in same.conventions())
    assert _report().other_convention is None and not any("Counted instead" in c for c in _report().conventions())
