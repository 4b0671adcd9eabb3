"""benchmarks/seed_spread.py: the mean ± sample std of one recipe over seeds, and refusal to pool anything else."""

from __future__ import annotations

import importlib.util
import json
import re
import statistics
import sys
from pathlib import Path

import pytest

from spikebert.contract.errors import SpikebertError

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("seed_spread", ROOT / "benchmarks" / "seed_spread.py")
seed_spread = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = seed_spread
_spec.loader.exec_module(seed_spread)


def result(seed: int, dev: float, **changes) -> dict:
    r = {"dev_accuracy": dev, "test_accuracy": dev + 0.01, "shuffled_dev_accuracy": dev - 0.02,
         "energy_ratio_45nm_fp32": 0.0143, "wall_hours": 1.4,
         "student": {"dim": 256, "depth": 2, "residual": "membrane"},
         "distill": {"epochs": 3, "lr": 5e-4, "seed": seed}, "teacher": {"epochs": 1, "seed": 42},
         "selected_stage": "sst2-student", "student_dev_per_epoch": {"sst2-student": []},
         "commands": {"this_script": f"/v/bin/python benchmarks/student_sst2.py --runs runs/s{seed} --teacher-samples 0 "
                                     f"--epochs 3 --seed={seed} --read-test --out r{seed}.json"}}
    for key, value in changes.items():
        r[key] = {**r[key], **value} if isinstance(value, dict) else value
    return r


def write(tmp_path: Path, name: str, r: dict) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(r), encoding="utf-8")
    return path


def test_mean_and_sample_std_over_seeds(tmp_path):
    devs = {42: 0.836, 1: 0.825, 2: 0.831}
    paths = [write(tmp_path, f"s{s}.json", result(s, d)) for s, d in devs.items()]
    out = tmp_path / "spread.json"
    assert seed_spread.main([*map(str, paths), "--out", str(out)]) == 0
    got = json.loads(out.read_text())
    assert [row["seed"] for row in got["runs"]] == [42, 1, 2]
    dev = got["summary"]["dev_accuracy"]
    assert dev["n"] == 3
    assert dev["mean"] == pytest.approx((0.836 + 0.825 + 0.831) / 3)
    assert dev["std"] == pytest.approx(statistics.stdev(devs.values()))  # n - 1, not the population std
    assert dev["std"] != pytest.approx(statistics.pstdev(devs.values()))
    assert got["recipe"]["distill"] == {"epochs": 3, "lr": 5e-4}  # the seed is what varies, so not the recipe


def test_a_file_from_before_stages_were_recorded_is_stage_2(tmp_path):
    old = result(42, 0.836)
    del old["selected_stage"]
    old["student_dev_per_epoch"] = [{"epoch": 1, "dev_accuracy": 0.83}]  # one stage: a list, not a dict of stages
    got = seed_spread.spread([write(tmp_path, "old.json", old), write(tmp_path, "new.json", result(1, 0.83))])
    assert got["summary"]["dev_accuracy"]["n"] == 2
    del old["student_dev_per_epoch"]  # neither field: which stage it reports is unknown, so it is refused
    with pytest.raises(SpikebertError, match="no selected_stage recorded"):
        seed_spread.spread([write(tmp_path, "old.json", old), write(tmp_path, "new.json", result(1, 0.83))])


@pytest.mark.parametrize("changes, field", [
    ({"distill": {"lr": 1e-4}}, "distill (lr)"),
    ({"student": {"dim": 384}}, "student (dim)"),
    ({"teacher": {"epochs": 3}}, "teacher (epochs)"),
    ({"student_dev_per_epoch": {"sst2-student": [], "sst2-student-aug2": []}},
     "stages (['sst2-student'] against ['sst2-student', 'sst2-student-aug2'])"),
    ({"commands": {"this_script": "python benchmarks/student_sst2.py --runs runs/x --epochs 2"}},
     "arguments (['--teacher-samples', '0', '--epochs', '3'] against ['--epochs', '2'])"),
])
def test_runs_of_another_recipe_are_refused_by_field(tmp_path, changes, field):
    a = write(tmp_path, "a.json", result(42, 0.836))
    b = write(tmp_path, "b.json", result(1, 0.80, **changes))
    with pytest.raises(SpikebertError, match=re.escape(f"differ in {field}") + ".*not one recipe"):
        seed_spread.spread([a, b])


def test_seeds_may_select_different_stages_of_one_recipe(tmp_path):
    """Selection on dev may keep stage 2 for one seed and stage 3 for another: the same recipe, whose selected
    configs then differ by construction; each row says which stage it reports."""
    stages = {"sst2-student": [], "sst2-student-aug2": []}
    a = write(tmp_path, "a.json", result(42, 0.836, student_dev_per_epoch=stages))
    b = write(tmp_path, "b.json", result(1, 0.84, student_dev_per_epoch=stages, selected_stage="sst2-student-aug2",
                                         distill={"lr": 1.5e-4, "augment": {"n_samples": 2}}))
    got = seed_spread.spread([a, b])
    assert [row["selected_stage"] for row in got["runs"]] == ["sst2-student", "sst2-student-aug2"]
    c = write(tmp_path, "c.json", result(2, 0.84, student_dev_per_epoch=stages, selected_stage="sst2-student-aug2",
                                         teacher={"epochs": 3}))
    with pytest.raises(SpikebertError, match=re.escape("differ in teacher (epochs)")):  # one teacher for all stages
        seed_spread.spread([a, c])


def test_operational_fields_are_not_the_recipe(tmp_path):
    a = write(tmp_path, "a.json", result(42, 0.836))
    b = write(tmp_path, "b.json", result(1, 0.83, distill={"checkpoint_every": 50, "teacher_cache": False}))
    assert seed_spread.spread([a, b])["recipe"]["distill"] == {"epochs": 3, "lr": 5e-4}


@pytest.mark.parametrize("damage, message", [
    (lambda r: r["distill"].pop("seed"), "distill.seed is None"),
    (lambda r: r.update(distill=[1]), "'distill' is list"),
    (lambda r: r.pop("commands"), "'commands' is NoneType"),
    (lambda r: r["commands"].update(this_script="python other.py --epochs 3"), "does not run student_sst2.py"),
    (lambda r: r.pop("selected_stage"), "no selected_stage recorded"),
])
def test_missing_or_malformed_metadata_is_refused_by_name(tmp_path, damage, message):
    good = write(tmp_path, "a.json", result(42, 0.836))
    bad = result(1, 0.83)
    damage(bad)
    with pytest.raises(SpikebertError, match=re.escape(message)):
        seed_spread.spread([good, write(tmp_path, "bad.json", bad)])
    (tmp_path / "list.json").write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(SpikebertError, match="not a results file: it holds a JSON array"):
        seed_spread.spread([good, tmp_path / "list.json"])


def test_repeated_seed_missing_file_and_single_file_are_refused(tmp_path, capsys):
    a = write(tmp_path, "a.json", result(42, 0.836))
    b = write(tmp_path, "b.json", result(42, 0.83))
    with pytest.raises(SpikebertError, match="seed repeated"):
        seed_spread.spread([a, b])
    with pytest.raises(SpikebertError, match="results file .*absent.json does not exist"):
        seed_spread.spread([a, tmp_path / "absent.json"])
    (tmp_path / "bad.json").write_text("{", encoding="utf-8")
    with pytest.raises(SpikebertError, match="not a results file: not valid JSON"):
        seed_spread.spread([a, tmp_path / "bad.json"])
    out = tmp_path / "spread.json"
    assert seed_spread.main([str(a), "--out", str(out)]) == 2
    assert "at least 2" in capsys.readouterr().err
    assert not out.exists()


def test_a_metric_one_run_lacks_is_not_pooled(tmp_path):
    no_test = result(1, 0.83, test_accuracy=None)  # written without --read-test
    got = seed_spread.spread([write(tmp_path, "a.json", result(42, 0.836)), write(tmp_path, "b.json", no_test)])
    assert got["summary"]["test_accuracy"] == {"mean": None, "std": None, "n": 1}
    assert got["summary"]["dev_accuracy"]["n"] == 2


def test_the_recorded_runs_read_as_recipes():
    """The best student's file (written before stages were recorded) and the augmented run's: the same selected
    stage and configs, but another recipe (a further stage was trained), which the spread refuses."""
    results = ROOT / "benchmarks" / "results"
    best = seed_spread.recipe(json.loads((results / "student_sst2_full.json").read_text(encoding="utf-8")), results)
    assert best["selected_stage"] == "sst2-student" and best["stages"] == ["sst2-student"]
    assert best["arguments"] == ["--teacher-samples", "0", "--epochs", "3"]
    assert "seed" not in best["distill"] and best["student"]["residual"] == "membrane"
    aug = seed_spread.recipe(json.loads((results / "student_sst2_aug.json").read_text(encoding="utf-8")), results)
    assert aug["selected_stage"] == best["selected_stage"] and aug["distill"] == best["distill"]
    assert aug["stages"] == ["sst2-student", "sst2-student-aug2"] and aug["arguments"] != best["arguments"]
