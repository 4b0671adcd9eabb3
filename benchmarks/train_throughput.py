"""Benchmark: student training throughput on this machine, and its share of the fp32 GEMM peak.

In one run: (a) the peak fp32 GEMM rate, best ``torch.mm`` GFLOP/s on square matrices at the
current torch thread count; (b) full training steps of SpikeBERT students (forward, cross entropy
on the logits plus MSE on the block outputs, backward, AdamW step as in ``spikebert.engine``) on
random token ids without padding, median over timed steps after warm-up; (c) tokens/s, the
analytic GEMM FLOPs of one step and the share of the peak they reach; (d) where one profiled
step spends its time (GEMM, LIF, LayerNorm, optimizer, ...).

Writes benchmarks/results/train_throughput.json with the exact command, machine and date.
Run with `.venv/bin/python benchmarks/train_throughput.py [--configs 256x2,384x4,768x2] [--steps 8]`.
Timings are wall clock: anything else running on the machine slows them (load average recorded);
with more threads than free cores, the many small elementwise ops (LIF, LayerNorm) suffer most.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import statistics
import time
from collections import defaultdict
from pathlib import Path

import torch
import torch.nn.functional as F
from provenance import load_average, provenance  # benchmarks/, beside this script
from tqdm import tqdm

from spikebert.config import StudentConfig
from spikebert.contract.fileio import atomic_write_text
from spikebert.model import SpikeBERT

log = logging.getLogger("train_throughput")

VOCAB = 30522  # BERT's uncased WordPiece vocabulary, as the distilled students use
HEADS = 8
TIME_STEPS = 4
GEMM_SIZES = (2048, 4096)
GEMM_REPEATS = 3
DEFAULT_OUT = Path(__file__).parent / "results" / "train_throughput.json"

# Profile categories by op or scope name: an op belongs to the category of the innermost of itself
# and its callers that matches (the elementwise ops inside FusedLIF count as LIF, the allocations
# inside layer_norm as LayerNorm); ops matching nothing are "other".
CATEGORIES = {
    "lif": ("FusedLIF", "ATanHeaviside"),
    "optimizer": ("Optimizer.",),
    "gemm": ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::matmul", "aten::linear"),
    "layernorm": ("aten::native_layer_norm", "aten::native_layer_norm_backward", "aten::layer_norm"),
    "embedding": ("aten::embedding", "aten::embedding_dense_backward", "aten::embedding_backward"),
}


def busy_warnings(threads: int) -> list[str]:
    """Warn when other work already occupies the cores this run's threads need."""
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if load + threads <= cores + 0.5:
        return []
    msg = (f"machine busy: 1-minute load {load:.1f} before the run on {cores} cores, {threads} torch threads; "
           "timings are inflated, the many small elementwise ops (LIF, LayerNorm) most")
    log.warning(msg)
    return [msg]


def gemm_peak(sizes=GEMM_SIZES, repeats=GEMM_REPEATS) -> dict[int, float]:
    """Best fp32 ``torch.mm`` GFLOP/s (2 n^3 FLOPs) per square size n."""
    best = {}
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        torch.mm(a, b)  # warm-up: thread pool, packing buffers
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            torch.mm(a, b)
            times.append(time.perf_counter() - t0)
        best[n] = 2 * n**3 / min(times) / 1e9
        log.info("fp32 GEMM %dx%d: best %.1f GFLOP/s of %d", n, n, best[n], repeats)
    return best


def gemm_flops_per_step(cfg: StudentConfig, batch: int, length: int) -> dict[str, int]:
    """Analytic GEMM FLOPs of one training step; backward = 2x forward (input and weight gradients).

    Linear(K -> N) on M rows: 2 M K N. Attention per head and (t, b): Q K^T is 2 L L dh and
    (Q K^T) V another 2 L L dh, i.e. 4 L^2 D over the heads. The embedding lookup is no GEMM.
    """
    D, H, T = cfg.dim, cfg.mlp_dim, cfg.time_steps
    rows = T * batch * length  # token-steps
    linear = cfg.depth * 2 * rows * (D * 3 * D + D * D + D * H + H * D)
    attention = cfg.depth * T * batch * 4 * length * length * D
    classifier = 2 * T * batch * D * cfg.num_classes
    forward = {"linear": linear, "attention": attention, "classifier": classifier}
    return {**{k: 3 * v for k, v in forward.items()}, "total": 3 * sum(forward.values())}


def make_optimizer(model: torch.nn.Module) -> torch.optim.Optimizer:
    """AdamW with spikebert.engine's parameter groups and the distillation stage's settings."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or "norm" in name else decay).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": 5e-3}, {"params": no_decay, "weight_decay": 0.0}],
                             lr=5e-4)


def make_step(cfg: StudentConfig, batch: int, length: int):
    """A model, its optimizer and a closure running one full training step on fixed random data."""
    torch.manual_seed(0)
    model = SpikeBERT(cfg).train()
    opt = make_optimizer(model)
    ids = torch.randint(1, cfg.vocab_size, (batch, length))  # id 0 is padding: none here
    labels = torch.randint(0, cfg.num_classes, (batch,))
    targets = [torch.randn(batch, length, cfg.dim) for _ in range(cfg.depth)]  # stand-in teacher features

    def step() -> None:
        out = model(ids)
        feat = sum(F.mse_loss(h, y) for h, y in zip(out.hidden, targets)) / cfg.depth
        loss = F.cross_entropy(out.logits, labels) + feat
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return model, step


def _matches(name: str, marker: str) -> bool:
    """aten ops by exact name; scopes (autograd functions, optimizer) by substring."""
    return name == marker if marker.startswith("aten::") else marker in name


def category(event) -> str:
    scope = event
    while scope is not None:
        for name, markers in CATEGORIES.items():
            if any(_matches(scope.name, m) for m in markers):
                return name
        scope = scope.cpu_parent
    return "other"


def time_split(step) -> dict:
    """Self CPU time of one profiled step by category, plus the largest ops left in 'other'."""
    from torch.profiler import ProfilerActivity, profile

    t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    wall = time.perf_counter() - t0
    seconds, other = defaultdict(float), defaultdict(float)
    for ev in prof.events():
        s = ev.self_cpu_time_total / 1e6
        cat = category(ev)
        seconds[cat] += s
        if cat == "other":
            other[ev.name] += s
    total = sum(seconds.values())
    top_other = sorted(other.items(), key=lambda kv: -kv[1])[:8]
    return {"profiled_step_s": wall, "profiled_self_cpu_s": total,
            "seconds": {k: round(v, 4) for k, v in sorted(seconds.items(), key=lambda kv: -kv[1])},
            "share": {k: round(v / total, 4) for k, v in sorted(seconds.items(), key=lambda kv: -kv[1])},
            "top_other_ops_s": {k: round(v, 4) for k, v in top_other}}


def bench_config(spec: str, *, batch: int, length: int, warmup: int, steps: int, peak: float) -> dict:
    try:
        dim, depth = (int(v) for v in spec.split("x"))
    except ValueError:
        raise ValueError(f"--configs entry {spec!r} is not DIMxDEPTH, e.g. 384x4") from None
    cfg = StudentConfig(vocab_size=VOCAB, dim=dim, depth=depth, heads=HEADS, time_steps=TIME_STEPS, max_len=length)
    model, step = make_step(cfg, batch, length)
    times = []
    for i in tqdm(range(warmup + steps), desc=f"D={dim} depth={depth}", leave=False):
        t0 = time.perf_counter()
        step()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    step_s = statistics.median(times)
    flops = gemm_flops_per_step(cfg, batch, length)
    achieved = flops["total"] / step_s / 1e9
    result = {
        "config": spec, "student": {k: v for k, v in dataclasses.asdict(cfg).items()
                                    if k in ("dim", "depth", "heads", "time_steps", "tau", "vocab_size")},
        "mlp_dim": cfg.mlp_dim, "parameters": sum(p.numel() for p in model.parameters()),
        "step_s": step_s, "step_s_min": min(times), "step_s_max": max(times),
        "tokens_per_s": batch * length / step_s, "token_steps_per_s": batch * length * cfg.time_steps / step_s,
        "gemm_gflop_per_step": flops["total"] / 1e9,
        "gemm_gflop_per_step_parts": {k: v / 1e9 for k, v in flops.items() if k != "total"},
        "achieved_gflops": achieved, "share_of_peak": achieved / peak,
        "time_split": time_split(step),
    }
    split = result["time_split"]["share"]
    log.info("%s: %.3f s/step, %.0f tokens/s, %.1f GEMM GFLOP/s = %.1f%% of peak; split %s", spec, step_s,
             result["tokens_per_s"], achieved, 100 * result["share_of_peak"],
             ", ".join(f"{k} {100 * v:.0f}%" for k, v in split.items()))
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", default="256x2,384x4,768x2", help="comma-separated DIMxDEPTH students")
    p.add_argument("--steps", type=int, default=8, help="timed training steps per config (median reported)")
    p.add_argument("--warmup", type=int, default=2, help="untimed training steps first")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--length", type=int, default=32, help="tokens per sentence")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(),
                   help="torch intra-op threads (default: torch's current count)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    if args.steps < 1 or args.warmup < 0 or args.threads < 1:
        raise ValueError(f"--steps and --threads must be >= 1 and --warmup >= 0, got {args.steps}, "
                         f"{args.threads} and {args.warmup}")
    torch.set_num_threads(args.threads)
    result = {**provenance(), "warnings": busy_warnings(args.threads)}
    peaks = gemm_peak()
    peak = max(peaks.values())
    result |= {"gemm_peak_gflops": peak, "gemm_peak_by_size": {str(n): g for n, g in peaks.items()},
               "settings": {"batch_size": args.batch_size, "length": args.length, "time_steps": TIME_STEPS,
                            "warmup": args.warmup, "steps": args.steps, "dtype": "float32",
                            "optimizer": "torch.optim.AdamW, default implementation (as spikebert.engine)"}}
    result["configs"] = [bench_config(spec, batch=args.batch_size, length=args.length, warmup=args.warmup,
                                      steps=args.steps, peak=peak)
                         for spec in tqdm(args.configs.split(","), desc="configs")]
    result["load_average_at_end"] = load_average()
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    log.info("wrote %s", args.out)


if __name__ == "__main__":
    main()
