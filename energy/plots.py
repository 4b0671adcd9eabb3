"""Figures of an energy report, PNG and PDF: per-layer input firing rates, and the energy of each
layer split by what it pays for (MACs, ACs, neuron updates, weight reads, state accesses), one
panel per profile. Drawn on matplotlib Figures with the Agg canvas (no pyplot, no global backend)
and written atomically."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from spikebert.energy import lemaire
from spikebert.energy.report import PJ_PER_MJ, EnergyReport

FIGURE_FORMATS = ("png", "pdf")
DPI = 150
INPUT_COLOURS = {"spike": "tab:blue", "integer": "tab:orange", "real": "tab:grey"}
# component -> LayerCount field (also the keyword of Profile.energy_pj)
COMPONENTS = {
    "MACs": "macs",
    "ACs (synaptic ops)": "acs",
    "neuron updates": "neuron_updates",
    "weight reads": "weight_reads",
    "state reads + writes": "state_accesses",
}


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def firing_rate_figure(report: EnergyReport):
    """Bars: share of nonzero inputs of every synaptic layer, coloured by input kind."""
    rows = [r for r in report.layers if r.kind != "neurons"]
    fig = _figure(max(6.0, 0.35 * len(rows) + 2), 3.6)
    ax = fig.add_subplot()
    ax.bar(range(len(rows)), [r.input_rate for r in rows], color=[INPUT_COLOURS.get(r.input_kind, "k") for r in rows])
    ax.set_xticks(range(len(rows)), [r.name for r in rows], rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("input firing rate (nonzero share)")
    ax.set_ylim(0, 1)
    from matplotlib.patches import Patch

    kinds = [k for k in INPUT_COLOURS if any(r.input_kind == k for r in rows)]
    ax.legend(handles=[Patch(color=INPUT_COLOURS[k], label=f"{k} input") for k in kinds], fontsize=8)
    ax.set_title(f"Per-layer input firing rates (T = {report.time_steps}, {report.samples} sentences)", fontsize=10)
    return fig


def energy_breakdown_figure(report: EnergyReport):
    """Stacked bars per layer (and neuron population): energy per sample by component, one panel per profile."""
    rows, profiles = report.layers, report.profiles
    fig = _figure(max(6.0, 0.35 * len(rows) + 2), 2.6 * len(profiles) + 0.8)
    axes = fig.subplots(len(profiles), 1, sharex=True, squeeze=False)[:, 0]
    x = range(len(rows))
    for ax, p in zip(axes, profiles):
        bottom = [0.0] * len(rows)
        if p.per_layer:  # the estimator's own components
            priced = lemaire.price_rows(rows, time_steps=report.time_steps, neurons_in_model=True)
            parts = {lemaire.COMPONENT_LABELS[c]: [r.energy_pj[c] / PJ_PER_MJ for r in priced]
                     for c in lemaire.COMPONENTS}
        else:
            parts = {label: [p.energy_pj(**{count: getattr(r, count)}) / PJ_PER_MJ for r in rows]
                     for label, count in COMPONENTS.items()}
        for label, values in parts.items():
            if any(values):
                ax.bar(x, values, bottom=bottom, label=label)
                bottom = [b + v for b, v in zip(bottom, values)]
        ax.set_ylim(0, 1.08 * max(bottom) or 1.0)  # stacked zero bars pin the autoscale to the tallest top
        ax.set_ylabel("mJ per sample")
        ax.set_title(f"{p.name}: student {report.student_pj(p) / PJ_PER_MJ:.4g} mJ, teacher "
                     f"{report.teacher_pj(p) / PJ_PER_MJ:.4g} mJ (residual as {report.residual_convention})",
                     fontsize=9)
        ax.legend(fontsize=7)
    axes[-1].set_xticks(list(x), [r.name for r in rows], rotation=60, ha="right", fontsize=8)
    return fig


def write_plots(report: EnergyReport, out_dir: Path, *, stem: str = "energy") -> list[Path]:
    """``STEM_firing_rates`` and ``STEM_breakdown``, each as PNG and PDF; returns the paths written."""
    from spikebert.contract.fileio import atomic_write

    paths = []
    for name, make in (("firing_rates", firing_rate_figure), ("breakdown", energy_breakdown_figure)):
        fig = make(report)
        for ext in FIGURE_FORMATS:
            path = Path(out_dir) / f"{stem}_{name}.{ext}"
            atomic_write(path, lambda tmp, fig=fig, ext=ext: fig.savefig(tmp, format=ext, dpi=DPI))
            paths.append(path)
    return paths


def front_figure(points):
    """Accuracy against energy per sentence (log scale), one panel per profile: students as dots (labelled),
    the teacher as a star (a dashed vertical line when its accuracy is not given), the Pareto front as a
    staircase through its points (``spikebert.energy.front``)."""
    profiles = list(dict.fromkeys(p.profile for p in points))
    cols = min(len(profiles), 2)
    rows = -(-len(profiles) // cols)
    fig = _figure(5.2 * cols, 4.0 * rows)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[len(profiles):]:
        ax.set_visible(False)
    for ax, name in zip(axes, profiles):
        pts = [p for p in points if p.profile == name]
        for p in pts:
            if p.teacher and p.accuracy is None:
                ax.axvline(p.energy_mj, color="tab:red", ls="--", lw=1)
                ax.annotate(p.label, (p.energy_mj, 0.02), xycoords=("data", "axes fraction"), rotation=90,
                            fontsize=7, color="tab:red", ha="right", va="bottom")
                continue
            ax.scatter([p.energy_mj], [100 * p.accuracy], marker="*" if p.teacher else "o",
                       s=120 if p.teacher else 36, color="tab:red" if p.teacher else "tab:blue",
                       edgecolor="k" if p.on_front else "none", zorder=3)
            ax.annotate(p.label, (p.energy_mj, 100 * p.accuracy), textcoords="offset points", xytext=(4, 4),
                        fontsize=7)
        front = sorted((p for p in pts if p.on_front), key=lambda p: p.energy_mj)
        if front:
            xs, ys = [front[0].energy_mj], [100 * front[0].accuracy]
            for p in front[1:]:
                xs += [p.energy_mj, p.energy_mj]
                ys += [ys[-1], 100 * p.accuracy]
            ax.plot(xs, ys, color="k", lw=1, zorder=2, label="Pareto front")
            ax.legend(fontsize=7, loc="lower right")
        ax.set_xscale("log")
        ax.set_xlabel(f"energy per sentence (mJ), {name}")
        ax.set_ylabel("accuracy (%)")
        ax.set_title(name, fontsize=10)
    return fig


def write_front(points, out_dir: Path, *, stem: str = "front") -> list[Path]:
    """``STEM.png``, ``STEM.pdf``, ``STEM.tex`` (the table of :func:`spikebert.energy.front.front_latex`) and
    ``STEM.json`` (the points)."""
    from spikebert.contract.fileio import atomic_write, atomic_write_text
    from spikebert.energy.front import front_latex

    fig = front_figure(points)
    paths = []
    for ext in FIGURE_FORMATS:
        path = Path(out_dir) / f"{stem}.{ext}"
        atomic_write(path, lambda tmp, ext=ext: fig.savefig(tmp, format=ext, dpi=DPI))
        paths.append(path)
    tex, js = Path(out_dir) / f"{stem}.tex", Path(out_dir) / f"{stem}.json"
    atomic_write_text(tex, front_latex(points, label=stem))
    atomic_write_text(js, json.dumps([dataclasses.asdict(p) for p in points], indent=1) + "\n")
    return paths + [tex, js]
