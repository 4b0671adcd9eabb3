"""Benchmark: collect the accuracy runs under a folder into one results JSON (and the README table).

Every run folder written by ``spikebert train`` holds ``commands.jsonl`` (exact invocations, dates,
commits), ``metrics.jsonl`` (per-step losses, per-epoch dev metrics, wall seconds) and the trained
model. This script re-evaluates each final model on dev, and with ``--test`` once on the holdout
test split (final reporting only: nothing here selects or tunes on it), then writes
``benchmarks/results/accuracy.json``. The runs themselves are listed in ``benchmarks/sst2.sh`` and
``benchmarks/six_tasks.sh``.

    .venv/bin/python benchmarks/accuracy.py --runs runs/bench [--test]
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from provenance import load_average, provenance  # benchmarks/, beside this script

from spikebert.contract.fileio import atomic_write_text

log = logging.getLogger("benchmarks.accuracy")


def _jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _run_record(run: Path) -> dict:
    metrics = _jsonl(run / "metrics.jsonl")
    evals = [m for m in metrics if "eval" in m]
    return {
        "run_dir": str(run),
        "commands": _jsonl(run / "commands.jsonl"),
        "epochs_done": len(evals),
        "train_seconds": evals[-1]["seconds"] if evals and "seconds" in evals[-1] else None,
        "dev_by_epoch": [m["eval"] for m in evals],
        "configs": {p.stem: json.loads(p.read_text()) for p in sorted(run.glob("*_config.json"))},
    }


def evaluate_run(run: Path, *, data_dir: str | None, test: bool) -> dict | None:
    from spikebert.data import load_split
    from spikebert.teacher import evaluate_teacher, load_teacher, load_tokenizer
    from spikebert.tokenize import Batcher

    record = _run_record(run)
    commands = record["commands"]
    argv = commands[-1]["argv"] if commands else []
    task = argv[argv.index("--data") + 1] if "--data" in argv else "sst-2"
    splits = ["dev", "test"] if test else ["dev"]
    if (run / "model").is_dir():  # a fine-tuned teacher
        tok, model = load_tokenizer(str(run / "model")), load_teacher(str(run / "model"))
        batcher = Batcher(tok, max_len=64)
        for split in splits:
            record[f"{split}_accuracy"] = evaluate_teacher(model, batcher, load_split(task, split, data_dir=data_dir))
        return {"kind": "teacher", "task": task, **record}
    if (run / "model.pt").is_file() and (run / "distill_config.json").is_file():
        from spikebert.students import kind_of, load_student

        model, payload = load_student(run / "model.pt")
        tok = load_tokenizer(payload["tokenizer"])
        batcher = Batcher(tok, max_len=model.cfg.max_len, pad_to_max=not model.cfg.mask_padding)
        for split in splits:
            r = kind_of(model).evaluate(model, batcher, load_split(task, split, data_dir=data_dir), firing_rates=True)
            record[f"{split}_accuracy"] = r["accuracy"]
            rates = r["firing_rates"]
            record[f"{split}_mean_firing_rate"] = sum(rates.values()) / len(rates)
        return {"kind": "student", "task": task, **record}
    if (run / "model.pt").is_file():
        return {"kind": "stage1", "task": task, **record}
    return None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", default="runs/bench", help="folder whose run folders are collected (recursively)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--test", nargs="*", default=None, metavar="RUN_DIR",
                   help="also evaluate these final runs (all when none are named) once on the holdout test split")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "accuracy.json"))
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    runs = sorted({f.parent for f in Path(args.runs).rglob("commands.jsonl")})
    started = provenance()
    results = []
    for run in runs:
        log.info("evaluating %s", run)
        final = args.test is not None and (not args.test or any(run == Path(t) for t in args.test))
        rec = evaluate_run(run, data_dir=args.data_dir, test=final)
        if rec is not None:
            results.append(rec)
    out = {**started, "runs": results, "load_average_at_end": load_average()}
    atomic_write_text(Path(args.out), json.dumps(out, indent=2) + "\n")
    print("| task | run | kind | epochs | train min | dev | test |\n|---|---|---|---|---|---|---|")
    for r in results:
        mins = f"{r['train_seconds'] / 60:.1f}" if r.get("train_seconds") else "-"
        dev = f"{100 * r['dev_accuracy']:.2f}" if "dev_accuracy" in r else "-"
        test = f"{100 * r['test_accuracy']:.2f}" if "test_accuracy" in r else "-"
        name = Path(r["run_dir"]).name
        print(f"| {r['task']} | {name} | {r['kind']} | {r['epochs_done']} | {mins} | {dev} | {test} |")
    print(args.out)


if __name__ == "__main__":
    main()
