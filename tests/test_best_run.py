"""benchmarks/best_run.py: the issue's student_sst2.json is the run best on dev, copied with where it came from."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from spikebert.contract.errors import SpikebertError

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("best_run", ROOT / "benchmarks" / "best_run.py")
best_run = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = best_run
_spec.loader.exec_module(best_run)

ADDED = {"copy_of", "best_of", "selected_by"}


def write(tmp_path: Path, name: str, data) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def run(dev: float, test: float, **more) -> dict:
    return {"task": "sst-2", "dev_accuracy": dev, "test_accuracy": test, "wall_hours": 1.3, **more}


def test_dev_chooses_and_test_is_never_compared(tmp_path):
    a = write(tmp_path, "a.json", run(0.851, 0.870))  # the better test figure, the worse dev
    b = write(tmp_path, "b.json", run(0.853, 0.851, note="kept"))
    got = best_run.best([a, b], tmp_path / "out.json")
    assert got["copy_of"] == str(b) and got["test_accuracy"] == 0.851 and got["note"] == "kept"
    assert got["best_of"] == [{"file": str(a), "dev_accuracy": 0.851}, {"file": str(b), "dev_accuracy": 0.853}]


def test_a_tie_goes_to_the_first_named(tmp_path):
    a, b = write(tmp_path, "a.json", run(0.85, 0.84)), write(tmp_path, "b.json", run(0.85, 0.86))
    assert best_run.best([a, b], tmp_path / "out.json")["copy_of"] == str(a)
    assert best_run.best([b, a], tmp_path / "out.json")["copy_of"] == str(b)


@pytest.mark.parametrize("bad, message", [
    ([1, 2], "holds a JSON array"),
    (run("0.9", 0.8), "not a number"),
    (run(True, 0.8), "not a number"),
    ({"task": "sst-2"}, "dev_accuracy is None"),
    ({**run(0.9, 0.8), "task": "mr"}, "different tasks"),
    ({**run(0.9, 0.8), "copy_of": "x.json"}, "already a copy of x.json"),
])
def test_bad_candidates_are_refused_by_name(tmp_path, bad, message):
    good, other = write(tmp_path, "good.json", run(0.8, 0.8)), write(tmp_path, "bad.json", bad)
    with pytest.raises(SpikebertError, match=message):
        best_run.best([good, other], tmp_path / "out.json")


def test_one_candidate_or_out_among_them_is_refused(tmp_path):
    a, b = write(tmp_path, "a.json", run(0.8, 0.8)), write(tmp_path, "b.json", run(0.9, 0.8))
    with pytest.raises(SpikebertError, match="at least 2"):
        best_run.best([a], tmp_path / "out.json")
    with pytest.raises(SpikebertError, match="both a candidate and --out"):
        best_run.best([a, b], b)


def test_main_writes_the_copy_and_a_refusal_writes_nothing(tmp_path, capsys):
    a, b = write(tmp_path, "a.json", run(0.8, 0.8)), write(tmp_path, "b.json", run(0.9, 0.8))
    out = tmp_path / "best.json"
    assert best_run.main([str(a), str(b), "--out", str(out)]) == 0
    written = json.loads(out.read_text(encoding="utf-8"))
    assert {k: v for k, v in written.items() if k not in ADDED} == run(0.9, 0.8)
    assert written["selected_by"]["command"].endswith(f"{a} {b} --out {out}")
    missing = tmp_path / "missing.json"
    assert best_run.main([str(a), str(missing), "--out", str(tmp_path / "none.json")]) == 2
    assert "does not exist" in capsys.readouterr().err and not (tmp_path / "none.json").exists()


def test_the_recorded_best_run_is_the_best_of_its_candidates_and_their_copy():
    """benchmarks/results/student_sst2.json: re-chosen from the files it names, it is the same run, field for
    field (a candidate re-measured or edited after the choice fails here)."""
    recorded = json.loads((ROOT / "benchmarks" / "results" / "student_sst2.json").read_text(encoding="utf-8"))
    candidates = [ROOT / row["file"] for row in recorded["best_of"]]
    again = best_run.best(candidates, ROOT / "benchmarks" / "results" / "student_sst2.json")
    assert again["copy_of"] == str(ROOT / recorded["copy_of"])
    assert {k: v for k, v in again.items() if k not in ADDED} == {k: v for k, v in recorded.items() if k not in ADDED}
    assert [row["dev_accuracy"] for row in again["best_of"]] == [row["dev_accuracy"] for row in recorded["best_of"]]
