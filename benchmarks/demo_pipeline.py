"""Benchmark: the demo chain on SST-2 (teacher, student, NIR, Lava, energy), wall times and figures.

Writes benchmarks/results/demo_pipeline.json with the exact command, machine and date.
Run with `make bench` (or `.venv/bin/python benchmarks/demo_pipeline.py [--out runs/bench]`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from spikebert.hardware.lava_runner import prepare_lava

prepare_lava()

from provenance import load_average, provenance  # noqa: E402  (benchmarks/, beside this script)

from spikebert.cli import _setup_logging  # noqa: E402
from spikebert.contract.fileio import atomic_write_text  # noqa: E402
from spikebert.workflows import DEMO_STUDENT, run_demo  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="runs/bench")
    p.add_argument("--data-dir", default=None)
    args = p.parse_args()
    _setup_logging(False)
    started = provenance()
    summary = run_demo(out_dir=Path(args.out), data_dir=args.data_dir, task="sst-2", teacher="minilm-offline",
                       teacher_samples=6000, student_samples=8000, epochs=1, sim_sentences=200,
                       student=DEMO_STUDENT)
    result = {**started, "summary": summary, "load_average_at_end": load_average()}
    out = Path(__file__).parent / "results" / "demo_pipeline.json"
    atomic_write_text(out, json.dumps(result, indent=2) + "\n")
    print(out)


if __name__ == "__main__":
    main()
