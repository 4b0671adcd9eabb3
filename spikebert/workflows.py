"""Every workflow as a library function: train, eval, export, simulate, quantize, energy, plot, demo.

The command line (``spikebert.cli``) only parses arguments and calls these; each takes typed,
keyword-only arguments and returns what the command prints. User errors raise
:class:`~spikebert.contract.errors.SpikebertError`. Example::

    from spikebert import workflows

    workflows.export_nir(model="runs/demo/student/model.pt", out="model.nir")
    report = workflows.simulate(graph="model.nir", backend="reference", data="sst-2", limit=64)
    print(report["accuracy"])
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spikebert.config import DistillConfig, StudentConfig, TeacherConfig
from spikebert.contract.errors import MissingFileError, SpikebertError
from spikebert.contract.fileio import atomic_write_text, replace_folder
from spikebert.data import TextDataset, load_split, task_classes
from spikebert.students import kind_of, load_student

log = logging.getLogger(__name__)


def tokenize_for_graph(graph, sentences: list[str], *, tokenizer: str | None = None) -> np.ndarray:
    """Token ids (N, max_len), padded to the graph's length, with ``tokenizer`` (a folder or HF name) if
    given, else the tokenizer files the graph carries (``tokenizer_files``), else the name it records
    (graphs exported before the files were embedded). The vocabulary must be the one trained with."""
    from spikebert.contract.extension import SBTokenEmbedding
    from spikebert.teacher import load_tokenizer, unpack_tokenizer
    from spikebert.tokenize import Batcher, tokenizer_fingerprint

    if not any(isinstance(node, SBTokenEmbedding) for node in graph.nodes.values()):
        what = (f"the SpikingBERT fragment {graph.metadata['fragment']!r}, whose input is {graph.metadata.get('input')}"
                if graph.metadata.get("fragment") else "a graph without a token encoder (SBTokenEmbedding)")
        raise SpikebertError(f"this is {what}: it takes spike tensors, not sentences. Run it from Python with "
                         "spikebert.hardware.reference.ReferenceExecutor(graph).run_inputs(x) or "
                         "spikebert.hardware.lava_runner.run_lava("
                         "graph, inputs=x), x of shape (T, N, *input shape)")
    if tokenizer is not None:
        name, tok = tokenizer, load_tokenizer(str(tokenizer))
    elif graph.metadata.get("tokenizer_files"):
        name, tok = "the tokenizer embedded in the graph", unpack_tokenizer(str(graph.metadata["tokenizer_files"]),
                                                                            where="the NIR graph")
    elif graph.metadata.get("tokenizer"):
        name = str(graph.metadata["tokenizer"])
        tok = load_tokenizer(name)
    else:
        raise SpikebertError("the NIR graph records no tokenizer: give --tokenizer, or export it with spikebert-export")
    expected = graph.metadata.get("tokenizer_sha256")
    if expected and tokenizer_fingerprint(tok) != expected:
        raise SpikebertError(f"tokenizer {name} does not match the vocabulary the graph was trained with")
    embed = next(n for n in graph.nodes.values() if isinstance(n, SBTokenEmbedding))
    if len(tok) > embed.weight.shape[0]:
        raise SpikebertError(f"tokenizer {name} has {len(tok)} tokens but the graph's embedding {embed.weight.shape[0]}")
    return Batcher(tok, max_len=embed.max_len, pad_to_max=True).encode(sentences)["input_ids"].numpy()


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float((a.argmax(-1) == b.argmax(-1)).mean())


def run_demo(*, out_dir: Path, data_dir: str | None, task: str, teacher: str, teacher_samples: int,
             student_samples: int, epochs: int, sim_sentences: int, student: dict) -> dict:
    """Teacher -> student -> NIR -> Lava -> energy report, on real data. Returns the summary."""
    from spikebert.contract.nirfile import read_graph
    from spikebert.distill import distill
    from spikebert.energy.counting import count_operations, teacher_macs
    from spikebert.energy.profiles import get_profile
    from spikebert.energy.report import EnergyReport
    from spikebert.finetune import finetune_teacher
    from spikebert.hardware.lava_runner import run_lava
    from spikebert.teacher import evaluate_teacher, load_teacher, load_tokenizer
    from spikebert.tokenize import Batcher

    out_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    timings = {}
    train, dev = load_split(task, "train", data_dir=data_dir), load_split(task, "dev", data_dir=data_dir)
    log.info("data: %s train %d, dev %d", task, len(train), len(dev))

    # 1. teacher
    t0 = time.perf_counter()
    tcfg = TeacherConfig(model=teacher, train_samples=teacher_samples, epochs=1)
    teacher_dev = finetune_teacher(tcfg, train, dev, out_dir / "teacher")
    teacher_dir = out_dir / "teacher" / "model"
    timings["teacher_s"] = time.perf_counter() - t0
    log.info("teacher dev accuracy %.4f (%.0f s)", teacher_dev, timings["teacher_s"])

    # 2. student
    t0 = time.perf_counter()
    tokenizer = load_tokenizer(str(teacher_dir))
    scfg = StudentConfig(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                         num_classes=task_classes(train, dev), **student)
    dcfg = DistillConfig(train_samples=student_samples, epochs=epochs, augment=None, emb_rows="batch")
    best = distill(scfg, dcfg, teacher_dir=str(teacher_dir), train=train, dev=dev, run_dir=out_dir / "student",
                   task=task)
    model_path = out_dir / "student" / "model.pt"
    timings["student_s"] = time.perf_counter() - t0
    log.info("student dev accuracy %.4f (%.0f s)", best["dev_accuracy"], timings["student_s"])

    # 3. NIR
    t0 = time.perf_counter()
    nir_path = export_nir(model=model_path, out=out_dir / "model.nir")
    graph = read_graph(nir_path)
    timings["export_s"] = time.perf_counter() - t0

    # 4. Lava on the first sim_sentences dev sentences, against PyTorch (float64 and float32)
    sentences, labels = dev.sentences[:sim_sentences], np.array(dev.labels[:sim_sentences])
    ids = tokenize_for_graph(graph, sentences)
    t0 = time.perf_counter()
    lava = run_lava(graph, ids)
    timings["lava_s"] = time.perf_counter() - t0
    model, _ = load_student(model_path, need_graph="the demo")
    with torch.no_grad():
        torch64 = model.double()(torch.from_numpy(ids)).logits.numpy()
        torch32 = model.float()(torch.from_numpy(ids)).logits.numpy()
    lava_acc = float((lava.logits.argmax(-1) == labels).mean())

    # 5. energy, teacher counted at the same sentences' real lengths
    teacher_model = load_teacher(str(teacher_dir))
    enc = Batcher(tokenizer, max_len=tcfg.max_len).encode(sentences)
    lengths = enc["attention_mask"].sum(1).tolist()
    teacher_sub_acc = evaluate_teacher(teacher_model, Batcher(tokenizer, max_len=tcfg.max_len),
                                       TextDataset(sentences, labels.tolist(), "sim"))
    report = EnergyReport(profile=get_profile("45nm-fp32"), residual_convention="mac",
                          layers=count_operations(graph, lava.activity, residual="mac"),
                          teacher_macs=teacher_macs(teacher_model.config.to_dict(), lengths),
                          samples=lava.activity.samples, time_steps=lava.activity.time_steps,
                          backend=lava.activity.backend, extra={"task": task, "split": "dev"})
    md_path, json_path = report.write(out_dir)
    lava.activity.to_json(out_dir / "activity_lava.json")
    timings["total_s"] = time.perf_counter() - t_start

    summary = {
        "task": task,
        "teacher": {"model": teacher, "dev_accuracy": teacher_dev,
                    "train_samples": len(train.subset(teacher_samples, seed=tcfg.seed))},
        "student": {"config": scfg.to_dict(), "dev_accuracy": best["dev_accuracy"]},
        "simulation": {
            "sentences": len(sentences),
            "lava_accuracy": lava_acc,
            "teacher_accuracy": teacher_sub_acc,
            "agreement_lava_vs_torch_fp64": agreement(lava.logits, torch64),
            "agreement_lava_vs_torch_fp32": agreement(lava.logits, torch32),
            "max_abs_logit_diff_vs_fp64": float(np.abs(lava.logits - torch64).max()),
            "lava_processes": lava.num_processes,
            "lava_steps": lava.num_steps,
            "lava_compile_s": lava.compile_seconds,
            "lava_run_s": lava.run_seconds,
        },
        "energy": {"student_mj": report.student_mj, "teacher_mj": report.teacher_mj, "ratio": report.ratio,
                   "profile": report.profile.name, "residual_convention": report.residual_convention},
        "timings": timings,
        "artefacts": {"teacher": str(teacher_dir), "model": str(model_path), "nir": str(nir_path),
                      "energy_md": str(md_path), "energy_json": str(json_path),
                      "activity": str(out_dir / "activity_lava.json"), "summary": str(out_dir / "summary.json")},
    }
    atomic_write_text(out_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


# --- helpers ---------------------------------------------------------------------------------------


def _limit(n: int, limit: int) -> int:
    """The first ``limit`` of ``n`` items (0 = all)."""
    if limit < 0:
        raise SpikebertError(f"limit {limit}: give a number of sentences >= 0 (0 = all)")
    return n if limit == 0 else min(limit, n)


def _student_batcher(model, payload: dict, path):
    """The Batcher the student was trained with; the tokenizer must be the recorded one."""
    from spikebert.teacher import load_tokenizer
    from spikebert.tokenize import Batcher, tokenizer_fingerprint

    tokenizer = load_tokenizer(payload["tokenizer"])
    if tokenizer_fingerprint(tokenizer) != payload["tokenizer_sha256"]:
        raise SpikebertError(f"tokenizer {payload['tokenizer']} differs from the one {path} was trained with")
    return Batcher(tokenizer, max_len=model.cfg.max_len, pad_to_max=not getattr(model.cfg, "mask_padding", True))


def reference_logits(graph, ids: np.ndarray, *, batch_size: int, dt: float | None = None):
    """(logits, activity) of the reference executor on token ids."""
    from spikebert.hardware.reference import ReferenceExecutor

    ex = ReferenceExecutor(graph, dt=dt)
    return ex.run_batches(ids, batch_size=batch_size), ex.activity


def torch_logits(checkpoint: str | Path, ids: np.ndarray, *, batch_size: int) -> np.ndarray:
    """Float64 PyTorch logits of a student checkpoint on token ids (the reference's precision)."""
    student, _ = load_student(checkpoint, need_graph="agreement with a NIR graph")
    student = student.double().eval()
    with torch.no_grad():
        return np.concatenate([student(torch.from_numpy(ids[i:i + batch_size])).logits.numpy()
                               for i in range(0, len(ids), batch_size)])


def _graph_classes(graph) -> int:
    """The class count of a classifier graph: its output size."""
    from spikebert.contract.graph import port_shape

    outputs = [node for node in graph.nodes.values() if type(node).__name__ == "Output"]
    shape = port_shape(outputs[0], "output") if len(outputs) == 1 else None
    if shape is None or len(shape) != 1:
        raise SpikebertError(f"the graph's output is {shape}, not one vector of class scores: a sentence classifier "
                             "graph (spikebert-export) is needed to score a labelled split")
    return shape[0]


# --- export ----------------------------------------------------------------------------------------


def export_nir(*, model: str | Path, out: str | Path) -> Path:
    """``model.pt`` -> a NIR file (standard NIR + SB extension nodes) with the tokenizer identity."""
    from spikebert.contract.nirfile import write_graph

    student, payload = load_student(model, need_graph="spikebert-export --to nir (without --partial)")
    graph = kind_of(student).export_nir(student, metadata=_tokenizer_metadata(payload, model))
    write_graph(Path(out), graph)
    return Path(out)


def _tokenizer_metadata(payload: dict, model) -> dict:
    """What a graph needs to tokenise anywhere: the tokenizer's files, its vocabulary fingerprint, and
    its name (an absolute path for a local folder, for information only), plus the task."""
    from spikebert.teacher import load_tokenizer, pack_tokenizer
    from spikebert.tokenize import tokenizer_fingerprint

    name = str(payload["tokenizer"])
    tokenizer = load_tokenizer(name)
    if tokenizer_fingerprint(tokenizer) != payload["tokenizer_sha256"]:
        raise SpikebertError(f"tokenizer {name} differs from the one {model} was trained with; export where it is")
    if Path(name).exists():
        name = str(Path(name).resolve())
    return {"tokenizer": name, "tokenizer_sha256": payload["tokenizer_sha256"], "tokenizer_files": pack_tokenizer(
        tokenizer), "task": payload["task"]}


def export_nir_fragments(*, model: str | Path, out: str | Path) -> list[Path]:
    """A student without a whole graph -> ``out/layer{i}.key_value.nir`` (what NIR expresses) and
    ``out/fragments.json`` (what the host does between them). The folder is written whole, then
    swapped in; an existing one is replaced only if it is an earlier fragment export."""
    from spikebert.contract.nirfile import write_graph
    from spikebert.converters.spikingbert_to_nir import host_operations
    from spikebert.converters.torch_to_nir import spikingbert_gaps

    out = Path(out)
    student, payload = load_student(model)
    kind = kind_of(student)
    if kind.export_fragments is None:
        raise SpikebertError(f"{model} is a {kind.description}, which exports whole: drop --partial")
    if out.exists() and not out.is_dir():
        raise SpikebertError(f"{out} is a file; --partial writes a folder of graphs: give -o a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / "fragments.json").is_file():
        raise SpikebertError(f"{out} holds files that are not an earlier fragment export (no fragments.json); "
                             "give -o a new or empty folder")
    meta = {k: payload[k] for k in ("tokenizer", "tokenizer_sha256", "task")}
    graphs = kind.export_fragments(student, metadata={**meta, "checkpoint": str(model)})
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:  # the whole folder or nothing: an earlier export is replaced only once this one is complete
        for name, graph in graphs.items():
            write_graph(tmp / f"{name}.nir", graph)
        manifest = {
            "format": "spikebert-nir-fragments/1",
            "checkpoint": str(model),
            "time_steps": student.cfg.time_steps,
            "fragments": [{"file": f"{name}.nir", **{k: g.metadata[k] for k in ("layer", "input", "output")}}
                          for name, g in graphs.items()],
            "host": host_operations(student.cfg),
            "not_expressible": spikingbert_gaps(student.cfg),
        }
        atomic_write_text(tmp / "fragments.json", json.dumps(manifest, indent=2) + "\n")
        replace_folder(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return [*(out / f"{name}.nir" for name in graphs), out / "fragments.json"]


def export_onnx(*, model: str | Path, out: str | Path | None = None, teacher: bool = False,
                max_len: int = TeacherConfig().max_len) -> tuple[Path, dict]:
    """A student checkpoint (unrolled over its T steps) or, with ``teacher``, a teacher folder or HF
    name -> ONNX, checked against PyTorch with onnxruntime before it is written. Returns (path, check)."""
    from spikebert.converters.onnx_export import export_student_onnx, export_teacher_onnx  # imports onnx lazily
    if teacher:
        path = Path(out) if out else Path(str(model).rstrip("/") + ".onnx")
        return path, export_teacher_onnx(str(model), path, max_len=max_len).to_dict()
    if Path(model).is_dir():
        raise SpikebertError(f"{model} is a folder, not a student checkpoint; for a teacher folder add --teacher")
    student, payload = load_student(model, need_graph="spikebert-export --to onnx")
    path = Path(out) if out else Path(model).with_suffix(".onnx")
    meta = {k: payload[k] for k in ("tokenizer", "tokenizer_sha256", "task")}  # to tokenize for the graph
    return path, export_student_onnx(student, path, metadata=meta).to_dict()


def export_netx(*, graph: str | Path, out: str | Path | None = None, dt: float | None = None) -> Path:
    """A sequential NIR graph -> lava-dl netx HDF5; a float graph is quantised first (biases on netx's
    64-unit grid)."""
    from spikebert.contract.nirfile import read_graph
    from spikebert.hardware.fixed_point import is_quantised
    from spikebert.hardware.lava_env import require_lava_dl
    from spikebert.hardware.nir_to_netx import export_netx as to_netx
    from spikebert.hardware.nir_to_netx import fold_pools
    from spikebert.hardware.quantize import quantize_graph

    require_lava_dl("netx export (--to netx)")
    graph = Path(graph)
    if graph.suffix != ".nir":
        raise SpikebertError(f"--to netx takes a sequential NIR graph (.nir), got {graph}; SpikeBERT students have "
                             "residuals, attention and LayerNorm, which netx cannot host (spikebert simulate "
                             "--backend lava runs them)")
    path = Path(out) if out else graph.with_suffix(".net")
    nir_graph = read_graph(graph)
    if not is_quantised(nir_graph):  # netx has no pooling layer: sum/average pools fold into the next synapse
        nir_graph = quantize_graph(fold_pools(nir_graph), dt=dt, bias_exp_min=6)
    to_netx(nir_graph, path)
    return path


# --- simulate, quantize ----------------------------------------------------------------------------


def simulate(*, graph: str | Path, backend: str = "lava", fixed_point: bool = False, fuse: str = "blocks",
             data: str = "sst-2", data_dir: str | Path | None = None, split: str = "dev", limit: int = 0,
             batch_size: int = 64, check: bool = True, checkpoint: str | Path | None = None,
             activity_out: str | Path | None = None, out: str | Path | None = None,
             tokenizer: str | None = None, inputs: str | Path | None = None, dt: float | None = None,
             spikes_out: str | Path | None = None) -> dict:
    """Run a NIR graph on a split through Lava or the reference executor. Returns the report: accuracy,
    agreement with the reference executor (and with PyTorch given ``checkpoint``), per-layer
    activity, steps, processes and wall time; also written to ``out`` and the activity to ``activity_out``.

    ``inputs``: instead of a split, a ``.npy`` tensor (T, N, *input shape) for a graph with a tensor Input
    (any standard NIR graph: spikes or values, x[t] drives step t); the Output's value per step is written
    to ``spikes_out`` (.npy, (T, N, *output shape)). ``dt``: the step, for graphs whose metadata has none
    (NIR stores no dt)."""
    from spikebert.contract.nirfile import read_graph
    from spikebert.hardware.fixed_point import is_quantised

    if backend not in ("lava", "reference"):
        raise SpikebertError(f"backend {backend!r}: use 'lava' or 'reference'")
    nir_graph = read_graph(graph)
    if fixed_point and not is_quantised(nir_graph):
        from spikebert.hardware.quantize import quantize_graph

        log.info("quantising %s to Loihi fixed point (save it with 'spikebert quantize')", graph)
        nir_graph = quantize_graph(nir_graph, dt=dt)
    if inputs is not None:
        return _simulate_inputs(nir_graph, graph=graph, inputs=inputs, backend=backend, fuse=fuse, dt=dt,
                                batch_size=batch_size, check=check, activity_out=activity_out, out=out,
                                spikes_out=spikes_out)
    if spikes_out is not None:
        raise SpikebertError("--spikes-out writes the output of a tensor input: give --inputs X.npy")
    if checkpoint is not None:  # checked before any simulation: a bad checkpoint fails at once
        load_student(checkpoint, need_graph="simulate --checkpoint")
    dataset = load_split(data, split, data_dir=data_dir)
    n = _limit(len(dataset), limit)
    ids = tokenize_for_graph(nir_graph, dataset.sentences[:n], tokenizer=tokenizer)
    dataset.check_labels(_graph_classes(nir_graph), what=f"the graph {graph}")
    labels = np.array(dataset.labels[:n])
    t0 = time.perf_counter()
    report: dict = {"graph": str(graph), "backend": backend, "fixed_point": is_quantised(nir_graph), "data": data,
                    "split": split, "sentences": n}
    if backend == "lava":
        from spikebert.hardware.lava_runner import run_lava

        run = run_lava(nir_graph, ids, batch_size=batch_size, fuse=fuse)
        logits, activity = run.logits, run.activity
        report.update(fuse=fuse, processes=run.num_processes, steps=run.num_steps, output_latency=run.output_latency,
                      compile_s=round(run.compile_seconds, 2), run_s=round(run.run_seconds, 2))
    else:
        logits, activity = reference_logits(nir_graph, ids, batch_size=batch_size)
        report.update(processes=1, steps=int(nir_graph.metadata.get("time_steps", 1)) * -(-n // batch_size))
    report["wall_s"] = round(time.perf_counter() - t0, 2)
    predictions = logits.argmax(-1)
    report["accuracy"] = float((predictions == labels).mean())
    if backend == "lava" and check:
        ref_logits, ref_activity = reference_logits(nir_graph, ids, batch_size=batch_size)
        report["agreement_vs_reference"] = float((predictions == ref_logits.argmax(-1)).mean())
        report["max_logit_diff_vs_reference"] = float(np.abs(logits - ref_logits).max())
        report["activity_equals_reference"] = activity.same_counts(ref_activity)
    if checkpoint is not None:
        t_logits = torch_logits(checkpoint, ids, batch_size=batch_size)
        report["agreement_vs_pytorch_fp64"] = float((predictions == t_logits.argmax(-1)).mean())
        report["max_logit_diff_vs_pytorch_fp64"] = float(np.abs(logits - t_logits).max())
    return _finish_report(report, activity, count_key="input_spikes", activity_out=activity_out, out=out)


def _simulate_inputs(nir_graph, *, graph, inputs, backend, fuse, dt, batch_size, check, activity_out, out,
                     spikes_out) -> dict:
    """``simulate`` on a tensor input (T, N, *input shape) from a .npy file."""
    from spikebert.contract.fileio import atomic_write
    from spikebert.hardware.fixed_point import is_quantised
    from spikebert.hardware.reference import ReferenceExecutor

    path = Path(inputs)
    if not path.is_file():
        raise MissingFileError(f"input file {path} does not exist")
    try:
        x = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise SpikebertError(f"{path} is not a readable .npy array: {err}") from None
    if not np.issubdtype(x.dtype, np.number) and x.dtype != bool:
        raise SpikebertError(f"{path}: holds {x.dtype} values; inputs must be numbers (spikes or values)")
    if x.ndim < 2:
        raise SpikebertError(f"{path}: inputs must be (T, N, *input shape), got shape {x.shape}")
    x = x.astype(np.float64)
    t0 = time.perf_counter()
    report: dict = {"graph": str(graph), "backend": backend, "fixed_point": is_quantised(nir_graph),
                    "inputs": str(path), "time_steps": int(x.shape[0]), "samples": int(x.shape[1])}
    if backend == "lava":
        from spikebert.hardware.lava_runner import run_lava

        run = run_lava(nir_graph, inputs=x, batch_size=batch_size, fuse=fuse, dt=dt)
        y, activity = run.step_outputs, run.activity
        report.update(fuse=fuse, processes=run.num_processes, steps=run.num_steps, output_latency=run.output_latency,
                      compile_s=round(run.compile_seconds, 2), run_s=round(run.run_seconds, 2))
    else:
        ex = ReferenceExecutor(nir_graph, dt=dt)
        y, activity = ex.run_inputs(x).step_outputs, ex.activity
    report["wall_s"] = round(time.perf_counter() - t0, 2)
    report["output_shape"] = list(y.shape)
    report["output_sum"] = float(y.sum())
    report["output_spikes_per_sample"] = float(np.count_nonzero(y) / max(1, y.shape[1]))
    if backend == "lava" and check:
        ref = ReferenceExecutor(nir_graph, dt=dt)
        expected = ref.run_inputs(x).step_outputs
        report["equals_reference"] = bool(np.array_equal(y, expected))
        report["max_diff_vs_reference"] = float(np.abs(y - expected).max()) if y.size else 0.0
    if spikes_out:
        atomic_write(Path(spikes_out), lambda tmp: tmp.write_bytes(_npy_bytes(y)))  # exactly this path, .npy format
        report["spikes_out"] = str(spikes_out)
    return _finish_report(report, activity, count_key="input_nonzeros", activity_out=activity_out, out=out)


def _finish_report(report: dict, activity, *, count_key: str, activity_out, out) -> dict:
    """Both simulate paths: per-layer input counts, then the activity and the report written where asked."""
    report["layers"] = {name: {count_key: a.input_nonzeros, "input_rate": round(a.input_rate, 6)}
                        for name, a in activity.nodes.items()}
    if activity_out:
        activity.to_json(activity_out)
        report["activity"] = str(activity_out)
    if out:
        atomic_write_text(Path(out), json.dumps(report, indent=2) + "\n")
    return report


def _npy_bytes(y: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, y)
    return buffer.getvalue()


def quantize(*, graph: str | Path, out: str | Path, dt: float | None = None, bias_exp_min: int = 0) -> dict:
    """A float NIR graph -> Loihi fixed point, written as a NIR file; returns the scales chosen."""
    from spikebert.contract.nirfile import read_graph, write_graph
    from spikebert.hardware.quantize import quantize_graph

    quantised = quantize_graph(read_graph(graph), dt=dt, bias_exp_min=bias_exp_min)
    write_graph(Path(out), quantised)
    return {"graph": str(graph), "out": str(out), **quantised.metadata["fixed_point"]}


# --- eval, plots -----------------------------------------------------------------------------------


def evaluate(*, model: str | Path, data: str = "sst-2", split: str = "dev", data_dir: str | Path | None = None,
             time_steps: int | None = None, out: str | Path | None = None, shuffled: bool = False,
             attention: bool = False, limit: int = 0) -> dict:
    """Accuracy and per-layer firing rates of a student of any kind on a split (``time_steps``: a
    SpikingBERT student at another T); also written to ``out``. ``shuffled``: also the accuracy with
    each sentence's tokens shuffled (an order-blind student loses nothing). ``attention``: per block
    and head, the attention's firing rates and accumulates and their share of all the student's
    accumulates (students with a NIR graph). ``limit``: the first N sentences (0 = all)."""
    student, payload = load_student(model)
    batcher = _student_batcher(student, payload, model)
    dataset = load_split(data, split, data_dir=data_dir)
    dataset.check_labels(student.cfg.num_classes, what=f"the student {model}")
    if limit:
        n = _limit(len(dataset), limit)
        dataset = TextDataset(dataset.sentences[:n], dataset.labels[:n], dataset.name, dataset.label_lines)
    result = kind_of(student).evaluate(student, batcher, dataset, firing_rates=True, time_steps=time_steps)
    if shuffled:
        from spikebert.evaluation import shuffled_accuracy

        result.update(shuffled_accuracy(student, batcher, dataset))
    if attention:
        result["attention"] = _attention_report(student, batcher, dataset)
    result.pop("predictions")
    result.pop("activity", None)  # SpikingBERT's spike counts: `spikebert energy` prices them
    rates = result["firing_rates"]
    result = {"model": str(model), "data": data, "split": split, "examples": len(dataset),
              "time_steps": student.cfg.time_steps if time_steps is None else time_steps, **result,
              "mean_firing_rate": sum(rates.values()) / len(rates)}
    if out:
        atomic_write_text(Path(out), json.dumps(result, indent=2) + "\n")
    return result


def _attention_report(student, batcher, dataset: TextDataset, *, batch_size: int = 64) -> dict:
    """Per block and head: attention firing rates and accumulates, with their share of all the
    student's accumulates (counted on its exported graph, as the energy report counts them)."""
    from spikebert.energy.counting import count_operations
    from spikebert.recording import attention_heads
    from spikebert.tokenize import Batcher

    kind = kind_of(student)
    kind.require_graph("the attention report (eval --attention)")
    full = Batcher(batcher.tokenizer, max_len=student.cfg.max_len, pad_to_max=True)  # the graph's fixed length
    ids = full.encode(dataset.sentences)["input_ids"]
    graph = kind.export_nir(student.double(), metadata={})
    _, activity = kind.record_activity(student, ids, batch_size=batch_size, graph=graph)
    total = sum(r.acs for r in count_operations(graph, activity, residual="accumulate"))
    report = attention_heads(student, ids.split(batch_size), total_acs=total or None)
    student.float()
    return report


def plot_attention(*, model: str | Path, sentence: str, out: str | Path, layer: int | None = None,
                   head: int | None = None, per_step: bool = False) -> list[Path]:
    """Spiking-attention maps (token x token Q K^T coincidences per block and head), PNG + PDF."""
    from spikebert import figures

    student, payload = load_student(model, need_graph="spikebert plot attention")
    return figures.attention_figures(student, _student_batcher(student, payload, model), sentence, out, layer=layer,
                                     head=head, per_step=per_step)


def plot_rates(*, model: str | Path, out: str | Path, data: str = "sst-2", data_dir: str | Path | None = None,
               split: str = "dev", limit: int = 0, batch_size: int = 64) -> list[Path]:
    """Firing rates per population and step over a split, and per neuron and token of its first sentence."""
    from spikebert import figures

    student, payload = load_student(model, need_graph="spikebert plot rates")
    dataset = load_split(data, split, data_dir=data_dir)
    return figures.rate_figures(student, _student_batcher(student, payload, model),
                                dataset.sentences[:_limit(len(dataset), limit)], out, batch_size=batch_size)


def plot_sweep(*, results: str | Path, out: str | Path, x: str, y: str = "accuracy",
               group: str | None = None) -> list[Path]:
    """A metric against a swept parameter, from a results JSON or CSV."""
    from spikebert import figures

    return figures.sweep_figure(results, out, x=x, y=y, group=group)


# --- energy ----------------------------------------------------------------------------------------


@dataclasses.dataclass
class EnergyResult:
    """What ``energy`` produced: the report (its per-profile figures), the files written, and the
    student's accuracy on the counted sentences (None when it was not measured)."""

    report: Any
    paths: list[Path]
    accuracy: float | None
    samples: int


def energy(*, model: str | Path, out: str | Path = ".", teacher: str | None = None,
           teacher_config: str | Path | None = None, teacher_count: str = "analytic",
           teacher_max_len: int = TeacherConfig().max_len, teacher_length: int | None = None,
           data: str = "sst-2", data_dir: str | Path | None = None, split: str = "dev", limit: int = 0,
           backend: str = "reference", batch_size: int = 64, time_steps: int | None = None,
           activity: str | Path | None = None, accuracy: float | None = None, profile: str = "45nm-fp32",
           formats: str = "md,json", plots: bool = False, residual: str = "mac",
           tokenizer: str | None = None) -> EnergyResult:
    """Energy report of a student against its teacher on the same sentences of a split.

    A student with a whole graph (``model.pt`` is exported to ``out/model.nir`` first, or a NIR file)
    runs on the reference executor, Lava or PyTorch hooks (``backend``), or its activity is read from
    ``activity`` (recorded by ``simulate`` on the split's first N sentences); a student without one
    (SpikingBERT) runs its PyTorch simulation. The teacher is counted at those sentences' real token
    lengths (or ``teacher_length``), analytically or from its ONNX graph (``teacher_count``).

    Every file reaches ``out`` only when the whole report succeeded (``staged_outputs``)."""
    from spikebert.contract.fileio import staged_outputs

    args = dict(locals())
    del args["staged_outputs"]
    final = Path(args.pop("out"))
    with staged_outputs(final) as stage:
        result = _energy(out=stage, shown=final, **args)
        result.paths = [final / path.relative_to(stage) for path in result.paths]
    return result


def _energy(*, model: str | Path, out: Path, shown: Path, teacher: str | None, teacher_config: str | Path | None,
            teacher_count: str, teacher_max_len: int, teacher_length: int | None, data: str,
            data_dir: str | Path | None, split: str, limit: int, backend: str, batch_size: int, time_steps: int | None,
            activity: str | Path | None, accuracy: float | None, profile: str, formats: str, plots: bool,
            residual: str, tokenizer: str | None) -> EnergyResult:
    """``energy``'s work, writing into the staging folder ``out``; ``shown`` is the folder named in reports."""
    from spikebert.contract.activity import Activity
    from spikebert.contract.nirfile import read_graph
    from spikebert.energy.counting import count_operations
    from spikebert.energy.profiles import select_profiles
    from spikebert.energy.report import parse_formats

    profiles, format_list = select_profiles(profile), parse_formats(formats)
    if not (teacher or teacher_config):
        raise SpikebertError("name the teacher: --teacher NAME_OR_PATH (or --teacher-config its config.json)")
    if teacher_count not in ("analytic", "onnx"):
        raise SpikebertError(f"teacher_count {teacher_count!r}: use 'analytic' or 'onnx'")
    if teacher_count == "onnx" and not teacher:
        raise SpikebertError("--teacher-count onnx exports the teacher: give it as --teacher NAME_OR_PATH")
    if backend not in ("reference", "lava", "torch"):
        raise SpikebertError(f"backend {backend!r}: use 'reference', 'lava' or 'torch'")
    if residual not in ("mac", "accumulate"):
        raise SpikebertError(f"residual {residual!r}: use 'mac' or 'accumulate'")
    if accuracy is not None and not (activity and 0 <= accuracy <= 1):
        raise SpikebertError(f"--accuracy {accuracy}: a share in [0, 1], given only with --activity (otherwise the "
                             "reference run measures it)")
    model = Path(model)
    student = payload = None
    if model.suffix == ".pt":
        student, payload = load_student(model)
        if not kind_of(student).has_graph:
            return _energy_without_graph(student, payload, model=model, out=out, teacher=teacher,
                                         teacher_config=teacher_config, teacher_count=teacher_count,
                                         teacher_max_len=teacher_max_len, teacher_length=teacher_length, data=data,
                                         data_dir=data_dir, split=split, limit=limit, backend=backend,
                                         batch_size=batch_size, time_steps=time_steps, activity=activity,
                                         accuracy=accuracy, profiles=profiles, formats=format_list, plots=plots,
                                         residual=residual)
    if time_steps is not None:
        raise SpikebertError("--time-steps applies to students without a whole graph (SpikingBERT); a SpikeBERT "
                             "graph runs at its exported T")
    if backend == "torch" and student is None:
        raise SpikebertError("--backend torch records activity with PyTorch hooks: give the model.pt checkpoint")
    checkpoint = model if student is not None else None
    shown_model = model
    if student is not None:
        model, shown_model = export_nir(model=model, out=out / "model.nir"), shown / "model.nir"
    graph = read_graph(model)

    # 1. the sentences, and the student's activity on them
    recorded = Activity.from_json(activity) if activity else None
    sentences, labels = None, None
    if recorded is None or teacher_length is None:
        dataset = load_split(data, split, data_dir=data_dir)
        n = recorded.samples if recorded else _limit(len(dataset), limit)
        if n > len(dataset):
            raise SpikebertError(f"{activity} records {n} samples, but {data} {split} has {len(dataset)} sentences; "
                                 "give the split the activity was recorded on")
        sentences, labels = dataset.sentences[:n], np.array(dataset.labels[:n])
    if recorded is None:
        ids = tokenize_for_graph(graph, sentences, tokenizer=tokenizer)
        dataset.check_labels(_graph_classes(graph), what=f"the graph {model}")
        if backend == "lava":
            from spikebert.hardware.lava_runner import run_lava

            run = run_lava(graph, ids, batch_size=batch_size)
            logits, recorded = run.logits, run.activity
        elif backend == "torch":
            student, _ = load_student(checkpoint, need_graph="--backend torch")
            t_logits, recorded = kind_of(student).record_activity(student, torch.from_numpy(ids),
                                                                  batch_size=batch_size, graph=graph)
            logits = t_logits.numpy()
        else:
            logits, recorded = reference_logits(graph, ids, batch_size=batch_size)
        accuracy = float((logits.argmax(-1) == labels).mean())
        recorded.to_json(out / "activity.json")

    # 2. the teacher on the same sentences
    counts, at = _teacher_count(teacher=teacher, teacher_config=teacher_config, teacher_count=teacher_count,
                                teacher_max_len=teacher_max_len, teacher_length=teacher_length, sentences=sentences,
                                samples=recorded.samples, tokenizer_name=tokenizer or graph.metadata.get("tokenizer"),
                                tokenizer_files=None if tokenizer else graph.metadata.get("tokenizer_files"), out=out)

    # 3. the report
    extra = {"student": str(shown_model), "teacher": teacher or str(teacher_config)}
    if sentences is not None:
        extra["data"] = f"{data} {split}"
    from spikebert.energy.report import OTHER_CONVENTION

    return _write_energy(out, profiles, format_list, plots=plots,
                         layers=count_operations(graph, recorded, residual=residual), residual=residual,
                         other_layers=count_operations(graph, recorded, residual=OTHER_CONVENTION[residual]),
                         teacher=counts, at=at, activity=recorded, accuracy=accuracy, extra=extra)


def _energy_without_graph(student, payload: dict, *, model: Path, out: Path, teacher, teacher_config, teacher_count,
                          teacher_max_len, teacher_length, data, data_dir, split, limit, backend, batch_size,
                          time_steps, activity, accuracy, profiles, formats, plots, residual) -> EnergyResult:
    """``energy`` for a student without a whole NIR form (SpikingBERT): its spikes come from its PyTorch
    simulation (or ``activity``, a population record) and its rows from ``spikingbert_counts``."""
    from spikebert.energy.counting import PopulationActivity, spikingbert_counts

    if backend == "lava":
        raise SpikebertError("--backend lava: a SpikingBERT student has no whole Lava form (softmax, LayerNorm and "
                             "GELU act on its currents; docs/spikingbert.md); its activity comes from the PyTorch "
                             "simulation")
    if residual != "mac":
        raise SpikebertError("--residual: a SpikingBERT student has no integer-valued synaptic inputs to count "
                             "either way")
    dataset = load_split(data, split, data_dir=data_dir)
    if activity:
        recorded = PopulationActivity.from_json(activity)
        if time_steps is not None and time_steps != recorded.time_steps:
            raise SpikebertError(f"--time-steps {time_steps} but {activity} was recorded at T={recorded.time_steps}")
        if recorded.samples > len(dataset):
            raise SpikebertError(f"{activity} records {recorded.samples} samples, but {data} {split} has "
                                 f"{len(dataset)} sentences; give the split the activity was recorded on")
        sentences = dataset.sentences[:recorded.samples]
    else:
        n = _limit(len(dataset), limit)
        dataset.check_labels(student.cfg.num_classes, what=f"the student {model}")
        dataset = TextDataset(dataset.sentences[:n], dataset.labels[:n], dataset.name, dataset.label_lines)
        sentences = dataset.sentences
        result = kind_of(student).evaluate(student, _student_batcher(student, payload, model), dataset,
                                           batch_size=batch_size, firing_rates=True, time_steps=time_steps)
        accuracy, recorded = result["accuracy"], result["activity"]
        recorded.to_json(out / "activity.json")
    cfg = student.cfg
    layers, other = spikingbert_counts(depth=cfg.depth, dim=cfg.dim, mlp_dim=cfg.mlp_dim, heads=cfg.heads,
                                       num_classes=cfg.num_classes, activity=recorded)
    counts, at = _teacher_count(teacher=teacher, teacher_config=teacher_config, teacher_count=teacher_count,
                                teacher_max_len=teacher_max_len, teacher_length=teacher_length, sentences=sentences,
                                samples=recorded.samples, tokenizer_name=payload["tokenizer"], out=out)
    acs = sum(r.acs for r in layers)
    share = f"{other.total / acs:.1%} of the ACs" if acs else "no ACs: no spikes"
    extra = {"student": f"{model} (SpikingBERT)", "teacher": teacher or str(teacher_config), "data": f"{data} {split}",
             "outside the scope (per sample)": f"softmax {other.softmax:.4g}, LayerNorm {other.layer_norm:.4g}, GELU "
                                               f"{other.gelu:.4g} elements ({share}): "
                                               "real-valued operations on currents, not neuromorphic"}
    return _write_energy(out, profiles, formats, plots=plots, layers=layers, residual="none", teacher=counts, at=at,
                         activity=recorded, accuracy=accuracy, extra=extra)


def _teacher_count(*, teacher, teacher_config, teacher_count: str, teacher_max_len: int, teacher_length: int | None,
                   sentences: list[str] | None, samples: int, tokenizer_name: str | None, out: Path,
                   tokenizer_files: str | None = None):
    """(teacher counts, how) for ``samples`` sentences: at their real token lengths or a fixed one."""
    from spikebert.energy.counting import teacher_counts

    if teacher_length is not None:
        lengths, at = [teacher_length] * samples, f"at a fixed {teacher_length} tokens"
    else:
        from spikebert.teacher import load_tokenizer, unpack_tokenizer
        from spikebert.tokenize import Batcher

        if teacher:
            tok = load_tokenizer(str(teacher))
        elif tokenizer_files:
            tok = unpack_tokenizer(str(tokenizer_files), where="the NIR graph")
        elif tokenizer_name:
            tok = load_tokenizer(str(tokenizer_name))
        else:
            raise SpikebertError("the NIR graph records no tokenizer to measure the teacher's lengths: give --teacher")
        batcher = Batcher(tok, max_len=teacher_max_len)
        lengths = batcher.encode(sentences)["attention_mask"].sum(1).tolist()
        at = (f"at the same {len(lengths)} sentences' real token lengths (mean {np.mean(lengths):.1f}, "
              f"at most {teacher_max_len})")
    if teacher_count == "onnx":
        from spikebert.converters.onnx_export import export_teacher_onnx
        from spikebert.energy.onnx_count import onnx_teacher_counts

        export_teacher_onnx(teacher, out / "teacher.onnx", max_len=max(2, *lengths))
        return onnx_teacher_counts(out / "teacher.onnx", lengths), at
    if teacher_config:
        config = _read_json(teacher_config, "teacher config")
    else:
        from transformers import AutoConfig

        from spikebert.teacher import resolve_teacher_name

        try:
            config = AutoConfig.from_pretrained(resolve_teacher_name(teacher)).to_dict()
        except OSError as err:  # what transformers raises for a missing folder or an uncached hub name
            raise MissingFileError(f"teacher {teacher!r}: {err}") from err
    return teacher_counts(config, lengths), at


def _read_json(path: str | Path, what: str) -> dict:
    """A JSON object file (a config, an energy report), read by the contract's strict reader."""
    from spikebert.contract.jsonfile import read_json, require_object

    return require_object(read_json(path, what=what), path, what=what)


def _write_energy(out: Path, profiles, formats, *, plots: bool, layers, residual: str, teacher, at: str, activity,
                  accuracy: float | None, extra: dict, other_layers=()) -> EnergyResult:
    """The report of either energy path: rows + teacher counts -> files (and plots)."""
    from spikebert.energy.report import EnergyReport

    report = EnergyReport(profile=profiles[0], more_profiles=profiles[1:], residual_convention=residual, layers=layers,
                          teacher_macs=teacher.macs, teacher_weight_reads=teacher.weight_reads,
                          teacher_layers=list(teacher.layers),
                          teacher_method=f"{teacher.method}, {at}", samples=activity.samples,
                          time_steps=activity.time_steps, backend=activity.backend, accuracy=accuracy, extra=extra,
                          other_convention_layers=list(other_layers))
    paths = report.write(out, formats=formats)
    if plots:
        from spikebert.energy.plots import write_plots

        paths += write_plots(report, out)
    return EnergyResult(report=report, paths=paths, accuracy=accuracy, samples=activity.samples)


# --- training --------------------------------------------------------------------------------------

DEMO_STUDENT = {"dim": 256, "depth": 2, "heads": 8, "max_len": 64, "time_steps": 4}
"""The SpikeBERT size of the demo, and of ``train`` when no ``student`` config is given."""
TRAIN_STAGES = ("teacher", "pretrain", "distill")


def train(*, stage: str, data: str, out: str | Path, teacher: str | None = None, method: str = "spikebert",
          config: str | Path | None = None, overrides: dict | None = None, student: str | Path | None = None,
          student_overrides: dict | None = None, init: str | Path | None = None, data_dir: str | Path | None = None,
          resume: bool = True, stop_after_minutes: float = 0.0, command: list[str] | None = None) -> dict:
    """One training stage into the run folder ``out`` (resumable; see README "Command line").

    ``stage``: "teacher" (fine-tune ``teacher``, default the offline MiniLM), "pretrain" (stage 1 against
    the base ``teacher``), or "distill" (stage 2 from the fine-tuned ``teacher`` folder; ``method``
    "spikebert" or "spikingbert"). ``config``: the stage's config JSON, then ``overrides``;
    ``student``: the student config JSON, then ``student_overrides``. ``command`` (the invocation) is
    appended to ``out/commands.jsonl``. Returns the stage's result (best dev figures, model path)."""
    from spikebert.config import DistillConfig, PretrainConfig, SpikingDistillConfig

    if stage not in TRAIN_STAGES:
        raise SpikebertError(f"unknown stage {stage!r}; use one of {TRAIN_STAGES}")
    if method not in ("spikebert", "spikingbert"):
        raise SpikebertError(f"unknown method {method!r}; use spikebert or spikingbert")
    if method == "spikingbert" and stage != "distill":
        raise SpikebertError(f"--method spikingbert is a distillation method: use `train distill`, not `train {stage}` "
                             "(the teacher is shared; SpikingBERT's general distillation on WikiText is not built)")
    run = Path(out)
    _record_command(run, command or ["spikebert.workflows.train", f"stage={stage}", f"data={data}", f"out={out}"])
    common = {"resume": resume, "stop_after_minutes": stop_after_minutes}
    if stage == "pretrain":
        from spikebert.data import load_corpus
        from spikebert.distill import pretrain
        from spikebert.teacher import load_tokenizer

        cfg = _stage_config(PretrainConfig, config, overrides, teacher=teacher)
        tok = load_tokenizer(cfg.teacher)
        dev = load_split(data, "dev", data_dir=data_dir)
        student_cfg = _student_config("spikebert", student, student_overrides, tok, dev.check_contiguous())
        corpus = load_corpus(cfg.corpus, task=data, data_dir=data_dir, tokenizer=tok, max_len=student_cfg.max_len)
        if cfg.max_samples:
            import random

            corpus = random.Random(cfg.seed).sample(corpus, min(cfg.max_samples, len(corpus)))
        best = pretrain(student_cfg, cfg, corpus=corpus, dev_sentences=dev.sentences, run_dir=run, **common)
        return {**best, "model": str(run / "model.pt")}
    train_set = load_split(data, "train", data_dir=data_dir)
    dev = load_split(data, "dev", data_dir=data_dir)
    if stage == "teacher":
        from spikebert.finetune import finetune_teacher

        cfg = _stage_config(TeacherConfig, config, overrides, model=teacher)
        acc = finetune_teacher(cfg, train_set, dev, run, **common)
        return {"teacher_dev_accuracy": acc, "model": str(run / "model")}
    from spikebert.teacher import load_tokenizer

    if not teacher:
        raise SpikebertError("train distill needs --teacher: the fine-tuned teacher folder (from train teacher)")
    tok = load_tokenizer(teacher)
    classes = task_classes(train_set, dev)
    student_cfg = _student_config(method, student, student_overrides, tok, classes)
    if method == "spikingbert":
        from spikebert.spiking_distill import distill_spikingbert

        cfg = _stage_config(SpikingDistillConfig, config, overrides)
        best = distill_spikingbert(student_cfg, cfg, teacher_dir=teacher, train=train_set, dev=dev, run_dir=run,
                                   task=data, init=init, **common)
    else:
        from spikebert.distill import distill

        cfg = _stage_config(DistillConfig, config, overrides)
        best = distill(student_cfg, cfg, teacher_dir=teacher, train=train_set, dev=dev, run_dir=run, task=data,
                       init=init, **common)
    return {**best, "model": str(run / "model.pt")}


def _stage_config(cls, path: str | Path | None, overrides: dict | None, **given):
    """A stage config from its JSON file (or the defaults), then the options given by name (such as
    ``teacher``; None = not given), then ``overrides``."""
    data = cls.from_json(path).to_dict() if path else cls().to_dict()
    data.update({k: v for k, v in given.items() if v is not None})
    data.update(overrides or {})
    return cls.from_dict(data)


def _student_config(kind: str, path: str | Path | None, overrides: dict | None, tokenizer, num_classes: int):
    """The student config of ``kind``: its JSON file (or the demo size for SpikeBERT, the config defaults
    otherwise), then ``overrides``; vocabulary, padding id and class count come from the teacher's
    tokenizer and the data unless set."""
    from spikebert.students import kind_named

    base = {"vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id, "num_classes": num_classes,
            **(DEMO_STUDENT if kind == "spikebert" else {})}
    if path:
        base = {**base, **_read_json(path, "student config")}
    return kind_named(kind).config_cls.from_dict({**base, **(overrides or {})})


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
    record = {"argv": list(argv), "date": datetime.datetime.now().isoformat(timespec="seconds"),
              "host": platform.node(), "commit": commit}
    with (run / "commands.jsonl").open("a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def plot_front(*, reports: list[str | Path], out: str | Path, profiles: str | None = None,
               labels: list[str] | None = None, teacher_accuracy: float | None = None) -> list[Path]:
    """Energy-accuracy fronts of energy reports (``energy_report.json`` of ``spikebert energy``, each with
    the student's accuracy): one panel per profile (default: those all reports priced), the teacher marked
    (at ``teacher_accuracy`` if given), the Pareto front drawn; PNG, PDF, a LaTeX table and the points as
    JSON in ``out``. ``labels`` name the reports (default: each report's folder name)."""
    from spikebert.energy.front import front_points
    from spikebert.energy.plots import write_front
    from spikebert.energy.report import EnergyReport

    paths = [Path(r) for r in reports]
    if labels is not None and len(labels) != len(paths):
        raise SpikebertError(f"{len(labels)} labels for {len(paths)} reports: give one --label per report")
    names = labels or [p.parent.name or p.stem for p in paths]
    if labels is None and len(set(names)) != len(names):
        names = [str(p.parent) for p in paths]
    loaded = []
    for name, path in zip(names, paths):
        try:
            loaded.append((name, EnergyReport.from_dict(_read_json(path, "energy report"))))
        except (KeyError, TypeError) as err:
            raise SpikebertError(f"energy report {path}: not a report of `spikebert energy` ({err!r})") from err
    chosen = None if profiles is None else [s.strip() for s in profiles.split(",") if s.strip()]
    points = front_points(loaded, profiles=chosen, teacher_accuracy=teacher_accuracy)
    return write_front(points, Path(out))
