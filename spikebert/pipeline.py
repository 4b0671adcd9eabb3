"""The chain as library calls: export, simulate, energy, and the end-to-end demo."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from spikebert.config import DistillConfig, StudentConfig, TeacherConfig
from spikebert.contract.errors import SpikebertError
from spikebert.contract.fileio import atomic_write_text, replace_folder
from spikebert.data import TextDataset, load_split

log = logging.getLogger(__name__)


def export_nir(model_path: Path, out_path: Path) -> Path:
    """``model.pt`` -> ``model.nir`` (standard NIR + SpikeBERT extension nodes)."""
    from spikebert.contract.extension import write_graph
    from spikebert.converters.torch_to_nir import export_student
    from spikebert.distill import load_student

    model, payload = load_student(model_path, spiking=True)  # a SpikingBERT student: export_student says why not
    graph = export_student(model, metadata={"tokenizer": payload["tokenizer"],
                                            "tokenizer_sha256": payload["tokenizer_sha256"],
                                            "task": payload["task"]})
    write_graph(out_path, graph)
    return out_path


def export_nir_partial(model_path: Path, out_dir: Path) -> list[Path]:
    """A SpikingBERT ``model.pt`` -> ``out_dir/layer{i}.key_value.nir``, one graph per layer, and
    ``out_dir/fragments.json``: what each fragment takes and gives and what the host does between
    (``spikebert.converters.spikingbert_to_nir``). The folder is written whole, then swapped in; an existing
    one is replaced only if it is an earlier fragment export."""
    from spikebert.contract.extension import write_graph
    from spikebert.converters.spikingbert_to_nir import export_fragments, host_operations
    from spikebert.converters.torch_to_nir import spikingbert_gaps
    from spikebert.distill import load_student
    from spikebert.spikingbert import SpikingBERT

    model, payload = load_student(model_path, spiking=True)
    if not isinstance(model, SpikingBERT):
        raise SpikebertError(f"{model_path} is a SpikeBERT student, which exports whole: drop --partial")
    if out_dir.exists() and not out_dir.is_dir():
        raise SpikebertError(f"{out_dir} is a file; --partial writes a folder of graphs: give -o a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / "fragments.json").is_file():
        raise SpikebertError(f"{out_dir} holds files that are not an earlier fragment export (no fragments.json); "
                         "give -o a new or empty folder")
    meta = {k: payload[k] for k in ("tokenizer", "tokenizer_sha256", "task")}
    graphs = export_fragments(model, metadata={**meta, "checkpoint": str(model_path)})
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:  # the whole folder or nothing: an earlier export is replaced only once this one is complete
        for name, graph in graphs.items():
            write_graph(tmp / f"{name}.nir", graph)
        manifest = {
            "format": "spikebert-nir-fragments/1",
            "checkpoint": str(model_path),
            "time_steps": model.cfg.time_steps,
            "fragments": [{"file": f"{name}.nir", **{k: g.metadata[k] for k in ("layer", "input", "output")}}
                          for name, g in graphs.items()],
            "host": host_operations(model.cfg),
            "not_expressible": spikingbert_gaps(model.cfg),
        }
        atomic_write_text(tmp / "fragments.json", json.dumps(manifest, indent=2) + "\n")
        replace_folder(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return [*(out_dir / f"{name}.nir" for name in graphs), out_dir / "fragments.json"]


def tokenize_for_graph(graph, sentences: list[str]) -> np.ndarray:
    """Token ids (N, max_len) with the tokenizer recorded in the graph, padded to the graph's length."""
    from spikebert.contract.extension import SBTokenEmbedding
    from spikebert.teacher import load_tokenizer
    from spikebert.tokenize import Batcher, tokenizer_fingerprint

    if not any(isinstance(node, SBTokenEmbedding) for node in graph.nodes.values()):
        what = (f"the SpikingBERT fragment {graph.metadata['fragment']!r}, whose input is {graph.metadata.get('input')}"
                if graph.metadata.get("fragment") else "a graph without a token encoder (SBTokenEmbedding)")
        raise SpikebertError(f"this is {what}: it takes spike tensors, not sentences. Run it from Python with "
                         "spikebert.hardware.reference.ReferenceExecutor(graph).run_inputs(x) or "
                         "spikebert.hardware.lava_runner.run_lava("
                         "graph, inputs=x), x of shape (T, N, *input shape)")
    name = graph.metadata.get("tokenizer")
    if not name:
        raise SpikebertError("the NIR graph records no tokenizer; export it with spikebert-export")
    tokenizer = load_tokenizer(str(name))
    if tokenizer_fingerprint(tokenizer) != graph.metadata.get("tokenizer_sha256"):
        raise SpikebertError(f"tokenizer {name} does not match the one the graph was trained with")
    embed = next(n for n in graph.nodes.values() if isinstance(n, SBTokenEmbedding))
    return Batcher(tokenizer, max_len=embed.max_len, pad_to_max=True).encode(sentences)["input_ids"].numpy()


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float((a.argmax(-1) == b.argmax(-1)).mean())


def run_demo(*, out_dir: Path, data_dir: str | None, task: str, teacher: str, teacher_samples: int,
             student_samples: int, epochs: int, sim_sentences: int, student: dict) -> dict:
    """Teacher -> student -> NIR -> Lava -> energy report, on real data. Returns the summary."""
    from spikebert.contract.extension import read_graph
    from spikebert.distill import distill, load_student
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
                         num_classes=max(train.num_classes, dev.num_classes), **student)
    dcfg = DistillConfig(train_samples=student_samples, epochs=epochs, augment=None, emb_rows="batch")
    best = distill(scfg, dcfg, teacher_dir=str(teacher_dir), train=train, dev=dev, run_dir=out_dir / "student",
                   task=task)
    model_path = out_dir / "student" / "model.pt"
    timings["student_s"] = time.perf_counter() - t0
    log.info("student dev accuracy %.4f (%.0f s)", best["dev_accuracy"], timings["student_s"])

    # 3. NIR
    t0 = time.perf_counter()
    nir_path = export_nir(model_path, out_dir / "model.nir")
    graph = read_graph(nir_path)
    timings["export_s"] = time.perf_counter() - t0

    # 4. Lava on the first sim_sentences dev sentences, against PyTorch (float64 and float32)
    sentences, labels = dev.sentences[:sim_sentences], np.array(dev.labels[:sim_sentences])
    ids = tokenize_for_graph(graph, sentences)
    t0 = time.perf_counter()
    lava = run_lava(graph, ids)
    timings["lava_s"] = time.perf_counter() - t0
    model, _ = load_student(model_path)
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
