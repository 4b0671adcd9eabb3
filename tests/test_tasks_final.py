"""benchmarks/tasks_final.py: one results file holds one recipe; a mismatched --out is refused before training."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
_spec = importlib.util.spec_from_file_location("tasks_final", ROOT / "benchmarks" / "tasks_final.py")
tasks_final = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = tasks_final
_spec.loader.exec_module(tasks_final)


def recipe(relative_distance: int) -> dict:
    student = {"norm": "batch", "residual": "membrane", "position_encoding": "sinusoidal"}
    if relative_distance:
        student["relative_distance"] = relative_distance
    return {"teacher_config": tasks_final.TEACHER, "student": student, "distill": tasks_final.DISTILL}


def test_no_file_no_rows(tmp_path):
    assert tasks_final.earlier_rows(tmp_path / "absent.json", recipe(0)) == {}


@pytest.mark.parametrize(("name", "r"), [("tasks_final.json", 0), ("tasks_final_rel8.json", 8)])
def test_each_committed_file_holds_one_recipe(name, r):
    rows = tasks_final.earlier_rows(RESULTS / name, recipe(r))
    assert sorted(rows) == sorted(tasks_final.TASKS)
    with pytest.raises(ValueError, match=r"was made with student .* one file holds one recipe"):
        tasks_final.earlier_rows(RESULTS / name, recipe(8 - r))


@pytest.mark.parametrize("text", ["{not json", "[]", '{"command": "x"}', '{"tasks": [1]}', '{"tasks": {"mr": 3}}'])
def test_not_a_results_file(tmp_path, text):
    out = tmp_path / "out.json"
    out.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match="give another --out"):
        tasks_final.earlier_rows(out, recipe(0))


def test_a_row_without_its_recipe_is_refused(tmp_path):
    row = {field: value for field, value in recipe(0).items() if field != "distill"}
    out = tmp_path / "out.json"
    out.write_text(json.dumps({"tasks": {"mr": row}}), encoding="utf-8")
    with pytest.raises(ValueError, match="'mr' does not record its 'distill'"):
        tasks_final.earlier_rows(out, recipe(0))


def test_main_refuses_a_mixed_file_before_training(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # the script imports its neighbours, as when it is run
    out = tmp_path / "tasks.json"
    before = (RESULTS / "tasks_final.json").read_bytes()  # made without relative positions
    out.write_bytes(before)
    with pytest.raises(SystemExit) as e:
        tasks_final.main(["--runs", str(tmp_path / "runs"), "--relative-distance", "8", "--out", str(out)])
    assert e.value.code == 2
    assert "one file holds one recipe" in capsys.readouterr().err
    assert out.read_bytes() == before and not (tmp_path / "runs").exists()  # nothing written, nothing trained


def test_an_annealed_recipe_is_another_recipe(tmp_path, monkeypatch, capsys):
    """The KD temperature options are part of the recipe: the T = 1 file refuses an annealed invocation."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    out = tmp_path / "tasks.json"
    out.write_bytes((RESULTS / "tasks_final_rel8.json").read_bytes())
    with pytest.raises(SystemExit) as e:
        tasks_final.main(["--runs", str(tmp_path / "runs"), "--relative-distance", "8", "--kd-temperature", "4",
                          "--kd-temperature-final", "1", "--out", str(out)])
    assert e.value.code == 2
    assert "was made with distill" in capsys.readouterr().err and not (tmp_path / "runs").exists()
