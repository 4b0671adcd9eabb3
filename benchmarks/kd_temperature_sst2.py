"""Teacher epochs x KD temperature on SST-2 at the ablation budget (issue #16, item 4).

At full scale a teacher fine-tuned two epochs (90.37 % dev) gave a worse student than a one-epoch teacher
(88.76 %): 83.60 against 85.09 % dev (``student_sst2_rel8_teacher2.json``). One explanation: a teacher that
has seen the student's training sentences twice is near-certain on them, so its soft targets at KD temperature 1
say little more than the labels. This script measures both halves of that:

1. per teacher (all-MiniLM-L6-v2 on ``--teacher-samples`` training sentences, 1 and 2 epochs): dev accuracy, and
   on the student's training sentences its accuracy, its mean top probability and mean entropy (bits) at each
   KD temperature, and the share of sentences it gives a top probability above 0.99;
2. per teacher and temperature, the ablation's student (``ablation_sst2.py``'s membrane + sinusoidal + rel8:
   2 x 256, T = 4, batch norm; 8,000 sentences, 1 epoch, no augmentation): dev and shuffled dev accuracy.

    python benchmarks/kd_temperature_sst2.py --runs runs/kdt --out benchmarks/results/kd_temperature_sst2.json

``--seeds`` adds student seeds (key ``teacher-eE/kd-TK@seedS``); the ablation's seed spread for this student is
0.72 points (3 seeds), so a one-seed difference below about 1.5 points is not read as an effect. Writes the JSON
after every teacher and student (command, machine, date, load), keeping the rows an earlier invocation wrote to the
same ``--out`` if it used the same student recipe (else it refuses); stages resume from their run folders.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import statistics
import sys
from pathlib import Path

from ablation_sst2 import CHOSEN, DISTILL, DISTILL_SEED, STUDENT  # benchmarks/, beside this script: the ablation's student
from provenance import load_average, now, provenance
from run_summary import summarise

TEACHER_EPOCHS = (1, 2)
TEMPERATURES = (1.0, 2.0, 4.0)
STUDENT_OVERRIDES = {**STUDENT, **CHOSEN, "relative_distance": 8}  # the ablation's membrane+sinusoidal+rel8


def soft_target_stats(logits, labels, temperatures) -> dict:
    """How much a teacher's soft targets say beyond the labels: accuracy, and per temperature the mean top
    probability and the mean entropy in bits (0 = one-hot, log2(classes) = uniform); share above 0.99 at T = 1."""
    import torch

    out = {"accuracy": float((logits.argmax(-1) == labels).float().mean()),
           "share_top_probability_above_0_99": float((logits.softmax(-1).amax(-1) > 0.99).float().mean())}
    for t in temperatures:
        p = (logits / t).softmax(-1)
        entropy = torch.special.entr(p).sum(-1) / math.log(2)  # entr(0) = 0
        out[f"T{t:g}"] = {"mean_top_probability": float(p.amax(-1).mean()), "mean_entropy_bits": float(entropy.mean())}
    return out


def cells(students: dict) -> dict:
    """Per teacher and temperature (a key without its ``@seedS``): the seeds' dev and shuffled dev accuracy,
    mean and sample standard deviation (None for one seed)."""
    groups: dict[str, list[dict]] = {}
    for key, row in students.items():
        groups.setdefault(key.split("@", 1)[0], []).append(row)
    out = {}
    for cell, rows in groups.items():
        out[cell] = {"seeds": len(rows)}
        for field in ("dev_accuracy", "shuffled_dev_accuracy"):
            values = [row[field] for row in rows]
            out[cell][field] = {"mean": statistics.fmean(values),
                                "std": statistics.stdev(values) if len(values) > 1 else None}
    return out


def teacher_logits(model_dir: str, sentences: list[str], labels: list[int]):
    """The teacher's logits on ``sentences`` (batches of 64, padded to the longest, max_len 64)."""
    import torch

    from spikebert.data import TextDataset
    from spikebert.teacher import load_teacher, load_tokenizer
    from spikebert.tokenize import Batcher

    model = load_teacher(model_dir).eval()
    batcher = Batcher(load_tokenizer(model_dir), max_len=64)
    data = TextDataset(sentences, labels, "student-train")
    chunks = []
    with torch.inference_mode():
        for start in range(0, len(data), 64):
            enc, _ = batcher(data, range(start, min(start + 64, len(data))))
            chunks.append(model(**enc).logits.float())
    return torch.cat(chunks), torch.tensor(labels)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", default="runs/kdt", help="folder of the teacher and student run folders")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", required=True)
    p.add_argument("--teacher-samples", type=int, default=20000,
                   help="teacher's training sentences (default %(default)s: the ablation's teacher)")
    p.add_argument("--teacher-epochs", type=int, nargs="+", default=list(TEACHER_EPOCHS))
    p.add_argument("--temperatures", type=float, nargs="+", default=list(TEMPERATURES))
    p.add_argument("--seeds", type=int, nargs="+", default=[DISTILL_SEED], help="student seeds (default %(default)s)")
    p.add_argument("--summarise", action="store_true",
                   help="only (re)compute the per-cell seed means of the rows --out holds; trains nothing")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if any(not t > 0 for t in args.temperatures):
        p.error(f"--temperatures must be > 0, got {args.temperatures}")

    from spikebert import workflows
    from spikebert.config import DistillConfig, TeacherConfig
    from spikebert.contract.errors import SpikebertError
    from spikebert.contract.fileio import atomic_write_text
    from spikebert.contract.jsonfile import read_json, require_object
    from spikebert.data import load_split

    me = [sys.executable, *sys.argv]
    started = provenance()
    runs, out = Path(args.runs), Path(args.out)
    earlier = {}
    if out.is_file() or args.summarise:  # an earlier invocation's rows: checked before any work
        try:
            earlier = require_object(read_json(out, what="results file"), out, what="results file")
        except SpikebertError as e:
            p.error(f"cannot summarise {out}: {e}" if args.summarise else str(e))
    if args.summarise:
        try:
            if not isinstance(earlier.get("students"), dict):
                raise SpikebertError(f"{out} has no 'students' object")
            earlier["cells"] = cells(earlier["students"])
        except (SpikebertError, KeyError, TypeError) as e:
            p.error(f"cannot summarise {out}: {e}")
        earlier["summarised_by"] = {"command": started["command"], "date": now()}
        atomic_write_text(out, json.dumps(earlier, indent=2) + "\n")
        print(json.dumps(earlier["cells"], indent=2))
        return 0
    recipe = {"student": STUDENT_OVERRIDES, "distill": DISTILL, "teacher_samples": args.teacher_samples}
    if earlier:  # its rows stay if they are this recipe's
        for field, value in recipe.items():
            if field not in earlier or earlier[field] != value:
                p.error(f"{out} holds another recipe ({field}: {earlier.get(field, 'not recorded')}, this invocation "
                        f"{value}); give another --out")
        if not all(isinstance(earlier.get(rows), dict) for rows in ("teachers", "students")):
            p.error(f"{out} has no 'teachers' and 'students' objects; give another --out")
    train = load_split("sst-2", "train", data_dir=args.data_dir)
    # the student's training sentences, drawn exactly as stage 2 draws them (DistillConfig's seed)
    student_train = train.subset(DISTILL["train_samples"], seed=DistillConfig().seed)
    teacher_train = set(train.subset(args.teacher_samples, seed=TeacherConfig().seed).sentences)
    result = {"teachers": earlier.get("teachers", {}), "students": earlier.get("students", {}), **recipe,
              "student_train_sentences": len(student_train),
              "student_train_seen_by_teacher": sum(s in teacher_train for s in student_train.sentences)}


    def write() -> None:
        atomic_write_text(out, json.dumps({
            **result, "cells": cells(result["students"]), **started,  # machine: runs differ across builds (README)
            "threads": int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1)),
            "load_average_at_end": load_average(),
        }, indent=2) + "\n")

    for epochs in args.teacher_epochs:
        teacher_run = runs / f"teacher-e{epochs}"
        teacher = workflows.train(stage="teacher", data="sst-2", data_dir=args.data_dir, out=teacher_run,
                                  overrides={"epochs": epochs, "train_samples": args.teacher_samples}, command=me)
        logits, labels = teacher_logits(teacher["model"], student_train.sentences, student_train.labels)
        result["teachers"][f"e{epochs}"] = {
            "dev_accuracy": teacher.get("teacher_dev_accuracy", teacher.get("dev_accuracy")),
            "train_seconds": summarise(teacher_run)["train_seconds"],
            "on_student_train": soft_target_stats(logits, labels, args.temperatures)}
        write()
        for t, seed in [(t, seed) for t in args.temperatures for seed in args.seeds]:
            suffix = "" if seed == DISTILL_SEED else f"@seed{seed}"
            key = f"teacher-e{epochs}/kd-T{t:g}{suffix}"
            run = runs / f"student-e{epochs}-T{t:g}{suffix}"
            own = {"kd_temperature": t, **({} if seed == DISTILL_SEED else {"seed": seed})}
            trained = workflows.train(stage="distill", data="sst-2", data_dir=args.data_dir, out=run,
                                      teacher=teacher["model"], student_overrides=STUDENT_OVERRIDES,
                                      overrides={**DISTILL, **own}, command=[*me, f"# {key}"])
            dev = workflows.evaluate(model=run / "model.pt", data="sst-2", data_dir=args.data_dir, shuffled=True)
            result["students"][key] = {
                "dev_accuracy": dev["accuracy"], "selected_dev_accuracy": trained.get("dev_accuracy"),
                "shuffled_dev_accuracy": dev["shuffled_accuracy"],
                "shuffle_changed_predictions": dev["shuffle_changed_predictions"],
                "mean_firing_rate": dev["mean_firing_rate"], "train_seconds": summarise(run)["train_seconds"]}
            write()
            print(key, json.dumps(result["students"][key]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
