"""Reading the project's JSON files (configs, activity records): every way a file can be unreadable is one
``SpikebertError`` that names it, and no non-finite number gets through.

No torch: the contract layer and everything above read through this.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from spikebert.contract.errors import MissingFileError, SpikebertError


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 parses as inf
        raise ValueError(f"number {text} is out of the float range")
    return value


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a finite number")


def read_json(path: str | Path, *, what: str) -> Any:
    """The JSON document in ``path``; ``what`` names the kind of file in errors ("activity record"). UTF-8, a
    BOM allowed; ``NaN``, ``Infinity`` and numbers beyond the float range are refused."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{what} {path} does not exist")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise SpikebertError(f"{path} is not {_a(what)}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except OSError as err:
        raise SpikebertError(f"cannot read {what} {path}: {err}") from err
    try:
        return json.loads(text, parse_float=_finite_float, parse_constant=_no_constant)
    except RecursionError:
        raise SpikebertError(f"{path} is not {_a(what)}: not valid JSON (nested too deeply)") from None
    except ValueError as err:  # JSONDecodeError, a non-finite number, an integer of more than 4300 digits
        raise SpikebertError(f"{path} is not {_a(what)}: not valid JSON ({err})") from None


def require_object(data: Any, path: str | Path, *, what: str) -> dict:
    if not isinstance(data, dict):
        raise SpikebertError(f"{path} is not {_a(what)}: it holds a JSON {_json_kind(data)} where an object belongs")
    return data


def _a(noun: str) -> str:
    return ("an " if noun[:1].lower() in "aeiou" else "a ") + noun


def check_keys(data: dict, path: str | Path, *, where: str, required: set[str], optional: set[str] = frozenset()) -> None:
    """``data`` has every ``required`` key and nothing outside ``required | optional``."""
    missing, unknown = sorted(required - set(data)), sorted(set(data) - required - set(optional))
    if missing or unknown:
        parts = ([f"lacks {missing}"] if missing else []) + ([f"has unknown key(s) {unknown}"] if unknown else [])
        raise SpikebertError(f"{path}: {where} {' and '.join(parts)}; expected keys {sorted(required | set(optional))}")


def integer(value: Any, path: str | Path, *, where: str, minimum: int) -> int:
    """A JSON integer (not a boolean, not 3.0) of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SpikebertError(f"{path}: {where} must be an integer >= {minimum}, got {_json_kind(value)} {value!r:.40}")
    return value


def count(value: Any, path: str | Path, *, where: str) -> float | int:
    """A finite number >= 0 (a total of events or elements)."""
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or (isinstance(value, float) and not math.isfinite(value)) or value < 0):
        raise SpikebertError(f"{path}: {where} must be a finite number >= 0, got {_json_kind(value)} {value!r:.40}")
    return value


def _json_kind(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number",
            type(None): "null"}.get(type(value), type(value).__name__)
