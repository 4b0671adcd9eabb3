"""Run a NIR graph as Lava processes on CPU (floating point), batch after batch in one runtime.

The network is compiled once for ``batch_size`` sentences; batch k occupies steps kT+1 .. kT+T and
every LIF resets at the start of each batch. The runtime is stopped on every exit path.
"""

from __future__ import annotations

import dataclasses
import logging
import time

import nir
import numpy as np
from tqdm.auto import tqdm

from hardware.activity import Activity, NodeActivity
from hardware.reference import SYNAPSE_TYPES, encode_tokens

log = logging.getLogger(__name__)


@dataclasses.dataclass
class LavaRun:
    step_outputs: np.ndarray  # (T, N, C)
    activity: Activity
    num_processes: int
    num_steps: int
    compile_seconds: float
    run_seconds: float

    @property
    def logits(self) -> np.ndarray:
        return self.step_outputs.mean(axis=0)


def prepare_lava() -> None:
    """Import Lava's runtime before anything fixes the multiprocessing start method.

    Lava calls ``multiprocessing.set_start_method("fork")`` on import, which raises once the default
    context is in use (tqdm's lock, a DataLoader, ...). Entry points that will run Lava call this first.
    """
    import multiprocessing as mp
    import sys

    if "lava.magma.runtime.message_infrastructure.multiprocessing" in sys.modules:
        return
    if mp.get_start_method(allow_none=True) is not None:
        raise RuntimeError("the multiprocessing start method is already set; call hardware.lava_runner."
                           "prepare_lava() at program start, before tqdm, torch data loaders or Lava run")
    import lava.magma.runtime.message_infrastructure.multiprocessing  # noqa: F401


def run_lava(graph: nir.NIRGraph, ids: np.ndarray, *, batch_size: int = 64, progress: bool = True) -> LavaRun:
    """Simulate ``ids`` (N, L) through ``graph`` in Lava; returns per-step outputs and activity."""
    prepare_lava()
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg

    from converters.nir_to_lava import build_network

    enc = encode_tokens(graph, ids)
    N, D, L = enc.spikes.shape
    B = min(batch_size, N)
    n_batches = -(-N // B)
    pad = n_batches * B - N
    mask = enc.mask if enc.mask is not None else np.ones((N, L), dtype=bool)
    spikes = np.concatenate([enc.spikes, np.zeros((pad, D, L))]).reshape(n_batches, B, D, L)
    mask = np.concatenate([mask, np.zeros((pad, L), dtype=bool)]).reshape(n_batches, B, L)  # filler: no tokens
    T = int(graph.metadata.get("time_steps", 1))

    t0 = time.perf_counter()
    net = build_network(graph, spikes=spikes, mask=mask, first_node=enc.first_node)
    cfg = Loihi2SimCfg(select_tag="floating_pt", select_sub_proc_model=False)
    log.info("Lava network: %d processes, %d steps (%d batches of %d, T=%d)",
             net.num_processes, net.num_steps, n_batches, B, T)
    compile_s = run_s = 0.0
    try:
        net.source.create_runtime(run_cfg=cfg)
        compile_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        for _ in tqdm(range(n_batches), desc="lava batches", disable=not progress, leave=False):
            net.source.run(condition=RunSteps(num_steps=T), run_cfg=cfg)
        run_s = time.perf_counter() - t1
        data = net.sink.data.get()  # (B, C, steps)
        stats = {name: p.stats.get() for name, p in net.processes.items()
                 if isinstance(graph.nodes[name], SYNAPSE_TYPES)}
    finally:
        net.source.stop()
    C = data.shape[1]
    steps = data.reshape(B, C, n_batches, T).transpose(3, 2, 0, 1).reshape(T, n_batches * B, C)[:, :N]
    activity = Activity(backend="lava-floating_pt", samples=N, time_steps=T,
                        real_tokens=float(mask.sum()) if enc.mask is not None else float(N * L), nodes={})
    for name, s in stats.items():
        node = NodeActivity(input_nonzeros=s[0], input_abs_sum=s[1], input_elements=s[2])
        if len(s) > 3:
            node.qk_accumulates, node.av_accumulates = s[3], s[4]
        activity.nodes[name] = node
    return LavaRun(step_outputs=steps, activity=activity, num_processes=net.num_processes,
                   num_steps=net.num_steps, compile_seconds=compile_s, run_seconds=run_s)
