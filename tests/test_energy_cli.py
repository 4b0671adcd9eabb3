"""``spikebert energy`` end to end on a tiny exported student and the tiny teacher."""

import json
from pathlib import Path

import pytest
import torch

from spikebert.cli import main
from spikebert.energy.counting import teacher_macs
from spikebert.testing import scale_up_linears


@pytest.fixture
def tiny_student(tmp_path, tiny_teacher):
    """A firing tiny student (random weights scaled up) on the tiny teacher's tokenizer, saved as model.pt."""
    from spikebert.config import StudentConfig
    from spikebert.model import SpikeBERT
    from spikebert.students import save_student
    from spikebert.teacher import load_tokenizer

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
    return path


def test_energy_cli(tmp_path, tiny_student, tiny_teacher, tiny_task, capsys, caplog):
    data = ["--data", "toy", "--data-dir", str(tiny_task), "--limit", "8"]
    out = tmp_path / "energy"
    assert main(["energy", str(tiny_student), "--teacher", tiny_teacher, *data, "--teacher-count", "onnx",
                 "--profile", "45nm-fp32,loihi,45nm-fp32-mem8k", "--format", "all", "--plots", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "loihi" in printed and "student accuracy (8 sentences)" in printed
    for name in ("model.nir", "activity.json", "teacher.onnx", "energy_report.md", "energy_report.tex",
                 "energy_report.csv", "energy_report_layers.csv", "energy_report.json", "energy_breakdown.png",
                 "energy_breakdown.pdf", "energy_firing_rates.png", "energy_firing_rates.pdf"):
        assert (out / name).stat().st_size > 0, name
    report = json.loads((out / "energy_report.json").read_text())
    assert report["samples"] == 8 and report["time_steps"] == 2 and report["backend"] == "reference"
    assert report["teacher"]["method"].startswith("onnx (teacher.onnx), at the same 8 sentences' real token lengths")
    assert list(report["energy"]) == ["45nm-fp32", "loihi", "45nm-fp32-mem8k"]

    # the same sentences through `simulate`: the same accuracy and activity
    act = tmp_path / "act.json"
    assert main(["simulate", str(out / "model.nir"), "--backend", "reference", *data, "--activity", str(act)]) == 0
    simulated = json.loads(capsys.readouterr().out)
    assert report["accuracy"] == simulated["accuracy"]
    assert json.loads(act.read_text()) == json.loads((out / "activity.json").read_text())

    # recorded activity, teacher counted analytically: the same counts as from the ONNX graph
    again = tmp_path / "again"
    assert main(["energy", str(out / "model.nir"), "--activity", str(act), "--accuracy", str(simulated["accuracy"]),
                 "--teacher", tiny_teacher, *data[:4], "--out", str(again)]) == 0
    second = json.loads((again / "energy_report.json").read_text())
    assert second["teacher"]["method"].startswith("analytic")
    assert (second["teacher"]["macs"], second["teacher"]["weight_reads"]) == (
        report["teacher"]["macs"], report["teacher"]["weight_reads"])
    assert second["student"] == report["student"] and second["accuracy"] == report["accuracy"]
    assert sorted(p.name for p in again.iterdir()) == ["energy_report.json", "energy_report.md"]

    # the earlier form: a config file and a fixed teacher length, no data
    config = Path(tiny_teacher) / "config.json"
    old = tmp_path / "old"
    assert main(["energy", str(out / "model.nir"), "--activity", str(act), "--teacher-config", str(config),
                 "--teacher-length", "16", "--out", str(old)]) == 0
    assert json.loads((old / "energy_report.json").read_text())["teacher"]["macs"] == teacher_macs(
        json.loads(config.read_text()), [16])

    assert main(["energy", str(out / "model.nir"), "--teacher-config", str(config), "--teacher-count", "onnx"]) == 2
    assert "--teacher-count onnx exports the teacher" in caplog.text
    assert main(["energy", str(out / "model.nir"), "--teacher", tiny_teacher, "--accuracy", "0.5"]) == 2
    assert "given only with --activity" in caplog.text
    assert main(["energy", str(out / "model.nir"), "--teacher", tiny_teacher, "--profile", "7nm"]) == 2
    assert "unknown energy profile '7nm'" in caplog.text


@pytest.mark.lava
def test_energy_reports_agree_across_backends(tmp_path, tiny_student, tiny_teacher, tiny_task):
    """Reference executor, Lava processes and PyTorch hooks record the same activity: the same report."""
    data = ["--data", "toy", "--data-dir", str(tiny_task), "--limit", "6"]
    reports = {}
    for backend in ("reference", "lava", "torch"):
        out = tmp_path / backend
        assert main(["energy", str(tiny_student), "--teacher", tiny_teacher, *data, "--backend", backend,
                     "--format", "json", "--out", str(out)]) == 0
        reports[backend] = json.loads((out / "energy_report.json").read_text())
    assert [r["backend"] for r in reports.values()] == ["reference", "lava-floating_pt", "torch"]
    ref = reports["reference"]
    for backend in ("lava", "torch"):
        r = reports[backend]
        assert r["accuracy"] == ref["accuracy"]
        assert r["energy"]["45nm-fp32"] == pytest.approx(ref["energy"]["45nm-fp32"], rel=1e-12), backend
        assert [row["acs"] for row in r["layers"]] == pytest.approx([row["acs"] for row in ref["layers"]], rel=1e-12)


@pytest.mark.lava
@pytest.mark.slow
def test_simulate_lava_reports_agreement(tmp_path, tiny_student, tiny_task, capsys):
    from spikebert.workflows import export_nir

    graph = export_nir(model=tiny_student, out=tmp_path / "model.nir")
    data = ["--data", "toy", "--data-dir", str(tiny_task), "--limit", "6", "--batch-size", "4"]
    for fuse in ("blocks", "none"):
        assert main(["simulate", str(graph), "--backend", "lava", "--fuse", fuse, *data,
                     "--checkpoint", str(tiny_student), "--out", str(tmp_path / f"{fuse}.json")]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report == json.loads((tmp_path / f"{fuse}.json").read_text())
        assert report["agreement_vs_reference"] == 1.0 and report["activity_equals_reference"]
        assert report["agreement_vs_pytorch_fp64"] == 1.0 and report["fuse"] == fuse
        assert report["sentences"] == 6 and report["layers"]["b0_qkv"]["input_spikes"] > 0
    assert main(["simulate", str(graph), "--backend", "lava", "--fixed-point", *data]) == 2  # LayerNorm student


def test_exported_graph_tokenises_anywhere(tmp_path, tiny_task, monkeypatch):
    """The graph carries its tokenizer's files: it simulates from another working directory after the
    training folder (a relative path in the checkpoint) is gone; --tokenizer overrides it, and a
    tokenizer with another vocabulary is refused."""
    import shutil

    from spikebert.config import StudentConfig
    from spikebert.model import SpikeBERT
    from spikebert.students import save_student
    from spikebert.teacher import load_tokenizer

    work = tmp_path / "work"
    (work / "runs" / "teacher").mkdir(parents=True)
    tok = load_tokenizer("minilm-offline")
    tok.save_pretrained(work / "runs" / "teacher")
    monkeypatch.chdir(work)
    model = SpikeBERT(StudentConfig(vocab_size=len(tok), pad_token_id=tok.pad_token_id, dim=16, depth=1, heads=2,
                                    max_len=8, num_classes=2, time_steps=2))
    save_student(Path("model.pt"), model, tokenizer=tok, tokenizer_name="runs/teacher", task="toy", metrics={})
    assert main(["export", "model.pt", "-o", "model.nir"]) == 0
    shutil.rmtree(work / "runs")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    args = ["simulate", str(work / "model.nir"), "--backend", "reference", "--data", "toy", "--data-dir",
            str(tiny_task), "--limit", "4", "--out", "r.json"]
    assert main(args) == 0
    assert json.loads(Path("r.json").read_text())["sentences"] == 4
    assert main([*args, "--tokenizer", "minilm-offline"]) == 0
    other = tmp_path / "other-tok"
    tok.add_tokens(["zzzunseen"])
    tok.save_pretrained(other)
    assert main([*args, "--tokenizer", str(other)]) == 2


def test_failed_energy_leaves_no_output(tmp_path, tiny_student, tiny_task):
    """A report that fails half-way (here: the teacher config is missing, after the student ran) leaves
    no --out folder and no staging folder behind."""
    out = tmp_path / "energy-out"
    rc = main(["energy", str(tiny_student), "--teacher-config", str(tmp_path / "missing.json"), "--data", "toy",
               "--data-dir", str(tiny_task), "--limit", "4", "--out", str(out)])
    assert rc == 2
    assert not out.exists()
    assert not list(tmp_path.glob(".energy-out.staged.*"))


def test_simulate_checks_the_checkpoint_before_any_simulation(tmp_path, tiny_student, tiny_task, monkeypatch):
    """`simulate --checkpoint bad.pt` used to fail only after the whole (Lava) run."""
    from spikebert import workflows
    from spikebert.contract.errors import SpikebertError

    graph = workflows.export_nir(model=tiny_student, out=tmp_path / "m.nir")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    started = []
    monkeypatch.setattr(workflows, "tokenize_for_graph", lambda *a, **k: started.append(1))
    with pytest.raises(SpikebertError, match="bad.pt"):
        workflows.simulate(graph=graph, backend="lava", data="toy", data_dir=tiny_task, checkpoint=bad)
    assert not started
