"""One resumable, seeded training loop for every stage (teacher, pre-training, task distillation).

Built on HF ``accelerate``: one process on CPU here; ``accelerate launch`` gives multi-GPU DDP and
``mixed_precision`` fp16/bf16 for users with GPUs. The loop is deterministic given the seed:

- epoch ``e`` visits the examples in ``randperm(n, seed * 1000 + e)``, cut into batches; with
  several processes, batch ``j`` goes to process ``j % world_size``;
- the state file (``state.pt``: weights, optimizer, scheduler, RNG, position in the epoch) is
  written atomically every ``checkpoint_every`` steps and after each epoch, and holds only
  tensors and plain values, so it loads with ``weights_only=True``;
- resuming restores all of it and skips the batches already done, so an interrupted run ends
  with the same weights as an uninterrupted one;
- metrics go to ``metrics.jsonl``, one JSON object per line; on resume, lines written after the
  saved step are dropped so the log matches the state;
- with ``ema_decay`` > 0, an exponential moving average of the weights (batch-norm statistics
  included; ``torch.optim.swa_utils.AveragedModel``) is updated after every step, kept in the state
  file, and is the model that is evaluated, selected and handed to ``on_best``; the trained
  weights' own metrics are logged beside it with a ``raw_`` prefix.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from spikebert.config import ConfigBase
from spikebert.contract.errors import SpikebertError
from spikebert.contract.fileio import atomic_write_text
from spikebert.io import load_checkpoint, save_checkpoint

log = logging.getLogger(__name__)

STATE_FORMAT = "spikebert-train-state/1"
STATE_FILE = "state.pt"
METRICS_FILE = "metrics.jsonl"


@dataclasses.dataclass(frozen=True, kw_only=True)
class LoopConfig:
    """What the loop needs from a stage config."""

    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    seed: int
    schedule: str = "cosine"  # "cosine" (to 0, per step), "linear" (warm-up, then linear decay) or "constant"
    warmup_ratio: float = 0.0
    max_grad_norm: float = 0.0  # 0 = no clipping
    mixed_precision: str = "no"  # accelerate: "no" | "fp16" | "bf16"
    checkpoint_every: int = 200  # steps; 0 = only at epoch ends
    log_every: int = 20


@dataclasses.dataclass
class LoopState:
    epoch: int = 0  # epochs completed
    step_in_epoch: int = 0  # batches completed in the current epoch (this process)
    global_step: int = 0
    best_metric: float = -math.inf
    best_epoch: int = 0
    seconds: float = 0.0  # wall time spent in ``fit`` over every invocation (compute budget accounting)


StepFn = Callable[[nn.Module, torch.Tensor], tuple[torch.Tensor, dict[str, float]]]
EvalFn = Callable[[nn.Module], dict[str, float]]
BestFn = Callable[[nn.Module, dict[str, float]], None]


class Interrupted(RuntimeError):
    """Raised when a run stops early on purpose (``stop_after_steps``/``stop_after_minutes``)."""


def epoch_batches(n: int, *, batch_size: int, seed: int, epoch: int, rank: int = 0,
                  world: int = 1) -> list[torch.Tensor]:
    """Index batches of one epoch for one process: a seeded permutation cut into batches."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1000 + epoch))
    batches = list(order.split(batch_size))
    per_rank = len(batches) // world if world > 1 else len(batches)  # equal step counts under DDP
    if per_rank == 0:
        raise SpikebertError(f"{n} examples make {len(batches)} batches of {batch_size}, fewer than the {world} processes")
    return batches[rank::world][:per_rank]


def _schedule(kind: str, total: int, warmup: int) -> Callable[[int], float]:
    if kind == "cosine":
        return lambda s: 0.5 * (1.0 + math.cos(math.pi * min(s, total) / max(total, 1)))
    if kind == "linear":
        return lambda s: s / max(warmup, 1) if s < warmup else max(0.0, (total - s) / max(total - warmup, 1))
    if kind == "constant":
        return lambda s: s / max(warmup, 1) if s < warmup else 1.0
    raise SpikebertError(f"unknown schedule {kind!r}; use 'cosine', 'linear' or 'constant'")


def fingerprint_differences(saved: dict, current: dict, defaults: dict[str, dict]) -> tuple[list[str], list[str]]:
    """(keys that differ, "config.field" names only ``current`` has, at their defaults). A config field missing
    from ``saved`` but at its default in ``current`` was added to the code after the run started: the same run.
    Any other difference, a field removed from the code included, is a different run."""
    differ, added = [], []
    for key in sorted(set(saved) | set(current)):
        old, new = saved.get(key), current.get(key)
        if old == new:
            continue
        if not (isinstance(old, dict) and isinstance(new, dict) and key in defaults):
            differ.append(key)
            continue
        fresh = {f for f in set(new) - set(old) if f in defaults[key] and new[f] == defaults[key][f]}
        if any(old.get(f) != new.get(f) or (f in old) != (f in new) for f in (set(old) | set(new)) - fresh):
            differ.append(key)
        else:
            added += [f"{key}.{f}" for f in sorted(fresh)]
    return differ, added


class Trainer:
    """Runs ``step_fn`` over seeded batches of ``n_examples`` indices, with eval after each epoch.

    ``model`` holds every trained parameter (wrap several modules in an ``nn.ModuleDict``).
    ``fingerprint`` identifies the run (configs, data size): resuming a different run is refused. Configs are
    given as :class:`~spikebert.config.ConfigBase` objects: a field added to a config after the run started
    is accepted when it holds its default (the behaviour the run had), and named in the log.
    """

    def __init__(self, *, run_dir: Path, model: nn.Module, cfg: LoopConfig, n_examples: int,
                 fingerprint: dict[str, Any], desc: str, resume: bool = True, ema_decay: float = 0.0) -> None:
        from accelerate import Accelerator, DistributedDataParallelKwargs

        if n_examples < 1:
            raise SpikebertError(f"{desc}: no training examples")
        if not 0.0 <= ema_decay < 1.0:
            raise SpikebertError(f"{desc}: ema_decay must be in [0, 1) (0 = off), got {ema_decay}")
        self.run_dir, self.cfg, self.n, self.desc = Path(run_dir), cfg, n_examples, desc
        # stage 1 leaves the classifier unused: DDP must not wait for its gradients
        self.acc = Accelerator(mixed_precision=cfg.mixed_precision,
                               kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])
        # the batches of a step depend on the process count: resuming under another one is another run
        defaults = {k: v.field_defaults() for k, v in fingerprint.items() if isinstance(v, ConfigBase)}
        fingerprint = {**{k: v.to_dict() if isinstance(v, ConfigBase) else v for k, v in fingerprint.items()},
                       "loop": dataclasses.asdict(cfg), "n": n_examples, "processes": self.acc.num_processes}
        self.fingerprint = json.loads(json.dumps(fingerprint, sort_keys=True, default=str))
        self.fingerprint_defaults = json.loads(json.dumps(defaults, sort_keys=True, default=str))
        decay, no_decay = [], []
        for name, p in model.named_parameters():
            if p.requires_grad:
                (no_decay if p.ndim < 2 or "norm" in name else decay).append(p)
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
        self.steps_per_epoch = len(epoch_batches(n_examples, batch_size=cfg.batch_size, seed=cfg.seed, epoch=0,
                                                 rank=self.acc.process_index, world=self.acc.num_processes))
        total = self.total_steps = cfg.epochs * self.steps_per_epoch
        warmup = math.ceil(cfg.warmup_ratio * total)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, _schedule(cfg.schedule, total, warmup))
        self.model, self.opt = self.acc.prepare(model, opt)
        self.sched = sched
        self.ema = None
        if ema_decay > 0:  # the fingerprint's stage config holds ema_decay, so a resume keeps it
            from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

            self.ema = AveragedModel(self.acc.unwrap_model(self.model), use_buffers=True,
                                     multi_avg_fn=get_ema_multi_avg_fn(ema_decay))
        self.state = LoopState()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._remove_stale_temporaries()
        if resume and (self.run_dir / STATE_FILE).is_file():
            self._load_state()
        else:
            if (self.run_dir / STATE_FILE).is_file() and self.acc.is_main_process:
                old = self.run_dir / (STATE_FILE + ".old")
                log.warning("%s: starting over in %s; the previous state is kept as %s", desc, self.run_dir, old)
                os.replace(self.run_dir / STATE_FILE, old)
            if self.acc.is_main_process:  # a fresh run owns its log (lines of a crashed earlier start go)
                (self.run_dir / METRICS_FILE).unlink(missing_ok=True)

    # -- state ---------------------------------------------------------------------------------
    def progress(self) -> float:
        """Where the next step stands in the run: 0 at the first step, 1 at the last (for schedules)."""
        return min(1.0, self.state.global_step / max(1, self.total_steps - 1))

    def _save_state(self) -> None:
        if not self.acc.is_main_process:
            return
        payload = {
            "format": STATE_FORMAT,
            "fingerprint": json.dumps(self.fingerprint, sort_keys=True),
            "model": self.acc.unwrap_model(self.model).state_dict(),
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "loop": dataclasses.asdict(self.state),
            "torch_rng": torch.get_rng_state(),  # rank 0's; other DDP ranks restore it too (documented)
            "grad_scaler": self.acc.scaler.state_dict() if self.acc.scaler is not None else {},
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }
        if self.ema is not None:
            payload["ema"] = self.ema.state_dict()
        save_checkpoint(self.run_dir / STATE_FILE, payload)

    def _remove_stale_temporaries(self) -> None:
        """A kill during an atomic write leaves its temporary file (``.state.pt.*.tmp``, ``.model.pt.*.tmp``)
        beside the target; the finished file was never replaced, so the temporary is garbage."""
        for tmp in self.run_dir.glob(".*.pt.*.tmp"):
            if tmp.is_file():
                log.info("removing %s, left by an interrupted write", tmp.name)
                tmp.unlink(missing_ok=True)

    def _load_state(self) -> None:
        path = self.run_dir / STATE_FILE
        payload = load_checkpoint(path, expected_format=STATE_FORMAT)
        if payload["fingerprint"] != json.dumps(self.fingerprint, sort_keys=True):
            differ, added = fingerprint_differences(json.loads(payload["fingerprint"]), self.fingerprint,
                                                    self.fingerprint_defaults)
            if differ:
                raise SpikebertError(
                    f"{path} belongs to a different run ({', '.join(differ)} differ from this one); "
                    "pass another output folder, or --no-resume to start over in this one"
                )
            log.info("%s: %s added since this run started, at their defaults: the same run, resumed", self.desc,
                     ", ".join(added))
        try:
            self.acc.unwrap_model(self.model).load_state_dict(payload["model"], strict=True)
        except RuntimeError as err:
            raise SpikebertError(f"{path}: saved weights do not match the model: {err}") from err
        if self.ema is not None:
            if "ema" not in payload:
                raise SpikebertError(f"{path} holds no weight average, but this run keeps one (ema_decay > 0)")
            try:
                self.ema.load_state_dict(payload["ema"], strict=True)
            except RuntimeError as err:
                raise SpikebertError(f"{path}: the saved weight average does not match the model: {err}") from err
        self.opt.load_state_dict(payload["optimizer"])
        self.sched.load_state_dict(payload["scheduler"])
        self.state = LoopState(**payload["loop"])
        if payload.get("grad_scaler") and self.acc.scaler is not None:
            self.acc.scaler.load_state_dict(payload["grad_scaler"])
        torch.set_rng_state(payload["torch_rng"])
        if payload["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(payload["cuda_rng"])
        self._truncate_metrics()
        log.info("%s: resumed at epoch %d, step %d (global step %d)", self.desc, self.state.epoch + 1,
                 self.state.step_in_epoch, self.state.global_step)

    def _truncate_metrics(self) -> None:
        path = self.run_dir / METRICS_FILE
        if not path.is_file() or not self.acc.is_main_process:
            return
        keep = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                log.warning("%s: dropping a cut-off line (the run was killed while writing it)", path)
                continue
            if record.get("global_step", 0) <= self.state.global_step:
                keep.append(line)
        atomic_write_text(path, "".join(line + "\n" for line in keep))

    def log_metrics(self, record: dict[str, Any]) -> None:
        if self.acc.is_main_process:
            with (self.run_dir / METRICS_FILE).open("a", encoding="utf-8") as f:
                f.write(json.dumps({"global_step": self.state.global_step, **record}) + "\n")

    # -- loop ----------------------------------------------------------------------------------
    def fit(self, step_fn: StepFn, eval_fn: EvalFn, on_best: BestFn, *, stop_after_steps: int = 0,
            stop_after_minutes: float = 0.0, keep: str = "best",
            calibrate_fn: Callable[[nn.Module], None] | None = None) -> LoopState:
        """Train to the end (or to a stop limit, raising ``Interrupted`` after saving the state).

        ``keep``: "best" calls ``on_best`` when an epoch's metric beats every earlier one; "last" after
        every epoch (for stages whose metric does not judge what they train), so ``best_metric`` and
        ``best_epoch`` are the last epoch's. ``calibrate_fn`` is called on the weight average (if any) before
        it is evaluated, e.g. to recompute its batch-norm statistics; what it changes is saved with the state."""
        if keep not in ("best", "last"):
            raise SpikebertError(f"keep must be 'best' or 'last', got {keep!r}")
        cfg, st = self.cfg, self.state
        t_start, steps_this_run = time.monotonic(), 0
        seconds_before = st.seconds

        def clock() -> None:
            st.seconds = seconds_before + time.monotonic() - t_start

        while st.epoch < cfg.epochs:
            batches = epoch_batches(self.n, batch_size=cfg.batch_size, seed=cfg.seed, epoch=st.epoch,
                                    rank=self.acc.process_index, world=self.acc.num_processes)
            self.model.train()
            bar = tqdm(batches, desc=f"{self.desc} epoch {st.epoch + 1}/{cfg.epochs}", initial=st.step_in_epoch,
                       total=len(batches), disable=not self.acc.is_local_main_process, leave=False)
            t_log = time.monotonic()
            for idx in batches[st.step_in_epoch:]:
                with self.acc.autocast():
                    loss, parts = step_fn(self.model, idx)
                self.opt.zero_grad(set_to_none=True)
                self.acc.backward(loss)
                if cfg.max_grad_norm > 0:
                    self.acc.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
                self.opt.step()
                if not self.acc.optimizer_step_was_skipped:  # fp16: the scaler skipped an overflow
                    self.sched.step()
                    if self.ema is not None:
                        self.ema.update_parameters(self.acc.unwrap_model(self.model))
                st.step_in_epoch += 1
                st.global_step += 1
                steps_this_run += 1
                bar.update(1)
                bar.set_postfix(loss=f"{parts['loss']:.4f}")
                if st.global_step % cfg.log_every == 0:
                    now = time.monotonic()
                    self.log_metrics({"epoch": st.epoch + 1, "step_in_epoch": st.step_in_epoch,
                                      "lr": self.sched.get_last_lr()[0], **parts,
                                      "s_per_step": (now - t_log) / cfg.log_every})
                    t_log = now
                if cfg.checkpoint_every and st.global_step % cfg.checkpoint_every == 0:
                    clock()
                    self._save_state()
                stop = (stop_after_steps and steps_this_run >= stop_after_steps) or (
                    stop_after_minutes and time.monotonic() - t_start > 60 * stop_after_minutes)
                if self.acc.num_processes > 1:  # one decision for all ranks, or DDP would hang
                    stop = bool(self.acc.reduce(torch.tensor(float(stop), device=self.acc.device), "max"))
                if stop:
                    bar.close()
                    clock()
                    self._save_state()
                    raise Interrupted(f"{self.desc}: stopped at global step {st.global_step}; "
                                      f"run the same command again to resume from {self.run_dir}")
            bar.close()
            judged = self.acc.unwrap_model(self.model) if self.ema is None else self.ema.module
            if self.ema is not None and calibrate_fn is not None:
                calibrate_fn(judged)
            metrics = eval_fn(judged)
            if self.ema is not None:  # the trained weights' own figures, for comparison
                raw = eval_fn(self.acc.unwrap_model(self.model))
                metrics.update({f"raw_{k}": v for k, v in raw.items() if k != "metric"})
            st.epoch += 1
            st.step_in_epoch = 0
            improved = keep == "last" or metrics["metric"] > st.best_metric
            if improved:
                st.best_metric, st.best_epoch = metrics["metric"], st.epoch
                if self.acc.is_main_process:
                    on_best(judged, metrics)
            clock()
            self.log_metrics({"epoch": st.epoch, "eval": metrics, "best": improved, "seconds": st.seconds})
            log.info("%s epoch %d/%d: %s%s", self.desc, st.epoch, cfg.epochs,
                     ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()), " (best)" if improved else "")
            self._save_state()
        return st
