"""The deployable Lava build (``--fuse deploy``) against the fused one on SST-2 dev, float and Loihi fixed point.

    python benchmarks/lava_deployable_sst2.py --out benchmarks/results/lava_deployable_sst2.json

No trained student exists on this machine: the student is freshly initialised (spikebert.testing make_student,
seeded, weights scaled so that every layer fires) with the architecture of benchmarks/configs/student-sst2.json
(depth 2, D = 256, 8 heads, MLP 1024, 64 tokens, T = 4), batch norm (it folds into the weights and quantises)
and spike residuals, on the offline tokenizer "minilm-offline", saved and exported with spikebert-export. Its
accuracy is chance; what is measured is the build: processes, wall time, bit-exactness and the share of
synaptic operations and neuron updates that run in lava-nc processes (``Conv``, ``LIFReset``) rather than in
custom ones (spike attention, the host readout; the host encoder's threshold counts as a custom neuron).

Counting (real tokens only, as spikebert energy does): a lava-nc Conv reading a population's spikes does
one accumulate per spike and output channel; attention does its exact Q K^T and A V accumulates; the host
readout one accumulate per nonzero input element (token mean) and one MAC per input and class (classifier).
Neuron updates: every neuron of every population at every step, and the encoder's threshold units once per
sentence. Everything in this one run, on this machine, with the load it had (recorded).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]  # the package, and the benchmarks' helpers

from provenance import load_average, provenance  # noqa: E402

from spikebert.hardware.lava_runner import prepare_lava  # noqa: E402

log = logging.getLogger("lava_deployable_sst2")


def make_graph(workdir: Path, *, seed: int, attention_bias: float) -> tuple[Path, dict]:
    """A fresh firing student saved as model.pt and exported with spikebert-export; returns (graph, its config)."""
    from spikebert.config import StudentConfig
    from spikebert.students import save_student
    from spikebert.teacher import load_tokenizer
    from spikebert.testing import make_student

    tok = load_tokenizer("minilm-offline")
    arch = json.loads((ROOT / "benchmarks" / "configs" / "student-sst2.json").read_text())
    cfg = StudentConfig(**{**arch, "norm": "batch", "residual": "spike", "vocab_size": len(tok),
                           "pad_token_id": tok.pad_token_id, "num_classes": 2})
    model = make_student(cfg, seed=seed, attention_bias=attention_bias).float()
    path = workdir / "student" / "model.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_student(path, model, tokenizer=tok, tokenizer_name="minilm-offline", task="sst-2", metrics={})
    graph = workdir / "student.nir"
    subprocess.run([str(Path(sys.executable).with_name("spikebert-export")), str(path), "-o", str(graph)], check=True,
                   env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return graph, {k: v for k, v in dataclasses.asdict(cfg).items() if not isinstance(v, (list, dict))}


def operation_shares(graph, inventory, ids, *, batch_size: int) -> dict:
    """Synaptic operations and neuron updates of the deployable build, in lava-nc vs custom processes, counted
    on the reference executor's spikes (the fixed-point build equals them bit for bit)."""
    import nir

    from spikebert.contract.extension import SBSpikeAttention, SBTokenMean
    from spikebert.hardware.quantize import SPIKING
    from spikebert.hardware.reference import ReferenceExecutor, encode_tokens

    convs = [p for p in inventory if p.kind == "lava-nc Conv"]
    sources = sorted({p.source for p in convs})
    pops = [n for n, node in graph.nodes.items() if isinstance(node, SPIKING)]
    record = tuple(s for s in sources if s in graph.nodes and not isinstance(graph.nodes[s], nir.Threshold))
    ex = ReferenceExecutor(graph)
    lava_ops = {p.name: 0.0 for p in convs}
    neuron_lava = neuron_custom = 0.0
    T = ex.time_steps
    for i in range(0, len(ids), batch_size):
        batch = ids[i:i + batch_size]
        enc = encode_tokens(graph, batch)
        mask = enc.mask if enc.mask is not None else np.ones(batch.shape, bool)  # (B, L)
        run = ex.run(batch, record=record)
        spikes = {s: run.spikes[s] for s in record}
        spikes.update({n: np.broadcast_to(x, (T, *x.shape)) for n, x in enc.sources.items()})  # host sources
        for p in convs:
            c_out = np.shape(graph.nodes[p.nodes[0]].weight)[0]
            lava_ops[p.name] += float(np.count_nonzero(spikes[p.source] * mask[None, :, None, :])) * c_out
        real = float(mask.sum())
        neuron_lava += sum(np.shape(graph.nodes[n].v_threshold)[0] for n in pops) * real * T
        first = graph.nodes[enc.first_node]
        if isinstance(first, nir.Threshold):  # the encoder's threshold units, once per sentence (a membrane
            neuron_custom += first.threshold.shape[0] * real  # student's encoder sends currents: no neurons)
    custom_ops = {}
    for name, a in ex.activity.nodes.items():
        node = graph.nodes[name]
        if isinstance(node, SBSpikeAttention):
            custom_ops[name] = a.qk_accumulates + a.av_accumulates
        elif isinstance(node, SBTokenMean):
            custom_ops[name] = a.input_nonzeros
        elif isinstance(node, (nir.Affine, nir.Linear)) and not any(name in p.nodes for p in convs):
            custom_ops[name] = a.input_nonzeros * np.shape(node.weight)[0]
    total_lava, total_custom = sum(lava_ops.values()), sum(custom_ops.values())
    return {"synaptic_ops_lava_nc": total_lava, "synaptic_ops_custom": total_custom,
            "synaptic_ops_share_lava_nc": total_lava / (total_lava + total_custom),
            "synaptic_ops_custom_by_node": custom_ops,
            "neuron_updates_lava_nc": neuron_lava, "neuron_updates_custom": neuron_custom,
            "neuron_updates_share_lava_nc": neuron_lava / (neuron_lava + neuron_custom),
            "lava_nc_conv_processes": len(convs)}


def main(argv=None) -> int:
    prepare_lava()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--limit", type=int, default=0, help="first N dev sentences (0 = all 872)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--attention-bias", type=float, default=1.0, help="make_student's: Q, K, V fire more")
    p.add_argument("--modes", default="float,fixed")
    p.add_argument("--checkpoint", default=None,
                   help="a trained student's model.pt instead of the freshly initialised one")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from spikebert.contract.fileio import atomic_write_text
    from spikebert.contract.nirfile import read_graph
    from spikebert.data import load_split
    from spikebert.hardware.lava_runner import run_lava
    from spikebert.hardware.quantize import quantize_graph
    from spikebert.hardware.reference import ReferenceExecutor
    from spikebert.workflows import tokenize_for_graph

    result: dict = {**provenance(),
                    "threads": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")},
                    "student": "freshly initialised (spikebert.testing make_student, seed "
                               f"{args.seed}, attention_bias {args.attention_bias}): no trained student on this "
                               "machine; accuracy is chance, the build is what is measured"}
    with tempfile.TemporaryDirectory(prefix="deployable-") as tmp:
        if args.checkpoint:
            from spikebert.students import load_student

            graph_path = Path(tmp) / "student.nir"
            subprocess.run([str(Path(sys.executable).with_name("spikebert-export")), args.checkpoint, "-o",
                            str(graph_path)], check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
            student, payload = load_student(args.checkpoint)
            cfg = {k: v for k, v in dataclasses.asdict(student.cfg).items() if not isinstance(v, (list, dict))}
            result["student"] = (f"trained: {args.checkpoint} (selected dev accuracy "
                                 f"{payload['metrics'].get('dev_accuracy')})")
        else:
            graph_path, cfg = make_graph(Path(tmp), seed=args.seed, attention_bias=args.attention_bias)
        graph = read_graph(graph_path)
        result["student_config"] = cfg
        dataset = load_split("sst-2", "dev")
        n = len(dataset) if args.limit <= 0 else min(args.limit, len(dataset))
        ids = tokenize_for_graph(graph, dataset.sentences[:n])
        labels = np.array(dataset.labels[:n])
        result["sentences"], result["batch_size"] = n, args.batch_size
        for mode in args.modes.split(","):
            g = quantize_graph(graph) if mode == "fixed" else graph
            entry: dict = {}
            result[mode] = entry
            t0 = time.perf_counter()
            ref = ReferenceExecutor(g)
            ref_logits = ref.run_batches(ids, batch_size=args.batch_size, progress=False)
            entry["reference_s"] = round(time.perf_counter() - t0, 1)
            entry["accuracy_reference"] = float((ref_logits.argmax(-1) == labels).mean())
            for fuse in ("blocks", "deploy"):
                t0 = time.perf_counter()
                run = run_lava(g, ids, batch_size=args.batch_size, fuse=fuse, progress=False)
                wall = time.perf_counter() - t0
                logits = run.logits
                entry[fuse] = {"wall_s": round(wall, 1), "compile_s": round(run.compile_seconds, 1),
                               "run_s": round(run.run_seconds, 1), "processes": run.num_processes,
                               "steps": run.num_steps, "output_latency": run.output_latency,
                               "logits_bit_equal_reference": bool(np.array_equal(logits, ref_logits)),
                               "max_logit_diff_vs_reference": float(np.abs(logits - ref_logits).max()),
                               "predictions_equal_reference": float((logits.argmax(-1) == ref_logits.argmax(-1)).mean())}
                log.info("%s %s: %s", mode, fuse, entry[fuse])
            if mode == "fixed" or "fixed" not in args.modes:
                from spikebert.hardware.lava_deploy import build_deploy  # noqa: F401  (the inventory's source)

                inventory = _inventory(g, ids[:2])
                entry["processes_by_kind"] = _by_kind(inventory)
                t0 = time.perf_counter()
                result["shares"] = operation_shares(g, inventory, ids, batch_size=args.batch_size)
                result["shares"]["counted_on"] = f"{mode} graph, reference executor ({time.perf_counter() - t0:.0f} s)"
            atomic_write_text(Path(args.out), json.dumps(result, indent=1) + "\n")
    result["load_average_at_end"] = load_average()
    atomic_write_text(Path(args.out), json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1)[:3000])
    return 0


def _inventory(graph, ids):
    """The deployable build's process inventory (built, not run)."""
    from lava.proc.io.sink import PyReceiveModelFloat, RingBuffer

    from spikebert.hardware.lava_runner import _batched, _token_source
    from spikebert.hardware.nir_to_lava import build_network
    from spikebert.hardware.reference import encode_tokens

    enc = encode_tokens(graph, ids)
    mask = enc.mask if enc.mask is not None else np.ones(ids.shape, bool)
    source = _token_source(_batched(enc.spikes, len(ids)), 4, None)
    extra = {n: _token_source(_batched(x, len(ids)), 4, None, name=n) for n, x in enc.positions.items()}
    net = build_network(graph, source_node=enc.first_node, source=source, batch=len(ids), n_batches=1,
                        time_steps=int(graph.metadata.get("time_steps", 1)), dt=graph.metadata.get("dt"),
                        masks=_batched(mask, len(ids)), fuse="deploy", extra_sources=extra)
    del PyReceiveModelFloat, RingBuffer
    return net.inventory


def _by_kind(inventory) -> dict:
    kinds: dict[str, int] = {}
    for p in inventory:
        kinds[p.kind] = kinds.get(p.kind, 0) + 1
    return kinds


if __name__ == "__main__":
    raise SystemExit(main())
