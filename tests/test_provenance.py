"""benchmarks/provenance.py: what every results file records about how it was made."""

from __future__ import annotations

import datetime
import importlib.util
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("provenance", ROOT / "benchmarks" / "provenance.py")
provenance = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(provenance)


def test_the_command_can_be_pasted_back_into_a_shell():
    argv = ["benchmarks/x.py", "--out", "a b.json", "--note", "it's"]
    assert shlex.split(provenance.command(argv)) == [sys.executable, *argv]


def test_the_date_carries_its_utc_offset():
    date = datetime.datetime.fromisoformat(provenance.now())
    assert date.utcoffset() is not None and date.microsecond == 0


def test_machine_names_the_pytorch_build_and_threads():
    import torch

    info = provenance.machine()
    assert info["torch"] == torch.__version__ and info["torch_threads"] == torch.get_num_threads()
    assert info["cpus"] and info["cpu"] is not None and info["python"]


def test_provenance_has_the_four_keys():
    record = provenance.provenance(["x.py"])
    assert set(record) == {"command", "date", "machine", "load_average_at_start"}
    assert len(record["load_average_at_start"]) == 3


SCRIPTS = sorted(p.name for p in (ROOT / "benchmarks").glob("*.py") if p.name != "provenance.py")


@pytest.mark.lava  # some scripts build Lava processes (Python 3.10)
@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS)
def test_every_benchmark_script_starts(script):
    """Each script's imports resolve when it is run as the README says (demo_pipeline.py once imported a name its
    module no longer had, and nothing ran it)."""
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--help"], capture_output=True,
                          text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage:" in done.stdout
