"""Benchmark: NIR/ONNX export time, NIR → torch import, and the reference executor on a dev split.

For a trained student (``model.pt``): export to NIR (and ONNX), read the file back, run the NumPy
reference executor over the whole split, and compare it with the PyTorch student in float64
(predictions, logits) and with the NIR → torch import. Writes
``benchmarks/results/export_reference.json`` with the exact command, machine and date.

    .venv/bin/python benchmarks/export_reference.py runs/bench/sst-2/student-main/model.pt --data sst-2
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from provenance import load_average, provenance  # benchmarks/, beside this script (first on sys.path when run)

from spikebert.contract.fileio import atomic_write_text

log = logging.getLogger("benchmarks.export_reference")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("--data", default="sst-2")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--split", default="dev", choices=["dev", "train"])
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--no-onnx", action="store_true")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "export_reference.json"))
    args = p.parse_args()
    started = provenance()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from spikebert.contract.nirfile import read_graph
    from spikebert.converters.nir_to_torch import import_graph
    from spikebert.data import load_split
    from spikebert.hardware.reference import ReferenceExecutor
    from spikebert.students import load_student
    from spikebert.workflows import export_nir, tokenize_for_graph

    tmp = Path(tempfile.mkdtemp(prefix="spikebert-bench-"))
    timings = {}
    t0 = time.perf_counter()
    nir_path = export_nir(model=Path(args.model), out=tmp / "model.nir")
    timings["export_nir_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    graph = read_graph(nir_path)
    timings["read_nir_s"] = time.perf_counter() - t0
    if not args.no_onnx:
        from spikebert.converters.onnx_export import export_student_onnx

        model32, _ = load_student(args.model)
        t0 = time.perf_counter()
        check = export_student_onnx(model32, tmp / "model.onnx")
        timings["export_onnx_and_check_s"] = time.perf_counter() - t0
        timings["onnx_check"] = dataclasses.asdict(check)

    data = load_split(args.data, args.split, data_dir=args.data_dir)
    ids = tokenize_for_graph(graph, data.sentences)
    labels = np.array(data.labels)
    executor = ReferenceExecutor(graph)
    t0 = time.perf_counter()
    ref = executor.run_batches(ids, batch_size=args.batch_size)
    timings["reference_s"] = time.perf_counter() - t0

    model, _ = load_student(args.model)
    model = model.double()
    t0 = time.perf_counter()
    with torch.no_grad():
        torch64 = torch.cat([model(torch.from_numpy(ids[i:i + args.batch_size])).logits
                             for i in range(0, len(ids), args.batch_size)]).numpy()
    timings["torch_fp64_s"] = time.perf_counter() - t0
    imported = import_graph(graph)
    with torch.no_grad():
        imp = torch.cat([imported(torch.from_numpy(ids[i:i + args.batch_size]))
                         for i in range(0, len(ids), args.batch_size)]).numpy()

    n = len(ids)
    result = {
        **started, "load_average_at_end": load_average(),
        "model": args.model,
        "data": f"{args.data}/{args.split}",
        "sentences": n,
        "nodes": len(graph.nodes),
        "timings": timings,
        "reference_sentences_per_s": n / timings["reference_s"],
        "reference_accuracy": float((ref.argmax(-1) == labels).mean()),
        "torch_accuracy": float((torch64.argmax(-1) == labels).mean()),
        "reference_vs_torch_fp64": {"prediction_agreement": float((ref.argmax(-1) == torch64.argmax(-1)).mean()),
                                    "max_abs_logit_diff": float(np.abs(ref - torch64).max())},
        "import_vs_torch_fp64": {"prediction_agreement": float((imp.argmax(-1) == torch64.argmax(-1)).mean()),
                                 "max_abs_logit_diff": float(np.abs(imp - torch64).max())},
    }
    atomic_write_text(Path(args.out), json.dumps(result, indent=2, default=str) + "\n")
    print(json.dumps({k: result[k] for k in ("sentences", "reference_sentences_per_s", "reference_accuracy",
                                             "reference_vs_torch_fp64", "import_vs_torch_fp64", "timings")},
                     indent=2, default=str))


if __name__ == "__main__":
    main()
