"""Safe checkpoint I/O and run identities (atomic writes: ``spikebert.contract.fileio``).

Checkpoints are plain ``torch.save`` dictionaries of tensors, strings and numbers, always loaded
with ``weights_only=True``: loading a checkpoint never executes code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from spikebert.contract.errors import MissingFileError, SpikebertError
from spikebert.contract.fileio import atomic_write

CHECKPOINT_FORMAT = "spikebert-student/1"
SPIKING_CHECKPOINT_FORMAT = "spikingbert-student/1"  # the SpikingBERT student (spikebert.spikingbert)


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


def load_checkpoint(path: str | Path, *,
                    expected_format: str | tuple[str, ...] = CHECKPOINT_FORMAT) -> dict[str, Any]:
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
