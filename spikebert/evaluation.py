"""Accuracy and per-layer firing rates of a student on a labelled split."""

from __future__ import annotations

import torch
from torch import nn
from tqdm.auto import tqdm

from spikebert.contract.errors import SpikebertError
from spikebert.data import TextDataset
from spikebert.energy.counting import PopulationActivity
from spikebert.model import SpikeBERT
from spikebert.neurons import LIF, HeavisideEncoder
from spikebert.spikingbert import SpikingBERT
from spikebert.tokenize import Batcher


@torch.no_grad()
def evaluate_spikebert(model: SpikeBERT, batcher: Batcher, data: TextDataset, *, batch_size: int = 64,
                       firing_rates: bool = False, time_steps: int | None = None) -> dict:
    """``{"accuracy", "predictions", "firing_rates"?}`` of a SpikeBERT student.

    A firing rate is the fraction of (neuron, real token, step) triples that spike, for every LIF
    population and the input encoder, named by module path; pads are left out. ``time_steps`` must
    be None: SpikeBERT's T is part of its config. (Both kinds: ``spikebert.students``.)
    """
    if time_steps is not None:
        raise SpikebertError("time_steps: a SpikeBERT student runs at its config's T (set time_steps in its config)")
    model.eval()
    device = next(model.parameters()).device
    counts: dict[str, list[float]] = {}
    mask_box: dict[str, torch.Tensor] = {}
    hooks = []
    if firing_rates:
        def hook(name):
            def record(module: nn.Module, inputs, out: torch.Tensor) -> None:
                m = mask_box["mask"].to(out.dtype)  # (B, L)
                spikes = out if out.dim() == 4 else out.unsqueeze(0)  # (T, B, L, C)
                fired = (spikes * m[None, :, :, None]).sum().item()
                total = m.sum().item() * spikes.shape[0] * spikes.shape[-1]
                c = counts.setdefault(name, [0.0, 0.0])
                c[0] += fired
                c[1] += total
            return record

        hooks = [m.register_forward_hook(hook(name)) for name, m in model.named_modules()
                 if isinstance(m, (LIF, HeavisideEncoder))]
    preds = []
    try:
        for idx in tqdm(torch.arange(len(data)).split(batch_size), desc=f"eval {data.name}", unit="batch", leave=False):
            enc, _ = batcher(data, idx)
            ids = enc["input_ids"].to(device)
            mask_box["mask"] = enc["attention_mask"].to(device)
            preds.append(model(ids).logits.argmax(-1).cpu())
    finally:
        for h in hooks:
            h.remove()
    pred = torch.cat(preds)
    labels = torch.tensor(data.labels)
    result = {"accuracy": float((pred == labels).float().mean()), "predictions": pred.tolist()}
    if firing_rates:
        result["firing_rates"] = {k: f / t for k, (f, t) in counts.items()}
    return result


def _population_batch(model: SpikingBERT, ids: torch.Tensor, mask: torch.Tensor, T: int,
                      record: bool) -> tuple[torch.Tensor, PopulationActivity | None]:
    """(logits, this batch's population spike counts or None) of the simulation at T steps."""
    out = model(ids, time_steps=T, record=record)
    if not record:
        return out.logits, None
    lengths = mask.sum(1).double()
    return out.logits, PopulationActivity(len(ids), T, float(lengths.sum()), float((lengths**2).sum()),
                                          out.spike_counts)


@torch.no_grad()
def record_populations(model: SpikingBERT, ids: torch.Tensor, *, batch_size: int = 64, graph=None,
                       time_steps: int | None = None) -> tuple[torch.Tensor, PopulationActivity]:
    """(logits (N, C), population spike counts) of a SpikingBERT student's simulation on token ids
    (N, L) at ``time_steps`` (default its trained T). ``graph`` must be None: it has no whole graph."""
    if graph is not None:
        raise SpikebertError("a SpikingBERT student has no whole NIR graph to record on; its spikes come from "
                             "its PyTorch simulation")
    model.eval()
    device = next(model.parameters()).device
    T = model.cfg.time_steps if time_steps is None else time_steps
    activity, logits = PopulationActivity(0, T, 0.0, 0.0, {}), []
    for chunk in ids.split(batch_size):
        chunk = chunk.to(device)
        batch_logits, counts = _population_batch(model, chunk, model.token_mask(chunk), T, True)
        logits.append(batch_logits.cpu())
        activity = activity.add(counts)
    return torch.cat(logits), activity


@torch.no_grad()
def evaluate_spikingbert(model: SpikingBERT, batcher: Batcher, data: TextDataset, *, batch_size: int = 64,
                         firing_rates: bool = False, time_steps: int | None = None) -> dict:
    """``{"accuracy", "predictions", "firing_rates"?, "activity"?}`` of a SpikingBERT student: its
    PyTorch simulation at ``time_steps`` (default its trained T); firing rates per IF population over
    real tokens, and the population spike counts (:class:`~spikebert.energy.counting.PopulationActivity`)."""
    model.eval()
    device = next(model.parameters()).device
    T = model.cfg.time_steps if time_steps is None else time_steps
    activity = PopulationActivity(0, T, 0.0, 0.0, {})
    preds = []
    for idx in tqdm(torch.arange(len(data)).split(batch_size), desc=f"eval {data.name}", unit="batch", leave=False):
        enc, _ = batcher(data, idx)
        logits, counts = _population_batch(model, enc["input_ids"].to(device), enc["attention_mask"].to(device), T,
                                           firing_rates)
        preds.append(logits.argmax(-1).cpu())
        if firing_rates:
            activity = activity.add(counts)
    pred = torch.cat(preds)
    result = {"accuracy": float((pred == torch.tensor(data.labels)).float().mean()), "predictions": pred.tolist()}
    if firing_rates:
        result["firing_rates"] = {k: activity.rate(k) for k in activity.populations}
        result["activity"] = activity
    return result


def shuffle_tokens(ids: torch.Tensor, mask: torch.Tensor, *, seed: int) -> torch.Tensor:
    """Each row's real tokens between the first and the last ([CLS] ... [SEP]) in a seeded random
    order; pads and the two ends stay. An order-blind student gives the same predictions."""
    g = torch.Generator().manual_seed(seed)
    out = ids.clone()
    for row in range(len(ids)):
        n = int(mask[row].sum())
        if n > 3:
            inner = torch.randperm(n - 2, generator=g) + 1
            out[row, 1:n - 1] = ids[row, inner]
    return out


@torch.no_grad()
def shuffled_accuracy(model, batcher: Batcher, data: TextDataset, *, batch_size: int = 64, seed: int = 0) -> dict:
    """Accuracy with every sentence's tokens shuffled (:func:`shuffle_tokens`), and the share of
    predictions that the shuffle changed. Any student kind (its logits from ``model(ids)``)."""
    model.eval()
    device = next(model.parameters()).device
    correct = changed = 0
    for idx in tqdm(torch.arange(len(data)).split(batch_size), desc="eval shuffled", unit="batch", leave=False):
        enc, labels = batcher(data, idx)
        ids, mask = enc["input_ids"], enc["attention_mask"]
        plain = model(ids.to(device)).logits.argmax(-1).cpu()
        shuffled = model(shuffle_tokens(ids, mask, seed=seed + int(idx[0])).to(device)).logits.argmax(-1).cpu()
        correct += int((shuffled == labels).sum())
        changed += int((shuffled != plain).sum())
    return {"shuffled_accuracy": correct / len(data), "shuffle_changed_predictions": changed / len(data)}
