"""The other five tasks with the final recipe (issue #16, items 5 and 6); SST-2 is ``student_sst2.py``.

Per task: the teacher (all-MiniLM-L6-v2, one epoch, lr 1e-4: the recipe of the earlier runs in README "Other
tasks") and the student (the final SST-2 recipe of ``benchmarks/student_sst2.py``: 2 x 256, T = 4, batch norm,
membrane residual, sinusoidal positions; two epochs, no augmentation), scored on dev and, with ``--read-test``,
once on test.

Scripts the teacher's vocabulary does not cover: the offline teacher has an English uncased vocabulary, so most
Chinese characters come out as ``[UNK]``. ``TeacherConfig.extend_vocab = "auto"`` (the default) adds every
character of the training text that the tokenizer maps to ``[UNK]`` and that occurs at least
``new_token_min_count`` times (``tokenizer.add_tokens`` + ``resize_token_embeddings``) when more than
``unk_threshold`` of the training tokens are unknown; the student reads the extended tokenizer from the teacher's
folder, so both see the same tokens. Every task records the ``[UNK]`` share of its dev text before and after.

    python benchmarks/tasks_final.py --runs runs/final --out benchmarks/results/tasks_final.json [--read-test]
    python benchmarks/tasks_final.py --runs runs/final-rel8 --teacher-runs runs/final --relative-distance 8 \
        --read-test --out benchmarks/results/tasks_final_rel8.json

``--relative-distance R`` gives the students relative positions in their attention (the SST-2 recipe of
``student_sst2.py --relative-distance 8``); ``--kd-temperature K --kd-temperature-final F`` anneal the KD
temperature from K to F over each student's run (``student_sst2.py``'s options of the same names; the SST-2
recipe anneals 4 -> 1). ``--teacher-runs DIR`` reuses the teachers of an earlier invocation
(``DIR/TASK/teacher``), so the students differ in their own recipe alone::

    python benchmarks/tasks_final.py --runs runs/final-kd4to1 --relative-distance 8 --kd-temperature 4 \
        --kd-temperature-final 1 --read-test --out benchmarks/results/tasks_final_rel8_kd4to1.json

Writes the JSON after every task (command, machine, date, load); stages resume from their run folders. An
existing ``--out`` keeps its other tasks' rows only if each was made with this invocation's recipe (teacher,
student and distillation overrides); otherwise the script refuses before training, so one file never mixes
recipes.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

TASKS = ("chnsenti", "waimai", "mr", "subj", "sst-5")
TEACHER = {"epochs": 1, "lr": 1e-4, "extend_vocab": "auto"}
DISTILL = {"epochs": 2, "augment": None, "emb_rows": "batch"}
# README "Other tasks" (2026-11-21): the same teacher recipe without vocabulary extension; the LayerNorm SEW student
BEFORE = {"chnsenti": {"teacher_dev": 0.7590, "student_dev": 0.7448, "teacher_test": 0.7487, "student_test": 0.7294},
          "waimai": {"teacher_dev": 0.7546, "student_dev": 0.7437, "teacher_test": 0.7588, "student_test": 0.7462},
          "mr": {"teacher_dev": 0.8208, "student_dev": 0.7580, "teacher_test": 0.8255, "student_test": 0.7495},
          "subj": {"teacher_dev": 0.9450, "student_dev": 0.8970, "teacher_test": 0.9630, "student_test": 0.9120},
          "sst-5": {"teacher_dev": 0.4432, "student_dev": 0.4078, "teacher_test": 0.4819, "student_test": 0.4131}}


def earlier_rows(out: Path, recipe: dict) -> dict:
    """The task rows of an earlier ``--out``, to be kept beside this invocation's; ``{}`` if there is none.

    Raises ``SpikebertError``, a ``ValueError`` (naming the file, the task and the field) when the file is not
    such a results file or a row was made with another recipe, or does not record one: a file holds one recipe.
    """
    from spikebert.contract.errors import SpikebertError
    from spikebert.contract.jsonfile import read_json, require_object

    if not out.is_file():
        return {}
    try:
        tasks = require_object(read_json(out, what="tasks_final.py results file"), out,
                               what="tasks_final.py results file").get("tasks")
    except SpikebertError as e:
        raise SpikebertError(f"{e}; give another --out") from None
    if not isinstance(tasks, dict) or not all(isinstance(row, dict) for row in tasks.values()):
        raise SpikebertError(f"{out}: 'tasks' is not an object of task rows; give another --out")
    for task, row in tasks.items():
        for field, value in recipe.items():
            if field not in row:
                raise SpikebertError(f"{out}: task {task!r} does not record its {field!r}, so it may be another "
                                     "recipe; give another --out")
            if row[field] != value:
                raise SpikebertError(f"{out}: task {task!r} was made with {field} {row[field]}, this invocation "
                                     f"uses {value}; one file holds one recipe, give another --out")
    return tasks


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", default="runs/final")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--tasks", nargs="*", default=list(TASKS), choices=list(TASKS))
    p.add_argument("--out", default="benchmarks/results/tasks_final.json")
    p.add_argument("--teacher-runs", default=None, help="folder of earlier teachers, DIR/TASK/teacher (default RUNS)")
    p.add_argument("--relative-distance", type=int, default=0,
                   help="the students' relative positions in attention, R (default 0: none)")
    p.add_argument("--kd-temperature", type=float, default=None,
                   help="the KD loss's temperature (default: DistillConfig's, 1)")
    p.add_argument("--kd-temperature-final", type=float, default=None,
                   help="anneal the KD temperature linearly from --kd-temperature to this over each student's run")
    p.add_argument("--read-test", action="store_true", help="also score the test split once (final reporting)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from provenance import load_average, provenance
    from run_summary import summarise  # benchmarks/, beside this script
    from student_sst2 import STUDENT_CONFIG, student_overrides  # the SST-2 recipe's student, one definition

    from spikebert import workflows
    from spikebert.contract.fileio import atomic_write_text
    from spikebert.data import load_split
    from spikebert.teacher import load_tokenizer, resolve_teacher_name, unk_share

    out = Path(args.out)
    me = [sys.executable, *sys.argv]
    started = provenance()
    student = student_overrides(args.relative_distance)
    kd = {"kd_temperature": args.kd_temperature, "kd_temperature_final": args.kd_temperature_final}
    distill = {**DISTILL, **{key: value for key, value in kd.items() if value is not None}}
    try:
        results = earlier_rows(out, {"teacher_config": TEACHER, "student": student, "distill": distill})
    except ValueError as e:
        p.error(str(e))
    for task in args.tasks:
        run = Path(args.runs) / task
        teacher_run = Path(args.teacher_runs) / task / "teacher" if args.teacher_runs else run / "teacher"
        dev = load_split(task, "dev", data_dir=args.data_dir)
        t0 = time.perf_counter()
        teacher = workflows.train(stage="teacher", data=task, data_dir=args.data_dir, out=teacher_run,
                                  overrides=TEACHER, command=me)
        teacher_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        workflows.train(stage="distill", data=task, data_dir=args.data_dir, out=run / "student",
                        teacher=teacher["model"], student=STUDENT_CONFIG, student_overrides=student,
                        overrides=distill, command=me)
        student_s = time.perf_counter() - t0
        model = run / "student" / "model.pt"
        evaluation = workflows.evaluate(model=model, data=task, data_dir=args.data_dir, shuffled=True)
        summaries = {"teacher": summarise(teacher_run), "student": summarise(run / "student")}
        row = {
            "unk_share_dev_before": unk_share(load_tokenizer(resolve_teacher_name("minilm-offline")), dev.sentences),
            "unk_share_dev_after": unk_share(load_tokenizer(teacher["model"]), dev.sentences),
            "vocab_size": json.loads((run / "student" / "student_config.json").read_text())["vocab_size"],
            "teacher_dev_accuracy": teacher.get("teacher_dev_accuracy"),
            "student_dev_accuracy": evaluation["accuracy"],
            "student_shuffled_dev_accuracy": evaluation["shuffled_accuracy"],
            "seconds_this_invocation": {"teacher": round(teacher_s, 1), "student": round(student_s, 1)},
            "train_seconds_recorded": {stage: summary["train_seconds"] for stage, summary in summaries.items()},
            "commands": {stage: summary["commands"] for stage, summary in summaries.items()},
            "earlier_run": BEFORE[task],
            "teacher_run": str(teacher_run), "teacher_config": TEACHER, "student": student, "distill": distill,
        }
        if args.read_test:
            from spikebert.teacher import evaluate_teacher, load_teacher
            from spikebert.tokenize import Batcher

            test = load_split(task, "test", data_dir=args.data_dir)
            batcher = Batcher(load_tokenizer(teacher["model"]), max_len=64)
            row["teacher_test_accuracy"] = evaluate_teacher(load_teacher(teacher["model"]), batcher, test)
            row["student_test_accuracy"] = workflows.evaluate(model=model, data=task, split="test",
                                                              data_dir=args.data_dir)["accuracy"]
        results[task] = row
        atomic_write_text(out, json.dumps({
            **started, "load_average_at_end": load_average(),
            "tasks": results,
        }, indent=2) + "\n")
        print(task, json.dumps({k: row[k] for k in ("unk_share_dev_before", "unk_share_dev_after",
                                                    "teacher_dev_accuracy", "student_dev_accuracy")}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
