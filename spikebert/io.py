"""Atomic file writes and safe checkpoint I/O.

Checkpoints are plain ``torch.save`` dictionaries of tensors, strings and numbers, always loaded
with ``weights_only=True``: loading a checkpoint never executes code.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

CHECKPOINT_FORMAT = "spikebert-student/1"


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary file next to ``path`` and rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    import torch

    atomic_write(Path(path), lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path: str | Path, *, expected_format: str = CHECKPOINT_FORMAT) -> dict[str, Any]:
    """Load a checkpoint without executing code; raise a clear error for anything else."""
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as err:
        raise ValueError(
            f"{path} is not a loadable spikebert checkpoint (truncated, corrupt, or not saved "
            f"with plain tensors): {err}"
        ) from err
    if not isinstance(payload, dict) or payload.get("format") != expected_format:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise ValueError(
            f"{path} is not a {expected_format} checkpoint (found format {found!r}); "
            "train one with `spikebert train distill` or pass the right file"
        )
    return payload
