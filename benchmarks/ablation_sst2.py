"""Student ablations on SST-2 at an equal budget (issue #16): residual, positions, attention.

Every variant distils the same student size from the same teacher on the same 8,000 training sentences
for one epoch (no augmentation unless the variant says so, teacher targets cached), then reports on all
872 dev sentences: accuracy, accuracy with each sentence's tokens shuffled (an order-blind student loses
nothing), per block and head the attention's firing rates and share of accumulates, and — for students with
a NIR graph — the energy report (45 nm fp32 against the teacher at the same sentences' real lengths, integer-input MACs).

    python benchmarks/ablation_sst2.py --teacher runs/abl/teacher/model --out benchmarks/results/ablation_sst2

Writes ``OUT/ablation.json`` (command, machine, date, load, per-variant results) after every variant, so
an interrupted run keeps what finished; a finished variant's run folder is reused (training resumes).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

from provenance import load_average, now, provenance  # benchmarks/, beside this script
from run_summary import summarise

STUDENT = {"dim": 256, "depth": 2, "heads": 8, "mlp_ratio": 4.0, "max_len": 64, "time_steps": 4, "tau": 2.0,
           "mask_padding": True, "norm": "batch"}
CHOSEN = {"residual": "membrane", "position_encoding": "sinusoidal"}  # the ablation's pick, varied below
VARIANTS = {
    "sew": {},
    "membrane": {"residual": "membrane"},
    "membrane+sinusoidal": CHOSEN,
    "membrane+learned": {"residual": "membrane", "position_encoding": "learned"},
    # the learned table delivered as a position population's spikes through a synapse (no host currents)
    "membrane+spikes": {"residual": "membrane", "position_encoding": "spikes"},
    "membrane+sinusoidal+sdsa": {**CHOSEN, "attention": "sdsa"},
    "membrane+sinusoidal+head-scale": {**CHOSEN, "attn_scale": "learned-per-head"},
    # the same student, plus up to two teacher-labelled augmented copies of each of the 8,000 sentences
    "membrane+sinusoidal+aug2": CHOSEN,
    # size, time steps and KD temperature around the chosen student (issue #16, item 4)
    "membrane+sinusoidal+dim384": {**CHOSEN, "dim": 384},
    "membrane+sinusoidal+depth4": {**CHOSEN, "depth": 4},
    "membrane+sinusoidal+T8": {**CHOSEN, "time_steps": 8},
    "membrane+sinusoidal+kd-tau2": CHOSEN,
    # relative positions in the attention (issue #16, item 1): R = 8, started as shifts or at zero; and alone
    "membrane+sinusoidal+rel8": {**CHOSEN, "relative_distance": 8},
    "membrane+sinusoidal+rel8-zero": {**CHOSEN, "relative_distance": 8, "relative_init": "zero"},
    "membrane+rel8": {"residual": "membrane", "relative_distance": 8},
}
DISTILL = {"train_samples": 8000, "epochs": 1, "augment": None, "emb_rows": "batch"}
# variants that change the distillation, not the student (same 8,000 original sentences and epoch): augmentation,
# whose training also sees the augmented copies, and the KD temperature
DISTILL_VARIANTS = {"membrane+sinusoidal+aug2": {"augment": {"n_samples": 2}},
                    "membrane+sinusoidal+kd-tau2": {"kd_temperature": 2.0}}
DISTILL_SEED = 42  # DistillConfig's default


def rows(path: Path) -> dict:
    """The variants ``ablation.json`` holds now ({} before the first)."""
    from spikebert.contract.jsonfile import read_json, require_object

    if not path.is_file():
        return {}
    return require_object(read_json(path, what="ablation results file"), path, what="ablation results file")["variants"]


def record(path: Path, key: str, row: dict, header: dict) -> None:
    """Write one variant's row into ``ablation.json``, keeping every other row the file holds now.

    The file is read again and written atomically under a lock, so two runs of this script writing the same
    OUT (one more seed started while a list of variants trains) cannot drop each other's rows.
    """
    from filelock import FileLock

    from spikebert.contract.fileio import atomic_write_text

    with FileLock(str(path) + ".lock"):
        atomic_write_text(path, json.dumps({**header, "variants": {**rows(path), key: row}}, indent=2) + "\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--teacher", required=True, help="the fine-tuned teacher folder")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--runs", default="runs/abl", help="folder for the variants' run folders")
    p.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--out", required=True)
    p.add_argument("--seeds", nargs="*", type=int, default=[DISTILL_SEED],
                   help="distillation seeds; a seed other than the default runs as variant 'NAME@seedN'")
    args = p.parse_args(argv)
    started = provenance()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from spikebert import workflows
    from spikebert.contract.errors import SpikebertError

    out = Path(args.out)
    path = out / "ablation.json"
    for name, seed in [(n, s) for n in args.variants for s in args.seeds]:
        distill = {**DISTILL, **DISTILL_VARIANTS.get(name, {})}
        distill = distill if seed == DISTILL_SEED else {**distill, "seed": seed}
        key = name if seed == DISTILL_SEED else f"{name}@seed{seed}"
        run = Path(args.runs) / key
        before = summarise(run)["dev"]  # the epochs this run folder had already evaluated
        t0 = time.perf_counter()
        trained = workflows.train(stage="distill", data="sst-2", data_dir=args.data_dir, out=run, teacher=args.teacher,
                                student_overrides={**STUDENT, **VARIANTS[name]}, overrides=distill,
                                command=[sys.executable, *sys.argv, f"# variant {key}"])
        call_s = time.perf_counter() - t0
        after = summarise(run)
        recorded_s = after["train_seconds"]  # training seconds as the run recorded them (resumed or not)
        model = run / "model.pt"
        evaluation = workflows.evaluate(model=model, data="sst-2", data_dir=args.data_dir, shuffled=True,
                                        attention=VARIANTS[name].get("attention", "ssa") == "ssa")
        this_call = {"command": " ".join([sys.executable, *sys.argv]),
                     "threads": int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1)),
                     "date": now()}
        earlier = rows(path).get(key)
        if after["dev"] != before:  # trained (or resumed) by this call
            made = this_call
        elif earlier is not None:  # a finished run, only re-evaluated: its training's provenance stays
            made = {**{k: earlier[k] for k in ("command", "threads", "date") if k in earlier},
                          "re_evaluated": this_call}
        else:  # a finished run with no row yet: its training's provenance comes from the run folder
            first = json.loads((run / "commands.jsonl").read_text(encoding="utf-8").splitlines()[0])
            made = {"command": " ".join(first["argv"]), "date": first["date"], "re_evaluated": this_call}
        row = {"student": {**STUDENT, **VARIANTS[name]}, "distill": distill,
               "train_seconds": round(recorded_s if recorded_s is not None else call_s, 1), **made,
               "selected_dev_accuracy": trained.get("dev_accuracy"),
               "dev_accuracy": evaluation["accuracy"], "shuffled_dev_accuracy": evaluation["shuffled_accuracy"],
               "shuffle_changed_predictions": evaluation["shuffle_changed_predictions"],
               "mean_firing_rate": evaluation["mean_firing_rate"], "attention": evaluation.get("attention")}
        if VARIANTS[name].get("attn_scale") == "learned-per-head":  # the trained scales, per block and head
            from spikebert.students import load_student

            student, _ = load_student(model)
            row["head_scales"] = {f"b{i}": block.attn.attn.head_scale.detach().tolist()
                                  for i, block in enumerate(student.blocks)}
        try:
            energy = workflows.energy(model=model, teacher=args.teacher, data="sst-2", data_dir=args.data_dir,
                                      out=out / key, profile="45nm-fp32,loihi")
            report = energy.report
            row["energy"] = {"ratio_45nm_fp32": report.ratio, "student_mj": report.student_mj,
                             "teacher_mj": report.teacher_mj,
                             "integer_input_macs": report.integer_input_macs,
                             "real_input_macs": sum(r.macs for r in report.layers if r.input_kind == "real"),
                             "report": str(out / key / "energy_report.md")}
        except SpikebertError as err:  # a student without a NIR graph: said, not hidden
            row["energy"] = {"not_measured": str(err)}
        record(path, key, row, {
            **started, "load_average_at_end": load_average(),
            "note": "train_seconds measured beside other work (threads per variant in 'threads'): not a timing "
                    "benchmark",
            "teacher": args.teacher,
        })
        print(key, json.dumps({k: row[k] for k in ("dev_accuracy", "shuffled_dev_accuracy")}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
