"""Summarise training run folders: the exact commands, the configs and the dev metric of each epoch.

    python benchmarks/run_summary.py runs/bench/sst-2/spikingbert-8k* --out benchmarks/results/x.json

Reads ``commands.jsonl``, ``metrics.jsonl`` and the stage configs each run folder holds; nothing is
re-run. Runs without a finished epoch are listed with ``"finished": false``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]  # package, helpers

from provenance import provenance  # noqa: E402


def summarise(run: Path) -> dict:
    def jsonl(name: str) -> list[dict]:
        path = run / name
        if not path.is_file():
            return []
        return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]

    metrics = jsonl("metrics.jsonl")
    evals = [m for m in metrics if "eval" in m]
    configs = {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(run.glob("*_config.json"))}
    last = [m for m in metrics if "loss" in m][-1:]
    return {"run": str(run), "commands": [c["argv"] for c in jsonl("commands.jsonl")], "configs": configs,
            "steps": max((m["global_step"] for m in metrics), default=0), "finished": bool(evals),
            "dev": [{"epoch": m["epoch"], **m["eval"]} for m in evals],
            "train_seconds": evals[-1]["seconds"] if evals else None, "last_logged_losses": last[0] if last else {}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    from spikebert.contract.fileio import atomic_write_text

    result = {**provenance(), "runs": [summarise(Path(r)) for r in args.runs]}
    atomic_write_text(Path(args.out), json.dumps(result, indent=1) + "\n")
    for r in result["runs"]:
        print(r["run"], r["steps"], r["dev"][-1]["dev_accuracy"] if r["dev"] else "unfinished")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
