"""Accuracy and per-layer firing rates of a student on a labelled split."""

from __future__ import annotations

import torch
from torch import nn

from spikebert.contract.errors import SpikebertError
from spikebert.data import TextDataset
from spikebert.model import SpikeBERT
from spikebert.neurons import LIF, HeavisideEncoder
from spikebert.spikingbert import SpikingBERT
from spikebert.tokenize import Batcher


@torch.no_grad()
def evaluate_student(model: SpikeBERT | SpikingBERT, batcher: Batcher, data: TextDataset, *, batch_size: int = 64,
                     firing_rates: bool = False, time_steps: int | None = None) -> dict:
    """``{"accuracy", "predictions", "firing_rates"?}``.

    A firing rate is the fraction of (neuron, real token, step) triples that spike, for every LIF
    population and the input encoder (SpikeBERT, named by module path) or every IF population
    (SpikingBERT, named as it records them); pads are left out. ``time_steps`` overrides the
    SpikingBERT student's T (SpikeBERT's is part of its config).
    """
    if isinstance(model, SpikingBERT):
        return _evaluate_spiking(model, batcher, data, batch_size=batch_size, firing_rates=firing_rates,
                                 time_steps=time_steps)
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
        for idx in torch.arange(len(data)).split(batch_size):
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


def _evaluate_spiking(model: SpikingBERT, batcher: Batcher, data: TextDataset, *, batch_size: int,
                      firing_rates: bool, time_steps: int | None) -> dict:
    model.eval()
    device = next(model.parameters()).device
    from spikebert.energy.counting import PopulationActivity

    T = model.cfg.time_steps if time_steps is None else time_steps
    activity = PopulationActivity(0, T, 0.0, 0.0, {})
    preds = []
    for idx in torch.arange(len(data)).split(batch_size):
        enc, _ = batcher(data, idx)
        out = model(enc["input_ids"].to(device), time_steps=T, record=firing_rates)
        preds.append(out.logits.argmax(-1).cpu())
        if firing_rates:
            lengths = enc["attention_mask"].sum(1).double()
            activity = activity.add(PopulationActivity(len(idx), T, float(lengths.sum()),
                                                       float((lengths**2).sum()), out.spike_counts))
    pred = torch.cat(preds)
    result = {"accuracy": float((pred == torch.tensor(data.labels)).float().mean()), "predictions": pred.tolist()}
    if firing_rates:
        result["firing_rates"] = {k: activity.rate(k) for k in activity.populations}
        result["activity"] = activity
    return result
