"""The weight average of a finished SST-2 student run, evaluated three ways on dev from its saved training states.

A training state (``state.pt``, written after each epoch) holds the trained weights and, with
``DistillConfig.ema_decay`` > 0, their exponential moving average. For each state given, this scores on all
dev sentences:

- ``raw``: the trained weights (what the run logged as ``raw_dev_accuracy``);
- ``average``: the average with its batch-norm statistics averaged along with the weights
  (``ema_bn_batches = 0``, what the run itself evaluated);
- ``average_bn_recomputed``: the average with its batch-norm statistics recomputed for its weights on
  ``--bn-batches`` training batches (``spikebert.distill.recompute_batch_norm``, as ``ema_bn_batches = N``).

It also reports, per batch norm, the running variance of the raw and averaged weights, which shows why the
averaged statistics fail. Nothing is trained, and the test split is not read.

    python benchmarks/weight_average_sst2.py runs/rel8-ema/state-epoch2.pt runs/rel8-ema/sst2-student/state.pt \
        --run runs/rel8-ema/sst2-student --teacher runs/full/teacher/model --out benchmarks/results/weight_average_sst2.json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from provenance import load_average, provenance  # benchmarks/, beside this script


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("states", nargs="+", type=Path, help="training states (state.pt) of one run, one per epoch")
    p.add_argument("--run", type=Path, required=True, help="the run folder (its student and distill configs)")
    p.add_argument("--teacher", required=True, help="the fine-tuned teacher folder the run distilled from (tokenizer)")
    p.add_argument("--task", default="sst-2", help="the run's task (default %(default)s)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--bn-batches", type=int, default=100, help="training batches for the recomputed statistics")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    started = provenance()

    import torch

    from spikebert.config import DistillConfig, StudentConfig
    from spikebert.contract.errors import SpikebertError
    from spikebert.contract.fileio import atomic_write_text
    from spikebert.data import load_split
    from spikebert.distill import recompute_batch_norm
    from spikebert.engine import STATE_FORMAT
    from spikebert.evaluation import evaluate_spikebert
    from spikebert.io import load_checkpoint
    from spikebert.model import SpikeBERT, TokenBatchNorm
    from spikebert.teacher import load_tokenizer
    from spikebert.tokenize import Batcher

    if args.bn_batches < 1:
        p.error("--bn-batches must be at least 1")
    student_cfg = StudentConfig.from_json(args.run / "student_config.json")
    distill_cfg = DistillConfig.from_json(args.run / "distill_config.json")
    if distill_cfg.augment is not None:
        p.error(f"{args.run} trained on augmented sentences; this script recomputes statistics on the plain split")
    tokenizer = load_tokenizer(args.teacher)
    if len(tokenizer) != student_cfg.vocab_size:
        p.error(f"{args.teacher}'s tokenizer has {len(tokenizer)} tokens, the student {student_cfg.vocab_size}")
    batcher = Batcher(tokenizer, max_len=student_cfg.max_len, pad_to_max=not student_cfg.mask_padding)
    dev = load_split(args.task, "dev", data_dir=args.data_dir)
    train = load_split(args.task, "train", data_dir=args.data_dir).subset(distill_cfg.train_samples, seed=distill_cfg.seed)

    def student(prefix: str, weights: dict) -> SpikeBERT:
        model = SpikeBERT(student_cfg)
        model.load_state_dict({k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}, strict=True)
        return model.eval()

    def variances(model: SpikeBERT) -> dict[str, float]:
        return {name: float(m.running_var.mean()) for name, m in model.named_modules() if isinstance(m, TokenBatchNorm)}

    rows = []
    for path in args.states:
        state = load_checkpoint(path, expected_format=STATE_FORMAT)
        if "ema" not in state:
            raise SpikebertError(f"{path} holds no weight average (trained with ema_decay = 0)")
        loop = state["loop"]
        raw, average = student("student.", state["model"]), student("module.student.", state["ema"])
        row = {"state": str(path), "epoch": loop["epoch"], "global_step": loop["global_step"],
               "averaged_steps": int(state["ema"]["n_averaged"]),
               "first_step_weight_in_average": distill_cfg.ema_decay ** (int(state["ema"]["n_averaged"]) - 1),
               "mean_running_var": {"raw": variances(raw), "average": variances(average)}}
        t0 = time.perf_counter()
        row["raw"] = evaluate_spikebert(raw, batcher, dev)["accuracy"]
        row["average"] = evaluate_spikebert(average, batcher, dev)["accuracy"]
        used = recompute_batch_norm(average, batcher, train, batches=args.bn_batches,
                                    batch_size=distill_cfg.batch_size, seed=distill_cfg.seed)
        average.eval()
        row["average_bn_recomputed"] = evaluate_spikebert(average, batcher, dev)["accuracy"]
        row["mean_running_var"]["average_bn_recomputed"] = variances(average)
        row["bn_batches"] = used
        row["seconds"] = round(time.perf_counter() - t0, 1)
        rows.append(row)
        print(json.dumps({k: row[k] for k in ("epoch", "raw", "average", "average_bn_recomputed")}), flush=True)
        del state

    result = {**started, "load_average_at_end": load_average(), "run": str(args.run), "task": args.task,
              "dev_examples": len(dev),
              "ema_decay": distill_cfg.ema_decay, "bn_batches": args.bn_batches, "batch_size": distill_cfg.batch_size,
              "threads": torch.get_num_threads(), "states": rows}
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
