"""Energy report: student vs teacher per energy profile, and per layer, as md, tex, csv and json.

Every format carries the counting conventions, above all how the integer residual stream was
counted (``RESIDUAL_STATEMENTS``), and each profile's source. Operation names follow NeuroBench
(Yik et al., Nature Communications 2025) where they mean the same; ``NEUROBENCH`` says where they
differ. All counts and energies are per sample.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from pathlib import Path

from spikebert.contract.errors import SpikebertError
from spikebert.energy import lemaire
from spikebert.energy.counting import LayerCount
from spikebert.energy.profiles import Profile

PJ_PER_MJ = 1e9
FORMATS = ("md", "tex", "csv", "json")
REPORT_FORMAT = "spikebert-energy/2"
RESIDUAL_STATEMENTS = {
    "mac": "Integer inputs (the residual stream, a sum of spike trains) are counted as dense MACs, as "
           "NeuroBench and syops do (their spike test fails on values above 1).",
    "accumulate": "Integer inputs (the residual stream, a sum of spike trains) are counted as k accumulates "
                  "per value k (the multi-spike view of the Spikformer papers): ACs = sum|x| x fan-out.",
    "none": "The student has no integer-valued synaptic inputs: every matrix product takes spikes or "
            "real values (SpikingBERT adds residual spikes to currents, outside the matrix products).",
}
OTHER_CONVENTION = {"mac": "accumulate", "accumulate": "mac"}
CONVENTION_WORDS = {"mac": "MACs", "accumulate": "accumulates"}
SCOPE = ("Counted: matrix products only, for student and teacher alike; embedding lookups, LayerNorm, "
         "softmax, GELU and biases are not. Student attention products are exact accumulates (Q K^T "
         "coincidences, A V nonzeros x fan-out); the teacher's are MACs.")
LEMAIRE_STATEMENT = ("Lemaire estimator (spikebert.energy.lemaire): operations, addressing and memory per layer, "
                     "student and teacher alike; biases counted there (one add and one read per output); attention "
                     "products priced as layers whose stored operand plays the weights.")
# quantity -> (NeuroBench metric, where ours differs)
NEUROBENCH = {
    "synaptic operations (ACs)": ("SynapticOperations: Effective_ACs", "weights assumed nonzero"),
    "MACs": ("SynapticOperations: Effective_MACs", "NeuroBench counts nonzero inputs only"),
    "dense MACs": ("SynapticOperations: Dense", "NeuroBench omits attention products"),
    "neuron updates": ("MembraneUpdates", "NeuroBench counts changed membranes only"),
    "activation sparsity": ("ActivationSparsity", "here over the spike inputs of synaptic layers"),
    "accuracy": ("ClassificationAccuracy", ""),
}


@dataclasses.dataclass(frozen=True)
class SummaryRow:
    quantity: str
    student: float | None
    teacher: float | None
    ratio: float | None = None  # student / teacher, for energies
    profile: str = ""


def layer_energy_pj(row: LayerCount, profile: Profile, *, time_steps: int = 1, neurons_in_model: bool = True) -> float:
    """One row's energy: the profile's equation, or for a per-layer estimator (``lemaire``) its rules at
    ``time_steps`` (the row's T) in a network with (an SNN) or without (the teacher) neurons."""
    if profile.per_layer:
        return lemaire.price_row(row, time_steps=time_steps, neurons_in_model=neurons_in_model).total_pj
    return profile.energy_pj(macs=row.macs, acs=row.acs, neuron_updates=row.neuron_updates,
                             weight_reads=row.weight_reads, state_accesses=row.state_accesses)


@dataclasses.dataclass(kw_only=True)
class EnergyReport:
    """Counts of one student run (``layers``, from :func:`spikebert.energy.counting.count_operations`) and of
    the teacher on the same sentences, priced by ``profile`` (the headline: ``ratio``) and
    ``more_profiles``. ``teacher_weight_reads`` is needed by memory-aware profiles, ``teacher_layers``
    (``TeacherCount.layers``) by per-layer ones (``lemaire``); ``teacher_method`` says how the teacher
    was counted; ``accuracy`` is the student's on the same sentences."""

    profile: Profile
    residual_convention: str
    layers: list[LayerCount]
    teacher_macs: float
    samples: int
    time_steps: int
    backend: str
    extra: dict = dataclasses.field(default_factory=dict)
    more_profiles: tuple[Profile, ...] = ()
    teacher_weight_reads: float = 0.0
    teacher_method: str = "analytic"
    accuracy: float | None = None
    teacher_layers: list[LayerCount] = dataclasses.field(default_factory=list)
    # the same activity counted under the other integer-input convention ("mac" <-> "accumulate"): every report
    # states the student's energy both ways (empty: not counted, e.g. a report read from an older file)
    other_convention_layers: list[LayerCount] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        if self.residual_convention not in RESIDUAL_STATEMENTS:
            raise SpikebertError(f"residual convention {self.residual_convention!r}: use one of "
                             f"{sorted(RESIDUAL_STATEMENTS)}")
        if not self.teacher_macs > 0:
            raise SpikebertError(f"teacher_macs={self.teacher_macs}: the teacher count must be positive")
        names = [p.name for p in self.profiles]
        if len(set(names)) != len(names):
            raise SpikebertError(f"profiles {names} name one twice")
        memory = [p.name for p in self.profiles if p.memory_aware]
        if memory and not self.teacher_weight_reads:
            raise SpikebertError(f"profiles {memory} price weight reads, but the teacher has none: pass "
                             "teacher_weight_reads (spikebert.energy.counting.teacher_counts)")
        per_layer = [p.name for p in self.profiles if p.per_layer]
        if per_layer and not self.teacher_layers:
            raise SpikebertError(f"profile {per_layer} prices every layer by its shape, but the teacher's layers were "
                                 "not given: pass teacher_layers (TeacherCount.layers of "
                                 "spikebert.energy.counting.teacher_counts or onnx_teacher_counts)")

    # ---- totals ----------------------------------------------------------------------------

    @property
    def profiles(self) -> tuple[Profile, ...]:
        return (self.profile, *self.more_profiles)

    def student_total(self, field: str) -> float:
        return float(sum(getattr(r, field) for r in self.layers))

    @property
    def activation_sparsity(self) -> float | None:
        """1 - nonzero share of all spike inputs to synaptic layers (each consumer counted); None without any."""
        spikes = [r for r in self.layers if r.input_kind == "spike" and r.input_elements]
        elements = sum(r.input_elements for r in spikes)
        return 1.0 - sum(r.input_rate * r.input_elements for r in spikes) / elements if elements else None

    def row_pj(self, row: LayerCount, profile: Profile) -> float:
        """One student row's energy under ``profile``."""
        return layer_energy_pj(row, profile, time_steps=self.time_steps, neurons_in_model=True)

    def student_pj(self, profile: Profile) -> float:
        return sum(self.row_pj(r, profile) for r in self.layers)

    @property
    def other_convention(self) -> str | None:
        """The integer-input convention :attr:`other_convention_layers` were counted under (None: not counted)."""
        if not self.other_convention_layers or self.residual_convention not in OTHER_CONVENTION:
            return None
        return OTHER_CONVENTION[self.residual_convention]

    @property
    def integer_input_macs(self) -> float:
        """MACs of synaptic layers whose input is integer-valued (a sum of spike trains), per sample."""
        return float(sum(r.macs for r in self.layers if r.input_kind == "integer"))

    def other_convention_mj(self, profile: Profile) -> float:
        return sum(self.row_pj(r, profile) for r in self.other_convention_layers) / PJ_PER_MJ

    def other_convention_ratio(self, profile: Profile) -> float:
        return self.other_convention_mj(profile) / (self.teacher_pj(profile) / PJ_PER_MJ)

    def teacher_pj(self, profile: Profile) -> float:
        if profile.per_layer:
            return sum(layer_energy_pj(r, profile, time_steps=1, neurons_in_model=False) for r in self.teacher_layers)
        return profile.energy_pj(macs=self.teacher_macs, weight_reads=self.teacher_weight_reads)

    def lemaire_totals(self) -> dict[str, dict[str, float]]:
        """Student and teacher under the Lemaire rules (:func:`spikebert.energy.lemaire.totals`)."""
        return {"student": lemaire.totals(lemaire.price_rows(self.layers, time_steps=self.time_steps,
                                                             neurons_in_model=True)),
                "teacher": lemaire.totals(lemaire.price_rows(self.teacher_layers, time_steps=1,
                                                             neurons_in_model=False))}

    @property
    def student_macs(self) -> float:
        return self.student_total("macs")

    @property
    def student_acs(self) -> float:
        return self.student_total("acs")

    @property
    def student_mj(self) -> float:
        return self.student_pj(self.profile) / PJ_PER_MJ

    @property
    def teacher_mj(self) -> float:
        return self.teacher_pj(self.profile) / PJ_PER_MJ

    @property
    def ratio(self) -> float:
        return self.student_mj / self.teacher_mj

    def summary_rows(self) -> list[SummaryRow]:
        rows = [SummaryRow("accuracy", self.accuracy, None)] if self.accuracy is not None else []
        rows += [
            SummaryRow("synaptic operations (ACs)", self.student_acs, 0.0),
            SummaryRow("MACs", self.student_macs, self.teacher_macs),
            SummaryRow("dense MACs", self.student_total("dense_macs"), self.teacher_macs),
            SummaryRow("neuron updates", self.student_total("neuron_updates"), None),
            SummaryRow("weight reads", self.student_total("weight_reads"), self.teacher_weight_reads),
            SummaryRow("state reads + writes", self.student_total("state_accesses"), None),
        ]
        if self.activation_sparsity is not None:
            rows.append(SummaryRow("activation sparsity", self.activation_sparsity, None))
        for p in self.profiles:
            s, t = self.student_pj(p) / PJ_PER_MJ, self.teacher_pj(p) / PJ_PER_MJ
            rows.append(SummaryRow(f"energy {p.name} (mJ)", s, t, s / t if t else None, p.name))
        if self.other_convention:
            for p in self.profiles:
                rows.append(SummaryRow(f"energy {p.name} (mJ), integer inputs as {CONVENTION_WORDS[self.other_convention]}",
                                       self.other_convention_mj(p), self.teacher_pj(p) / PJ_PER_MJ,
                                       self.other_convention_ratio(p)))
        return rows

    def conventions(self) -> list[str]:
        out = [
            f"Per sample: mean over {self.samples} sentences, T = {self.time_steps} steps, activity recorded by "
            f"`{self.backend}`.",
            RESIDUAL_STATEMENTS[self.residual_convention],
            *self._other_convention_statement(),
            SCOPE,
            f"Teacher counted: {self.teacher_method}.",
            "Names follow NeuroBench where they mean the same (differences in the NeuroBench column).",
        ]
        if any(p.per_layer for p in self.profiles):
            unknown = [r.name for r in self.layers if r.kind == "neurons" and r.output_spikes is None]
            out.append(LEMAIRE_STATEMENT + (f" Output spikes of {unknown} are not in the record (they only enter a "
                                            "residual sum no synapse reads whole, or mask Q inside spike-driven "
                                            "attention): their spike writes are not priced." if unknown else ""))
        return out

    def _other_convention_statement(self) -> list[str]:
        other = self.other_convention
        if other is None:
            return []
        if self.integer_input_macs == 0:
            return ["No synaptic layer reads integer inputs (integer-input MACs: 0), so both conventions (integer "
                    "inputs as MACs, or as accumulates) give the same figures."]
        p = self.profile
        return [f"Integer-input MACs: {_num(self.integer_input_macs)} per sample. Counted instead as "
                f"{CONVENTION_WORDS[other]}, the student's {p.name} energy is {_num(self.other_convention_mj(p))} mJ, "
                f"{self.other_convention_ratio(p):.2%} of the teacher's (the summary gives both, per profile)."]

    # ---- json --------------------------------------------------------------------------------

    def to_dict(self) -> dict:
        return {
            "format": REPORT_FORMAT,
            "profile": dataclasses.asdict(self.profile),
            "more_profiles": [dataclasses.asdict(p) for p in self.more_profiles],
            "residual_convention": self.residual_convention,
            "conventions": self.conventions(),
            "backend": self.backend,
            "samples": self.samples,
            "time_steps": self.time_steps,
            "accuracy": self.accuracy,
            "student": {"macs": self.student_macs, "acs": self.student_acs, "energy_mj": self.student_mj,
                        **{f: self.student_total(f) for f in ("dense_macs", "neuron_updates", "weight_reads",
                                                               "state_accesses")},
                        "activation_sparsity": self.activation_sparsity},
            "teacher": {"macs": self.teacher_macs, "weight_reads": self.teacher_weight_reads,
                        "method": self.teacher_method, "energy_mj": self.teacher_mj,
                        "layers": [dataclasses.asdict(r) for r in self.teacher_layers]},
            "energy_ratio_student_over_teacher": self.ratio,
            "energy": {r.profile: {"student_mj": r.student, "teacher_mj": r.teacher, "ratio": r.ratio}
                       for r in self.summary_rows() if r.profile},
            "layers": [dataclasses.asdict(r) for r in self.layers],
            "integer_input_macs": self.integer_input_macs,
            "other_convention": None if self.other_convention is None else {
                "residual_convention": self.other_convention,
                "energy": {p.name: {"student_mj": self.other_convention_mj(p), "ratio": self.other_convention_ratio(p)}
                           for p in self.profiles},
                "layers": [dataclasses.asdict(r) for r in self.other_convention_layers]},
            "extra": self.extra,
        }

    @classmethod
    def from_dict(cls, data: dict) -> EnergyReport:
        """Inverse of :meth:`to_dict` (the derived totals and energies are recomputed, not read)."""
        if data.get("format") != REPORT_FORMAT:
            raise SpikebertError(f"not a {REPORT_FORMAT} energy report (format {data.get('format')!r}); "
                             "write it again with this version")
        return cls(profile=Profile(**data["profile"]), more_profiles=tuple(Profile(**p) for p in data["more_profiles"]),
                   residual_convention=data["residual_convention"], layers=[LayerCount(**r) for r in data["layers"]],
                   teacher_macs=data["teacher"]["macs"], teacher_weight_reads=data["teacher"]["weight_reads"],
                   teacher_method=data["teacher"]["method"], samples=data["samples"], time_steps=data["time_steps"],
                   backend=data["backend"], accuracy=data["accuracy"], extra=data["extra"],
                   teacher_layers=[LayerCount(**r) for r in data["teacher"].get("layers", [])],
                   other_convention_layers=[LayerCount(**r) for r in (data.get("other_convention") or {}).get("layers", [])])

    # ---- markdown ----------------------------------------------------------------------------

    def to_markdown(self) -> str:
        lines = ["# Energy report", ""]
        lines += [f"- {k}: `{v}`" for k, v in self.extra.items()]
        lines += ["", "## Conventions", ""] + [f"- {c}" for c in self.conventions()]
        lines += ["", "## Summary (per sample)", "",
                  "| quantity | student | teacher | student / teacher | NeuroBench |", "|---|---:|---:|---:|---|"]
        for r in self.summary_rows():
            nb, diff = NEUROBENCH.get(r.quantity, ("", ""))
            lines.append(f"| {r.quantity} | {_num(r.student)} | {_num(r.teacher)} | {_pct(r.ratio)} | "
                         f"{nb + (f' ({diff})' if diff else '')} |")
        lines += ["", f"**Student / teacher energy ({self.profile.name}): {self.ratio:.2%}**", "", "## Profiles", ""]
        for p in self.profiles:
            if p.per_layer:
                lines.append(f"- `{p.name}`: MAC {p.e_mac_pj:g} pJ, AC {p.e_ac_pj:g} pJ, memory by buffer size "
                             f"(per layer). {p.source.rstrip('.')}.")
                continue
            lines.append(f"- `{p.name}`: MAC {p.e_mac_pj:g} pJ, AC {p.e_ac_pj:g} pJ, neuron update "
                         f"{p.e_neuron_pj:g} pJ, weight read {p.e_weight_read_pj:g} pJ, state access "
                         f"{p.e_state_access_pj:g} pJ. {p.source.rstrip('.')}.")
        if any(p.per_layer for p in self.profiles):
            t = self.lemaire_totals()
            lines += ["", "## Lemaire components (per sample, mJ)", "", "| component | student | teacher |",
                      "|---|---:|---:|"]
            for c in lemaire.COMPONENTS:
                lines.append(f"| {lemaire.COMPONENT_LABELS[c]} | {_num(t['student'][c + '_pj'] / PJ_PER_MJ)} | "
                             f"{_num(t['teacher'][c + '_pj'] / PJ_PER_MJ)} |")
            lines.append(f"| total | {_num(t['student']['total_pj'] / PJ_PER_MJ)} | "
                         f"{_num(t['teacher']['total_pj'] / PJ_PER_MJ)} |")
        shares = " | ".join(f"share {p.name}" for p in self.profiles)
        lines += ["", "## Per layer (per sample)", "",
                  "| layer | kind | input | firing rate | dense MACs | MACs | ACs | neuron updates | weight reads | "
                  f"{shares} |",
                  "|---|---|---|---:|---:|---:|---:|---:|---:|" + "---:|" * len(self.profiles)]
        for r, share in zip(self.layers, self._shares()):
            lines.append(f"| {r.name} | {r.kind} | {r.input_kind} | {_rate(r)} | {_num(r.dense_macs)} | "
                         f"{_num(r.macs)} | {_num(r.acs)} | {_num(r.neuron_updates)} | {_num(r.weight_reads)} | "
                         + " | ".join(f"{s:.1%}" for s in share) + " |")
        return "\n".join(lines) + "\n"

    def _shares(self) -> list[list[float]]:
        """Per layer, its share of the student's energy under each profile."""
        totals = [self.student_pj(p) or 1.0 for p in self.profiles]
        return [[self.row_pj(r, p) / t for p, t in zip(self.profiles, totals)] for r in self.layers]

    # ---- latex -------------------------------------------------------------------------------

    def to_latex(self, *, label: str = "energy") -> str:
        """Two booktabs tables (summary, per layer), ready to paste; needs ``\\usepackage{booktabs}``."""
        conventions = " ".join(_tex(c.replace("`", "")) for c in self.conventions()[:4])
        out = ["% spikebert energy report; needs \\usepackage{booktabs}",
               "\\begin{table}[t]", "\\centering",
               f"\\caption{{Energy per sample, student vs.\\ teacher. {conventions} Profiles: "
               + "; ".join(f"{_tex(p.name)}: {_tex(p.source.rstrip('.'))}" for p in self.profiles) + ".}",
               f"\\label{{tab:{label}-summary}}", "\\begin{tabular}{lrrr}", "\\toprule",
               "Quantity & Student & Teacher & Student/teacher \\\\", "\\midrule"]
        rows = self.summary_rows()
        for i, r in enumerate(rows):
            if r.profile and (i == 0 or not rows[i - 1].profile):
                out.append("\\midrule")
            out.append(f"{_tex(r.quantity)} & {_tex_num(r.student)} & {_tex_num(r.teacher)} & "
                       f"{_tex(_pct(r.ratio))} \\\\")
        out += ["\\bottomrule", "\\end{tabular}", "\\end{table}", ""]
        cols = "lllrrrr" + "r" * len(self.profiles)
        out += ["\\begin{table}[t]", "\\centering", "\\small",
                f"\\caption{{Per-layer operations and energy share per sample. "
                f"{_tex(RESIDUAL_STATEMENTS[self.residual_convention])}}}",
                f"\\label{{tab:{label}-layers}}", f"\\begin{{tabular}}{{{cols}}}", "\\toprule",
                "Layer & Kind & Input & Rate & MACs & ACs & Neuron upd. & "
                + " & ".join(f"{_tex(p.name)}" for p in self.profiles) + " \\\\", "\\midrule"]
        for r, share in zip(self.layers, self._shares()):
            out.append(f"{_tex(r.name)} & {_tex(r.kind)} & {_tex(r.input_kind)} & {_rate(r)} & {_tex_num(r.macs)} & "
                       f"{_tex_num(r.acs)} & {_tex_num(r.neuron_updates)} & "
                       + " & ".join(_tex(f"{s:.1%}") for s in share) + " \\\\")
        out += ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
        return "\n".join(out) + "\n"

    # ---- csv ---------------------------------------------------------------------------------

    def summary_csv(self) -> str:
        fields = ["quantity", "profile", "student", "teacher", "student_over_teacher", "neurobench",
                  "residual_convention", "samples", "time_steps", "teacher_method"]
        rows = [{"quantity": r.quantity, "profile": r.profile, "student": r.student, "teacher": r.teacher,
                 "student_over_teacher": r.ratio, "neurobench": NEUROBENCH.get(r.quantity, ("",))[0],
                 "residual_convention": self.residual_convention, "samples": self.samples,
                 "time_steps": self.time_steps, "teacher_method": self.teacher_method} for r in self.summary_rows()]
        return _csv(fields, rows)

    def layers_csv(self) -> str:
        fields = [f.name for f in dataclasses.fields(LayerCount)]
        names = [p.name for p in self.profiles]
        rows = []
        for r, share in zip(self.layers, self._shares()):
            row = dataclasses.asdict(r)
            row.update({f"energy_pj_{n}": self.row_pj(r, p) for n, p in zip(names, self.profiles)})
            row.update({f"share_{n}": s for n, s in zip(names, share)})
            rows.append(row | {"residual_convention": self.residual_convention})
        return _csv(fields + [f"energy_pj_{n}" for n in names] + [f"share_{n}" for n in names]
                    + ["residual_convention"], rows)

    # ---- files -------------------------------------------------------------------------------

    def write(self, out_dir: Path, *, formats: tuple[str, ...] = ("md", "json"),
              stem: str = "energy_report") -> list[Path]:
        """Write each format atomically (``csv``: ``STEM.csv`` summary and ``STEM_layers.csv``);
        returns the paths in the order of ``formats``."""
        from spikebert.contract.fileio import atomic_write_text

        unknown = sorted(set(formats) - set(FORMATS))
        if unknown:
            raise SpikebertError(f"unknown report formats {unknown}; available: {list(FORMATS)}")
        out_dir = Path(out_dir)
        texts = {"md": [(f"{stem}.md", self.to_markdown)], "tex": [(f"{stem}.tex", self.to_latex)],
                 "csv": [(f"{stem}.csv", self.summary_csv), (f"{stem}_layers.csv", self.layers_csv)],
                 "json": [(f"{stem}.json", lambda: json.dumps(self.to_dict(), indent=2) + "\n")]}
        paths = []
        for fmt in formats:
            for name, render in texts[fmt]:
                atomic_write_text(out_dir / name, render())
                paths.append(out_dir / name)
        return paths


def parse_formats(spec: str) -> tuple[str, ...]:
    """``"md,tex"`` -> ("md", "tex"); ``"all"`` -> every format."""
    formats = FORMATS if spec.strip() == "all" else tuple(s.strip() for s in spec.split(",") if s.strip())
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown or not formats:
        raise SpikebertError(f"--format {spec!r}: use some of {list(FORMATS)}, comma-separated, or 'all'")
    return formats


def _num(x: float | None) -> str:
    return "–" if x is None else f"{x:.4g}"


def _pct(x: float | None) -> str:
    return "" if x is None else f"{x:.2%}"


def _rate(r: LayerCount) -> str:
    return "" if r.kind == "neurons" else f"{r.input_rate:.3f}"


TEX_ESCAPES = {"\\": "\\textbackslash{}", "&": "\\&", "%": "\\%", "$": "\\$", "#": "\\#", "_": "\\_",
               "{": "\\{", "}": "\\}", "~": "\\textasciitilde{}", "^": "\\textasciicircum{}"}


def _tex(text: str) -> str:
    """Plain text as LaTeX: special characters escaped, "--" kept from becoming a dash."""
    return "".join(TEX_ESCAPES.get(c, c) for c in text).replace("--", "-{}-")


def _tex_num(x: float | None) -> str:
    """4 significant digits; powers of ten as $m\\times10^{e}$."""
    if x is None:
        return "--"
    if x == 0 or 1e-3 <= abs(x) < 1e5:
        return f"{x:.4g}"
    mantissa, exponent = f"{x:.3e}".split("e")
    return f"${mantissa}\\times10^{{{int(exponent)}}}$"


def _csv(fields: list[str], rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)
    return buf.getvalue()
