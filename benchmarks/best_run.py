"""The issue's ``student_sst2.json``: of ``student_sst2.py`` results files, the run with the best dev accuracy.

    python benchmarks/best_run.py benchmarks/results/student_sst2_full.json \\
        benchmarks/results/student_sst2_rel8.json ... --out benchmarks/results/student_sst2.json

Selection reads dev only (each file's ``dev_accuracy``); a tie goes to the file named first. The test figure is
carried along as the chosen file recorded it and never compared. The chosen file's fields are written unchanged,
plus ``copy_of`` (its path), ``best_of`` (every candidate's file and dev accuracy) and ``selected_by`` (this
command, date and machine), so the copy says where it came from and what it beat. Nothing is re-run.

Refused, naming the file: fewer than 2 candidates, a file that is not a results object, a missing or non-numeric
``dev_accuracy``, candidates of different tasks, a candidate that is itself such a copy, and ``--out`` among the
candidates.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]  # package, helpers

from provenance import machine, now  # noqa: E402

from spikebert.contract.errors import SpikebertError  # noqa: E402
from spikebert.contract.fileio import atomic_write_text  # noqa: E402
from spikebert.contract.jsonfile import read_json, require_object  # noqa: E402


def _dev(result: dict, path: Path) -> float:
    value = result.get("dev_accuracy")
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise SpikebertError(f"{path}: dev_accuracy is {value!r}, not a number; not a student_sst2.py results file")
    return float(value)


def best(paths: list[Path], out: Path) -> dict:
    """The candidate with the highest dev accuracy, with ``copy_of`` and ``best_of`` added."""
    if len(paths) < 2:
        raise SpikebertError(f"choosing a best run needs at least 2 results files, got {len(paths)}")
    if any(path.resolve() == out.resolve() for path in paths):
        raise SpikebertError(f"{out} is both a candidate and --out; name the runs' own files")
    results = [require_object(read_json(path, what="results file"), path, what="results file") for path in paths]
    for path, result in zip(paths, results):
        if "copy_of" in result:
            raise SpikebertError(f"{path} is already a copy of {result['copy_of']}; name that file instead")
    tasks = {result.get("task") for result in results}
    if len(tasks) != 1:
        raise SpikebertError(f"the candidates are of different tasks ({sorted(map(str, tasks))}): no common best")
    devs = [_dev(result, path) for path, result in zip(paths, results)]
    chosen = max(range(len(paths)), key=lambda i: (devs[i], -i))  # the first of equals
    return {**results[chosen], "copy_of": str(paths[chosen]),
            "best_of": [{"file": str(path), "dev_accuracy": dev} for path, dev in zip(paths, devs)]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", nargs="+", type=Path, help="benchmarks/student_sst2.py results files")
    p.add_argument("--out", type=Path, required=True)
    argv = sys.argv[1:] if argv is None else list(argv)
    args = p.parse_args(argv)
    try:
        out = best(args.results, args.out)
    except SpikebertError as e:
        print(f"best_run: {e}", file=sys.stderr)
        return 2
    out["selected_by"] = {"command": " ".join(["python", "benchmarks/best_run.py", *argv]),
                          "date": now(), "machine": machine()}
    atomic_write_text(args.out, json.dumps(out, indent=2) + "\n")
    print(f"{out['copy_of']}: dev {out['dev_accuracy']:.4f}, of {len(out['best_of'])} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
