"""ONNX export of the student (unrolled over its T steps) and of the BERT teacher, each checked
against PyTorch with onnxruntime before the file is put in place.

Exporter: torch.onnx's TorchScript-based exporter (``dynamo=False``). The dynamo exporter needs the
onnxscript package, which this project does not depend on; the traced graph is also the natural
form here, since the student's only control flow is the loop over T, which tracing unrolls. While
exporting, the student's neurons run the plain loop of :func:`spikebert.neurons.lif_scan` instead of
the fused autograd function (see ``LIF.forward``): the same operations, so the same spikes.

Graph interfaces (all float32):

- student: ``input_ids`` int64 (batch, length) -> ``logits`` (batch, C), ``step_logits`` (T, batch, C).
  Batch and length are dynamic; length must not exceed the config's ``max_len``. Padding is found from
  ``pad_token_id`` inside the graph, as in PyTorch. Students without ``mask_padding`` let pads into
  attention and the token mean, so their output depends on the length: pad to ``max_len`` as in training.
- teacher: ``input_ids``, ``attention_mask``, ``token_type_ids`` int64 (batch, length) -> ``logits``
  (batch, C); batch and length dynamic (``token_type_ids`` only if the model takes it).

Each export runs the file through onnxruntime and PyTorch on check inputs (:func:`verify_onnx`) and
writes it only if predictions all agree and the samples' outputs are within ``atol``. Spikes are
thresholded: a float32 rounding difference next to a threshold can flip a spike and move that
sample's logits by far more than rounding, so the student check lets a few such samples through
(``STUDENT_MIN_CLOSE``); the teacher's must all be close.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import inspect
import logging
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from spikebert.contract.errors import MissingFileError, SpikebertError, UnsupportedError
from spikebert.contract.fileio import atomic_write
from spikebert.model import SpikeBERT

log = logging.getLogger(__name__)

DEFAULT_OPSET = 17  # the first opset with LayerNormalization: the norms stay one node each
DEFAULT_ATOL = 1e-4  # float32 logits: rounding alone stays below 1e-6 on the models tested
# A float32 rounding difference next to a threshold flips a spike and moves that sample's logits by
# ~1e-3: on the SST-2 demo student, 1 dev sentence in 512 and 1 random check sample in 64. An export
# bug moves most samples; the student check lets a few flipped ones through.
STUDENT_MIN_CLOSE = 0.9
STUDENT_INPUTS = ("input_ids",)
STUDENT_OUTPUTS = ("logits", "step_logits")
TEACHER_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
TEACHER_OUTPUTS = ("logits",)
# Operators that must not appear in an inference graph: training-time ops, and what the exporter
# emits for code it could not translate.
FORBIDDEN_OPS = frozenset({"Dropout", "PythonOp", "ATen"})

Feed = Mapping[str, np.ndarray]
Reference = Callable[[Feed], dict[str, np.ndarray]]


def _require(module: str, package: str):
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise SpikebertError(f"ONNX export needs the package {package!r}: pip install {package}") from err


@dataclasses.dataclass(frozen=True)
class OnnxCheck:
    """onnxruntime against PyTorch on the same inputs.

    ``max_abs_diff``: largest |onnx - torch| per output; ``close``: share of samples whose outputs are
    all within ``atol``; ``agreement``: share of samples whose argmax of ``logits`` is the same in both.
    """

    path: Path
    batches: int
    samples: int
    atol: float
    max_abs_diff: dict[str, float]
    close: float
    agreement: float

    def to_dict(self) -> dict:
        return {"path": str(self.path), "batches": self.batches, "samples": self.samples, "atol": self.atol,
                "max_abs_diff": self.max_abs_diff, "close": self.close, "agreement": self.agreement}


def _sample_diffs(a: np.ndarray, b: np.ndarray, batch_axis: int) -> np.ndarray:
    """max |a - b| per sample, NaN in both (a fully padded row) counting as equal, NaN in one as infinite."""
    a, b = (np.moveaxis(x, batch_axis, 0).reshape(x.shape[batch_axis], -1).astype(np.float64) for x in (a, b))
    d = np.where(np.isnan(a) & np.isnan(b), 0.0, np.nan_to_num(np.abs(a - b), nan=np.inf))
    return d.max(axis=1, initial=0.0)


def _session(path: str | Path):
    """An onnxruntime CPU session using as many threads as torch (default graph optimisations, as deployed)."""
    ort = _require("onnxruntime", "onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_onnx(path: str | Path, feed: Feed) -> dict[str, np.ndarray]:
    """One onnxruntime run: {output name: array}."""
    return _run_session(_session(path), feed, path)


def _run_session(session, feed: Feed, path) -> dict[str, np.ndarray]:
    names = [i.name for i in session.get_inputs()]
    if set(feed) != set(names):
        raise SpikebertError(f"{path} takes inputs {names}, got {sorted(feed)}; pass exactly the graph's inputs")
    outputs = session.run(None, {k: np.ascontiguousarray(feed[k]) for k in names})
    return {o.name: v for o, v in zip(session.get_outputs(), outputs)}


def verify_onnx(path: str | Path, reference: Reference, inputs: Sequence[Feed], *, atol: float = DEFAULT_ATOL,
                min_close: float = 1.0, min_agreement: float = 1.0,
                batch_axes: Mapping[str, int] | None = None) -> OnnxCheck:
    """Run the ONNX graph and ``reference`` (PyTorch) on each feed of ``inputs`` and compare.

    ``reference(feed)`` returns {output name: array} for the outputs to compare; it must include
    ``logits`` (samples, classes). ``batch_axes`` names each output's sample axis where it is not 0.
    Raises ``ValueError`` if fewer than ``min_close`` of the samples have all outputs within ``atol``,
    or fewer than ``min_agreement`` get the same prediction.
    """
    if not inputs:
        raise SpikebertError("verify_onnx needs at least one input batch")
    axes = dict(batch_axes or {})
    session = _session(path)
    diffs: dict[str, float] = {}
    close = same = samples = 0
    for feed in inputs:
        got, want = _run_session(session, feed, path), reference(feed)
        if "logits" not in want:
            raise SpikebertError(f"the reference gives {sorted(want)}; it must give 'logits' to compare predictions")
        worst = np.zeros(len(want["logits"]))  # (samples,) largest difference over all outputs
        for name, expected in want.items():
            if name not in got:
                raise SpikebertError(f"{path} has no output {name!r} (outputs: {sorted(got)}); re-export the model")
            if got[name].shape != expected.shape:
                raise SpikebertError(f"{path}: output {name!r} has shape {got[name].shape}, PyTorch gives "
                                 f"{expected.shape}")
            per_sample = _sample_diffs(got[name], expected, axes.get(name, 0))
            diffs[name] = max(diffs.get(name, 0.0), float(per_sample.max()))
            worst = np.maximum(worst, per_sample)
        close += int((worst <= atol).sum())
        same += int((got["logits"].argmax(-1) == want["logits"].argmax(-1)).sum())
        samples += len(worst)
    check = OnnxCheck(path=Path(path), batches=len(inputs), samples=samples, atol=atol, max_abs_diff=diffs,
                      close=close / samples, agreement=same / samples)
    if check.close < min_close:
        raise SpikebertError(f"{path}: only {check.close:.2%} of {samples} samples match PyTorch within atol={atol:g} "
                         f"(required {min_close:.2%}; max |onnx - torch| {diffs}); the export is wrong, or spikes "
                         "flip near their thresholds more often than expected: compare on more inputs")
    if check.agreement < min_agreement:
        raise SpikebertError(f"{path}: ONNX predictions agree with PyTorch on {check.agreement:.2%} of {samples} "
                         f"samples, below the required {min_agreement:.2%}")
    return check


def check_graph(path: str | Path) -> None:
    """The ONNX checker, and no training-only or untranslated operators (``FORBIDDEN_OPS``)."""
    onnx = _require("onnx", "onnx")
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    bad = sorted({n.op_type for n in proto.graph.node if n.op_type in FORBIDDEN_OPS or n.domain not in ("", "ai.onnx")})
    if bad:
        raise SpikebertError(f"{path}: the exported graph contains {bad}, which an inference graph must not; "
                         "export the model in eval mode")


def _export(module: nn.Module, example: tuple[torch.Tensor, ...], path: Path, *, inputs: Sequence[str],
            outputs: Sequence[str], dynamic_axes: dict[str, dict[int, str]], opset: int,
            metadata: Mapping[str, object], check: Callable[[Path], OnnxCheck]) -> OnnxCheck:
    """Trace ``module`` (in eval mode) into a temporary file, check it, then move it to ``path``."""
    onnx = _require("onnx", "onnx")
    _require("onnxruntime", "onnxruntime")
    module.eval()
    result: list[OnnxCheck] = []

    def write(tmp: Path) -> None:
        with warnings.catch_warnings():
            # shapes read in Python are traced as graph operations where they matter; the
            # exporter warns about every one of them
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            # the teacher's padding mask is indexed by aranges, never by the negative indices this warns of
            warnings.filterwarnings("ignore", message="Exporting aten::index operator of advanced indexing")
            torch.onnx.export(module, example, str(tmp), dynamo=False, input_names=list(inputs),
                              output_names=list(outputs), dynamic_axes=dynamic_axes, opset_version=opset,
                              training=torch.onnx.TrainingMode.EVAL, do_constant_folding=True)
        proto = onnx.load(str(tmp))
        onnx.helper.set_model_props(proto, {k: str(v) for k, v in metadata.items()})
        onnx.save(proto, str(tmp))
        check_graph(tmp)
        result.append(dataclasses.replace(check(tmp), path=Path(path)))

    atomic_write(Path(path), write)
    done = result[0]
    log.info("wrote %s: max |onnx - torch| %s, %.2f%% of %d samples within %g, predictions agree %.2f%%", path,
             {k: f"{v:.2g}" for k, v in done.max_abs_diff.items()}, 100 * done.close, done.samples, done.atol,
             100 * done.agreement)
    return done


def _real_lengths(rng: np.random.Generator, length: int, batch_size: int) -> np.ndarray:
    """Real tokens per row, in [1, length]: the first row unpadded, the last padded (if it can be)."""
    real = rng.integers(1, length + 1, size=batch_size)
    real[0] = length
    if batch_size > 1 and length > 1:
        real[-1] = rng.integers(1, length)
    return real


# ---- student ---------------------------------------------------------------------------------

class _StudentLogits(nn.Module):
    """The student's inference outputs as a tuple (the distillation taps are left out)."""

    def __init__(self, model: SpikeBERT) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(input_ids)
        return out.logits, out.step_logits


def student_check_inputs(model: SpikeBERT, *, batches: int = 4, batch_size: int = 16,
                         seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Random token batches (batch_size, length), every row with >= 1 real token, the first unpadded
    and the last padded (:func:`_real_lengths`).

    Lengths shrink from ``max_len`` batch by batch (dynamic length) for padding-masked students;
    students without ``mask_padding`` always get ``max_len``, as in training.
    """
    cfg = model.cfg
    rng = np.random.default_rng(seed)
    feeds = []
    for b in range(batches):
        length = cfg.max_len if not cfg.mask_padding else max(1, cfg.max_len - b * cfg.max_len // (2 * batches))
        ids = rng.integers(0, cfg.vocab_size, size=(batch_size, length))
        ids[ids == cfg.pad_token_id] = (cfg.pad_token_id + 1) % cfg.vocab_size
        real = _real_lengths(rng, length, batch_size)
        for row, n in enumerate(real):
            ids[row, n:] = cfg.pad_token_id
        feeds.append({"input_ids": ids.astype(np.int64)})
    return feeds


def student_reference(model: SpikeBERT) -> Reference:
    """PyTorch outputs of ``model`` for a feed, named as the ONNX outputs."""

    def run(feed: Feed) -> dict[str, np.ndarray]:
        with torch.no_grad():
            out = model(torch.from_numpy(np.asarray(feed["input_ids"], dtype=np.int64)))
        return {"logits": out.logits.numpy(), "step_logits": out.step_logits.numpy()}

    return run


def export_student_onnx(model: SpikeBERT, path: str | Path, *, opset: int = DEFAULT_OPSET,
                        check_inputs: Sequence[Feed] | None = None, atol: float = DEFAULT_ATOL,
                        min_close: float = STUDENT_MIN_CLOSE,
                        metadata: Mapping[str, object] | None = None) -> OnnxCheck:
    """Write the student's float32 inference graph, T steps unrolled, to ``path`` and check it.

    The model is copied (cast to float32, eval mode); ``model`` itself is left as it was. The graph
    is checked against the float32 copy on ``check_inputs`` (default :func:`student_check_inputs`):
    every prediction the same, and at least ``min_close`` of the samples within ``atol`` (see
    ``STUDENT_MIN_CLOSE``); nothing is written if the check fails.
    ``metadata`` (e.g. the tokenizer) is stored in the model's ``metadata_props``.
    """
    if not isinstance(model, SpikeBERT):
        raise UnsupportedError(f"export_student_onnx takes a SpikeBERT student, got {type(model).__name__}")
    student = copy.deepcopy(model).float().eval()
    cfg = student.cfg
    feeds = list(check_inputs) if check_inputs is not None else student_check_inputs(student)
    example = (torch.from_numpy(student_check_inputs(student, batches=1, batch_size=2)[0]["input_ids"]),)
    meta = {"producer": "spikebert", "kind": "student", "time_steps": cfg.time_steps, "max_len": cfg.max_len,
            "pad_token_id": cfg.pad_token_id, "mask_padding": cfg.mask_padding, **(metadata or {})}
    return _export(_StudentLogits(student), example, Path(path), inputs=STUDENT_INPUTS, outputs=STUDENT_OUTPUTS,
                   dynamic_axes={"input_ids": {0: "batch", 1: "length"}, "logits": {0: "batch"},
                                 "step_logits": {1: "batch"}},
                   opset=opset, metadata=meta,
                   check=lambda tmp: verify_onnx(tmp, student_reference(student), feeds, atol=atol,
                                                 min_close=min_close, batch_axes={"step_logits": 1}))


# ---- teacher ---------------------------------------------------------------------------------

class _TeacherLogits(nn.Module):
    """A Hugging Face sequence classifier called with positional inputs ``names``, returning logits."""

    def __init__(self, model: nn.Module, names: Sequence[str]) -> None:
        super().__init__()
        self.model, self.names = model, tuple(names)

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.names, tensors))).logits


def teacher_input_names(model: nn.Module) -> tuple[str, ...]:
    """The inputs of ``TEACHER_INPUTS`` that the model's forward accepts (DistilBERT has no token types)."""
    accepted = inspect.signature(model.forward).parameters
    return tuple(n for n in TEACHER_INPUTS if n in accepted)


def teacher_check_inputs(model: nn.Module, *, max_len: int, batches: int = 3, batch_size: int = 4,
                         seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Random batches of decreasing length (<= ``max_len``), padded rows (:func:`_real_lengths`) masked
    out; token types switch from 0 to 1 half way through the real tokens, as for sentence pairs."""
    cfg = model.config
    pad = cfg.pad_token_id if cfg.pad_token_id is not None else 0
    names = teacher_input_names(model)
    rng = np.random.default_rng(seed)
    feeds = []
    for b in range(batches):
        length = max(2, max_len - b * max_len // (2 * batches))
        ids = rng.integers(0, cfg.vocab_size, size=(batch_size, length))
        real = _real_lengths(rng, length, batch_size)
        mask = (np.arange(length)[None, :] < real[:, None]).astype(np.int64)
        types = (np.arange(length)[None, :] >= (real // 2)[:, None]).astype(np.int64) * mask
        types = np.minimum(types, getattr(cfg, "type_vocab_size", 1) - 1)
        ids = np.where(mask == 1, ids, pad).astype(np.int64)
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        feeds.append({k: feed[k] for k in names})
    return feeds


def teacher_reference(model: nn.Module) -> Reference:
    """PyTorch logits of a Hugging Face classifier for a feed."""

    def run(feed: Feed) -> dict[str, np.ndarray]:
        with torch.no_grad():
            logits = model(**{k: torch.from_numpy(np.asarray(v, dtype=np.int64)) for k, v in feed.items()}).logits
        return {"logits": logits.numpy()}

    return run


def export_teacher_onnx(name_or_path: str, path: str | Path, *, max_len: int, opset: int = DEFAULT_OPSET,
                        check_inputs: Sequence[Feed] | None = None, atol: float = DEFAULT_ATOL) -> OnnxCheck:
    """Write the teacher (``spikebert.teacher.load_teacher``: eager attention, so every matmul is a
    node) as a float32 graph with dynamic batch and length, checked on ``check_inputs`` (default
    :func:`teacher_check_inputs` up to ``max_len`` tokens): every sample within ``atol``, every
    prediction the same; nothing is written if the check fails."""
    from spikebert.teacher import load_teacher

    if max_len < 2:
        raise SpikebertError(f"max_len={max_len}: the teacher needs at least 2 tokens ([CLS] and [SEP])")
    try:
        model = load_teacher(name_or_path).float().eval()
    except OSError as err:  # what transformers raises for a missing folder or an uncached hub name
        raise MissingFileError(f"teacher {name_or_path!r} is neither a model folder nor a Hugging Face model "
                                f"available offline: {err}") from err
    limit = getattr(model.config, "max_position_embeddings", max_len)
    if max_len > limit:
        raise SpikebertError(f"max_len={max_len} exceeds the teacher's max_position_embeddings={limit}; lower it")
    names = teacher_input_names(model)
    feeds = list(check_inputs) if check_inputs is not None else teacher_check_inputs(model, max_len=max_len)
    # a padded row in the example, in case a transformers version skips an all-ones mask while tracing
    example = tuple(torch.from_numpy(v) for v in teacher_check_inputs(model, max_len=max_len, batches=1,
                                                                      batch_size=2)[0].values())
    dynamic = {n: {0: "batch", 1: "length"} for n in names} | {"logits": {0: "batch"}}
    meta = {"producer": "spikebert", "kind": "teacher", "source": name_or_path, "max_len": max_len,
            "architecture": type(model).__name__}
    return _export(_TeacherLogits(model, names), example, Path(path), inputs=names, outputs=TEACHER_OUTPUTS,
                   dynamic_axes=dynamic, opset=opset, metadata=meta,
                   check=lambda tmp: verify_onnx(tmp, teacher_reference(model), feeds, atol=atol))
