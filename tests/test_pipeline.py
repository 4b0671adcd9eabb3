"""One full tiny pipeline: teacher fine-tuning -> distillation -> NIR -> Lava -> energy report."""

import json

import pytest

from spikebert.cli import export_main, main


@pytest.mark.lava
@pytest.mark.slow
def test_full_tiny_pipeline(tmp_path, tiny_teacher, tiny_task, monkeypatch, capsys):
    import spikebert.workflows as workflows

    monkeypatch.setattr(workflows, "DEMO_STUDENT", {"dim": 16, "depth": 1, "heads": 2, "max_len": 8, "time_steps": 2})
    out = tmp_path / "run"
    rc = main(["demo", "--data", "toy", "--data-dir", str(tiny_task), "--teacher", tiny_teacher,
               "--out", str(out), "--teacher-samples", "64", "--student-samples", "96", "--sim-sentences", "24"])
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    sim = summary["simulation"]
    assert sim["sentences"] == 24
    assert sim["agreement_lava_vs_torch_fp64"] == 1.0
    assert sim["max_abs_logit_diff_vs_fp64"] < 1e-9
    report = json.loads((out / "energy_report.json").read_text())
    assert report["teacher"]["energy_mj"] > 0 and report["student"]["energy_mj"] > 0
    assert report["energy_ratio_student_over_teacher"] == pytest.approx(summary["energy"]["ratio"])
    assert "Student / teacher energy" in (out / "energy_report.md").read_text()
    assert "student / teacher energy" in capsys.readouterr().out

    # the console entry point exports the same checkpoint again
    assert export_main(["--to", "nir", str(out / "student" / "model.pt"), "-o", str(tmp_path / "again.nir")]) == 0
    assert (tmp_path / "again.nir").stat().st_size > 0


def test_cli_errors_are_clear(tmp_path, caplog):
    assert export_main([str(tmp_path / "missing.pt")]) == 2
    assert "does not exist" in caplog.text
    assert main(["simulate", str(tmp_path / "none.nir")]) == 2
