"""Safe checkpoint I/O and run identities (atomic writes: ``spikebert.contract.fileio``).

Checkpoints are plain ``torch.save`` dictionaries of tensors, strings and numbers, always loaded
with ``weights_only=True``: loading a checkpoint never executes code.
"""

from __future__ import annotations

import pickle
import struct
import zipfile
from pathlib import Path
from typing import Any

from spikebert.contract.errors import MissingFileError, SpikebertError
from spikebert.contract.fileio import atomic_write


def text_sha256(texts) -> str:
    """SHA-256 of a list of texts (order-sensitive): identifies the data a run or cache was built on."""
    import hashlib

    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()


def weights_identity(name_or_path: str | Path) -> str:
    """Name, size and modification time of the weight/config files behind a model folder or file;
    the plain name for a hub id. A re-trained model in the same place gets another identity."""
    path = Path(name_or_path)
    if not path.exists():
        return str(name_or_path)
    files = [path] if path.is_file() else sorted(
        p for p in path.iterdir() if p.suffix in {".safetensors", ".bin", ".pt", ".json"})
    return ";".join(f"{p.resolve()}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files)


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    import torch

    atomic_write(Path(path), lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path: str | Path, *, expected_format: str | tuple[str, ...]) -> dict[str, Any]:
    """Load a checkpoint of one of the ``expected_format`` kinds without executing code; raise a clear
    error for anything else."""
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:  # torch's text suggests weights_only=False: never do that here
        raise SpikebertError(
            f"{path} is not a safe checkpoint: it holds objects other than tensors, numbers and strings "
            "(unpickling them could run code), so it was not loaded; spikebert checkpoints never need that"
        ) from err
    except _TORCH_LOAD_ERRORS as err:
        raise SpikebertError(
            f"{path} is not a loadable spikebert checkpoint (truncated, corrupt, or not saved "
            f"with plain tensors): {type(err).__name__}: {str(err)[:300]}"
        ) from err
    formats = (expected_format,) if isinstance(expected_format, str) else expected_format
    found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
    if not isinstance(payload, dict) or not isinstance(found, str) or found not in formats:
        raise SpikebertError(
            f"{path} is not a {' or '.join(formats)} checkpoint (found format {found!r:.60}); "
            "train one with `spikebert train distill` or pass the right file"
        )
    return payload


# torch.load(weights_only=True) on a truncated or corrupt file: its zip reader, restricted unpickler and storage
# rebuilding report damage through any of these (found by benchmarks/fuzz.py)
_TORCH_LOAD_ERRORS = (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError, IndexError, KeyError,
                      TypeError, AttributeError, OverflowError, MemoryError, UnicodeDecodeError, struct.error,
                      zipfile.BadZipFile, NotImplementedError, AssertionError)


def save_student(path: Path, model, *, tokenizer, tokenizer_name: str, task: str, metrics: dict[str, float],
                 distill_cfg=None) -> None:
    """``model.pt``: format (the model class's ``CHECKPOINT_FORMAT``), config, weights, tokenizer identity,
    task and metrics; loadable with ``weights_only=True``."""
    from spikebert.tokenize import tokenizer_fingerprint

    save_checkpoint(Path(path), {
        "format": type(model).CHECKPOINT_FORMAT,
        "config": model.cfg.to_dict(),
        "state_dict": model.state_dict(),
        "tokenizer": str(tokenizer_name),
        "tokenizer_sha256": tokenizer_fingerprint(tokenizer),
        "task": task,
        "metrics": metrics,
        "distill_config": distill_cfg.to_dict() if distill_cfg else {},
    })


def build_student(path: str | Path, payload: dict[str, Any], model_cls):
    """The ``model_cls`` student of a loaded checkpoint ``payload``. The payload must hold what
    :func:`save_student` writes (config, tensors, tokenizer identity, task, finite metrics); the config must be
    valid and its model's tensors exactly those of the file (names, shapes, number kinds), every float finite.
    Anything else raises SpikebertError naming the file."""
    if payload.get("format") != model_cls.CHECKPOINT_FORMAT:
        raise SpikebertError(f"{path} is a {payload.get('format')!r:.60} checkpoint, not {model_cls.CHECKPOINT_FORMAT!r}")
    _check_payload(path, payload)
    try:
        cfg = model_cls.CONFIG.from_dict(payload["config"])
    except SpikebertError as err:
        raise type(err)(f"{path}: its stored config is invalid: {err}") from err
    state = payload["state_dict"]
    model = _build_within(path, model_cls, cfg, state)
    _check_tensors(path, model.state_dict(), state)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise SpikebertError(f"{path}: weights do not match the stored config: {err}") from err
    for name, tensor in model.state_dict().items():  # after the cast: a float64 1e300 is inf in float32
        if tensor.is_floating_point() and not bool(tensor.isfinite().all()):
            raise SpikebertError(f"{path}: tensor {name!r} holds NaN or inf (a diverged run or a corrupt file)")
        if name.endswith("running_var") and not bool((tensor >= 0).all()):
            raise SpikebertError(f"{path}: tensor {name!r} holds negative variances (a corrupt file)")
    return model.eval()


def _check_payload(path, payload: dict[str, Any]) -> None:
    """The entries :func:`save_student` writes, of their types."""
    import math

    import torch

    missing = sorted({"config", "state_dict", "tokenizer", "tokenizer_sha256", "task", "metrics"} - set(payload))
    if missing:
        raise SpikebertError(f"{path}: the checkpoint lacks {missing}; save students with spikebert.io.save_student")
    for key in ("tokenizer", "tokenizer_sha256", "task"):
        if not isinstance(payload[key], str):
            raise SpikebertError(f"{path}: checkpoint entry {key!r} must be a string, got {type(payload[key]).__name__}")
    for key in ("config", "state_dict", "metrics") + (("distill_config",) if "distill_config" in payload else ()):
        if not isinstance(payload[key], dict):
            raise SpikebertError(f"{path}: checkpoint entry {key!r} must be a dict, got {type(payload[key]).__name__}")
    bad = [k for k, v in payload["metrics"].items() if not isinstance(k, str) or isinstance(v, bool)
           or not isinstance(v, (int, float)) or (isinstance(v, float) and not math.isfinite(v))]
    if bad:
        raise SpikebertError(f"{path}: metrics {bad!r:.80} are not finite numbers")
    bad = [k for k, v in payload["state_dict"].items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise SpikebertError(f"{path}: state_dict entries {bad!r:.80} are not named tensors")


class _OverBudget(Exception):
    pass


def _build_within(path, model_cls, cfg, state: dict):
    """``model_cls(cfg)``, allocating no more than the file's tensors (and some slack): a corrupt config that
    asks for a huge or very deep model is refused before it takes the machine's memory or time."""
    from torch.overrides import TorchFunctionMode

    depth = getattr(cfg, "depth", 0)
    if isinstance(depth, int) and depth > len(state):  # every layer has tensors
        raise SpikebertError(f"{path}: the stored config has depth {depth}, but the file holds {len(state)} tensors")
    left = [4 * sum(t.numel() for t in state.values()) + 10_000_000]

    class Budget(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            left[0] -= _factory_numel(func, args, kwargs)
            if left[0] < 0:
                raise _OverBudget
            return func(*args, **kwargs)

    try:
        with Budget():
            return model_cls(cfg)
    except _OverBudget:
        raise SpikebertError(f"{path}: the stored config describes a model far larger than the file's tensors "
                             f"({sum(t.numel() for t in state.values())} numbers); the file is corrupt") from None
    except (RuntimeError, ValueError, TypeError, OverflowError, MemoryError, ZeroDivisionError) as err:
        raise SpikebertError(f"{path}: the stored config does not describe a buildable {model_cls.__name__}: "
                             f"{str(err)[:200]}") from err


def _factory_numel(func, args, kwargs) -> int:
    """Elements a tensor factory call will allocate (0 for other calls)."""
    import math

    import torch

    if func in (torch.empty, torch.zeros, torch.ones, torch.rand, torch.randn, torch.full):
        size = args[0] if len(args) == 1 or func is torch.full else args
        size = kwargs.get("size", size)
        size = (size,) if isinstance(size, int) else size
        try:
            return math.prod(int(d) for d in size)
        except (TypeError, ValueError):
            return 0
    if func is torch.arange:  # arange(end) or arange(start, end[, step])
        nums = [a for a in args if isinstance(a, (int, float))]
        if not nums:
            return 0
        start, end, step = (0, nums[0], 1) if len(nums) == 1 else (nums[0], nums[1], nums[2] if len(nums) > 2 else 1)
        return max(0, math.ceil((end - start) / step)) if step and math.isfinite((end - start) / step) else 0
    return 0


def _check_tensors(path, expected: dict, state: dict) -> None:
    """The file's tensors against the config's model: names, shapes and number kinds must agree."""
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    shapes = [f"{k}: {tuple(state[k].shape)} in the file, {tuple(v.shape)} in the model" for k, v in expected.items()
              if k in state and state[k].shape != v.shape]
    kinds = [f"{k}: {state[k].dtype} for a {v.dtype} tensor" for k, v in expected.items()
             if k in state and _number_kind(state[k]) != _number_kind(v)]
    if missing or unexpected or shapes or kinds:
        what = ([f"missing tensors {missing[:5]}"] if missing else []) + (
            [f"unexpected tensors {unexpected[:5]}"] if unexpected else []) + shapes[:5] + kinds[:5]
        raise SpikebertError(f"{path}: weights do not match the stored config: {'; '.join(what)}")


def _number_kind(tensor) -> str:
    import torch

    if tensor.is_floating_point() or tensor.is_complex():
        return "complex" if tensor.is_complex() else "float"
    return "bool" if tensor.dtype == torch.bool else "int"


def load_model(path: str | Path, model_cls):
    """``(model, payload)`` of a checkpoint that must hold a ``model_cls`` student (for training code that
    knows its kind; ``spikebert.students.load_student`` takes any registered kind)."""
    payload = load_checkpoint(path, expected_format=model_cls.CHECKPOINT_FORMAT)
    return build_student(path, payload, model_cls), payload
