"""Energy-accuracy fronts (spikebert.energy.front, `spikebert plot front`) on hand-made reports."""

import json

import pytest

from spikebert.cli import main
from spikebert.energy.counting import LayerCount
from spikebert.energy.front import front_latex, front_points, pareto_front
from spikebert.energy.profiles import get_profile
from spikebert.energy.report import EnergyReport


def _report(macs: float, acs: float, accuracy: float | None, teacher_macs: float = 1000.0) -> EnergyReport:
    """One MAC layer and one synaptic layer; fp32: 4.6 pJ per MAC, 0.9 per AC; loihi: 23.6 per AC."""
    layers = [LayerCount("fc", "affine", "real", 1.0, macs, macs, 0.0, 0.0, input_elements=1.0),
              LayerCount("syn", "affine", "spike", 0.5, 2 * acs, 0.0, acs, 0.0, input_elements=1.0)]
    return EnergyReport(profile=get_profile("45nm-fp32"), more_profiles=(get_profile("loihi"),),
                        residual_convention="mac", layers=layers, teacher_macs=teacher_macs, samples=1, time_steps=1,
                        backend="hand", accuracy=accuracy)


REPORTS = {"A": (100, 0, 0.80), "B": (0, 1000, 0.78), "C": (0, 200, 0.75)}


def test_pareto_front_hand_computed():
    pts = [(1, 0.5), (2, 0.7), (3, 0.6), (2, 0.7), (0.5, 0.4), (4, 0.9), (4, 0.8)]
    # (3, .6) is beaten by (2, .7); (4, .8) by (4, .9); equal points are both on the front
    assert pareto_front(pts) == [True, True, False, True, True, True, False]
    assert pareto_front([]) == [] and pareto_front([(1, 1)]) == [True]


def test_front_points_hand_computed():
    reports = [(k, _report(*v)) for k, v in REPORTS.items()]
    pts = front_points(reports, teacher_accuracy=0.9)
    by = {(p.profile, p.label): p for p in pts}
    # fp32 (mJ x 1e9 = pJ): A 100 x 4.6 = 460, B 1000 x 0.9 = 900, C 200 x 0.9 = 180, teacher 1000 x 4.6 = 4600
    assert {k[1]: round(p.energy_mj * 1e9, 6) for k, p in by.items() if k[0] == "45nm-fp32"} == {
        "A": 460, "B": 900, "C": 180, "teacher": 4600}
    assert {k[1] for k, p in by.items() if k[0] == "45nm-fp32" and p.on_front} == {"C", "A", "teacher"}
    # loihi: A 460 (MACs on a host), B 23600, C 4720, teacher 4600: C is beaten by A, B by A
    assert by[("loihi", "C")].energy_mj * 1e9 == pytest.approx(4720)
    assert {k[1] for k, p in by.items() if k[0] == "loihi" and p.on_front} == {"A", "teacher"}
    assert by[("loihi", "teacher")].teacher

    # no teacher accuracy: the teacher is drawn as a line, not ranked
    pts = front_points(reports, profiles=["45nm-fp32"])
    teacher = [p for p in pts if p.teacher]
    assert len(teacher) == 1 and teacher[0].accuracy is None and not teacher[0].on_front
    assert {p.label for p in pts if p.on_front} == {"C", "A"}

    tex = front_latex(front_points(reports, teacher_accuracy=0.9))
    assert tex.count("$\\bullet$") == 1 + 5 and "\\toprule" in tex and "80.00" in tex  # caption + front rows


def test_front_points_checks_inputs():
    with pytest.raises(ValueError, match="carry no accuracy"):
        front_points([("A", _report(1, 0, None))])
    with pytest.raises(ValueError, match="twice"):
        front_points([("A", _report(1, 0, 0.5)), ("A", _report(2, 0, 0.6))])
    with pytest.raises(ValueError, match="not in the reports"):
        front_points([("A", _report(1, 0, 0.5))], profiles=["45nm-int8"])
    with pytest.raises(ValueError, match="share in"):
        front_points([("A", _report(1, 0, 0.5))], teacher_accuracy=88.0)
    # two teachers (reports counted against different teachers) are two points
    pts = front_points([("A", _report(1, 0, 0.5)), ("B", _report(2, 0, 0.6, teacher_macs=10.0))],
                       profiles=["45nm-fp32"])
    assert sorted(p.label for p in pts if p.teacher) == ["teacher 1", "teacher 2"]


def test_plot_front_cli(tmp_path, capsys):
    paths = []
    for name, args in REPORTS.items():
        (tmp_path / name).mkdir()
        paths += [str(p) for p in _report(*args).write(tmp_path / name, formats=("json",))]
    out = tmp_path / "front"
    assert main(["plot", "front", *paths, "--teacher-accuracy", "0.9", "--out", str(out)]) == 0
    for f in ("front.png", "front.pdf", "front.tex", "front.json"):
        assert (out / f).stat().st_size > 0, f
    points = json.loads((out / "front.json").read_text())
    assert {(p["profile"], p["label"]) for p in points if p["on_front"]} == {
        ("45nm-fp32", "A"), ("45nm-fp32", "C"), ("45nm-fp32", "teacher"), ("loihi", "A"), ("loihi", "teacher")}
    assert "front.png" in capsys.readouterr().out
    # one profile, own labels
    assert main(["plot", "front", *paths, "--profile", "loihi", "--label", "x", "--label", "y", "--label", "z",
                 "--out", str(tmp_path / "f2")]) == 0
    assert {p["label"] for p in json.loads((tmp_path / "f2" / "front.json").read_text())} == {"x", "y", "z", "teacher"}
    # user errors: one line, exit 2
    assert main(["plot", "front", *paths, "--label", "x", "--out", str(tmp_path / "f3")]) == 2
    assert main(["plot", "front", str(tmp_path / "missing.json"), "--out", str(tmp_path / "f4")]) == 2
    (tmp_path / "bad.json").write_text(json.dumps({"format": "other"}))
    assert main(["plot", "front", str(tmp_path / "bad.json"), "--out", str(tmp_path / "f5")]) == 2
