"""Lava on SST-2 dev: float and Loihi fixed point against the reference executor and PyTorch,
and the fused build's speed against the naive one (one process per NIR node, one sentence at a time).

    python benchmarks/lava_sst2.py --checkpoint runs/bench/sst-2/student-batchnorm/model.pt \\
        --out benchmarks/results/lava_sst2.json

Everything is measured in this one run, on this machine, with the load it had (recorded).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]  # package, helpers

from provenance import load_average, provenance  # noqa: E402

from spikebert.hardware.lava_runner import prepare_lava  # noqa: E402

log = logging.getLogger("lava_sst2")


def main(argv=None) -> int:
    prepare_lava()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", default="sst-2")
    p.add_argument("--limit", type=int, default=0, help="first N dev sentences (0 = all)")
    p.add_argument("--naive-sentences", type=int, default=32, help="sentences for the naive-vs-fused speed comparison")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from spikebert.contract.fileio import atomic_write_text
    from spikebert.contract.nirfile import read_graph
    from spikebert.data import load_split
    from spikebert.hardware.lava_runner import run_lava
    from spikebert.hardware.quantize import quantize_graph
    from spikebert.hardware.reference import ReferenceExecutor
    from spikebert.workflows import export_nir, tokenize_for_graph, torch_logits

    out = Path(args.out)
    nir_path = Path(args.checkpoint).with_suffix(".nir")  # beside model.pt
    graph = read_graph(export_nir(model=Path(args.checkpoint), out=nir_path))
    data = load_split(args.data, "dev")
    n = len(data) if args.limit <= 0 else min(args.limit, len(data))
    ids = tokenize_for_graph(graph, data.sentences[:n])
    labels = np.array(data.labels[:n])
    B = args.batch_size
    result: dict = {**provenance(),
                    "checkpoint": args.checkpoint, "sentences": n, "batch_size": B}

    def reference(g):
        ex = ReferenceExecutor(g)
        t = time.perf_counter()
        logits = ex.run_batches(ids, batch_size=B, progress=False)
        return logits, ex.activity, time.perf_counter() - t

    t_logits = torch_logits(args.checkpoint, ids, batch_size=B)
    for mode, g in (("float", graph), ("fixed", quantize_graph(graph))):
        t = time.perf_counter()
        lava = run_lava(g, ids, batch_size=B, fuse="blocks")
        wall = time.perf_counter() - t
        ref_logits, ref_activity, ref_s = reference(g)
        pred = lava.logits.argmax(-1)
        result[mode] = {
            "lava_wall_s": round(wall, 2), "lava_compile_s": round(lava.compile_seconds, 2),
            "lava_run_s": round(lava.run_seconds, 2), "processes": lava.num_processes, "steps": lava.num_steps,
            "accuracy": float((pred == labels).mean()),
            "predictions_equal_reference": float((pred == ref_logits.argmax(-1)).mean()),
            "logits_bit_equal_reference": bool(np.array_equal(lava.logits, ref_logits)),
            "max_logit_diff_vs_reference": float(np.abs(lava.logits - ref_logits).max()),
            "spike_counts_equal_reference": lava.activity.same_counts(ref_activity),
            "reference_s": round(ref_s, 2),
            "predictions_equal_pytorch_fp64": float((pred == t_logits.argmax(-1)).mean()),
            "max_logit_diff_vs_pytorch_fp64": float(np.abs(lava.logits - t_logits).max()),
        }
        log.info("%s: %s", mode, result[mode])
    drop = result["fixed"]["accuracy"] - result["float"]["accuracy"]
    result["fixed_minus_float_accuracy_points"] = round(100 * drop, 2)

    k = min(args.naive_sentences, n)
    speed = {}
    for name, fuse, batch in (("naive", "none", 1), ("fused", "blocks", B)):
        t = time.perf_counter()
        run = run_lava(graph, ids[:k], batch_size=batch, fuse=fuse)
        wall = time.perf_counter() - t
        speed[name] = {"fuse": fuse, "batch_size": batch, "processes": run.num_processes, "sentences": k,
                       "wall_s": round(wall, 2), "run_s": round(run.run_seconds, 2),
                       "sentences_per_s": round(k / wall, 2), "logits": run.logits}
    naive, fused = speed["naive"].pop("logits"), speed["fused"].pop("logits")
    result["naive_vs_fused"] = {
        **speed, "predictions_equal": float((naive.argmax(-1) == fused.argmax(-1)).mean()),
        "max_logit_diff": float(np.abs(naive - fused).max()),  # the float readout's BLAS order varies with batch size
        "speedup": round(speed["fused"]["sentences_per_s"] / speed["naive"]["sentences_per_s"], 1)}
    result["load_average_at_end"] = load_average()
    atomic_write_text(out, json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
