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
