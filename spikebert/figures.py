"""Figures of the student: spiking-attention maps, firing rates, and accuracy over a swept parameter.

The ``plot_*`` functions draw NumPy arrays onto a new matplotlib :class:`~matplotlib.figure.Figure`
(Agg canvas, no pyplot state) and return it; :func:`save_figure` writes it as PNG and PDF, each file
atomically. The ``*_figures`` functions run the student (hooks of :mod:`spikebert.recording`), draw
and save: they are what ``spikebert plot`` calls.

Attention maps are the integer coincidence counts ``A = Q K^T`` of eq. SSA (``spikebert.model``):
``A[i, j]`` is the number of channels of a head in which query token i and key token j spike in the
same step, summed over the T steps or one panel per step (as Figure 4 of SpikeBERT, Lv et al.).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from spikebert.contract.errors import MissingFileError, SpikebertError
from spikebert.contract.fileio import atomic_write
from spikebert.model import SpikeBERT
from spikebert.recording import record_attention, record_spikes, step_rates
from spikebert.tokenize import Batcher

FORMATS = ("png", "pdf")
DPI = 150
PANEL_INCHES = 2.8  # smallest side of one heat-map panel
PANEL_MAX_INCHES = 9.0  # largest: a 128-token panel stays a page wide
TOKEN_INCHES = 0.15  # room for one token tick label, so long sentences stay readable
MAX_COLUMNS = 4  # panels per row before wrapping
ANNOTATE_CELLS = 120  # write the values into heat maps with at most this many cells


def _panel_inches(tokens: int) -> float:
    return min(max(PANEL_INCHES, TOKEN_INCHES * tokens), PANEL_MAX_INCHES)


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _panels(n: int, cols: int, *, width: float, height: float, title: str) -> tuple[Figure, np.ndarray]:
    """A figure with ``n`` panels, ``cols`` to a row: (figure, the (rows, cols) axes); spare ones hidden."""
    rows = math.ceil(n / cols)
    fig = _figure(width * cols + 1.0, height * rows + (0.4 if title else 0))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_axis_off()
    if title:
        fig.suptitle(title)
    return fig, axes


def save_figure(fig: Figure, out_dir: str | Path, stem: str) -> list[Path]:
    """Write ``out_dir/stem.png`` and ``out_dir/stem.pdf`` (each atomically); their paths."""
    paths = []
    for fmt in FORMATS:
        path = Path(out_dir) / f"{stem}.{fmt}"
        atomic_write(path, lambda tmp, fmt=fmt: fig.savefig(tmp, format=fmt, dpi=DPI))
        paths.append(path)
    return paths


# ---- drawing -------------------------------------------------------------------------------------

def plot_attention(counts: np.ndarray, tokens: Sequence[str], *, heads: Sequence[int] | None = None,
                   per_step: bool = False, title: str = "") -> Figure:
    """Token x token coincidence counts of one block for one sentence.

    ``counts`` (T, H, L, L) as :func:`spikebert.recording.attention_counts` for one sample, rows the
    query tokens, columns the key tokens; ``tokens`` the L tick labels. One panel per head (summed
    over the steps), or with ``per_step`` one row per head and one column per step. ``heads``:
    which heads to draw (default all). One colour scale for all panels.
    """
    counts = np.asarray(counts, dtype=float)
    if counts.ndim != 4 or counts.shape[2] != counts.shape[3] or counts.shape[2] != len(tokens):
        raise SpikebertError(f"attention counts must be (T, H, L, L) with L = {len(tokens)} tokens, got {counts.shape}")
    T, H = counts.shape[:2]
    heads = list(range(H)) if heads is None else list(heads)
    if not heads or any(not 0 <= h < H for h in heads):
        raise SpikebertError(f"heads {heads}: the block has heads 0..{H - 1}")
    maps = counts[:, heads] if per_step else counts[:, heads].sum(axis=0, keepdims=True)  # (T or 1, h, L, L)
    panels = [(t, h) for h in range(len(heads)) for t in range(maps.shape[0])]  # (step, head) in reading order
    cols = T if per_step else min(len(heads), MAX_COLUMNS)  # per step: one row per head
    side = _panel_inches(len(tokens))
    fig, axes = _panels(len(panels), cols, width=side, height=side, title=title)
    vmax = max(float(maps.max()), 1.0)
    for k, (step, head) in enumerate(panels):
        r, c = divmod(k, cols)
        ax = axes[r, c]
        image = ax.imshow(maps[step, head], cmap="viridis", vmin=0, vmax=vmax, interpolation="nearest")
        ax.set_xticks(range(len(tokens)), tokens, rotation=90, fontsize=7)
        ax.set_yticks(range(len(tokens)), tokens if c == 0 else [], fontsize=7)
        ax.set_title(f"head {heads[head]}" + (f", step {step + 1}" if per_step else f", {T} steps"), fontsize=9)
        ax.set_xlabel("key token")
        if c == 0:
            ax.set_ylabel("query token")
    fig.colorbar(image, ax=axes, shrink=0.8, label="coincident spikes (Q K$^T$)")
    return fig


def plot_token_rates(rates: dict[str, np.ndarray], tokens: Sequence[str], *, title: str = "") -> Figure:
    """Neurons x tokens firing rates of one sentence, one panel per population.

    ``rates``: population name -> (C, L), the share of the T steps in which neuron c fires at token l;
    ``tokens`` the L tick labels.
    """
    if not rates:
        raise SpikebertError("plot_token_rates needs at least one population")
    for name, r in rates.items():
        if np.ndim(r) != 2 or np.shape(r)[1] != len(tokens):
            raise SpikebertError(f"rates of {name!r} must be (neurons, {len(tokens)} tokens), got {np.shape(r)}")
    fig, axes = _panels(len(rates), min(len(rates), MAX_COLUMNS), width=_panel_inches(len(tokens)),
                        height=PANEL_INCHES, title=title)
    for ax, (name, r) in zip(axes.flat, rates.items()):
        image = ax.imshow(np.asarray(r, dtype=float), aspect="auto", cmap="magma", vmin=0, vmax=1,
                          interpolation="nearest")
        ax.set_xticks(range(len(tokens)), tokens, rotation=90, fontsize=7)
        ax.set_ylabel("neuron")
        ax.set_title(name, fontsize=9)
    fig.colorbar(image, ax=axes, shrink=0.8, label="firing rate over the steps")
    return fig


def plot_step_rates(rates: dict[str, np.ndarray], *, title: str = "") -> Figure:
    """Population x step heat map of firing rates: ``rates`` name -> (T,), rows in the given order."""
    if not rates:
        raise SpikebertError("plot_step_rates needs at least one population")
    names = list(rates)
    grid = np.stack([np.asarray(rates[n], dtype=float) for n in names])  # (populations, T)
    P, T = grid.shape
    fig = _figure(2.0 + 0.6 * T + 1.0, 0.8 + 0.25 * P + (0.4 if title else 0))
    ax = fig.subplots()
    image = ax.imshow(grid, aspect="auto", cmap="magma", vmin=0, vmax=max(float(grid.max()), 1e-3),
                      interpolation="nearest")
    ax.set_xticks(range(T), [str(t + 1) for t in range(T)])
    ax.set_yticks(range(P), names, fontsize=7)
    ax.set_xlabel("time step")
    if P * T <= ANNOTATE_CELLS:
        for (p, t), value in np.ndenumerate(grid):
            ax.text(t, p, f"{value:.2f}", ha="center", va="center", fontsize=6,
                    color="white" if value < 0.5 * grid.max() else "black")
    fig.colorbar(image, ax=ax, label="firing rate")
    if title:
        fig.suptitle(title)
    return fig


def load_results(path: str | Path) -> list[dict]:
    """Rows of a sweep's results: a CSV with a header, or JSON holding a list of objects (or an
    object with such a list under ``"results"``)."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"results file {path} does not exist")
    if path.suffix.lower() == ".csv":
        with path.open(encoding="utf-8", newline="") as f:
            return list(csv.DictReader(f))
    data = json.loads(path.read_text(encoding="utf-8"))
    rows = data.get("results") if isinstance(data, dict) else data
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise SpikebertError(f"{path}: expected a list of objects, or an object with one under 'results'")
    return rows


def _number(rows: list[dict], i: int, key: str) -> float:
    try:
        return float(rows[i][key])
    except KeyError:
        raise SpikebertError(f"result row {i} has no {key!r}; its keys are {sorted(rows[i])}") from None
    except (TypeError, ValueError):
        raise SpikebertError(f"result row {i}: {key}={rows[i][key]!r} is not a number") from None


def plot_sweep(rows: list[dict], *, x: str, y: str, group: str | None = None, title: str = "") -> Figure:
    """``y`` against ``x`` over result rows (:func:`load_results`), one line per value of ``group``."""
    if not rows:
        raise SpikebertError("plot_sweep got no result rows")
    lines: dict[str, list[tuple[float, float]]] = {}
    for i, row in enumerate(rows):
        label = "" if group is None else f"{group}={row.get(group)}"
        lines.setdefault(label, []).append((_number(rows, i, x), _number(rows, i, y)))
    fig = _figure(5.0, 3.5)
    ax = fig.subplots()
    for label, points in lines.items():
        xs, ys = zip(*sorted(points))
        ax.plot(xs, ys, marker="o", label=label or None)
    xs = sorted({p[0] for points in lines.values() for p in points})
    if all(v.is_integer() for v in xs) and len(xs) <= 16:
        ax.set_xticks(xs, [str(int(v)) for v in xs])
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.grid(alpha=0.3)
    if group is not None:
        ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return fig


# ---- the student's figures -----------------------------------------------------------------------

def _one_sentence(model: SpikeBERT, batcher: Batcher, sentence: str) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """ids (1, L), the positions of its real tokens, and their token strings."""
    ids = batcher.encode([sentence])["input_ids"]  # (1, L)
    real = model.token_mask(ids)[0].nonzero().squeeze(1)
    return ids, real, batcher.tokenizer.convert_ids_to_tokens(ids[0, real].tolist())


def attention_figures(model: SpikeBERT, batcher: Batcher, sentence: str, out_dir: str | Path, *,
                      layer: int | None = None, head: int | None = None, per_step: bool = False) -> list[Path]:
    """Coincidence maps of ``sentence`` for every block (or block ``layer``), all heads (or ``head``):
    ``attention_b{i}.png/.pdf``. Pads are not drawn."""
    depth = model.cfg.depth
    if layer is not None and not 0 <= layer < depth:
        raise SpikebertError(f"layer {layer}: the student has blocks 0..{depth - 1}")
    ids, real, tokens = _one_sentence(model, batcher, sentence)
    maps = record_attention(model, ids)
    paths = []
    for i in range(depth) if layer is None else [layer]:
        counts = maps[f"b{i}_attn"][:, 0][..., real, :][..., real].cpu().numpy()  # (T, H, L', L')
        fig = plot_attention(counts, tokens, heads=None if head is None else [head], per_step=per_step,
                             title=f"block {i}: spiking attention Q K$^T$")
        paths += save_figure(fig, out_dir, f"attention_b{i}" + ("" if head is None else f"_h{head}"))
    return paths


def rate_figures(model: SpikeBERT, batcher: Batcher, sentences: Sequence[str], out_dir: str | Path, *,
                 batch_size: int = 64) -> list[Path]:
    """Firing rates: ``rates_by_step`` (population x step over all ``sentences``, real tokens only)
    and ``rates_by_token_b{i}`` (neurons x tokens of the first sentence, one figure per block)."""
    if not sentences:
        raise SpikebertError("rate_figures needs at least one sentence")
    batches = (batcher.encode(sentences[i:i + batch_size])["input_ids"] for i in range(0, len(sentences), batch_size))
    rates = {name: r.numpy() for name, r in step_rates(model, batches).items()}
    paths = save_figure(plot_step_rates(rates, title=f"firing rates over {len(sentences)} sentences"),
                        out_dir, "rates_by_step")
    ids, real, tokens = _one_sentence(model, batcher, sentences[0])
    spikes = record_spikes(model, ids)
    for i in range(model.cfg.depth):
        block = {name: s[:, 0][:, real].mean(dim=0).T.cpu().numpy()  # (T, L', C) -> (C, L')
                 for name, s in spikes.items() if name.startswith(f"b{i}_")}
        fig = plot_token_rates(block, tokens, title=f"block {i}: {sentences[0][:60]!r}")
        paths += save_figure(fig, out_dir, f"rates_by_token_b{i}")
    return paths


def sweep_figure(results: str | Path, out_dir: str | Path, *, x: str, y: str, group: str | None = None) -> list[Path]:
    """``y`` against ``x`` from a results JSON/CSV: ``sweep_{y}_vs_{x}.png/.pdf``."""
    fig = plot_sweep(load_results(results), x=x, y=y, group=group, title=Path(results).stem)
    return save_figure(fig, out_dir, f"sweep_{y}_vs_{x}")
