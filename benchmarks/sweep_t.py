"""Accuracy and energy against the number of time steps T, for one trained student.

The student is trained at one T; here it is *evaluated* at each T of ``--steps`` (the LIF
dynamics and weights unchanged, the input held for T steps, logits averaged over T), its
activity recorded with PyTorch hooks and priced by ``spikebert energy`` against the teacher.
Writes ``OUT/sweep.json`` (one row per T) and the figures ``accuracy`` against ``time_steps``
and against the student's energy (``spikebert plot sweep``).

    python benchmarks/sweep_t.py --checkpoint runs/bench/sst-2/student-main/model.pt \\
        --teacher runs/bench/sst-2/teacher/model --steps 1 2 4 8 --out benchmarks/results/sweep_t_sst2
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]  # package, helpers

from provenance import load_average, provenance  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--teacher", required=True)
    p.add_argument("--data", default="sst-2")
    p.add_argument("--steps", type=int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--profile", default="45nm-fp32")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    started = provenance()
    from spikebert.hardware.lava_runner import prepare_lava

    prepare_lava()  # the energy command may run Lava: fix the start method before tqdm does
    import torch

    from spikebert.cli import main as cli
    from spikebert.contract.fileio import atomic_write_text
    from spikebert.contract.nirfile import write_graph
    from spikebert.converters.torch_to_nir import export_student
    from spikebert.data import load_split
    from spikebert.figures import sweep_figure
    from spikebert.recording import ActivityRecorder
    from spikebert.students import load_student
    from spikebert.workflows import tokenize_for_graph

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    student, payload = load_student(args.checkpoint)
    meta = {k: payload[k] for k in ("tokenizer", "tokenizer_sha256", "task")}
    trained_t = student.cfg.time_steps
    data = load_split(args.data, "dev")
    labels = np.array(data.labels)
    rows = []
    for T in args.steps:
        student.cfg = dataclasses.replace(student.cfg, time_steps=T)
        graph = export_student(student, metadata=meta)
        write_graph(out / f"model_T{T}.nir", graph)
        ids = tokenize_for_graph(graph, data.sentences)
        with torch.no_grad(), ActivityRecorder(student.double().eval(), graph=graph) as recorder:
            logits = np.concatenate([recorder(torch.from_numpy(ids[i:i + args.batch_size])).logits.numpy()
                                     for i in range(0, len(ids), args.batch_size)])
        accuracy = float((logits.argmax(-1) == labels).mean())
        recorder.activity.to_json(out / f"activity_T{T}.json")
        report_dir = out / f"energy_T{T}"
        assert cli(["energy", str(out / f"model_T{T}.nir"), "--teacher", args.teacher, "--data", args.data,
                    "--activity", str(out / f"activity_T{T}.json"), "--accuracy", str(accuracy),
                    "--profile", args.profile, "--format", "json", "--out", str(report_dir)]) == 0
        report = json.loads((report_dir / "energy_report.json").read_text(encoding="utf-8"))
        energy = report["energy"][args.profile]
        rows.append({"time_steps": T, "trained_time_steps": trained_t, "accuracy": accuracy,
                     "student_mj": energy["student_mj"], "teacher_mj": energy["teacher_mj"], "ratio": energy["ratio"]})
        print(json.dumps(rows[-1]), flush=True)
    result = {**started, "load_average_at_end": load_average(), "checkpoint": args.checkpoint,
              "profile": args.profile, "results": rows}
    atomic_write_text(out / "sweep.json", json.dumps(result, indent=1) + "\n")
    sweep_figure(out / "sweep.json", out, x="time_steps", y="accuracy")
    sweep_figure(out / "sweep.json", out, x="student_mj", y="accuracy")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
