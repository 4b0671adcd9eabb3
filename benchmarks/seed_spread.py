"""Mean ± sample standard deviation of one recipe over ``student_sst2.py`` results files that differ only in seed.

    python benchmarks/seed_spread.py benchmarks/results/student_sst2.json \\
        benchmarks/results/student_sst2_seed1.json benchmarks/results/student_sst2_seed2.json \\
        --out benchmarks/results/student_sst2_seeds.json

Nothing is re-run: each file is read as written. Pooling runs of different recipes would report a spread that
belongs to no recipe, so the files must agree on every recorded config field (student, distillation, teacher,
selected stage) except the distillation seed, and each seed must appear once; anything else is refused, naming
the field. The standard deviation is the sample one (n − 1), as in the README's ablation table.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from spikebert.contract.errors import SpikebertError  # noqa: E402
from spikebert.contract.fileio import atomic_write_text  # noqa: E402

METRICS = ("dev_accuracy", "test_accuracy", "shuffled_dev_accuracy", "energy_ratio_45nm_fp32", "wall_hours")
RECIPE = ("student", "distill", "teacher", "selected_stage")  # the fields a run's recipe is read from
STAGE2 = "sst2-student"  # student_sst2.py's stage-2 run folder


def selected_stage(result: dict) -> str | None:
    """The stage a results file reports. Files written before further stages existed record no
    ``selected_stage``; their per-epoch dev is one list (one stage), so the stage is stage 2."""
    if "selected_stage" in result:
        return result["selected_stage"]
    return STAGE2 if isinstance(result.get("student_dev_per_epoch"), list) else None


def recipe(result: dict, path: Path) -> dict:
    """The recipe a results file records, the distillation seed left out."""
    result = {**result, "selected_stage": selected_stage(result)}
    missing = [k for k in RECIPE if result.get(k) is None]
    if missing:
        raise SpikebertError(f"{path}: no {', '.join(missing)} recorded; not a benchmarks/student_sst2.py results "
                             f"file (or one written before these fields were)")
    out = {k: result[k] for k in RECIPE}
    out["distill"] = {k: v for k, v in out["distill"].items() if k != "seed"}
    return out


def spread(paths: list[Path]) -> dict:
    """Per-seed rows and, for each metric every file holds, the mean and sample std (None with fewer than 2)."""
    if len(paths) < 2:
        raise SpikebertError(f"a seed spread needs at least 2 results files, got {len(paths)}")
    results = []
    for path in paths:
        try:
            results.append(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise SpikebertError(f"{path}: no such results file") from None
        except json.JSONDecodeError as e:
            raise SpikebertError(f"{path}: not JSON ({e})") from None
    first = recipe(results[0], paths[0])
    for path, result in zip(paths[1:], results[1:]):
        other = recipe(result, path)
        for part in RECIPE:
            if other[part] != first[part]:
                fields = (sorted(k for k in {*first[part], *other[part]} if first[part].get(k) != other[part].get(k))
                          if isinstance(first[part], dict) and isinstance(other[part], dict) else [])
                raise SpikebertError(f"{path} and {paths[0]} differ in {part}"
                                     + (f" ({', '.join(fields)})" if fields else "")
                                     + ": not one recipe over seeds")
    seeds = [r["distill"]["seed"] for r in results]
    if len(set(seeds)) != len(seeds):
        raise SpikebertError(f"seed repeated among the files: {seeds}")
    rows = [{"file": str(path), "seed": seed, **{m: r.get(m) for m in METRICS}}
            for path, seed, r in zip(paths, seeds, results)]
    summary = {}
    for m in METRICS:
        values = [row[m] for row in rows]
        if any(v is None for v in values):  # e.g. a file written without --read-test: no test figure to pool
            summary[m] = {"mean": None, "std": None, "n": sum(v is not None for v in values)}
            continue
        summary[m] = {"mean": statistics.fmean(values), "std": statistics.stdev(values), "n": len(values)}
    return {"runs": rows, "summary": summary, "std": "sample (n - 1)", "recipe": first}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", nargs="+", type=Path, help="benchmarks/student_sst2.py results files, one per seed")
    p.add_argument("--out", type=Path, required=True)
    argv = sys.argv[1:] if argv is None else list(argv)
    args = p.parse_args(argv)
    try:
        out = spread(args.results)
    except SpikebertError as e:
        print(f"seed_spread: {e}", file=sys.stderr)
        return 2
    out.update({"command": " ".join(["python", "benchmarks/seed_spread.py", *argv]),
                "date": datetime.datetime.now().isoformat(timespec="seconds"),
                "machine": {"platform": platform.platform(), "cpus": os.cpu_count()}})
    atomic_write_text(args.out, json.dumps(out, indent=2) + "\n")
    for m, s in out["summary"].items():
        if s["mean"] is not None:
            print(f"{m}: {s['mean']:.4f} ± {s['std']:.4f} (n = {s['n']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
