"""Command line: ``spikebert <command>`` and ``spikebert-export``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from spikebert.contract.errors import MissingFileError, SpikebertError

log = logging.getLogger("spikebert")

LAVA_COMMANDS = ("demo", "simulate", "energy")
DEMO_STUDENT = {"dim": 256, "depth": 2, "heads": 8, "max_len": 64, "time_steps": 4}


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("httpx", "urllib3", "filelock", "h5py"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default="sst-2",
                   help="task folder name under the data dir, a folder path, or an HF dataset name")
    p.add_argument("--data-dir", default=None,
                   help="root of the task folders (default: $SPIKEBERT_DATA_DIR or ../shared/data)")


def cmd_demo(args) -> int:
    from spikebert.pipeline import run_demo

    s = run_demo(out_dir=Path(args.out), data_dir=args.data_dir, task=args.data, teacher=args.teacher,
                 teacher_samples=args.teacher_samples, student_samples=args.student_samples, epochs=args.epochs,
                 sim_sentences=args.sim_sentences, student=DEMO_STUDENT)
    sim, en = s["simulation"], s["energy"]
    print("\nspikebert demo: " + s["task"])
    print(f"| {'stage':<28} | {'result':>28} |\n|{'-' * 30}|{'-' * 30}|")
    rows = [
        ("teacher dev accuracy", f"{s['teacher']['dev_accuracy']:.4f}"),
        ("student dev accuracy (torch)", f"{s['student']['dev_accuracy']:.4f}"),
        (f"Lava accuracy ({sim['sentences']} dev)", f"{sim['lava_accuracy']:.4f}"),
        (f"teacher accuracy (same {sim['sentences']})", f"{sim['teacher_accuracy']:.4f}"),
        ("Lava = torch fp64 predictions", f"{sim['agreement_lava_vs_torch_fp64']:.2%}"),
        ("Lava = torch fp32 predictions", f"{sim['agreement_lava_vs_torch_fp32']:.2%}"),
        ("student energy / sample", f"{en['student_mj']:.4f} mJ"),
        ("teacher energy / sample", f"{en['teacher_mj']:.4f} mJ"),
        ("student / teacher energy", f"{en['ratio']:.2%}"),
        ("wall time", f"{s['timings']['total_s']:.0f} s"),
    ]
    for k, v in rows:
        print(f"| {k:<28} | {v:>28} |")
    print("\nartefacts:")
    for k, v in s["artefacts"].items():
        print(f"  {k:<12} {v}")
    return 0


def cmd_export(args) -> int:
    if args.teacher and args.to != "onnx":
        raise SpikebertError("--teacher: the teacher is exported to ONNX only; add --to onnx")
    if args.partial and args.to != "nir":
        raise SpikebertError("--partial: only NIR has fragments; add --to nir")
    if args.to == "nir" and args.partial:
        from spikebert.pipeline import export_nir_partial

        out = Path(args.output) if args.output else Path(args.model).with_name(Path(args.model).stem + "-nir")
        for path in export_nir_partial(Path(args.model), out):
            print(path)
        return 0
    if args.to == "nir":
        from spikebert.pipeline import export_nir

        out = Path(args.output) if args.output else Path(args.model).with_suffix(".nir")
        export_nir(Path(args.model), out)
        print(out)
        return 0
    if args.to == "netx":
        out = Path(args.output) if args.output else Path(args.model).with_suffix(".net")
        return _export_netx(Path(args.model), out, dt=args.dt)
    if not args.teacher and Path(args.model).is_dir():
        raise SpikebertError(f"{args.model} is a folder, not a student checkpoint; for a teacher folder add --teacher")
    try:
        from spikebert.converters.onnx_export import export_student_onnx, export_teacher_onnx

        if args.teacher:
            out = Path(args.output) if args.output else Path(args.model.rstrip("/") + ".onnx")
            check = export_teacher_onnx(args.model, out, max_len=args.max_len)
        else:
            from spikebert.distill import load_student

            model, payload = load_student(args.model)
            out = Path(args.output) if args.output else Path(args.model).with_suffix(".onnx")
            meta = {k: payload[k] for k in ("tokenizer", "tokenizer_sha256", "task")}  # to tokenize for the graph
            check = export_student_onnx(model, out, metadata=meta)
    except ImportError as err:  # onnx or onnxruntime missing: the message names the package
        raise SystemExit(f"spikebert-export: {err}") from err
    print(out)
    print(json.dumps(check.to_dict()))
    return 0


def _export_netx(model: Path, out: Path, *, dt: float | None) -> int:
    """A sequential NIR graph -> netx HDF5; a float graph is quantised first (biases on netx's 64-unit grid)."""
    from spikebert.contract.extension import read_graph
    from spikebert.hardware.fixed_point import is_quantised
    from spikebert.hardware.nir_to_netx import export_netx
    from spikebert.hardware.quantize import quantize_graph

    if model.suffix != ".nir":
        raise SpikebertError(f"--to netx takes a sequential NIR graph (.nir), got {model}; SpikeBERT students have "
                         "residuals, attention and LayerNorm, which netx cannot host (spikebert simulate --backend "
                         "lava runs them)")
    graph = read_graph(model)
    if not is_quantised(graph):
        graph = quantize_graph(graph, dt=dt, bias_exp_min=6)
    export_netx(graph, out)
    print(out)
    return 0


def cmd_simulate(args) -> int:
    """Run a NIR graph on a split through Lava or the reference executor; report accuracy, agreement
    with the reference executor (and with PyTorch given --checkpoint), per-layer activity, steps,
    processes and wall time."""
    import time

    import numpy as np

    from spikebert.contract.extension import read_graph
    from spikebert.contract.fileio import atomic_write_text
    from spikebert.data import load_split
    from spikebert.hardware.fixed_point import is_quantised
    from spikebert.pipeline import tokenize_for_graph

    graph = read_graph(args.graph)
    if args.fixed_point and not is_quantised(graph):
        from spikebert.hardware.quantize import quantize_graph

        log.info("quantising %s to Loihi fixed point (save it with 'spikebert quantize')", args.graph)
        graph = quantize_graph(graph)
    fixed = is_quantised(graph)
    data = load_split(args.data, args.split, data_dir=args.data_dir)
    n = len(data) if args.limit <= 0 else min(args.limit, len(data))
    ids = tokenize_for_graph(graph, data.sentences[:n])
    labels = np.array(data.labels[:n])
    t0 = time.perf_counter()
    report: dict = {"graph": str(args.graph), "backend": args.backend, "fixed_point": fixed, "data": args.data,
                    "split": args.split, "sentences": n}
    if args.backend == "lava":
        from spikebert.hardware.lava_runner import run_lava

        run = run_lava(graph, ids, batch_size=args.batch_size, fuse=args.fuse)
        logits, activity = run.logits, run.activity
        report.update(fuse=args.fuse, processes=run.num_processes, steps=run.num_steps,
                      output_latency=run.output_latency, compile_s=round(run.compile_seconds, 2),
                      run_s=round(run.run_seconds, 2))
    else:
        logits, activity = _reference_logits(graph, ids, args.batch_size)
        report.update(processes=1, steps=int(graph.metadata.get("time_steps", 1)) * -(-n // args.batch_size))
    report["wall_s"] = round(time.perf_counter() - t0, 2)
    predictions = logits.argmax(-1)
    report["accuracy"] = float((predictions == labels).mean())
    if args.backend == "lava" and args.check:
        ref_logits, ref_activity = _reference_logits(graph, ids, args.batch_size)
        report["agreement_vs_reference"] = float((predictions == ref_logits.argmax(-1)).mean())
        report["max_logit_diff_vs_reference"] = float(np.abs(logits - ref_logits).max())
        report["activity_equals_reference"] = activity.same_counts(ref_activity)
    if args.checkpoint:
        torch_logits = _torch_logits(args.checkpoint, ids, args.batch_size)
        report["agreement_vs_pytorch_fp64"] = float((predictions == torch_logits.argmax(-1)).mean())
        report["max_logit_diff_vs_pytorch_fp64"] = float(np.abs(logits - torch_logits).max())
    report["layers"] = {name: {"input_spikes": a.input_nonzeros, "input_rate": round(a.input_rate, 6)}
                        for name, a in activity.nodes.items()}
    if args.activity:
        activity.to_json(args.activity)
        report["activity"] = str(args.activity)
    text = json.dumps(report, indent=2)
    if args.out:
        atomic_write_text(Path(args.out), text + "\n")
    print(text)
    return 0


def _reference_logits(graph, ids, batch_size: int):
    from spikebert.hardware.reference import ReferenceExecutor

    ex = ReferenceExecutor(graph)
    return ex.run_batches(ids, batch_size=batch_size), ex.activity


def _torch_logits(checkpoint: str, ids, batch_size: int):
    import numpy as np
    import torch

    from spikebert.distill import load_student

    student, _ = load_student(checkpoint)
    student = student.double().eval()
    with torch.no_grad():
        return np.concatenate([student(torch.from_numpy(ids[i:i + batch_size])).logits.numpy()
                               for i in range(0, len(ids), batch_size)])


def cmd_quantize(args) -> int:
    from spikebert.contract.extension import read_graph, write_graph
    from spikebert.hardware.quantize import quantize_graph

    graph = quantize_graph(read_graph(args.graph), dt=args.dt, bias_exp_min=args.bias_exp_min)
    write_graph(args.out, graph)
    print(json.dumps({"graph": args.graph, "out": args.out, **graph.metadata["fixed_point"]}, indent=2))
    return 0


def cmd_energy(args) -> int:
    """Energy report of a student against its teacher on the same sentences of a split: the student
    (model.pt is exported to OUT/model.nir first) runs on the reference executor, or its activity is
    read from ``--activity`` (recorded by ``spikebert simulate`` on the split's first N sentences);
    the teacher is counted at those sentences' real token lengths, analytically or from its ONNX graph."""
    import numpy as np

    from spikebert.contract.activity import Activity
    from spikebert.contract.extension import read_graph
    from spikebert.energy.counting import count_operations
    from spikebert.energy.profiles import select_profiles
    from spikebert.energy.report import parse_formats

    profiles, formats = select_profiles(args.profile), parse_formats(args.format)
    if not (args.teacher or args.teacher_config):
        raise SpikebertError("name the teacher: --teacher NAME_OR_PATH (or --teacher-config its config.json)")
    if args.teacher_count == "onnx" and not args.teacher:
        raise SpikebertError("--teacher-count onnx exports the teacher: give it as --teacher NAME_OR_PATH")
    if args.accuracy is not None and not (args.activity and 0 <= args.accuracy <= 1):
        raise SpikebertError(f"--accuracy {args.accuracy}: a share in [0, 1], given only with --activity (otherwise the "
                         "reference run measures it)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = Path(args.model)
    if model.suffix == ".pt" and _is_spikingbert(model):
        return _energy_spikingbert(args, model, out, profiles, formats)
    if args.time_steps is not None:
        raise SpikebertError("--time-steps applies to SpikingBERT students; a SpikeBERT graph runs at its exported T")
    checkpoint = model if model.suffix == ".pt" else None
    if args.backend == "torch" and checkpoint is None:
        raise SpikebertError("--backend torch records activity with PyTorch hooks: give the model.pt checkpoint")
    if model.suffix == ".pt":
        from spikebert.pipeline import export_nir

        model = export_nir(model, out / "model.nir")
    graph = read_graph(model)

    # 1. the sentences, and the student's activity on them
    activity = Activity.from_json(args.activity) if args.activity else None
    accuracy, sentences = args.accuracy, None
    if activity is None or args.teacher_length is None:
        from spikebert.data import load_split

        data = load_split(args.data, args.split, data_dir=args.data_dir)
        n = activity.samples if activity else len(data) if args.limit <= 0 else min(args.limit, len(data))
        if n > len(data):
            raise SpikebertError(f"{args.activity} records {n} samples, but {args.data} {args.split} has {len(data)} "
                             "sentences; give the split the activity was recorded on")
        sentences = data.sentences[:n]
    if activity is None:
        from spikebert.pipeline import tokenize_for_graph

        ids = tokenize_for_graph(graph, sentences)
        if args.backend == "lava":
            from spikebert.hardware.lava_runner import run_lava

            run = run_lava(graph, ids, batch_size=args.batch_size)
            logits, activity = run.logits, run.activity
        elif args.backend == "torch":
            import torch

            from spikebert.distill import load_student
            from spikebert.recording import ActivityRecorder

            student, _ = load_student(checkpoint)
            student = student.double()  # the reference's precision, so the counts agree exactly
            with torch.no_grad(), ActivityRecorder(student, graph=graph) as recorder:
                logits = np.concatenate([recorder(torch.from_numpy(ids[i:i + args.batch_size])).logits.numpy()
                                         for i in range(0, len(ids), args.batch_size)])
            activity = recorder.activity
        else:
            logits, activity = _reference_logits(graph, ids, args.batch_size)
        accuracy = float((logits.argmax(-1) == np.array(data.labels[:len(ids)])).mean())
        activity.to_json(out / "activity.json")

    # 2. the teacher on the same sentences
    teacher, at = _teacher_count(args, sentences, activity.samples, graph.metadata.get("tokenizer"), out)

    # 3. the report
    extra = {"student": str(model), "teacher": args.teacher or args.teacher_config}
    if sentences is not None:
        extra["data"] = f"{args.data} {args.split}"
    return _write_energy(args, out, profiles, formats, layers=count_operations(graph, activity, residual=args.residual),
                         residual=args.residual, teacher=teacher, at=at, activity=activity, accuracy=accuracy,
                         extra=extra)


def _teacher_count(args, sentences: list[str] | None, samples: int, tokenizer_name: str | None, out: Path):
    """(teacher counts, how) for ``samples`` sentences: at their real token lengths or a fixed one."""
    import numpy as np

    from spikebert.energy.counting import teacher_counts

    if args.teacher_length is not None:
        lengths, at = [args.teacher_length] * samples, f"at a fixed {args.teacher_length} tokens"
    else:
        from spikebert.teacher import load_tokenizer
        from spikebert.tokenize import Batcher

        tokenizer_name = args.teacher or tokenizer_name
        if not tokenizer_name:
            raise SpikebertError("the NIR graph records no tokenizer to measure the teacher's lengths: give --teacher")
        batcher = Batcher(load_tokenizer(str(tokenizer_name)), max_len=args.teacher_max_len)
        lengths = batcher.encode(sentences)["attention_mask"].sum(1).tolist()
        at = (f"at the same {len(lengths)} sentences' real token lengths (mean {np.mean(lengths):.1f}, "
              f"at most {args.teacher_max_len})")
    if args.teacher_count == "onnx":
        from spikebert.converters.onnx_export import export_teacher_onnx
        from spikebert.energy.onnx_count import onnx_teacher_counts

        export_teacher_onnx(args.teacher, out / "teacher.onnx", max_len=max(2, *lengths))
        return onnx_teacher_counts(out / "teacher.onnx", lengths), at
    if args.teacher_config:
        config = json.loads(Path(args.teacher_config).read_text(encoding="utf-8"))
    else:
        from transformers import AutoConfig

        from spikebert.teacher import resolve_teacher_name

        try:
            config = AutoConfig.from_pretrained(resolve_teacher_name(args.teacher)).to_dict()
        except OSError as err:  # what transformers raises for a missing folder or an uncached hub name
            raise MissingFileError(f"teacher {args.teacher!r}: {err}") from err
    return teacher_counts(config, lengths), at


def _is_spikingbert(checkpoint: Path) -> bool:
    from spikebert.io import CHECKPOINT_FORMAT, SPIKING_CHECKPOINT_FORMAT, load_checkpoint

    payload = load_checkpoint(checkpoint, expected_format=(CHECKPOINT_FORMAT, SPIKING_CHECKPOINT_FORMAT))
    return payload["format"] == SPIKING_CHECKPOINT_FORMAT


def _energy_spikingbert(args, checkpoint: Path, out: Path, profiles, formats) -> int:
    """``cmd_energy`` for a SpikingBERT student: no whole NIR form, so its spikes come from its PyTorch
    simulation (or ``--activity``, a population record) and its rows from ``spikingbert_counts``."""
    from spikebert.data import TextDataset, load_split
    from spikebert.distill import load_student
    from spikebert.energy.counting import PopulationActivity, spikingbert_counts

    if args.backend == "lava":
        raise SpikebertError("--backend lava: a SpikingBERT student has no whole Lava form (softmax, LayerNorm and GELU "
                         "act on its currents; docs/spikingbert.md); its activity comes from the PyTorch simulation")
    if args.residual != "mac":
        raise SpikebertError("--residual: a SpikingBERT student has no integer-valued synaptic inputs to count either way")
    student, payload = load_student(checkpoint, spiking=True)
    data = load_split(args.data, args.split, data_dir=args.data_dir)
    accuracy = args.accuracy
    if args.activity:
        activity = PopulationActivity.from_json(args.activity)
        if args.time_steps is not None and args.time_steps != activity.time_steps:
            raise SpikebertError(f"--time-steps {args.time_steps} but {args.activity} was recorded at "
                             f"T={activity.time_steps}")
        if activity.samples > len(data):
            raise SpikebertError(f"{args.activity} records {activity.samples} samples, but {args.data} {args.split} has "
                             f"{len(data)} sentences; give the split the activity was recorded on")
        sentences = data.sentences[:activity.samples]
    else:
        from spikebert.evaluation import evaluate_student
        from spikebert.teacher import load_tokenizer
        from spikebert.tokenize import Batcher

        n = len(data) if args.limit <= 0 else min(args.limit, len(data))
        data = TextDataset(data.sentences[:n], data.labels[:n], data.name)
        sentences = data.sentences
        batcher = Batcher(load_tokenizer(payload["tokenizer"]), max_len=student.cfg.max_len)
        result = evaluate_student(student, batcher, data, batch_size=args.batch_size, firing_rates=True,
                                  time_steps=args.time_steps)
        accuracy, activity = result["accuracy"], result["activity"]
        activity.to_json(out / "activity.json")
    cfg = student.cfg
    layers, other = spikingbert_counts(depth=cfg.depth, dim=cfg.dim, mlp_dim=cfg.mlp_dim, heads=cfg.heads,
                                       num_classes=cfg.num_classes, activity=activity)
    teacher, at = _teacher_count(args, sentences, activity.samples, payload["tokenizer"], out)
    acs = sum(r.acs for r in layers)
    share = f"{other.total / acs:.1%} of the ACs" if acs else "no ACs: no spikes"
    extra = {"student": f"{checkpoint} (SpikingBERT)", "teacher": args.teacher or args.teacher_config,
             "data": f"{args.data} {args.split}",
             "outside the scope (per sample)": f"softmax {other.softmax:.4g}, LayerNorm {other.layer_norm:.4g}, GELU "
                                               f"{other.gelu:.4g} elements ({share}): "
                                               "real-valued operations on currents, not neuromorphic"}
    return _write_energy(args, out, profiles, formats, layers=layers, residual="none", teacher=teacher, at=at,
                         activity=activity, accuracy=accuracy, extra=extra)


def _write_energy(args, out: Path, profiles, formats, *, layers, residual: str, teacher, at: str, activity,
                  accuracy: float | None, extra: dict) -> int:
    """The report of either energy path: rows + teacher counts -> files (and plots), summary printed."""
    from spikebert.energy.report import EnergyReport

    report = EnergyReport(profile=profiles[0], more_profiles=profiles[1:], residual_convention=residual, layers=layers,
                          teacher_macs=teacher.macs, teacher_weight_reads=teacher.weight_reads,
                          teacher_method=f"{teacher.method}, {at}", samples=activity.samples,
                          time_steps=activity.time_steps, backend=activity.backend, accuracy=accuracy, extra=extra)
    paths = report.write(out, formats=formats)
    if args.plots:
        from spikebert.energy.plots import write_plots

        paths += write_plots(report, out)
    _print_energy(report, accuracy, activity.samples, paths)
    return 0


def _print_energy(report, accuracy: float | None, samples: int, paths: list[Path]) -> None:
    if accuracy is not None:
        print(f"student accuracy ({samples} sentences): {accuracy:.4f}")
    for p in report.profiles:
        s, t = report.student_pj(p) / 1e9, report.teacher_pj(p) / 1e9
        print(f"{p.name:<16} student {s:.4g} mJ  teacher {t:.4g} mJ  student / teacher {s / t:.2%}")
    print("\n".join(str(p) for p in paths))


def _stage_config(cls, args, **cli_values):
    """A stage config from ``--config`` JSON (or the defaults), then the command's own options given
    (such as ``--teacher``), then ``--set key=value`` overrides."""
    data = cls.from_json(args.config).to_dict() if args.config else cls().to_dict()
    data.update({k: v for k, v in cli_values.items() if v is not None})
    data.update(_overrides(args.set, "--set"))
    return cls.from_dict(data)


def _overrides(items: list[str] | None, flag: str) -> dict:
    """``KEY=VALUE`` items as a dict, values parsed as JSON (a bare word stays a string)."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise SpikebertError(f"{flag} {item!r}: expected KEY=VALUE")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _student_config(args, tokenizer, num_classes: int, *, spiking: bool = False):
    """Student config: ``--student`` JSON (or the demo size for SpikeBERT, the config defaults for
    SpikingBERT), ``--student-set`` overrides; vocabulary, padding id and class count come from the
    teacher's tokenizer and the data unless set."""
    from spikebert.config import SpikingBERTConfig, StudentConfig

    base = {"vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id, "num_classes": num_classes,
            **({} if spiking else DEMO_STUDENT)}
    if args.student:
        path = Path(args.student)
        if not path.is_file():
            raise MissingFileError(f"student config {path} does not exist")
        base = {**base, **json.loads(path.read_text(encoding="utf-8"))}
    cls = SpikingBERTConfig if spiking else StudentConfig
    return cls.from_dict({**base, **_overrides(args.student_set, "--student-set")})


def _record_command(run: Path, argv: list[str]) -> None:
    """Append the exact invocation to ``run/commands.jsonl``: a run's results can always be reproduced."""
    import datetime
    import platform
    import subprocess

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    run.mkdir(parents=True, exist_ok=True)
    record = {"argv": ["spikebert", *argv], "date": datetime.datetime.now().isoformat(timespec="seconds"),
              "host": platform.node(), "commit": commit}
    with (run / "commands.jsonl").open("a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def cmd_train(args) -> int:
    from spikebert.config import DistillConfig, PretrainConfig, TeacherConfig
    from spikebert.data import load_split

    run = Path(args.out)
    _record_command(run, args.argv)
    common = {"resume": not args.no_resume, "stop_after_minutes": args.stop_after_minutes}
    if args.method == "spikingbert" and args.stage != "distill":
        raise SpikebertError(f"--method spikingbert is a distillation method: use `train distill`, not "
                         f"`train {args.stage}` (the teacher is shared; SpikingBERT's general distillation on "
                         "WikiText is not built)")
    if args.stage == "pretrain":
        from spikebert.data import load_corpus
        from spikebert.distill import pretrain
        from spikebert.teacher import load_tokenizer

        cfg = _stage_config(PretrainConfig, args, teacher=args.teacher)
        tok = load_tokenizer(cfg.teacher)
        dev = load_split(args.data, "dev", data_dir=args.data_dir)
        student = _student_config(args, tok, dev.num_classes)
        corpus = load_corpus(cfg.corpus, task=args.data, data_dir=args.data_dir, tokenizer=tok,
                             max_len=student.max_len)
        if cfg.max_samples:
            import random

            corpus = random.Random(cfg.seed).sample(corpus, min(cfg.max_samples, len(corpus)))
        best = pretrain(student, cfg, corpus=corpus, dev_sentences=dev.sentences, run_dir=run, **common)
        print(json.dumps({**best, "model": str(run / "model.pt")}))
        return 0
    train = load_split(args.data, "train", data_dir=args.data_dir)
    dev = load_split(args.data, "dev", data_dir=args.data_dir)
    if args.stage == "teacher":
        from spikebert.finetune import finetune_teacher

        cfg = _stage_config(TeacherConfig, args, model=args.teacher)
        acc = finetune_teacher(cfg, train, dev, run, **common)
        print(json.dumps({"teacher_dev_accuracy": acc, "model": str(run / "model")}))
        return 0
    from spikebert.distill import distill
    from spikebert.teacher import load_tokenizer

    if not args.teacher:
        raise SpikebertError("train distill needs --teacher: the fine-tuned teacher folder (from train teacher)")
    tok = load_tokenizer(args.teacher)
    if args.method == "spikingbert":
        from spikebert.config import SpikingDistillConfig
        from spikebert.spiking_distill import distill_spikingbert

        student = _student_config(args, tok, max(train.num_classes, dev.num_classes), spiking=True)
        cfg = _stage_config(SpikingDistillConfig, args)
        best = distill_spikingbert(student, cfg, teacher_dir=args.teacher, train=train, dev=dev, run_dir=run,
                                   task=args.data, init=args.init, **common)
        print(json.dumps({**best, "model": str(run / "model.pt")}))
        return 0
    student = _student_config(args, tok, max(train.num_classes, dev.num_classes))
    cfg = _stage_config(DistillConfig, args)
    best = distill(student, cfg, teacher_dir=args.teacher, train=train, dev=dev, run_dir=run, task=args.data,
                   init=args.init, **common)
    print(json.dumps({**best, "model": str(run / "model.pt")}))
    return 0


def cmd_eval(args) -> int:
    from spikebert.data import load_split
    from spikebert.distill import load_student
    from spikebert.evaluation import evaluate_student
    from spikebert.teacher import load_tokenizer
    from spikebert.tokenize import Batcher, tokenizer_fingerprint

    model, payload = load_student(args.model, spiking=True)
    tokenizer = load_tokenizer(payload["tokenizer"])
    if tokenizer_fingerprint(tokenizer) != payload["tokenizer_sha256"]:
        raise SpikebertError(f"tokenizer {payload['tokenizer']} differs from the one {args.model} was trained with")
    data = load_split(args.data, args.split, data_dir=args.data_dir)
    batcher = Batcher(tokenizer, max_len=model.cfg.max_len, pad_to_max=not getattr(model.cfg, "mask_padding", True))
    result = evaluate_student(model, batcher, data, firing_rates=True, time_steps=args.time_steps)
    result.pop("predictions")
    result.pop("activity", None)  # SpikingBERT's spike counts: `spikebert energy` prices them
    rates = result["firing_rates"]
    result = {"model": str(args.model), "data": args.data, "split": args.split, "examples": len(data),
              "time_steps": model.cfg.time_steps if args.time_steps is None else args.time_steps, **result,
              "mean_firing_rate": sum(rates.values()) / len(rates)}
    if args.json:
        from spikebert.contract.fileio import atomic_write_text

        atomic_write_text(Path(args.json), json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


def cmd_plot(args) -> int:
    from spikebert import figures

    if args.figure == "sweep":
        paths = figures.sweep_figure(args.results, args.out, x=args.x, y=args.y, group=args.group)
    else:
        from spikebert.distill import load_student
        from spikebert.teacher import load_tokenizer
        from spikebert.tokenize import Batcher, tokenizer_fingerprint

        model, payload = load_student(args.model)
        tokenizer = load_tokenizer(payload["tokenizer"])
        if tokenizer_fingerprint(tokenizer) != payload["tokenizer_sha256"]:
            raise SpikebertError(f"tokenizer {payload['tokenizer']} differs from the one {args.model} was trained with")
        batcher = Batcher(tokenizer, max_len=model.cfg.max_len, pad_to_max=not model.cfg.mask_padding)
        if args.figure == "attention":
            paths = figures.attention_figures(model, batcher, args.sentence, args.out, layer=args.layer,
                                              head=args.head, per_step=args.per_step)
        else:
            from spikebert.data import load_split

            data = load_split(args.data, args.split, data_dir=args.data_dir)
            n = len(data) if args.limit <= 0 else min(args.limit, len(data))
            paths = figures.rate_figures(model, batcher, data.sentences[:n], args.out, batch_size=args.batch_size)
    for path in paths:
        print(path)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="spikebert", description="Spiking BERT students: train, export, simulate, energy")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="teacher -> student -> NIR -> Lava -> energy report, on real data")
    _add_data_args(d)
    d.add_argument("--teacher", default="minilm-offline", help="HF name or path of a BERT-family model")
    d.add_argument("--out", default="runs/demo")
    d.add_argument("--teacher-samples", type=int, default=6000)
    d.add_argument("--student-samples", type=int, default=8000)
    d.add_argument("--epochs", type=int, default=1)
    d.add_argument("--sim-sentences", type=int, default=200)
    d.set_defaults(func=cmd_demo)

    t = sub.add_parser("train", help="fine-tune the teacher | stage-1 pretrain | stage-2 distill")
    t.add_argument("stage", choices=["teacher", "pretrain", "distill"])
    _add_data_args(t)
    t.add_argument("--teacher", default=None,
                   help="teacher: the model to fine-tune (teacher; default minilm-offline), the base model "
                        "(pretrain; default minilm-offline), or the fine-tuned teacher folder (distill)")
    t.add_argument("--method", choices=["spikebert", "spikingbert"], default="spikebert",
                   help="distill: SpikeBERT (LIF, surrogate-gradient BPTT; default) or SpikingBERT (IF "
                        "populations, equilibrium-rate gradients; Bal & Sengupta 2024)")
    t.add_argument("--config", default=None, help="JSON config for the stage (TeacherConfig, PretrainConfig, "
                                                  "DistillConfig, or SpikingDistillConfig with --method spikingbert)")
    t.add_argument("--student", default=None, help="StudentConfig JSON (pretrain, distill), or SpikingBERTConfig "
                                                   "JSON with --method spikingbert")
    t.add_argument("--student-set", action="append", metavar="KEY=VALUE", help="override a student field")
    t.add_argument("--init", default=None, help="distill: start from this stage-1 model.pt (loaded strictly); "
                                                "with --method spikingbert, from an earlier SpikingBERT model.pt")
    t.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override one config field (JSON value), e.g. --set epochs=3; repeatable")
    t.add_argument("--out", required=True, help="run folder: state.pt, metrics.jsonl and the trained model")
    t.add_argument("--no-resume", action="store_true", help="start over even if the run folder holds a state")
    t.add_argument("--stop-after-minutes", type=float, default=0.0,
                   help="save the state and stop after this long; run again to resume (0 = no limit)")
    t.set_defaults(func=cmd_train)

    v = sub.add_parser("eval", help="accuracy and per-layer firing rates of a student on a split")
    v.add_argument("model", help="student checkpoint (model.pt)")
    _add_data_args(v)
    v.add_argument("--split", default="dev", choices=["train", "dev", "test"],
                   help="test reads ../holdout: for reporting a final model once, never for selection")
    v.add_argument("--time-steps", type=int, default=None,
                   help="simulate a SpikingBERT student for this many steps instead of its trained T")
    v.add_argument("--json", default=None, help="also write the result here")
    v.set_defaults(func=cmd_eval)

    pl = sub.add_parser("plot", help="figures: spiking attention maps, firing rates, a sweep's accuracy")
    figs = pl.add_subparsers(dest="figure", required=True)
    pa = figs.add_parser("attention", help="token x token coincidence counts Q K^T of a sentence, per block and head")
    pa.add_argument("model", help="student checkpoint (model.pt)")
    pa.add_argument("--sentence", required=True)
    pa.add_argument("--layer", type=int, default=None, help="only this block (default: every block)")
    pa.add_argument("--head", type=int, default=None, help="only this head (default: every head)")
    pa.add_argument("--per-step", action="store_true", help="one panel per time step instead of their sum")
    pr = figs.add_parser("rates", help="firing rates per population and step over a split, and per neuron and "
                                       "token for its first sentence")
    pr.add_argument("model", help="student checkpoint (model.pt)")
    _add_data_args(pr)
    pr.add_argument("--split", default="dev", choices=["train", "dev"])
    pr.add_argument("--limit", type=int, default=0, help="first N sentences (0 = all)")
    pr.add_argument("--batch-size", type=int, default=64)
    ps = figs.add_parser("sweep", help="a metric against a swept parameter, from a results JSON or CSV")
    ps.add_argument("results", help="JSON list of objects (or {'results': [...]}) or CSV with a header")
    ps.add_argument("--x", required=True, help="the swept parameter's key, e.g. time_steps")
    ps.add_argument("--y", default="accuracy", help="the metric's key (default %(default)s)")
    ps.add_argument("--group", default=None, help="one line per value of this key, e.g. depth")
    for fp in (pa, pr, ps):
        fp.add_argument("--out", required=True, help="folder for the PNG and PDF files")
        fp.set_defaults(func=cmd_plot)

    e = sub.add_parser("export", help="export model.pt (same as spikebert-export)")
    _add_export_args(e)

    s = sub.add_parser("simulate", help="run a NIR graph on a dataset split (Lava or the reference executor)")
    s.add_argument("graph", help="NIR file (float, or quantised by 'spikebert quantize')")
    s.add_argument("--backend", choices=["lava", "reference"], default="lava")
    s.add_argument("--fixed-point", action="store_true",
                   help="Loihi fixed point: quantise a float graph first (a quantised graph always runs fixed)")
    s.add_argument("--fuse", choices=["blocks", "none", "all"], default="blocks",
                   help="Lava processes: one per residual block (default), one per NIR node, or one in all")
    _add_data_args(s)
    s.add_argument("--split", default="dev", choices=["train", "dev"])
    s.add_argument("--limit", type=int, default=0, help="first N sentences (0 = all)")
    s.add_argument("--batch-size", type=int, default=64, help="sentences per Lava step (fuse=none with lava "
                                                               "Dense processes needs 1)")
    s.add_argument("--no-check", dest="check", action="store_false",
                   help="skip the reference-executor run that checks Lava's outputs and activity")
    s.add_argument("--checkpoint", default=None, help="the student's model.pt: also report agreement with PyTorch")
    s.add_argument("--activity", default=None, help="write recorded activity JSON here (for spikebert energy)")
    s.add_argument("--out", default=None, help="write the report JSON here")
    s.set_defaults(func=cmd_simulate)

    qz = sub.add_parser("quantize", help="quantise a NIR graph to Loihi fixed point (a NIR file again)")
    qz.add_argument("graph")
    qz.add_argument("--out", required=True)
    qz.add_argument("--dt", type=float, default=None, help="step, when the graph's metadata has none")
    qz.add_argument("--bias-exp-min", type=int, default=0, help="6: biases in whole weight units (netx)")
    qz.set_defaults(func=cmd_quantize)

    from spikebert.config import TeacherConfig
    from spikebert.energy.profiles import DEFAULT_PROFILE, PROFILES

    n = sub.add_parser("energy", help="energy report of a student against its teacher on a split",
                       description="Count the student's operations on a split (reference executor, or recorded "
                                   "--activity) and the teacher's on the same sentences; price them with energy "
                                   "profiles; write md/tex/csv/json reports and plots.")
    n.add_argument("model", help="student checkpoint (model.pt, exported to OUT/model.nir first) or NIR graph")
    n.add_argument("--teacher", default=None, help="the teacher, HF name or folder: its config and tokenizer")
    n.add_argument("--teacher-count", choices=["analytic", "onnx"], default="analytic",
                   help="analytic: BERT formula from the config; onnx: export the teacher to OUT/teacher.onnx and "
                        "count its MatMul/Gemm nodes at the real shapes")
    n.add_argument("--teacher-config", default=None, help="analytic count: the teacher's config.json (instead of "
                                                          "--teacher; lengths then use the graph's tokenizer)")
    n.add_argument("--teacher-max-len", type=int, default=TeacherConfig().max_len,
                   help="truncation of the teacher's inputs (default %(default)s)")
    n.add_argument("--teacher-length", type=int, default=None,
                   help="count the teacher at this fixed length instead of the sentences' real lengths")
    _add_data_args(n)
    n.add_argument("--split", default="dev", choices=["train", "dev"])
    n.add_argument("--limit", type=int, default=0, help="first N sentences (0 = all)")
    n.add_argument("--backend", choices=["reference", "lava", "torch"], default="reference",
                   help="where the student's activity is recorded: NumPy reference executor, Lava processes, "
                        "or PyTorch hooks on model.pt")
    n.add_argument("--batch-size", type=int, default=64)
    n.add_argument("--time-steps", type=int, default=None,
                   help="SpikingBERT student: simulate this many steps instead of its trained T")
    n.add_argument("--activity", default=None,
                   help="activity JSON recorded by 'spikebert simulate --activity' on the split's first N "
                        "sentences, instead of running the reference executor")
    n.add_argument("--accuracy", type=float, default=None,
                   help="with --activity: the student's accuracy on those sentences, for the summary")
    n.add_argument("--profile", default=DEFAULT_PROFILE,
                   help=f"comma-separated energy profiles, the first the headline, or 'all': {', '.join(PROFILES)} "
                        "(default %(default)s)")
    n.add_argument("--format", default="md,json", help="comma-separated report formats: md, tex, csv, json, or "
                                                       "'all' (default %(default)s)")
    n.add_argument("--plots", action="store_true", help="also firing-rate and energy-breakdown figures (PNG, PDF)")
    n.add_argument("--residual", choices=["mac", "accumulate"], default="mac",
                   help="integer residual-stream inputs as dense MACs, or as k accumulates per value k")
    n.add_argument("--out", default=".", help="folder for the reports (and model.nir, activity.json, teacher.onnx)")
    n.set_defaults(func=cmd_energy)
    return p


def _add_export_args(p: argparse.ArgumentParser) -> None:
    from spikebert.config import TeacherConfig

    p.add_argument("model", help="student checkpoint (model.pt); with --teacher, the teacher folder or HF name; "
                                 "with --to netx, a NIR graph (.nir)")
    p.add_argument("--to", choices=["nir", "onnx", "netx"], default="nir",
                   help="nir: the student as a NIR graph; onnx: a float32 ONNX graph (the student unrolled over "
                        "its T steps, or the teacher), checked against PyTorch with onnxruntime before it is written; "
                        "netx: a sequential NIR graph (MODEL.nir: Input -> (Affine -> LIF)+ -> Output, quantised "
                        "first if float) as a lava-dl netx HDF5 file")
    p.add_argument("--teacher", action="store_true",
                   help="export the teacher given as MODEL (with --to onnx), e.g. "
                        "spikebert-export --to onnx --teacher runs/x/teacher/model -o teacher.onnx")
    p.add_argument("--max-len", type=int, default=TeacherConfig().max_len,
                   help="--teacher: longest sequence in the check (the graph takes any length) (default %(default)s)")
    p.add_argument("--partial", action="store_true",
                   help="--to nir, a SpikingBERT student: what NIR and the SB extension express, one graph per layer "
                        "(its K and V populations) plus fragments.json naming the host operations between them, "
                        "in the folder -o (default: MODEL's name + '-nir')")
    p.add_argument("--dt", type=float, default=None,
                   help="--to netx: seconds per step of a float graph without metadata 'dt' (snnTorch's export_to_nir "
                        "assumes 1e-4)")
    p.add_argument("-o", "--output", default=None,
                   help="output file (default: MODEL with the suffix .nir / .onnx / .net), a folder with --partial")
    p.set_defaults(func=cmd_export)


def _run(parser: argparse.ArgumentParser, argv) -> int:
    from spikebert.engine import Interrupted

    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    _setup_logging(getattr(args, "verbose", False))
    if getattr(args, "command", None) in LAVA_COMMANDS:
        from spikebert.hardware.lava_runner import prepare_lava

        prepare_lava()
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError, TypeError) as err:
        log.debug("traceback", exc_info=True)  # -v shows where it came from
        log.error("%s", err)
        return 2
    except Interrupted as err:
        log.warning("%s", err)
        return 3


def main(argv=None) -> int:
    return _run(build_parser(), argv)


def export_main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="spikebert-export", description="Export a SpikeBERT student")
    p.add_argument("-v", "--verbose", action="store_true")
    _add_export_args(p)
    return _run(p, argv)


if __name__ == "__main__":
    sys.exit(main())
