"""benchmarks/kd_temperature_sst2.py: soft-target sharpness, and an --out of another recipe refused before training."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))  # the script imports its neighbours (ablation_sst2, run_summary)
try:
    _spec = importlib.util.spec_from_file_location("kd_temperature_sst2", ROOT / "benchmarks" / "kd_temperature_sst2.py")
    kdt = importlib.util.module_from_spec(_spec)
    sys.modules[_spec.name] = kdt
    _spec.loader.exec_module(kdt)
finally:
    sys.path.remove(str(ROOT / "benchmarks"))


def test_soft_target_stats_by_hand():
    # margins 0, 2 ln 3 and -4 ln 3 (a wrong, confident sentence); labels all 0
    logits = torch.tensor([[0.0, 0.0], [2 * math.log(3), 0.0], [0.0, 4 * math.log(3)]])
    got = kdt.soft_target_stats(logits, torch.tensor([0, 0, 0]), (1.0, 2.0))
    assert got["accuracy"] == pytest.approx(2 / 3)  # a tie goes to class 0, as argmax does
    # top probabilities at T = 1: 1/2, 9/10, 81/82; at T = 2 the margins halve: 1/2, 3/4, 9/10
    assert got["T1"]["mean_top_probability"] == pytest.approx((1 / 2 + 9 / 10 + 81 / 82) / 3)
    assert got["T2"]["mean_top_probability"] == pytest.approx((1 / 2 + 3 / 4 + 9 / 10) / 3)

    def bits(q):
        return -(q * math.log2(q) + (1 - q) * math.log2(1 - q))

    assert got["T2"]["mean_entropy_bits"] == pytest.approx((1 + bits(3 / 4) + bits(9 / 10)) / 3)
    assert got["share_top_probability_above_0_99"] == 0.0  # 81/82 = 0.9878
    one_hot = kdt.soft_target_stats(torch.tensor([[200.0, 0.0]]), torch.tensor([0]), (1.0,))
    assert one_hot["T1"]["mean_entropy_bits"] == pytest.approx(0.0, abs=1e-12)  # no NaN from 0 log 0
    assert one_hot["share_top_probability_above_0_99"] == 1.0


@pytest.mark.parametrize("earlier", [
    {"student": {"dim": 128}},  # another student
    {"teachers": {}, "students": {}},  # its recipe not recorded
    [1, 2],  # not an object
])
def test_an_out_of_another_recipe_is_refused_before_training(tmp_path, capsys, earlier):
    out = tmp_path / "kdt.json"
    out.write_text(json.dumps(earlier), encoding="utf-8")
    before = out.read_bytes()
    with pytest.raises(SystemExit) as e:
        kdt.main(["--runs", str(tmp_path / "runs"), "--out", str(out)])
    assert e.value.code == 2 and "kdt.json" in capsys.readouterr().err
    assert out.read_bytes() == before and not (tmp_path / "runs").exists()  # nothing written, nothing trained


def test_temperatures_must_be_positive(tmp_path):
    with pytest.raises(SystemExit):
        kdt.main(["--out", str(tmp_path / "x.json"), "--temperatures", "1", "0"])


def test_cells_pool_the_seeds_of_one_teacher_and_temperature():
    def row(dev, shuffled):
        return {"dev_accuracy": dev, "shuffled_dev_accuracy": shuffled}

    got = kdt.cells({"teacher-e1/kd-T1": row(0.78, 0.77), "teacher-e1/kd-T1@seed1": row(0.80, 0.75),
                     "teacher-e1/kd-T4": row(0.79, 0.76), "teacher-e2/kd-T1@seed2": row(0.70, 0.70)})
    assert got["teacher-e1/kd-T1"]["seeds"] == 2
    assert got["teacher-e1/kd-T1"]["dev_accuracy"]["mean"] == pytest.approx(0.79)
    assert got["teacher-e1/kd-T1"]["dev_accuracy"]["std"] == pytest.approx(0.02 / math.sqrt(2))  # sample std
    assert got["teacher-e1/kd-T4"] == {"seeds": 1, "dev_accuracy": {"mean": 0.79, "std": None},
                                       "shuffled_dev_accuracy": {"mean": 0.76, "std": None}}
    assert set(got) == {"teacher-e1/kd-T1", "teacher-e1/kd-T4", "teacher-e2/kd-T1"}


def test_summarise_adds_the_cells_and_trains_nothing(tmp_path, capsys):
    out = tmp_path / "kdt.json"
    out.write_text(json.dumps({"students": {"teacher-e1/kd-T1": {"dev_accuracy": 0.8, "shuffled_dev_accuracy": 0.7}},
                               "kept": 1}), encoding="utf-8")
    assert kdt.main(["--runs", str(tmp_path / "runs"), "--out", str(out), "--summarise"]) == 0
    done = json.loads(out.read_text(encoding="utf-8"))
    assert done["kept"] == 1 and done["cells"]["teacher-e1/kd-T1"]["seeds"] == 1 and "summarised_by" in done
    assert not (tmp_path / "runs").exists()
    out.write_text(json.dumps({"students": {"x": {"dev_accuracy": 0.8}}}), encoding="utf-8")  # a row lacks a field
    with pytest.raises(SystemExit):
        kdt.main(["--out", str(out), "--summarise"])
    assert "cannot summarise" in capsys.readouterr().err
