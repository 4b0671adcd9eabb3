"""Energy-accuracy fronts across energy reports: points, Pareto membership, a LaTeX table.

One point per (report, profile): the student's energy per sentence under that profile and its
accuracy on the report's sentences; the teacher's energy per profile comes from the same reports
(one point per distinct teacher count), with an accuracy only when given. Energies of different
profiles are not comparable, so each profile has its own front. A point is on the front when no
other point of its profile is at least as accurate for at most its energy and better in one of the
two (minimise energy, maximise accuracy); equal points are all on it.
"""

from __future__ import annotations

import dataclasses
import math

from spikebert.contract.errors import SpikebertError
from spikebert.energy.report import PJ_PER_MJ, EnergyReport, _tex

TEACHER = "teacher"
BULLET = "$\\bullet$"


@dataclasses.dataclass(frozen=True)
class FrontPoint:
    """One model under one profile: energy per sentence (mJ), accuracy (None: the teacher's, not given)."""

    label: str
    profile: str
    energy_mj: float
    accuracy: float | None
    teacher: bool = False
    on_front: bool = False


def pareto_front(points: list[tuple[float, float]]) -> list[bool]:
    """For (energy, accuracy) pairs: True where no other pair dominates (energy <=, accuracy >=, one strict)."""
    out = []
    for i, (e, a) in enumerate(points):
        dominated = any(e2 <= e and a2 >= a and (e2 < e or a2 > a) for j, (e2, a2) in enumerate(points) if j != i)
        out.append(not dominated)
    return out


def common_profiles(reports: list[EnergyReport]) -> list[str]:
    """The profiles every report priced, in the first report's order."""
    names = [p.name for p in reports[0].profiles]
    return [n for n in names if all(n in {p.name for p in r.profiles} for r in reports[1:])]


def front_points(reports: list[tuple[str, EnergyReport]], *, profiles: list[str] | None = None,
                 teacher_accuracy: float | None = None) -> list[FrontPoint]:
    """Points of every (labelled) report under each profile (default: those all reports share), teachers
    included, with their front membership per profile."""
    if not reports:
        raise SpikebertError("a front needs at least one energy report")
    labels = [label for label, _ in reports]
    if len(set(labels)) != len(labels):
        raise SpikebertError(f"labels {labels} name a model twice: give each report its own --label")
    if teacher_accuracy is not None and not 0 <= teacher_accuracy <= 1:
        raise SpikebertError(f"teacher accuracy {teacher_accuracy}: a share in [0, 1]")
    missing = [label for label, r in reports if r.accuracy is None]
    if missing:
        raise SpikebertError(f"{missing} carry no accuracy: write them with `spikebert energy` on a split (or with "
                             "--accuracy beside --activity)")
    shared = common_profiles([r for _, r in reports])
    names = shared if profiles is None else profiles
    if not names:
        raise SpikebertError("the reports share no energy profile: name one they all have with --profile")
    for name in names:
        lacking = [label for label, r in reports if name not in {p.name for p in r.profiles}]
        if lacking:
            raise SpikebertError(f"profile {name!r} is not in the reports {lacking}; they share {shared}")
    out = []
    for name in names:
        pts = []
        for label, r in reports:
            profile = next(p for p in r.profiles if p.name == name)
            pts.append(FrontPoint(label, name, r.student_pj(profile) / PJ_PER_MJ, r.accuracy))
        teachers: list[float] = []
        for _, r in reports:
            profile = next(p for p in r.profiles if p.name == name)
            e = r.teacher_pj(profile) / PJ_PER_MJ
            if not any(math.isclose(e, t, rel_tol=1e-9) for t in teachers):
                teachers.append(e)
        for i, e in enumerate(teachers):
            label = TEACHER if len(teachers) == 1 else f"{TEACHER} {i + 1}"
            pts.append(FrontPoint(label, name, e, teacher_accuracy, teacher=True))
        ranked = [(p.energy_mj, p.accuracy) for p in pts if p.accuracy is not None]
        flags = iter(pareto_front(ranked))
        out += [dataclasses.replace(p, on_front=next(flags)) if p.accuracy is not None else p for p in pts]
    return out


def front_latex(points: list[FrontPoint], *, label: str = "front") -> str:
    """One booktabs table: per profile, every model's energy per sentence, accuracy and front membership."""
    out = ["% spikebert energy-accuracy front; needs \\usepackage{booktabs}", "\\begin{table}[t]", "\\centering",
           "\\caption{Accuracy against energy per sentence, per energy profile; $\\bullet$: on the Pareto front "
           "(no other model of the profile is as accurate for less energy). Teacher accuracy: "
           + ("given" if any(p.teacher and p.accuracy is not None for p in points) else "not given") + ".}",
           f"\\label{{tab:{label}}}", "\\begin{tabular}{llrrc}", "\\toprule",
           "Profile & Model & Energy (mJ) & Accuracy (\\%) & Front \\\\"]
    profiles = list(dict.fromkeys(p.profile for p in points))
    for name in profiles:
        out.append("\\midrule")
        for p in sorted((p for p in points if p.profile == name), key=lambda p: p.energy_mj):
            acc = "--" if p.accuracy is None else f"{100 * p.accuracy:.2f}"
            mark = BULLET if p.on_front else ""
            out.append(f"{_tex(name)} & {_tex(p.label)} & {p.energy_mj:.4g} & {acc} & {mark} \\\\")
    out += ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
    return "\n".join(out) + "\n"
