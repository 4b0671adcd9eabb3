"""The issue-#16 SST-2 student: trained end to end on this machine, every synaptic layer reading binary spikes.

Recipe (chosen on dev by ``benchmarks/ablation_sst2.py``; see README "Spike-driven student"):

1. teacher: all-MiniLM-L6-v2 fine-tuned ``--teacher-epochs`` (default 1) on ``--teacher-samples`` SST-2
   training sentences (default 20,000; the best runs use 0, the whole split);
2. student: 2 x 256, T = 4, batch norm, padding masked, ``residual = "membrane"`` (every synaptic layer
   reads binary spikes), sinusoidal positions (word order), distilled on the whole training split; the best
   runs add relative positions in the attention (``--relative-distance 8``).

Both stages resume from their run folders, so the script can be stopped and run again (a finished stage
is reused, not retrained). Then it scores the student on all 872 dev sentences (also with each sentence's
tokens shuffled, and per head the attention's rates), writes the 45 nm energy report against the teacher
on the same sentences, and — only with ``--read-test``, once, after the recipe is fixed — the test split.

    python benchmarks/student_sst2.py --runs runs/final --out benchmarks/results/student_sst2_teacher20k.json [--read-test]
    python benchmarks/student_sst2.py --runs runs/full --teacher-samples 0 --epochs 3 \
        --out benchmarks/results/student_sst2_full.json   # whole-split teacher
    python benchmarks/student_sst2.py --runs runs/full --teacher-samples 0 --epochs 3 --augment 2 \
        --out benchmarks/results/student_sst2_aug.json   # + stage 3
    python benchmarks/student_sst2.py --runs runs/full --teacher-samples 0 --epochs 3 --stage3-time-steps 8 \
        --out benchmarks/results/student_sst2_t8.json
    python benchmarks/student_sst2.py --runs runs/seed1 --teacher-run runs/full/teacher --teacher-samples 0 \
        --epochs 3 --seed 1 --read-test --out benchmarks/results/student_sst2_seed1.json   # another student seed
    python benchmarks/student_sst2.py --runs runs/rel8 --teacher-run runs/full/teacher --teacher-samples 0 \
        --epochs 3 --relative-distance 8 --read-test --out benchmarks/results/student_sst2_rel8.json
    python benchmarks/student_sst2.py --runs runs/rel8-t2 --teacher-samples 0 --teacher-epochs 2 --epochs 3 \
        --relative-distance 8 --read-test --out benchmarks/results/student_sst2_rel8_teacher2.json   # 2 teacher epochs
    python benchmarks/student_sst2.py --runs runs/rel8-t2-kd2 --teacher-samples 0 --teacher-epochs 2 --epochs 3 \
        --relative-distance 8 --kd-temperature 2 --read-test \
        --out benchmarks/results/student_sst2_rel8_teacher2_kd2.json   # ... at KD temperature 2 (not run yet)
    python benchmarks/student_sst2.py --runs runs/rel8-ema --teacher-run runs/full/teacher --teacher-samples 0 \
        --epochs 3 --relative-distance 8 --ema-decay 0.999 --read-test \
        --out benchmarks/results/student_sst2_rel8_ema.json   # weight average (raw weights logged beside it)
    python benchmarks/student_sst2.py --runs runs/rel8-kd4 --teacher-run runs/full/teacher --teacher-samples 0 \
        --epochs 3 --relative-distance 8 --kd-temperature 4 --read-test \
        --out benchmarks/results/student_sst2_rel8_kd4.json   # KD temperature 4
    python benchmarks/student_sst2.py --runs runs/rel8-kd4to1 --teacher-run runs/full/teacher --teacher-samples 0 \
        --epochs 3 --relative-distance 8 --kd-temperature 4 --kd-temperature-final 1 --read-test \
        --out benchmarks/results/student_sst2_rel8_kd4to1.json   # KD temperature annealed from 4 to 1

``--relative-distance R`` gives the student relative positions in its attention (``relative_distance = R``,
shift start; see the ablation). ``--seed S`` changes only the student's seed (its initialisation and batch
order); with ``--teacher-run`` pointing at a trained teacher, the runs differ in the student alone.
``--kd-temperature K`` sets the KD loss's temperature (``DistillConfig.kd_temperature``; 1 by default, as the
official code) in every student stage; with ``--kd-temperature-final F`` it moves linearly, step by step, from
K to F over each stage (``DistillConfig.kd_temperature_final``). ``--ema-decay D`` makes every student stage keep
an exponential moving average of its weights (``DistillConfig.ema_decay``): the average is what is evaluated,
selected on dev and reported; the trained weights' own dev accuracy is logged beside it per epoch (``raw_dev_accuracy``).
``--ema-bn-batches N`` recomputes the average's batch-norm statistics on N training batches before each
evaluation (``DistillConfig.ema_bn_batches``); without it they are averaged with the weights, and the first
full-scale run showed what that does (``benchmarks/weight_average_sst2.py``).

``--augment N`` adds a third stage: the selected student, warm-started (``--init``, classifier included), is
distilled ``--stage3-epochs`` more on the training split plus up to N teacher-labelled augmented copies of each
sentence (Tang et al.; ``spikebert.augment``) at ``--stage3-lr``, cosine to 0. ``--stage3-time-steps T`` makes
the third stage run at another T (with or without augmentation). ``--stage3-count K`` repeats it K times, each
from the best student so far, with fresh copies. The student reported is the best stage on dev (selection on dev
only).

``wall_hours`` is the sum of the stages' recorded training seconds (``metrics.jsonl``) and this script's
evaluation time; a reused stage contributes the seconds it recorded when it ran.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

TEACHER = {"epochs": 1, "train_samples": 20000}
STUDENT = {"norm": "batch", "residual": "membrane", "position_encoding": "sinusoidal"}
DISTILL = {"epochs": 2, "augment": None, "emb_rows": "batch"}
STUDENT_CONFIG = "benchmarks/configs/student-sst2.json"
AUGMENT_SEED = 42  # AugmentConfig's default; augmented stage k draws its copies with seed AUGMENT_SEED + k


def student_overrides(relative_distance: int = 0) -> dict:
    """The recipe's student overrides: ``STUDENT``, plus relative positions in the attention when R > 0."""
    return {**STUDENT, **({"relative_distance": relative_distance} if relative_distance else {})}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", default="runs/final", help="folder of the teacher and student run folders")
    p.add_argument("--teacher-run", default=None, help="the teacher's run folder (default RUNS/teacher)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", required=True, help="the results file (benchmarks/results/student_sst2.json, the issue's "
                   "best run, is chosen among these on dev by benchmarks/best_run.py)")
    p.add_argument("--teacher-samples", type=int, default=TEACHER["train_samples"],
                   help="teacher's training sentences (0 = the whole split; default %(default)s)")
    p.add_argument("--teacher-epochs", type=int, default=TEACHER["epochs"],
                   help="teacher fine-tuning epochs (default %(default)s)")
    p.add_argument("--epochs", type=int, default=DISTILL["epochs"], help="student epochs (default %(default)s)")
    p.add_argument("--augment", type=int, default=0,
                   help="further stages: teacher-labelled augmented copies per sentence (default %(default)s)")
    p.add_argument("--stage3-time-steps", type=int, default=0,
                   help="further stages: the student's T (0 = as stage 2; a warm start may change T)")
    p.add_argument("--stage3-epochs", "--augment-epochs", dest="stage3_epochs", type=int, default=1,
                   help="epochs per further stage (default %(default)s)")
    p.add_argument("--stage3-count", "--augment-stages", dest="stage3_count", type=int, default=1,
                   help="further stages, each from the best student so far, with fresh augmented copies "
                        "(default %(default)s)")
    p.add_argument("--stage3-lr", "--augment-lr", dest="stage3_lr", type=float, default=1.5e-4,
                   help="further stages' peak learning rate, cosine to 0 (default %(default)s)")
    p.add_argument("--relative-distance", type=int, default=0,
                   help="relative positions in the attention, up to this distance (StudentConfig.relative_distance; "
                        "0 = off, the recipe's default)")
    p.add_argument("--kd-temperature", type=float, default=None,
                   help="the KD loss's temperature (default: DistillConfig's, 1, as the official code)")
    p.add_argument("--kd-temperature-final", type=float, default=None,
                   help="anneal the KD temperature linearly, step by step, from --kd-temperature to this over each "
                        "student stage (DistillConfig.kd_temperature_final; default 0, constant)")
    p.add_argument("--ema-decay", type=float, default=None,
                   help="keep an exponential moving average of the student's weights and select, save and report "
                        "it (DistillConfig.ema_decay; default 0, off, as the official code)")
    p.add_argument("--ema-bn-batches", type=int, default=None,
                   help="with --ema-decay: recompute the average's batch-norm statistics on this many training "
                        "batches before each evaluation (DistillConfig.ema_bn_batches; default 0: averaged with "
                        "the weights)")
    p.add_argument("--seed", type=int, default=None,
                   help="the student's seed (default: DistillConfig's, 42); the teacher keeps its own")
    p.add_argument("--read-test", action="store_true",
                   help="also score the holdout test split (final reporting only: once, after selection on dev)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from provenance import load_average, provenance  # benchmarks/, beside this script
    from run_summary import summarise

    started = provenance()  # date, machine and load at the start; the commands come from the run folders

    from spikebert import workflows
    from spikebert.contract.fileio import atomic_write_text

    runs = Path(args.runs)
    teacher_run = Path(args.teacher_run) if args.teacher_run else runs / "teacher"
    student_run = runs / "sst2-student"
    me = [sys.executable, *sys.argv]
    # the student's own overrides, the same in every student stage
    own = {"seed": args.seed, "kd_temperature": args.kd_temperature,
           "kd_temperature_final": args.kd_temperature_final, "ema_decay": args.ema_decay,
           "ema_bn_batches": args.ema_bn_batches}
    own = {key: value for key, value in own.items() if value is not None}
    overrides = student_overrides(args.relative_distance)
    teacher = workflows.train(stage="teacher", data="sst-2", data_dir=args.data_dir, out=teacher_run,
                              overrides={**TEACHER, "epochs": args.teacher_epochs, "train_samples": args.teacher_samples},
                              command=me)
    student = workflows.train(stage="distill", data="sst-2", data_dir=args.data_dir, out=student_run,
                              teacher=teacher["model"], student=STUDENT_CONFIG, student_overrides=overrides,
                              overrides={**DISTILL, "epochs": args.epochs, **own}, command=me)
    model = student_run / "model.pt"
    stages = [student_run]
    further = bool(args.augment or args.stage3_time_steps)  # a stage 3 changes the data or the time steps
    for k in range(args.stage3_count if further else 0):
        # each further stage starts from the student selected so far and draws fresh augmented copies (seed 42 + k)
        name = ("sst2-student" + (f"-aug{args.augment}" if args.augment else "")
                + (f"-T{args.stage3_time_steps}" if args.stage3_time_steps else "") + (f"-{k + 1}" if k else ""))
        augment = {"n_samples": args.augment, "seed": AUGMENT_SEED + k} if args.augment else None
        steps = {"time_steps": args.stage3_time_steps} if args.stage3_time_steps else {}
        further_run = runs / name
        trained = workflows.train(
            stage="distill", data="sst-2", data_dir=args.data_dir, out=further_run, teacher=teacher["model"],
            student=STUDENT_CONFIG, student_overrides={**overrides, **steps}, init=model, command=me,
            overrides={**DISTILL, "epochs": args.stage3_epochs, "lr": args.stage3_lr, "augment": augment, **own})
        stages.append(further_run)
        if trained["dev_accuracy"] > student["dev_accuracy"]:  # selection on dev only
            student, student_run, model = trained, further_run, further_run / "model.pt"

    energy_dir = Path(args.out).with_suffix("")  # the report beside the results file (its model.nir is git-ignored)
    t0 = time.perf_counter()
    dev = workflows.evaluate(model=model, data="sst-2", data_dir=args.data_dir, shuffled=True, attention=True)
    energy = workflows.energy(model=model, teacher=teacher["model"], data="sst-2", data_dir=args.data_dir,
                              out=energy_dir, profile="45nm-fp32,loihi")
    report = energy.report
    result = {
        "task": "sst-2",
        "dev_accuracy": dev["accuracy"],
        "selected_dev_accuracy": student.get("dev_accuracy"),  # the training run's best epoch, as it recorded it
        "dev_examples": dev["examples"],
        "shuffled_dev_accuracy": dev["shuffled_accuracy"],
        "shuffle_changed_predictions": dev["shuffle_changed_predictions"],
        "teacher_dev_accuracy": teacher.get("teacher_dev_accuracy", teacher.get("dev_accuracy")),
        "energy_ratio_45nm_fp32": report.ratio,
        "student_mj_per_sentence": report.student_mj,
        "teacher_mj_per_sentence": report.teacher_mj,
        "integer_input_macs": report.integer_input_macs,
        "real_input_macs": sum(r.macs for r in report.layers if r.input_kind == "real"),
        "energy_report": str(energy_dir / "energy_report.md"),
        "mean_firing_rate": dev["mean_firing_rate"],
        "attention": dev.get("attention"),
        "residual": STUDENT["residual"],
        "student": json.loads((student_run / "student_config.json").read_text(encoding="utf-8")),
        "distill": json.loads((student_run / "distill_config.json").read_text(encoding="utf-8")),
        "teacher": json.loads((teacher_run / "teacher_config.json").read_text(encoding="utf-8")),
    }
    if args.read_test:
        test = workflows.evaluate(model=model, data="sst-2", split="test", data_dir=args.data_dir)
        result["test_accuracy"] = test["accuracy"]
        result["test_examples"] = test["examples"]
    else:
        result["test_accuracy"] = None
    eval_s = time.perf_counter() - t0
    teacher_summary = summarise(teacher_run)
    stage_summaries = {run.name: summarise(run) for run in stages}
    seconds = {"teacher": teacher_summary["train_seconds"],
               **{f"student:{name}": summary["train_seconds"] for name, summary in stage_summaries.items()},
               "evaluation": round(eval_s, 1)}
    result.update({
        "wall_seconds": seconds,
        "wall_hours": sum(seconds.values()) / 3600,
        "commands": {"this_script": " ".join(me), "teacher": teacher_summary["commands"],
                     **{f"student:{name}": summary["commands"] for name, summary in stage_summaries.items()}},
        "student_dev_per_epoch": {name: summary["dev"] for name, summary in stage_summaries.items()},
        "selected_stage": student_run.name,
        **{k: v for k, v in started.items() if k != "command"},  # the command is in "commands"
        "load_average_at_end": load_average(),
        "threads": int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1)),
    })
    atomic_write_text(Path(args.out), json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("dev_accuracy", "shuffled_dev_accuracy", "test_accuracy",
                                            "energy_ratio_45nm_fp32", "integer_input_macs", "wall_hours")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
