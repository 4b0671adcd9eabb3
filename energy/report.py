"""Energy report (Markdown + JSON): per-layer rates and operations, student vs teacher energy."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from energy.counting import LayerCount
from energy.profiles import Profile

PJ_PER_MJ = 1e9


@dataclasses.dataclass
class EnergyReport:
    profile: Profile
    residual_convention: str
    layers: list[LayerCount]
    teacher_macs: float
    samples: int
    time_steps: int
    backend: str
    extra: dict

    @property
    def student_macs(self) -> float:
        return sum(r.macs for r in self.layers)

    @property
    def student_acs(self) -> float:
        return sum(r.acs for r in self.layers)

    @property
    def student_mj(self) -> float:
        return (self.student_macs * self.profile.e_mac_pj + self.student_acs * self.profile.e_ac_pj) / PJ_PER_MJ

    @property
    def teacher_mj(self) -> float:
        return self.teacher_macs * self.profile.e_mac_pj / PJ_PER_MJ

    @property
    def ratio(self) -> float:
        return self.student_mj / self.teacher_mj

    def to_dict(self) -> dict:
        return {
            "profile": dataclasses.asdict(self.profile),
            "residual_convention": self.residual_convention,
            "backend": self.backend,
            "samples": self.samples,
            "time_steps": self.time_steps,
            "student": {"macs": self.student_macs, "acs": self.student_acs, "energy_mj": self.student_mj,
                        "neuron_updates": sum(r.neuron_updates for r in self.layers)},
            "teacher": {"macs": self.teacher_macs, "energy_mj": self.teacher_mj},
            "energy_ratio_student_over_teacher": self.ratio,
            "layers": [dataclasses.asdict(r) for r in self.layers],
            **self.extra,
        }

    def to_markdown(self) -> str:
        p = self.profile
        lines = [
            "# Energy report",
            "",
            f"Per sample, mean over {self.samples} sentences, T = {self.time_steps}, activity from `{self.backend}`.",
            f"Profile `{p.name}`: MAC {p.e_mac_pj} pJ, AC {p.e_ac_pj} pJ ({p.source}).",
            f"Integer residual-stream inputs counted as: `{self.residual_convention}`.",
            "",
            "| model | MACs | ACs | energy (mJ) |",
            "|---|---:|---:|---:|",
            f"| teacher | {self.teacher_macs:.4g} | 0 | {self.teacher_mj:.4f} |",
            f"| student | {self.student_macs:.4g} | {self.student_acs:.4g} | {self.student_mj:.4f} |",
            "",
            f"**Student / teacher energy: {self.ratio:.2%}**",
            "",
            "| layer | kind | input | input rate | dense MACs | MACs | ACs | energy share |",
            "|---|---|---|---:|---:|---:|---:|---:|",
        ]
        total = self.student_mj * PJ_PER_MJ or 1.0
        for r in self.layers:
            if r.kind == "neurons":
                continue
            e = r.macs * p.e_mac_pj + r.acs * p.e_ac_pj
            lines.append(f"| {r.name} | {r.kind} | {r.input_kind} | {r.input_rate:.3f} | {r.dense_macs:.3g} | "
                         f"{r.macs:.3g} | {r.acs:.3g} | {e / total:.1%} |")
        lines += ["", "| neurons | updates per sample |", "|---|---:|"]
        lines += [f"| {r.name} | {r.neuron_updates:.3g} |" for r in self.layers if r.kind == "neurons"]
        return "\n".join(lines) + "\n"

    def write(self, out_dir: Path, stem: str = "energy_report") -> tuple[Path, Path]:
        from spikebert.io import atomic_write_text

        md, js = Path(out_dir) / f"{stem}.md", Path(out_dir) / f"{stem}.json"
        atomic_write_text(md, self.to_markdown())
        atomic_write_text(js, json.dumps(self.to_dict(), indent=2) + "\n")
        return md, js
