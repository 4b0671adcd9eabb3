"""Command line: ``spikebert <command>`` and ``spikebert-export``.

Parsing only: every command calls one function of :mod:`spikebert.workflows` and prints its result.
A :class:`~spikebert.contract.errors.SpikebertError` (a user error) is one line and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from spikebert.contract.errors import SpikebertError

log = logging.getLogger("spikebert")

LAVA_COMMANDS = ("demo", "simulate", "energy")


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
    from spikebert.workflows import DEMO_STUDENT, run_demo

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
    from spikebert import workflows

    if args.teacher and args.to != "onnx":
        raise SpikebertError("--teacher: the teacher is exported to ONNX only; add --to onnx")
    if args.partial and args.to != "nir":
        raise SpikebertError("--partial: only NIR has fragments; add --to nir")
    model = Path(args.model)
    if args.to == "nir" and args.partial:
        out = Path(args.output) if args.output else model.with_name(model.stem + "-nir")
        for path in workflows.export_nir_fragments(model=model, out=out):
            print(path)
    elif args.to == "nir":
        print(workflows.export_nir(model=model, out=Path(args.output) if args.output else model.with_suffix(".nir")))
    elif args.to == "netx":
        print(workflows.export_netx(graph=model, out=args.output, dt=args.dt))
    else:
        path, check = workflows.export_onnx(model=args.model, out=args.output, teacher=args.teacher,
                                            max_len=args.max_len)
        print(path)
        print(json.dumps(check))
    return 0


def cmd_simulate(args) -> int:
    """Run a NIR graph on a split through Lava or the reference executor (``workflows.simulate``)."""
    from spikebert.workflows import simulate

    report = simulate(graph=args.graph, backend=args.backend, fixed_point=args.fixed_point, fuse=args.fuse,
                      data=args.data, data_dir=args.data_dir, split=args.split, limit=args.limit,
                      batch_size=args.batch_size, check=args.check, checkpoint=args.checkpoint,
                      activity_out=args.activity, out=args.out, tokenizer=args.tokenizer, inputs=args.inputs,
                      dt=args.dt, spikes_out=args.spikes_out)
    print(json.dumps(report, indent=2))
    return 0


def cmd_quantize(args) -> int:
    from spikebert.workflows import quantize

    print(json.dumps(quantize(graph=args.graph, out=args.out, dt=args.dt, bias_exp_min=args.bias_exp_min), indent=2))
    return 0


def cmd_energy(args) -> int:
    """Energy report of a student against its teacher on the same sentences (``workflows.energy``)."""
    from spikebert.workflows import energy

    result = energy(model=args.model, out=args.out, teacher=args.teacher, teacher_config=args.teacher_config,
                    teacher_count=args.teacher_count, teacher_max_len=args.teacher_max_len,
                    teacher_length=args.teacher_length, data=args.data, data_dir=args.data_dir, split=args.split,
                    limit=args.limit, backend=args.backend, batch_size=args.batch_size, time_steps=args.time_steps,
                    activity=args.activity, accuracy=args.accuracy, profile=args.profile, formats=args.format,
                    plots=args.plots, residual=args.residual, tokenizer=args.tokenizer)
    if result.accuracy is not None:
        print(f"student accuracy ({result.samples} sentences): {result.accuracy:.4f}")
    for p in result.report.profiles:
        s, t = result.report.student_pj(p) / 1e9, result.report.teacher_pj(p) / 1e9
        print(f"{p.name:<16} student {s:.4g} mJ  teacher {t:.4g} mJ  student / teacher {s / t:.2%}")
    print("\n".join(str(p) for p in result.paths))
    return 0


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


def cmd_train(args) -> int:
    from spikebert.workflows import train

    result = train(stage=args.stage, data=args.data, out=args.out, teacher=args.teacher, method=args.method,
                   config=args.config, overrides=_overrides(args.set, "--set"), student=args.student,
                   student_overrides=_overrides(args.student_set, "--student-set"), init=args.init,
                   data_dir=args.data_dir, resume=not args.no_resume, stop_after_minutes=args.stop_after_minutes,
                   command=["spikebert", *args.argv])
    print(json.dumps(result))
    return 0


def cmd_eval(args) -> int:
    from spikebert.workflows import evaluate

    result = evaluate(model=args.model, data=args.data, split=args.split, data_dir=args.data_dir,
                      time_steps=args.time_steps, out=args.json, shuffled=args.shuffled, attention=args.attention,
                      limit=args.limit)
    print(json.dumps(result, indent=2))
    return 0


def cmd_plot(args) -> int:
    from spikebert import workflows

    if args.figure == "sweep":
        paths = workflows.plot_sweep(results=args.results, out=args.out, x=args.x, y=args.y, group=args.group)
    elif args.figure == "front":
        paths = workflows.plot_front(reports=args.reports, out=args.out, profiles=args.profile, labels=args.label,
                                     teacher_accuracy=args.teacher_accuracy)
    elif args.figure == "attention":
        paths = workflows.plot_attention(model=args.model, sentence=args.sentence, out=args.out, layer=args.layer,
                                         head=args.head, per_step=args.per_step)
    else:
        paths = workflows.plot_rates(model=args.model, out=args.out, data=args.data, data_dir=args.data_dir,
                                     split=args.split, limit=args.limit, batch_size=args.batch_size)
    for path in paths:
        print(path)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="spikebert", description="Spiking BERT students: train, export, simulate, energy")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="teacher -> student -> NIR -> Lava -> energy report, on real data")
    _add_data_args(d)
    d.add_argument("--teacher", default="minilm-offline", help="HF name or path of a BERT-family model to fine-tune "
                                                                "(default %(default)s: all-MiniLM-L6-v2, offline)")
    d.add_argument("--out", default="runs/demo", help="run folder; a finished stage in it is reused (default "
                                                      "%(default)s)")
    d.add_argument("--teacher-samples", type=int, default=6000,
                   help="train sentences the teacher is fine-tuned on, one epoch (default %(default)s)")
    d.add_argument("--student-samples", type=int, default=8000,
                   help="train sentences the student is distilled on (default %(default)s)")
    d.add_argument("--epochs", type=int, default=1, help="student distillation epochs (default %(default)s)")
    d.add_argument("--sim-sentences", type=int, default=200,
                   help="first dev sentences run as Lava processes and counted for energy (default %(default)s)")
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
    t.add_argument("--init", default=None, help="distill: start from this stage-1 model.pt (loaded strictly) or "
                                                "a trained student's model.pt (a warm start, classifier included; "
                                                "same architecture); with --method spikingbert, from an earlier "
                                                "SpikingBERT model.pt")
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
    v.add_argument("--shuffled", action="store_true",
                   help="also the accuracy with each sentence's tokens shuffled (an order-blind student loses nothing)")
    v.add_argument("--attention", action="store_true",
                   help="per block and head: attention firing rates, accumulates and their share of all accumulates")
    v.add_argument("--limit", type=int, default=0, help="first N sentences (0 = all)")
    v.set_defaults(func=cmd_eval)

    pl = sub.add_parser("plot", help="figures: spiking attention maps, firing rates, a sweep's accuracy, "
                                     "energy-accuracy fronts")
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
    pf = figs.add_parser("front", help="accuracy against energy per sentence of energy reports, Pareto front per "
                                       "profile, teacher marked; PNG, PDF and a LaTeX table")
    pf.add_argument("reports", nargs="+", help="energy_report.json files written by `spikebert energy`")
    pf.add_argument("--profile", default=None, help="comma-separated profiles, one panel each (default: every "
                                                    "profile all the reports priced)")
    pf.add_argument("--label", action="append", default=None, help="a name per report, in order (default: its "
                                                                   "folder's name); repeat it")
    pf.add_argument("--teacher-accuracy", type=float, default=None,
                    help="the teacher's accuracy on the same sentences, as a share: the teacher becomes a point "
                         "of the front (default: a line at its energy)")
    for fp in (pa, pr, ps, pf):
        fp.add_argument("--out", required=True, help="folder for the PNG and PDF files")
        fp.set_defaults(func=cmd_plot)

    e = sub.add_parser("export", help="export model.pt (same as spikebert-export)")
    _add_export_args(e)

    s = sub.add_parser("simulate", help="run a NIR graph on a dataset split (Lava or the reference executor)")
    s.add_argument("graph", help="NIR file (float, or quantised by 'spikebert quantize')")
    s.add_argument("--backend", choices=["lava", "reference"], default="lava")
    s.add_argument("--fixed-point", action="store_true",
                   help="Loihi fixed point: quantise a float graph first (a quantised graph always runs fixed)")
    s.add_argument("--fuse", choices=["blocks", "none", "all", "deploy"], default="blocks",
                   help="Lava processes: one per residual block (default), one per NIR node, one in all, or deploy: "
                        "every synaptic layer a lava-nc Conv and every population a lava-nc LIF (custom processes "
                        "only for spike attention, the host readout and branch delays)")
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
    s.add_argument("--tokenizer", default=None, help="tokenizer folder or HF name instead of the one the graph "
                                                     "carries (its vocabulary must match)")
    s.add_argument("--inputs", default=None, metavar="X.npy",
                   help="instead of a split: a tensor (T, N, *input shape) for a graph with a tensor Input (any "
                        "standard NIR graph, e.g. spike trains); x[t] drives step t")
    s.add_argument("--spikes-out", default=None, metavar="Y.npy",
                   help="with --inputs: write the Output's value per step, (T, N, *output shape), here")
    s.add_argument("--dt", type=float, default=None,
                   help="time step in the graph's time unit, for graphs whose metadata has none (NIR stores no dt; "
                        "snnTorch/Norse exports assume 1e-4)")
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
    n.add_argument("--tokenizer", default=None, help="tokenizer folder or HF name instead of the one the graph "
                                                     "carries (its vocabulary must match)")
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
    except KeyboardInterrupt:  # Ctrl-C: one line, no traceback; Lava's processes are stopped by its runner
        log.warning("interrupted")
        return 130
    except SpikebertError as err:  # a user error: one line; anything else is a bug and keeps its traceback
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
