"""Run a NIR graph as Lava processes on CPU, batch after batch in one compiled runtime.

The network is compiled once for ``batch_size`` samples; batch k occupies steps kT+1 .. kT+T at
the network's input (later at deeper processes, see ``spikebert.hardware.nir_to_lava``) and all state
resets at the start of each batch. T is decided once per run (:func:`run_time_steps`: the input's
for a tensor input, the metadata's ``time_steps`` for token ids) and every process is built from
it; ``dt`` is checked by the reference executor's rule before any process starts. A graph
quantised by ``spikebert.hardware.quantize`` runs Lava's ``fixed_pt`` models (bit-accurate Loihi
LIF and Dense), any other graph ``floating_pt``. The runtime is stopped on every exit path (errors,
Ctrl-C), so no Lava process outlives a run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import multiprocessing
import os
import signal
import tempfile
import threading
import time
from pathlib import Path

import nir
import numpy as np
from tqdm.auto import tqdm

from spikebert.contract.activity import Activity, NodeActivity
from spikebert.contract.errors import SpikebertError
from spikebert.contract.graph import port_shape
from spikebert.hardware.fixed_point import is_quantised
from spikebert.hardware.lava_env import LavaLogging, lava_available, require_lava
from spikebert.hardware.reference import encode_tokens, metadata_time_steps, resolve_dt, schedule

log = logging.getLogger(__name__)


@dataclasses.dataclass
class LavaRun:
    step_outputs: np.ndarray  # (T, N, C)
    activity: Activity
    num_processes: int
    num_steps: int
    output_latency: int  # steps between a sample's input and its output (one per lava Dense on the path)
    compile_seconds: float
    run_seconds: float
    fuse: str
    fixed_point: bool

    @property
    def logits(self) -> np.ndarray:
        return self.step_outputs.mean(axis=0)


def prepare_lava() -> None:
    """Import Lava's runtime before anything fixes the multiprocessing start method.

    Lava calls ``multiprocessing.set_start_method("fork")`` on import, which raises once the default
    context is in use (tqdm's lock, a DataLoader, ...). Entry points that may run Lava call this first.
    Without Lava (the optional ``[lava]`` extra) there is nothing to prepare: it returns, and
    :func:`run_lava` raises the error that says how to install it.
    """
    import multiprocessing as mp
    import sys

    if "lava.magma.runtime.message_infrastructure.multiprocessing" in sys.modules:
        return
    if not lava_available():
        return
    if mp.get_start_method(allow_none=True) is not None:
        raise RuntimeError("the multiprocessing start method is already set; call spikebert.hardware.lava_runner."
                           "prepare_lava() at program start, before tqdm, torch data loaders or Lava run")
    import lava.magma.runtime.message_infrastructure.multiprocessing  # noqa: F401


def _batched(x: np.ndarray, B: int, fill=0) -> np.ndarray:
    """(N, ...) -> (n_batches, B, ...), the last batch padded with ``fill``."""
    n_batches = -(-len(x) // B)
    pad = np.full((n_batches * B - len(x), *x.shape[1:]), fill, dtype=x.dtype)
    return np.concatenate([x, pad]).reshape(n_batches, B, *x.shape[1:])


def run_lava(graph: nir.NIRGraph, ids: np.ndarray | None = None, *, inputs: np.ndarray | None = None,
             batch_size: int = 64, fuse: str = "blocks", dt: float | None = None, progress: bool = True) -> LavaRun:
    """Simulate token ``ids`` (N, L) of a SpikeBERT graph, or ``inputs`` (T, N, *input shape) of a
    graph with a tensor Input, through ``graph`` in Lava; returns per-step outputs and activity.

    T: the metadata ``time_steps`` for token ids (the T the student was exported for, 1 if absent),
    the input's first axis for ``inputs`` (whatever the metadata says; a disagreement is logged).
    ``dt``: as :class:`~spikebert.hardware.reference.ReferenceExecutor` (metadata ``"dt"``, else this
    argument; :func:`~spikebert.hardware.reference.resolve_dt`), checked before any Lava process starts.
    """
    require_lava("the Lava backend (--backend lava)")
    prepare_lava()
    if (ids is None) == (inputs is None):
        raise SpikebertError("give token ids (SpikeBERT graphs) or inputs (T, N, ...) for a graph with a tensor Input")
    dt = resolve_dt(graph, dt)
    with tempfile.TemporaryDirectory(prefix="spikebert-lava-") as tmp, LavaLogging() as logs:
        return _run(graph, ids, inputs, batch_size=batch_size, fuse=fuse, dt=dt, progress=progress,
                    error_path=str(Path(tmp) / "errors.txt"), logs=logs)


def run_time_steps(graph: nir.NIRGraph, inputs: np.ndarray | None) -> int:
    """The one T of a run: every process of the network (sources, resets, sentence windows, the sink)
    is built from it. Token ids: the metadata's; a tensor input: its own, logged when the metadata
    says otherwise."""
    if inputs is None:
        return metadata_time_steps(graph)
    T = int(np.shape(inputs)[0])
    meta = graph.metadata.get("time_steps")
    if meta is not None and int(meta) != T:
        log.warning("the input has T=%d steps, the graph metadata time_steps=%d: running T=%d steps (the input wins)",
                    T, int(meta), T)
    return T


def _run(graph, ids, inputs, *, batch_size, fuse, dt, progress, error_path, logs: LavaLogging) -> LavaRun:
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg

    from spikebert.hardware.nir_to_lava import build_network

    fixed = is_quantised(graph)
    if ids is not None:
        T = run_time_steps(graph, None)
        enc = encode_tokens(graph, ids)
        if fixed and not np.array_equal(enc.spikes, np.rint(enc.spikes)):
            raise SpikebertError("this graph's encoder sends real-valued currents, which the fixed-point token source "
                                 "cannot carry: quantise the graph with spikebert.hardware.quantize (it gives the "
                                 "embedding an integer scale), or run it in floating point")
        N, L = len(ids), enc.spikes.shape[2]
        B = max(1, min(batch_size, N))
        mask = enc.mask if enc.mask is not None else np.ones((N, L), dtype=bool)
        masks = _batched(mask, B, fill=False)  # filler rows have no real token
        n_batches = len(masks)
        source_node, real = enc.first_node, float(mask.sum())
        source = _token_source(_batched(enc.spikes, B), T, error_path)
        extra = {n: _token_source(_batched(x, B), T, error_path, name=n) for n, x in enc.positions.items()}
    else:
        x = np.asarray(inputs, dtype=np.float64)
        source_node = next((n for n in schedule(graph).order if isinstance(graph.nodes[n], nir.Input)), None)
        if source_node is None:
            raise SpikebertError("the graph has no Input node to feed inputs (T, N, ...) to")
        expected = port_shape(graph.nodes[source_node], "output")
        if x.ndim < 2 or 0 in x.shape[:2] or (expected is not None and x.shape[2:] != expected):
            shape = "*input shape" if expected is None else ", ".join(map(str, expected))
            raise SpikebertError(f"inputs must be (T, N, {shape}) with T, N >= 1, got {x.shape}")
        T, N = run_time_steps(graph, x), x.shape[1]
        B = max(1, min(batch_size, N))
        positions = int(np.prod(x.shape[3:]))
        masks = _batched(np.ones((N, positions), dtype=bool), B, fill=False)
        n_batches = len(masks)
        real = float(N * positions)
        drive = _batched(x.transpose(1, 0, *range(2, x.ndim)), B)  # (n_batches, B, T, ...)
        source = _tensor_source(drive, fixed, tail=len(graph.nodes))
        extra = {}
    t0 = time.perf_counter()
    net = build_network(graph, source_node=source_node, source=source, batch=B, n_batches=n_batches,
                        time_steps=T, dt=dt, masks=masks, fuse=fuse, error_path=error_path, extra_sources=extra)
    logs.restore()  # lava-nc's root-logger handlers, one per Process built
    cfg = Loihi2SimCfg(select_tag="fixed_pt" if fixed else "floating_pt", select_sub_proc_model=False,
                       exception_proc_model_map=net.exceptions)
    log.info("Lava network (%s, fuse=%s): %d processes, %d steps (%d batches of %d, T=%d, output latency %d)",
             "fixed_pt" if fixed else "floating_pt", fuse, net.num_processes, net.num_steps, n_batches, B, T,
             net.output_latency)
    before = set(multiprocessing.active_children())
    try:
        with _watch(error_path) as interrupt:
            net.source.create_runtime(run_cfg=cfg, compile_config=_compile_config(net))
            logs.restore()  # and the compiler's
            compile_s = time.perf_counter() - t0
            t1 = time.perf_counter()
            for k in tqdm(range(n_batches), desc="lava batches", disable=not progress, leave=False):
                interrupt.check()
                steps = T + (net.output_latency if k == n_batches - 1 else 0)
                net.source.run(condition=RunSteps(num_steps=steps), run_cfg=cfg)
            interrupt.check()
            run_s = time.perf_counter() - t1
            data = net.sink.data.get()  # (B, *out, steps)
            stats = {name: p.stats.get() for name, p in net.groups.items()}
            net.source.stop()
    except BaseException as err:
        _release(net, set(multiprocessing.active_children()) - before,
                 why="Ctrl-C" if isinstance(err, KeyboardInterrupt) else "an error")
        raise
    lat = net.output_latency
    data = np.moveaxis(data[..., lat:lat + n_batches * T], -1, 0)  # (n_batches T, B, *out)
    out_shape = data.shape[2:]
    steps = data.reshape(n_batches, T, B, *out_shape).transpose(1, 0, 2, *range(3, 3 + len(out_shape)))
    steps = steps.reshape(T, n_batches * B, *out_shape)[:, :N]
    activity = Activity(backend="lava-fixed_pt" if fixed else "lava-floating_pt", samples=N, time_steps=T,
                        real_tokens=real, nodes={})
    for proc_name, proc in net.groups.items():
        spec = proc.proc_params["spec"]
        for i, name in enumerate(spec.recorded):
            s = stats[proc_name][i]
            activity.nodes[name] = NodeActivity(input_nonzeros=s[0], input_abs_sum=s[1], input_elements=s[2],
                                                qk_accumulates=s[3], av_accumulates=s[4])
    unrecorded = sorted(net.lava_processes.keys() & {n for n, node in graph.nodes.items()
                                                     if isinstance(node, (nir.Affine, nir.Linear))})
    if unrecorded:
        log.info("activity of %s (lava-nc Dense processes) is not recorded in this build", unrecorded)
    return LavaRun(step_outputs=steps, activity=activity, num_processes=net.num_processes, num_steps=net.num_steps,
                   output_latency=lat, compile_seconds=compile_s, run_seconds=run_s, fuse=fuse, fixed_point=fixed)


CHANNEL_SLOTS = 4  # messages a Lava channel buffers (lava-nc's default 64 holds 64 copies of every message)


def _compile_config(net) -> dict:
    """lava-nc allocates each channel's shared memory for ``pypy_channel_size`` messages; the processes run in
    lockstep, so a few suffice, and the deployable build's (L, B, C) messages (tens of MB) need few."""
    return {"pypy_channel_size": CHANNEL_SLOTS}


def _token_source(spikes: np.ndarray, T: int, error_path: str, name: str = "encoder"):
    from spikebert.hardware.lava_procs.process import TokenSpikeSource

    return TokenSpikeSource(spikes=spikes, time_steps=T, error_path=error_path, name=name)


class LavaProcessError(RuntimeError):
    """A Lava ProcessModel raised; the message carries its traceback."""


WATCHDOG_REPEAT_S = 2.0  # how often the watchdog signals a failed process again until the run has stopped


class _Interrupt:
    """What the SIGINT handler of :func:`_watch` raised, for ``check()`` to raise again if it was swallowed."""

    def __init__(self):
        self.pending: BaseException | None = None

    def check(self) -> None:
        if self.pending is not None:
            raise self.pending.with_traceback(None)  # raised here: the handler's frame is gone


@contextlib.contextmanager
def _watch(error_path: str, poll: float = 0.2):
    """Turn an exception inside a Lava process into one in this thread.

    lava-nc 0.10 does not recover from a ProcessModel that raises: the failed process waits on its
    ports and the runtime waits on it. Our models append the traceback to ``error_path``; a thread
    polls it and interrupts the main thread (SIGINT), whose handler raises :class:`LavaProcessError`
    (a real Ctrl-C still raises KeyboardInterrupt). The caller then kills the processes. Lava's
    processes, forked while the handler is installed, ignore SIGINT: a terminal's Ctrl-C reaches
    the whole process group, and this process alone decides how they stop (no traceback per process).

    A handler's exception is lost when the signal lands while the main thread runs a finaliser (a
    ``__del__`` that logs: Python prints "Exception ignored" and goes on). So the handler also records
    what it raised, the caller calls the yielded :class:`_Interrupt`'s ``check()`` between batches, and the
    watchdog repeats its signal until the main thread has left the block (a failed process blocks the run).
    """
    interrupt = _Interrupt()
    if threading.current_thread() is not threading.main_thread():
        yield interrupt  # signals reach the main thread only; run without the watchdog
        return
    done = threading.Event()
    owner = os.getpid()
    path = Path(error_path)

    def failed() -> bool:
        return path.exists() and path.stat().st_size > 0

    def handler(signum, frame):
        if os.getpid() != owner:
            return  # a Lava process forked under this handler (a terminal's Ctrl-C reaches them all): the owner stops it
        if done.is_set():
            return  # the block is left, its exception on its way: a late repeat of the watchdog's signal
        if failed():
            interrupt.pending = LavaProcessError("a Lava process failed:\n" + path.read_text(encoding="utf-8"))
        else:
            interrupt.pending = KeyboardInterrupt()
        raise interrupt.pending

    def watchdog():
        while not failed():
            if done.wait(poll):
                return
        time.sleep(poll)  # let the traceback finish
        while not done.is_set():  # until the main thread leaves the block: a finaliser may swallow one raise
            os.kill(os.getpid(), signal.SIGINT)
            done.wait(WATCHDOG_REPEAT_S)

    previous = signal.signal(signal.SIGINT, handler)
    thread = threading.Thread(target=watchdog, name="lava-watchdog", daemon=True)
    thread.start()
    try:
        yield interrupt
    finally:
        done.set()
        thread.join()
        signal.signal(signal.SIGINT, previous)


def _abandon_runtime(net) -> None:
    """Forget a runtime whose processes were killed: lava-nc's ``Process.__del__`` and
    ``Runtime.__del__`` would otherwise call ``stop()``, which waits forever on the dead processes'
    channels (at garbage collection, e.g. interpreter exit). lava-nc has no public call for this."""
    runtime = net.source.runtime
    if runtime is not None:
        runtime._is_started = runtime._is_running = False
    for proc in (net.source, net.sink, *net.groups.values(), *net.lava_processes.values(), *net.loops.values()):
        proc.runtime = None


def _release(net, children: set, *, why: str) -> None:
    """After a failure or Ctrl-C, when Lava's runtime cannot stop: terminate its processes, then shut its
    shared-memory manager down, which unlinks every channel's segment (a killed manager would leave
    them to the resource tracker, which warns "N leaked shared_memory objects" at exit), and forget
    the runtime."""
    manager = _shared_memory_manager(net)
    server = getattr(getattr(manager, "_manager", None), "_process", None)
    _kill(children - {server}, why=why)
    if manager is not None:
        _shutdown_shared_memory(manager)
    _abandon_runtime(net)


def _shared_memory_manager(net):
    """lava-nc's SharedMemoryManager of a network's runtime (lava-nc has no public call for it), or None
    when the runtime was not built far enough to have one."""
    runtime = getattr(net.source, "runtime", None)
    infrastructure = getattr(runtime, "_messaging_infrastructure", None)
    return getattr(infrastructure, "smm", None)


def _shutdown_shared_memory(manager) -> None:
    """lava-nc's ``SharedMemoryManager.shutdown``, robust to handles still exported in this process: close
    our mappings where possible, then stop the manager server (it unlinks every segment it created)."""
    for handle in getattr(manager, "_shared_memory_handles", []):
        with contextlib.suppress(BufferError, OSError):
            handle.close()
    server = getattr(manager, "_manager", None)
    if server is not None:
        try:
            server.shutdown()
        except Exception as err:  # the server died with the run: nothing left to unlink through it
            log.warning("Lava's shared memory manager did not shut down cleanly: %s", err)
        manager._manager = None
    manager._shared_memory_handles = []


def _kill(processes, *, why: str = "an error") -> None:
    """Terminate Lava's processes after a failure or Ctrl-C, when its runtime cannot stop them."""
    for p in processes:
        p.terminate()
    for p in processes:
        multiprocessing.Process.join(p, 5)  # lava's SystemProcess.join takes no timeout
        if p.is_alive():
            p.kill()
            multiprocessing.Process.join(p, 5)
    if processes:
        log.warning("stopped %d Lava processes after %s", len(processes), why)


def _tensor_source(drive: np.ndarray, fixed: bool, *, tail: int):
    """lava-nc's RingBuffer source: batch k's step t at global step kT + t + 1, then ``tail`` steps of
    zeros (at least the output latency, so the buffer never wraps around into a replay)."""
    from lava.proc.io.source import RingBuffer

    n_batches, B, T = drive.shape[:3]
    data = np.moveaxis(drive, 2, 1).reshape(n_batches * T, B, *drive.shape[3:])  # (steps, B, ...)
    tail = np.zeros((tail, *data.shape[1:]))
    data = np.moveaxis(np.concatenate([data, tail]), 0, -1)  # (B, ..., steps)
    if fixed:
        if not np.array_equal(data, np.rint(data)):
            raise SpikebertError("a fixed-point graph takes integer inputs (spikes or counts)")
        data = data.astype(np.int32)
    return RingBuffer(data=data)
