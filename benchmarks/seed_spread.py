"""Mean ± sample standard deviation of one recipe over ``student_sst2.py`` results files that differ only in seed.

    python benchmarks/seed_spread.py benchmarks/results/student_sst2_full.json \\
        benchmarks/results/student_sst2_seed1.json benchmarks/results/student_sst2_seed2.json \\
        --out benchmarks/results/student_sst2_seeds.json

Nothing is re-run: each file is read as written. Pooling runs of different recipes would report a spread that
belongs to no recipe, so the files must agree on what they record of it (see :func:`spread`) except the student's
seed, and each seed must appear once; anything else is refused, naming the field. The standard deviation is the
sample one (n − 1), as in the README's ablation table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]  # package, helpers

from provenance import machine, now  # noqa: E402

from spikebert.contract.errors import SpikebertError  # noqa: E402
from spikebert.contract.fileio import atomic_write_text  # noqa: E402
from spikebert.contract.jsonfile import read_json, require_object  # noqa: E402

METRICS = ("dev_accuracy", "test_accuracy", "shuffled_dev_accuracy", "energy_ratio_45nm_fp32", "wall_hours")
CONFIGS = ("student", "distill", "teacher")  # the selected stage's recorded configs
NOT_RECIPE = {"seed", "checkpoint_every", "teacher_cache"}  # distill fields that change no weight (or are the seed)
PLACES = {"--runs", "--teacher-run", "--out", "--seed", "--data-dir"}  # options naming places (or the seed)
STAGE2 = "sst2-student"  # student_sst2.py's stage-2 run folder


def _field(result: dict, key: str, kind: type, path: Path):
    value = result.get(key)
    if not isinstance(value, kind):
        raise SpikebertError(f"{path}: {key!r} is {type(value).__name__}, not {kind.__name__}; not a "
                             "benchmarks/student_sst2.py results file (or one written before it recorded this)")
    return value


def _single_stage(result: dict) -> bool:
    """Files written before further stages existed keep their per-epoch dev as one list (one stage: stage 2);
    later ones as a dict of stages, with the selected one named."""
    return isinstance(result.get("student_dev_per_epoch"), list)


def stages(result: dict, path: Path) -> list[str]:
    """The stages the run trained, in order."""
    return [STAGE2] if _single_stage(result) else list(_field(result, "student_dev_per_epoch", dict, path))


def arguments(result: dict, path: Path) -> list[str]:
    """The options of the student_sst2.py command that shape the recipe: those after the script, without the
    ones naming places (``PLACES``, with their values) and ``--read-test`` (it reads the test split after
    training)."""
    command = _field(_field(result, "commands", dict, path), "this_script", str, path).split()
    script = [i for i, word in enumerate(command) if word.endswith("student_sst2.py")]
    if not script:
        raise SpikebertError(f"{path}: its command {' '.join(command)!r} does not run student_sst2.py")
    kept, words = [], iter(command[script[0] + 1:])
    for word in words:
        if word.split("=", 1)[0] in PLACES:
            if "=" not in word:
                next(words, None)  # the option's value
        elif word != "--read-test":
            kept.append(word)
    return kept


def recipe(result: dict, path: Path) -> dict:
    """What a results file says was trained, the student's seed left out: the script's options, the stages,
    the selected stage and its configs (distillation fields that change no weight left out too)."""
    selected = result.get("selected_stage", STAGE2 if _single_stage(result) else None)
    if not isinstance(selected, str):
        raise SpikebertError(f"{path}: no selected_stage recorded, so which stage it reports is unknown")
    out = {"arguments": arguments(result, path), "stages": stages(result, path), "selected_stage": selected,
           **{k: _field(result, k, dict, path) for k in CONFIGS}}
    out["distill"] = {k: v for k, v in out["distill"].items() if k not in NOT_RECIPE}
    return out


def seed(result: dict, path: Path) -> int:
    value = result["distill"].get("seed")
    if not isinstance(value, int) or isinstance(value, bool):
        raise SpikebertError(f"{path}: distill.seed is {value!r}, not an integer")
    return value


def _differ(path: Path, first: Path, part: str, a, b) -> SpikebertError:
    if isinstance(a, dict) and isinstance(b, dict):
        what = ", ".join(sorted(k for k in {*a, *b} if a.get(k) != b.get(k)))
    else:
        what = f"{a!r} against {b!r}"
    return SpikebertError(f"{path} and {first} differ in {part} ({what}): not one recipe over seeds")


def spread(paths: list[Path]) -> dict:
    """Per-seed rows and, for each metric every file holds, the mean and sample std.

    The files must agree on the script's options, the stages trained and the teacher; where they select the
    same stage, on its student and distillation configs too (a stage selected on dev may differ between
    seeds: its configs then differ by construction, and the options say what each stage was)."""
    if len(paths) < 2:
        raise SpikebertError(f"a seed spread needs at least 2 results files, got {len(paths)}")
    results = [require_object(read_json(path, what="results file"), path, what="results file") for path in paths]
    recipes = [recipe(r, path) for r, path in zip(results, paths)]
    first = recipes[0]
    for path, other in zip(paths[1:], recipes[1:]):
        same_stage = other["selected_stage"] == first["selected_stage"]
        for part in ("arguments", "stages", "teacher", *(("student", "distill") if same_stage else ())):
            if other[part] != first[part]:
                raise _differ(path, paths[0], part, first[part], other[part])
    seeds = [seed(r, path) for r, path in zip(results, paths)]
    if len(set(seeds)) != len(seeds):
        raise SpikebertError(f"seed repeated among the files: {seeds}")
    rows = [{"file": str(path), "seed": s, "selected_stage": rec["selected_stage"], **{m: r.get(m) for m in METRICS}}
            for path, s, rec, r in zip(paths, seeds, recipes, results)]
    summary = {}
    for m in METRICS:
        values = [row[m] for row in rows]
        if any(not isinstance(v, (int, float)) for v in values):  # e.g. written without --read-test: no test figure
            summary[m] = {"mean": None, "std": None, "n": sum(isinstance(v, (int, float)) for v in values)}
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
                "date": now(), "machine": machine()})
    atomic_write_text(args.out, json.dumps(out, indent=2) + "\n")
    for m, s in out["summary"].items():
        if s["mean"] is not None:
            print(f"{m}: {s['mean']:.4f} ± {s['std']:.4f} (n = {s['n']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
