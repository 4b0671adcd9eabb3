"""NIR files with SpikeBERT's extension nodes: ``read_graph`` checks everything a file holds, ``write_graph``
writes atomically.

Reading builds on :mod:`~spikebert.contract.extension` (the node types) and :mod:`~spikebert.contract.graph`
(edge shapes), so neither of those imports this module.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nir
import numpy as np

from spikebert.contract.errors import MissingFileError, SpikebertError
from spikebert.contract.extension import EXTENSION_NODES
from spikebert.contract.graph import check_edge_shapes

# -- reading -------------------------------------------------------------------------------------------
# What a NIR file may hold, node type by node type: field -> kind (read by ``_field``); "?" marks an optional field.
# Anything else in a node (an unknown key, a missing field, a value of another kind) is refused by name.
_A = "array"  # a real-valued number array, every element finite
_NODE_FIELDS: dict[str, dict[str, str]] = {
    "Input": {"shape": "shape"},
    "Output": {"shape": "shape"},
    "Affine": {"weight": _A, "bias": _A},
    "Linear": {"weight": _A},
    "Scale": {"scale": _A},
    "Threshold": {"threshold": _A},
    "Delay": {"delay": _A},
    "I": {"r": _A},
    "IF": {"r": _A, "v_threshold": _A, "v_reset?": _A},
    "LI": {"tau": _A, "r": _A, "v_leak": _A},
    "LIF": {"tau": _A, "r": _A, "v_leak": _A, "v_threshold": _A, "v_reset?": _A},
    "CubaLI": {"tau_syn": _A, "tau_mem": _A, "r": _A, "v_leak": _A, "w_in?": _A},
    "CubaLIF": {"tau_syn": _A, "tau_mem": _A, "r": _A, "v_leak": _A, "v_threshold": _A, "v_reset?": _A, "w_in?": _A},
    "Conv1d": {"weight": _A, "bias": _A, "stride": "int>=1", "padding": "padding", "dilation": "int>=1",
               "groups": "int>=1", "input_shape?": "int>=1"},
    "Conv2d": {"weight": _A, "bias": _A, "stride": "ints>=1", "padding": "padding", "dilation": "ints>=1",
               "groups": "int>=1", "input_shape?": "ints>=1"},
    "SumPool2d": {"kernel_size": "ints>=1", "stride": "ints>=1", "padding": "ints>=0"},
    "AvgPool2d": {"kernel_size": "ints>=1", "stride": "ints>=1", "padding": "ints>=0"},
    "Flatten": {"input_type?": "shape", "start_dim?": "int", "end_dim?": "int"},
    "SBTokenEmbedding": {"weight": _A, "max_len": "int>=1", "pad_token_id": "int>=0", "position_weight?": _A},
    "SBPositionSpikes": {"max_len": "int>=1", "pad_token_id": "int>=0"},
    "SBLayerNorm": {"weight": _A, "bias": _A, "groups": "int>=1", "eps": "float>0", "tokens": "int>=1"},
    "SBSpikeAttention": {"dim": "int>=1", "heads": "int>=1", "scale": "floats", "tokens": "int>=1",
                         "mask_padding": "bool", "relative_bias?": _A},
    "SBSpikeDrivenAttention": {"dim": "int>=1", "tokens": "int>=1", "mask_padding": "bool", "tau": _A, "r": _A,
                               "v_leak": _A, "v_threshold": _A, "v_reset": _A},
    "SBTokenMean": {"dim": "int>=1", "tokens": "int>=1", "mask_padding": "bool"},
    "SBIF": {"r": _A, "v_threshold": _A, "leak": _A},
}
_NEURON_PARAMS = ("tau", "tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "v_reset", "w_in", "leak")
_MAX_DEPTH, _MAX_OBJECTS = 32, 1_000_000  # NIR files nest a few levels; a link cycle in a corrupt file would not end
# HDF5 and h5py report a corrupt file through any of these
_HDF5_ERRORS = (OSError, RuntimeError, KeyError, ValueError, TypeError, IndexError, AttributeError, OverflowError,
                MemoryError, SystemError)


class _Corrupt(Exception):
    """A structural problem of the HDF5 file found while walking it."""


def read_graph(path: str | Path) -> nir.NIRGraph:
    """Read a NIR file that may contain SpikeBERT extension nodes.

    The file must hold a valid graph: known node types with exactly their fields, every number finite, neuron
    parameters of one shape with positive time constants, biases of the weight's output shape, edges between
    existing nodes (no duplicates) that carry the shape their destination takes, metadata ``time_steps`` a
    positive integer and ``dt`` positive. Anything else raises ``SpikebertError`` naming the file and the fix."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"NIR file {path} does not exist")
    data = _read_hdf5(path)
    found = data.get("type") if isinstance(data, dict) else type(data).__name__
    if not isinstance(found, str) or found != "NIRGraph" or not isinstance(data, dict):
        raise SpikebertError(f"{path}: top-level NIR node is {found!r:.40}, expected a NIRGraph")
    try:
        return _graph_from_dict(data, where="graph")
    except SpikebertError as err:
        raise type(err)(f"{path}: {err}") from err


def _read_hdf5(path: Path):
    """The ``/node`` group of a NIR file as a tree of dicts, numbers, strings and arrays.

    Where the platform can fork, the HDF5 library reads the file in a child process under a time limit: on some
    damaged structures (a corrupt global heap under a string) it loops for ever or crashes, and that must end in
    an error message, not a hung or killed command."""
    if not (hasattr(os, "fork") and sys.platform.startswith("linux")):
        return _read_hdf5_here(path)
    limit = HDF5_READ_LIMIT_S + path.stat().st_size / 1e6  # + 1 s per MB for large graphs
    status, value = _in_child(lambda: _read_hdf5_here(path), limit)
    if status == "ok":
        return value
    if status == "error":
        raise SpikebertError(value)
    if status == "bug":
        raise RuntimeError(f"reading {path} failed in the HDF5 reader process:\n{value}")
    raise SpikebertError(f"{path} is not a readable NIR/HDF5 file (truncated or corrupt?): the HDF5 library {value} "
                         "while reading it")


HDF5_READ_LIMIT_S = 15.0


def _read_hdf5_here(path: Path):
    import h5py

    budget = [max(1 << 20, 1100 * path.stat().st_size)]  # deflate expands at most ~1032x: more is a corrupt header
    try:
        with h5py.File(path, "r") as f:
            if "node" not in f:
                raise SpikebertError(f"{path} is an HDF5 file but not a NIR graph (no /node group)")
            return _hdf5_tree(f, "node", budget, depth=0, count=[0])
    except SpikebertError:
        raise
    except (_Corrupt, *_HDF5_ERRORS) as err:
        raise SpikebertError(f"{path} is not a readable NIR/HDF5 file (truncated or corrupt?): {err}") from err


def _in_child(work, limit_s: float) -> tuple[str, object]:
    """Run ``work()`` in a forked child: ("ok", result), ("error", SpikebertError message), ("bug", traceback),
    or ("died", how) when it crashed or ran over ``limit_s`` seconds (it is killed)."""
    import pickle
    import select
    import signal
    import time
    import traceback

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        try:
            os.close(read_end)
            try:
                result = ("ok", work())
            except SpikebertError as err:
                result = ("error", str(err))
            except BaseException:  # noqa: BLE001 - reported to the parent as a bug, with its traceback
                result = ("bug", traceback.format_exc())
            with os.fdopen(write_end, "wb") as out:
                out.write(pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))
        finally:
            os._exit(0)
    os.close(write_end)
    chunks, deadline, done = [], time.monotonic() + limit_s, False
    try:
        with os.fdopen(read_end, "rb", buffering=0) as pipe:
            while not done and time.monotonic() < deadline:
                ready, _, _ = select.select([pipe], [], [], max(0.0, deadline - time.monotonic()))
                if ready:
                    chunk = pipe.read(1 << 20)
                    chunks.append(chunk)
                    done = not chunk
    finally:
        if not done:
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
    if not done:
        return "died", f"ran over {limit_s:.0f} s (a loop on a damaged structure)"
    if os.WIFSIGNALED(status):
        return "died", f"crashed (signal {os.WTERMSIG(status)})"
    try:
        return pickle.loads(b"".join(chunks))  # the child's own pickle of plain data
    except (pickle.UnpicklingError, EOFError, ValueError) as err:
        return "died", f"ended without a result ({err})"


def _hdf5_tree(group, key: str, budget: list[int], *, depth: int, count: list[int]):
    import h5py

    link = group.get(key, getlink=True)
    if not isinstance(link, h5py.HardLink):  # NIR writes none; a soft or external link could loop or leave the file
        raise _Corrupt(f"{key!r} is a {type(link).__name__}")
    count[0] += 1
    if depth > _MAX_DEPTH or count[0] > _MAX_OBJECTS:
        raise _Corrupt("the groups nest deeper or hold more objects than any NIR graph (a link cycle?)")
    item = group[key]
    if isinstance(item, h5py.Group):
        return {str(k): _hdf5_tree(item, k, budget, depth=depth + 1, count=count) for k in item.keys()}
    if not isinstance(item, h5py.Dataset):
        raise _Corrupt(f"{key!r} is a {type(item).__name__}")
    nbytes = int(item.size or 0) * item.dtype.itemsize
    budget[0] -= nbytes
    if budget[0] < 0:
        raise _Corrupt(f"dataset {key!r} claims {nbytes} bytes, more than the file can hold")
    value = item[()]
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray) and value.dtype.kind in "OS":
        return np.array([v.decode("utf-8") if isinstance(v, bytes) else v for v in value.ravel()],
                        dtype=object).reshape(value.shape)
    return value


def _graph_from_dict(data: dict, *, where: str) -> nir.NIRGraph:
    _check_keys(data, {"type", "nodes", "edges"}, {"metadata"}, where)
    if not isinstance(data["nodes"], dict) or not data["nodes"]:
        raise SpikebertError(f"{where}: 'nodes' must be a group of nodes, got {_kind(data['nodes'])}")
    nodes = {name: _node_from_dict(node, where=f"node {name!r}") for name, node in data["nodes"].items()}
    edges = _edges(data["edges"], nodes, where)
    metadata = _metadata(data.get("metadata", {}), where=f"{where} metadata")
    if "time_steps" in metadata:
        metadata["time_steps"] = _field(metadata["time_steps"], "int>=1", f"{where} metadata 'time_steps'")
    if "dt" in metadata:
        metadata["dt"] = _field(metadata["dt"], "float>0", f"{where} metadata 'dt'")
    # NIR's type inference would silently add an Input before a root and an Output after a leaf; a file whose
    # graph has such dangling nodes is refused instead (an edge was lost, or a node was left over)
    targets, sources = {d for _, d in edges}, {s for s, _ in edges}
    roots = sorted(n for n, node in nodes.items() if n not in targets and not isinstance(node, nir.Input))
    leaves = sorted(n for n, node in nodes.items() if n not in sources and not isinstance(node, nir.Output))
    if roots or leaves:
        raise SpikebertError(f"{where}: " + "; ".join(
            ([f"nodes {roots} take no input and are not Input nodes"] if roots else [])
            + ([f"nodes {leaves} feed nothing and are not Output nodes"] if leaves else []))
            + " (an edge is missing or a node is left over)")
    try:
        graph = nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata)
    except (ValueError, TypeError, KeyError, IndexError, AssertionError) as err:
        raise SpikebertError(f"{where}: NIR's type check failed: {err}") from err
    check_edge_shapes(graph)
    return graph


def _node_from_dict(data, *, where: str) -> nir.NIRNode:
    if not isinstance(data, dict):
        raise SpikebertError(f"{where} must be a group, got {_kind(data)}")
    kind = data.get("type")
    if isinstance(kind, str) and kind == "NIRGraph":
        return _graph_from_dict(data, where=where)
    if not isinstance(kind, str) or kind not in _NODE_FIELDS:
        raise SpikebertError(
            f"{where}: unknown NIR node type {kind!r:.40}: not a NIR {nir.version} primitive nor a SpikeBERT "
            f"extension node ({sorted(EXTENSION_NODES)})"
        )
    spec = _NODE_FIELDS[kind]
    _check_keys(data, {"type"} | {k for k in spec if not k.endswith("?")},
                {"metadata"} | {k[:-1] for k in spec if k.endswith("?")}, f"{where} ({kind})")
    kinds = {k.rstrip("?"): v for k, v in spec.items()}
    fields = {k: _field(v, kinds[k], f"{where} ({kind}) field {k!r}") for k, v in data.items() if k in kinds}
    _check_node(kind, fields, f"{where} ({kind})")
    if kind in ("Conv1d", "Conv2d"):
        fields.setdefault("input_shape", None)  # NIR's field has no default
    cls = EXTENSION_NODES.get(kind) or getattr(nir, kind)
    metadata = _metadata(data.get("metadata", {}), where=f"{where} metadata")
    try:
        return cls.from_dict({"type": kind, **fields, **({"metadata": metadata} if metadata else {})})
    except SpikebertError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, AssertionError, ZeroDivisionError, OverflowError) as err:
        raise SpikebertError(f"{where} ({kind}): {err}") from err


def _check_keys(data: dict, required: set[str], optional: set[str], where: str) -> None:
    missing, unknown = sorted(required - set(data)), sorted(set(data) - required - optional)
    if missing or unknown:
        what = ([f"lacks {missing}"] if missing else []) + ([f"has unknown field(s) {unknown}"] if unknown else [])
        raise SpikebertError(f"{where} {' and '.join(what)}; its fields are {sorted(required | optional)}")


def _kind(value) -> str:
    if isinstance(value, np.ndarray):
        return f"an array of {value.dtype} with shape {value.shape}"
    return f"a {type(value).__name__} ({value!r:.40})"


def _field(value, kind: str, where: str):
    """``value`` as a field of ``kind`` ("array", "int>=1", "float>0", "bool", "shape", "ints>=1", "padding", ...)."""
    if kind == _A:
        arr = np.asarray(value) if isinstance(value, (np.ndarray, np.generic)) else None
        if arr is None or arr.dtype.kind not in "iuf":
            raise SpikebertError(f"{where} must be an array of real numbers, got {_kind(value)}")
        if not np.all(np.isfinite(arr)):
            raise SpikebertError(f"{where} holds NaN or inf; the file is corrupt or was written from a diverged model")
        return arr
    if kind == "bool":
        if not isinstance(value, (bool, np.bool_)):
            raise SpikebertError(f"{where} must be a boolean, got {_kind(value)}")
        return bool(value)
    if kind == "padding":
        if isinstance(value, str):
            if value not in ("same", "valid"):
                raise SpikebertError(f"{where} must be 'same', 'valid' or integers >= 0, got {value!r:.40}")
            return value
        return _field(value, "ints>=0", where)
    if kind.startswith("ints"):  # an integer or a 1-D array of them (Conv2d, pooling)
        lo = int(kind[len("ints>="):])
        arr = np.asarray(value) if isinstance(value, (np.ndarray, np.generic, int)) else None
        if arr is None or arr.dtype.kind not in "iu" or arr.ndim > 1 or not np.all(arr >= lo):
            raise SpikebertError(f"{where} must be integers >= {lo}, got {_kind(value)}")
        return int(arr) if arr.ndim == 0 else arr
    if kind == "shape":
        arr = np.asarray(value) if isinstance(value, (np.ndarray, np.generic)) else None
        if arr is None or arr.dtype.kind not in "iu" or arr.ndim != 1 or arr.size == 0 or not np.all(arr >= 1):
            raise SpikebertError(f"{where} must be a shape (a 1-D array of integers >= 1), got {_kind(value)}")
        return arr
    if kind.startswith("int"):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            raise SpikebertError(f"{where} must be an integer, got {_kind(value)}")
        if kind.startswith("int>=") and value < int(kind[len("int>="):]):
            raise SpikebertError(f"{where} must be {kind[len('int'):]}, got {value}")
        return int(value)
    if kind == "floats":  # a number, or a 1-D array of them (SBSpikeAttention's per-head scale)
        if isinstance(value, np.ndarray) and value.ndim == 1:
            return _field(value, _A, where)
        return _field(value, "float", where)
    if kind.startswith("float"):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise SpikebertError(f"{where} must be a number, got {_kind(value)}")
        number = float(value)
        if not np.isfinite(number) or (kind == "float>0" and not number > 0):
            raise SpikebertError(f"{where} must be a finite number{' > 0' if kind == 'float>0' else ''}, got {value}")
        return number
    raise AssertionError(kind)


def _check_node(kind: str, f: dict, where: str) -> None:
    """What NIR's constructors leave unchecked: parameter shapes that agree, positive time constants."""
    params = {k: f[k] for k in _NEURON_PARAMS if k in f and kind not in ("Affine", "Linear")}
    if params and len({v.shape for v in params.values()}) > 1:
        raise SpikebertError(f"{where}: parameters {sorted(params)} must share one shape, got "
                             f"{ {k: v.shape for k, v in params.items()} }")
    for k in ("tau", "tau_syn", "tau_mem"):
        if k in f and not np.all(f[k] > 0):
            raise SpikebertError(f"{where}: time constant {k} must be > 0")
    if kind == "Delay" and not np.all(f["delay"] >= 0):
        raise SpikebertError(f"{where}: delay must be >= 0")
    if kind in ("Affine", "Linear") and f["weight"].ndim < 2:
        raise SpikebertError(f"{where}: weight must be at least 2-D, got shape {f['weight'].shape}")
    if kind == "Affine" and f["bias"].shape != f["weight"].shape[:-1]:
        raise SpikebertError(f"{where}: bias shape {f['bias'].shape} does not match weight {f['weight'].shape} "
                             f"(expected {f['weight'].shape[:-1]})")
    if kind in ("Conv1d", "Conv2d"):
        dims = 3 if kind == "Conv1d" else 4
        w = f["weight"]
        if w.ndim != dims or f["bias"].shape != w.shape[:1] or w.shape[0] % f["groups"]:
            raise SpikebertError(f"{where}: weight {w.shape} (c_out, c_in / groups, kernel...) must be {dims}-D, the "
                                 f"bias {f['bias'].shape} of length c_out, and c_out divisible by groups={f['groups']}")
    if kind == "SBTokenEmbedding" and f["weight"].ndim != 2:
        raise SpikebertError(f"{where}: weight must be (vocab, dim), got shape {f['weight'].shape}")
    if kind == "SBTokenEmbedding" and not f["pad_token_id"] < f["weight"].shape[0]:
        raise SpikebertError(f"{where}: pad_token_id {f['pad_token_id']} outside the vocabulary of "
                             f"{f['weight'].shape[0]} tokens")


def _metadata(data, *, where: str) -> dict:
    """Free-form metadata: strings, booleans, finite numbers and arrays of them, nested groups."""
    if not isinstance(data, dict):
        raise SpikebertError(f"{where} must be a group, got {_kind(data)}")

    def check(value, at):
        if isinstance(value, dict):
            return {k: check(v, f"{at}.{k}") for k, v in value.items()}
        if isinstance(value, (np.ndarray, np.generic, int, float)) and not isinstance(value, (str, bytes)):
            arr = np.asarray(value)
            if arr.dtype.kind in "fc" and not np.all(np.isfinite(arr)):
                raise SpikebertError(f"{at} holds NaN or inf")
        return value

    return {k: check(v, f"{where} {k!r}") for k, v in data.items()}


def _edges(value, nodes: dict, where: str) -> list[tuple[str, str]]:
    arr = np.asarray(value) if isinstance(value, (np.ndarray, list)) else None
    if arr is not None and arr.size == 0:
        return []
    if arr is None or arr.dtype != object or arr.ndim != 2 or arr.shape[1] != 2 \
            or not all(isinstance(x, str) for x in arr.ravel()):
        raise SpikebertError(f"{where}: 'edges' must be (n, 2) node names, got {_kind(value)}")
    edges, seen = [], set()
    for src, dst in arr.tolist():
        for end in (src, dst):
            if end not in nodes:
                raise SpikebertError(f"{where}: edge ({src!r}, {dst!r}) names node {end!r}, which the graph "
                                     "does not have")
        if (src, dst) in seen:
            raise SpikebertError(f"{where}: edge ({src!r}, {dst!r}) appears twice")
        seen.add((src, dst))
        edges.append((src, dst))
    return edges


def write_graph(path: str | Path, graph: nir.NIRGraph) -> None:
    """``nir.write`` through a temporary file, so a failed write never leaves a half file."""
    from spikebert.contract.fileio import atomic_write

    atomic_write(Path(path), lambda tmp: nir.write(tmp, graph))
