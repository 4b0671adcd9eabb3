"""The student registry: every kind of student and what each command needs of it.

A :class:`StudentKind` names the config class, the model class (which carries the checkpoint format),
the NIR exporter (whole graph, or fragments), the evaluation and the activity recorder. Save, load,
eval, export, energy and the command line dispatch through :data:`STUDENTS` and never test a model's
type themselves; a new kind is one entry here.

Both kinds return :class:`spikebert.outputs.StudentOutput` and distil from
:class:`spikebert.outputs.TeacherTargets`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from spikebert.config import ConfigBase, SpikingBERTConfig, StudentConfig
from spikebert.contract.errors import SpikebertError, UnsupportedError
from spikebert.converters.spikingbert_to_nir import export_fragments
from spikebert.converters.torch_to_nir import export_student
from spikebert.evaluation import evaluate_spikebert, evaluate_spikingbert, record_populations
from spikebert.io import build_student as _build
from spikebert.io import load_checkpoint
from spikebert.io import save_student as save_student
from spikebert.model import SpikeBERT
from spikebert.recording import record_batches
from spikebert.spikingbert import SpikingBERT


@dataclasses.dataclass(frozen=True, kw_only=True)
class StudentKind:
    """One kind of student.

    ``export_nir(model, metadata=...)`` gives its whole NIR graph, or is None with ``no_graph`` saying
    why; ``export_fragments(model, metadata=...)`` gives the parts NIR can express, by name (or None).
    ``evaluate(model, batcher, data, *, batch_size, firing_rates, time_steps)`` -> accuracy dict;
    ``record_activity(model, ids, *, batch_size, graph, time_steps)`` -> (logits, activity), the
    activity an energy report prices (``Activity`` per NIR node, or ``PopulationActivity``).
    """

    name: str
    description: str
    config_cls: type[ConfigBase]
    model_cls: type
    evaluate: Callable[..., dict]
    record_activity: Callable[..., tuple[Any, Any]]
    export_nir: Callable[..., Any] | None = None
    no_graph: str | None = None
    export_fragments: Callable[..., dict[str, Any]] | None = None

    @property
    def checkpoint_format(self) -> str:
        return self.model_cls.CHECKPOINT_FORMAT

    @property
    def has_graph(self) -> bool:
        return self.export_nir is not None

    def require_graph(self, what: str) -> None:
        """Raise the user error for commands that need the whole NIR graph (Lava, ONNX, plots of it)."""
        if not self.has_graph:
            raise UnsupportedError(f"{what} needs a student with a whole NIR graph; this is a {self.description}: "
                                   f"{self.no_graph}")


_SPIKINGBERT_NO_GRAPH = (
    "SpikingBERT keeps softmax attention over a real-valued query, and LayerNorm and GELU on the input currents "
    "of its populations; those have no neuromorphic (NIR/Lava/ONNX-spiking) form here (docs/spikingbert.md). "
    "`spikebert eval` and `spikebert energy` take it; `spikebert-export --to nir --partial` writes the "
    "populations that do have one (K and V of every layer)."
)

STUDENTS: dict[str, StudentKind] = {kind.name: kind for kind in (
    StudentKind(name=SpikeBERT.KIND, description="SpikeBERT student (LIF, spiking self-attention; Lv et al.)",
                config_cls=StudentConfig, model_cls=SpikeBERT, evaluate=evaluate_spikebert,
                record_activity=record_batches, export_nir=export_student),
    StudentKind(name=SpikingBERT.KIND,
                description="SpikingBERT student (IF populations, equilibrium rates; Bal & Sengupta)",
                config_cls=SpikingBERTConfig, model_cls=SpikingBERT, evaluate=evaluate_spikingbert,
                record_activity=record_populations, no_graph=_SPIKINGBERT_NO_GRAPH,
                export_fragments=export_fragments),
)}
"""name -> kind; the name is the model class's ``KIND``."""

_BY_FORMAT = {kind.checkpoint_format: kind for kind in STUDENTS.values()}
_BY_CLASS = {kind.model_cls: kind for kind in STUDENTS.values()}


def kind_of(model) -> StudentKind:
    """The registered kind of a student model."""
    kind = _BY_CLASS.get(type(model))
    if kind is None:
        raise UnsupportedError(f"{type(model).__name__} is not a registered student kind ({sorted(STUDENTS)}); "
                               "register it in spikebert.students.STUDENTS")
    return kind


def kind_named(name: str) -> StudentKind:
    if name not in STUDENTS:
        raise SpikebertError(f"unknown student kind {name!r}; known: {sorted(STUDENTS)}")
    return STUDENTS[name]


def load_student(path: str | Path, *, need_graph: str | None = None) -> tuple[Any, dict]:
    """``(model, payload)`` of any registered kind, read once without executing code; the weights must
    match the stored config. ``need_graph`` names the command for which a whole NIR graph is
    required (the error then says why this kind has none)."""
    payload = load_checkpoint(path, expected_format=tuple(_BY_FORMAT))
    kind = _BY_FORMAT[payload["format"]]
    if need_graph:
        kind.require_graph(need_graph)
    return _build(path, payload, kind.model_cls), payload


__all__ = ["STUDENTS", "StudentKind", "kind_named", "kind_of", "load_student", "save_student"]
