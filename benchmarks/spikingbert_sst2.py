"""SpikingBERT against SpikeBERT on a task's dev split: accuracy and energy against T.

The SpikingBERT student (trained at one T) is evaluated at each T of ``--steps`` by
``spikebert energy`` (its PyTorch simulation records the population spikes, priced against the
teacher on the same sentences); the SpikeBERT student of the same size and training budget is
priced the same way from its NIR export on the reference executor. Training wall time is read from
each run folder's ``metrics.jsonl``. Writes ``OUT/comparison.json`` (one row per model and T, the
exact command, machine and date) and the accuracy-against-T and accuracy-against-energy figures.

    python benchmarks/spikingbert_sst2.py --spikingbert runs/bench/sst-2/spikingbert-8k/model.pt \\
        --spikebert runs/bench/sst-2/ablation-norm_layer-mask_true/model.pt \\
        --teacher runs/bench/sst-2/teacher/model --steps 8 16 32 --out benchmarks/results/spikingbert_sst2
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]  # package, helpers

from provenance import load_average, provenance  # noqa: E402

PROFILES = "45nm-fp32,loihi,45nm-fp32-mem8k"


def run_facts(checkpoint: Path) -> dict:
    """Training budget of the run that wrote ``checkpoint``: sentences, epochs, steps, wall seconds."""
    import torch

    run = checkpoint.parent
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines() if x.strip()]
    evals = [x for x in lines if "eval" in x]
    payload = torch.load(checkpoint, map_location="cpu", weights_only=True)
    cfg = payload.get("distill_config", {})
    return {"run": str(run), "train_samples": cfg.get("train_samples"), "epochs": cfg.get("epochs"),
            "steps": max((x["global_step"] for x in lines), default=0),
            "train_seconds": max((x.get("seconds", 0.0) for x in evals), default=None),
            "selected_dev_accuracy": payload["metrics"].get("dev_accuracy"),
            "parameters": sum(v.numel() for k, v in payload["state_dict"].items()
                              if v.is_floating_point() and "running_" not in k)}


def priced(report_dir: Path) -> dict:
    report = json.loads((report_dir / "energy_report.json").read_text(encoding="utf-8"))
    row = {"accuracy": report["accuracy"], "samples": report["samples"], "time_steps": report["time_steps"]}
    for name, e in report["energy"].items():
        row[f"ratio_{name}"] = e["ratio"]
        row[f"student_mj_{name}"] = e["student_mj"]
    row["teacher_mj_45nm-fp32"] = report["energy"]["45nm-fp32"]["teacher_mj"]
    row["acs"] = sum(layer["acs"] for layer in report["layers"])
    row["macs"] = sum(layer["macs"] for layer in report["layers"])
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--spikingbert", required=True, help="SpikingBERT model.pt")
    p.add_argument("--spikebert", required=True, help="SpikeBERT model.pt of the same size and budget")
    p.add_argument("--teacher", required=True)
    p.add_argument("--data", default="sst-2")
    p.add_argument("--steps", type=int, nargs="+", default=[8, 16, 32])
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    started = provenance()
    from spikebert.hardware.lava_runner import prepare_lava

    prepare_lava()
    from spikebert.cli import main as cli
    from spikebert.contract.fileio import atomic_write_text
    from spikebert.figures import sweep_figure

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    common = ["--teacher", args.teacher, "--data", args.data, "--split", "dev", "--profile", PROFILES,
              "--format", "md,json", "--batch-size", str(args.batch_size)]
    rows = []
    spikebert_dir = out / "spikebert"
    if cli(["energy", args.spikebert, *common, "--out", str(spikebert_dir)]) != 0:
        raise SystemExit(f"spikebert energy failed on {args.spikebert}")
    (spikebert_dir / "model.nir").unlink(missing_ok=True)  # the exported graph (tens of MB): not a result
    rows.append({"model": "SpikeBERT", **run_facts(Path(args.spikebert)), **priced(spikebert_dir)})
    print(json.dumps(rows[-1]), flush=True)
    facts = run_facts(Path(args.spikingbert))
    for T in args.steps:
        report_dir = out / f"spikingbert_T{T}"
        if cli(["energy", args.spikingbert, *common, "--time-steps", str(T), "--out", str(report_dir)]) != 0:
            raise SystemExit(f"spikebert energy failed on {args.spikingbert} at T={T}")
        rows.append({"model": "SpikingBERT", **facts, **priced(report_dir)})
        print(json.dumps(rows[-1]), flush=True)
    result = {**started, "load_average_at_end": load_average(), "profiles": PROFILES, "results": rows}
    atomic_write_text(out / "comparison.json", json.dumps(result, indent=1) + "\n")
    sweep_figure(out / "comparison.json", out, x="time_steps", y="accuracy", group="model")
    sweep_figure(out / "comparison.json", out, x="ratio_45nm-fp32", y="accuracy", group="model")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
