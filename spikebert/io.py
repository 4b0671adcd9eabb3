"""Safe checkpoint I/O and run identities (atomic writes: ``spikebert.contract.fileio``).

Checkpoints are plain ``torch.save`` dictionaries of tensors, strings and numbers, always loaded
with ``weights_only=True``: loading a checkpoint never executes code.
"""

from __future__ import annotations

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
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as err:
        raise SpikebertError(
            f"{path} is not a loadable spikebert checkpoint (truncated, corrupt, or not saved "
            f"with plain tensors): {err}"
        ) from err
    formats = (expected_format,) if isinstance(expected_format, str) else expected_format
    if not isinstance(payload, dict) or payload.get("format") not in formats:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise SpikebertError(
            f"{path} is not a {' or '.join(formats)} checkpoint (found format {found!r}); "
            "train one with `spikebert train distill` or pass the right file"
        )
    return payload


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
    """The ``model_cls`` student of a loaded checkpoint ``payload``; the weights must match its config."""
    if payload.get("format") != model_cls.CHECKPOINT_FORMAT:
        raise SpikebertError(f"{path} is a {payload.get('format')!r} checkpoint, not {model_cls.CHECKPOINT_FORMAT!r}")
    model = model_cls(model_cls.CONFIG.from_dict(payload["config"]))
    try:
        model.load_state_dict(payload["state_dict"], strict=True)
    except RuntimeError as err:
        raise SpikebertError(f"{path}: weights do not match the stored config: {err}") from err
    return model.eval()


def load_model(path: str | Path, model_cls):
    """``(model, payload)`` of a checkpoint that must hold a ``model_cls`` student (for training code that
    knows its kind; ``spikebert.students.load_student`` takes any registered kind)."""
    payload = load_checkpoint(path, expected_format=model_cls.CHECKPOINT_FORMAT)
    return build_student(path, payload, model_cls), payload
