"""benchmarks/student_sst2.py: the student's own options reach every student stage, and only those."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from spikebert import workflows

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("student_sst2", ROOT / "benchmarks" / "student_sst2.py")
student_sst2 = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = student_sst2
_spec.loader.exec_module(student_sst2)


class Stop(Exception):
    """Raised where the script would start evaluating: the stages' arguments are all recorded by then."""


def stages(monkeypatch, tmp_path, *argv) -> list[dict]:
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # the script imports its neighbours, as when it is run
    calls = []

    def train(**kwargs):
        calls.append(kwargs)
        return {"model": str(tmp_path / "teacher" / "model"), "dev_accuracy": 0.5}

    def evaluate(**kwargs):
        raise Stop

    monkeypatch.setattr(workflows, "train", train)
    monkeypatch.setattr(workflows, "evaluate", evaluate)
    with pytest.raises(Stop):
        student_sst2.main(["--runs", str(tmp_path), "--out", str(tmp_path / "out.json"), *argv])
    return calls


def test_kd_temperature_seed_and_ema_reach_every_student_stage(monkeypatch, tmp_path):
    calls = stages(monkeypatch, tmp_path, "--kd-temperature", "2", "--kd-temperature-final", "1",
                   "--seed", "3", "--augment", "1",
                   "--stage3-count", "2", "--teacher-epochs", "2", "--ema-decay", "0.999",
                   "--ema-bn-batches", "50")
    teacher, *students = calls
    assert teacher["stage"] == "teacher" and not {"kd_temperature", "ema_decay"} & set(teacher["overrides"])
    assert teacher["overrides"]["epochs"] == 2
    assert [c["stage"] for c in students] == ["distill"] * 3  # stage 2, then two further stages
    for call in students:
        assert call["overrides"]["kd_temperature"] == 2.0 and call["overrides"]["seed"] == 3
        assert call["overrides"]["kd_temperature_final"] == 1.0
        assert call["overrides"]["ema_decay"] == 0.999 and call["overrides"]["ema_bn_batches"] == 50


def test_without_them_the_config_defaults_hold(monkeypatch, tmp_path):
    _, student = stages(monkeypatch, tmp_path)
    assert not {"kd_temperature", "kd_temperature_final", "seed", "ema_decay", "ema_bn_batches"} & set(
        student["overrides"])
    assert student["student_overrides"] == student_sst2.student_overrides(0)
