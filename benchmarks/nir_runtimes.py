"""Run a NIR file in an independent NIR runtime: snnTorch (import mapping), Norse or Sinabs.

Used by ``benchmarks/nir_paper.py`` and tests/test_nir_paper.py to check the reference executor and the
Lava backend against other platforms executing the *same file* on the *same input*. Each runtime
is used through its own NIR import (its node mapping, neuron models and conventions); where that
import is broken in the installed version, the smallest workaround is named in ``NOTES``.

    python benchmarks/nir_runtimes.py --runtime norse --graph g.nir --inputs x.npy --out y.npy [--dt 1e-4]

x.npy: (T, N, *input shape) float; y.npy: the Output node's value per step, (T, N, *output shape).
Norse (1.1) and Sinabs (3.1) pull in their own torch stack: benchmarks/nir_paper.py runs this script
with ``--other-python`` (a venv that has them); snnTorch is the project's own dependency.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import warnings

import numpy as np

NOTES = {
    "snntorch": "snnTorch 1.0's node mapping (snntorch.import_nir._nir_to_snntorch_module) under nirtorch 2.6's "
                "interpreter (nirtorch.nir_to_torch), float32. import_from_nir itself fails on recurrent graphs: it "
                "wraps the LIF <-> W_rec loop into a subgraph, which nirtorch 2.6 recurses into and then fails "
                "('GraphModule' object has no attribute 'items'), and the RSynaptic(init_hidden=True, "
                "reset_delay=False) it would build raises TypeError in forward. On the original graph nirtorch "
                "handles the cycle itself: the recurrent edge carries the previous step's output, zero at step 0. "
                "On the CNN it fails: its IF mapping is snn.Leaky(beta=0.9, init_hidden=False) (a leak NIR's IF "
                "does not have), which returns (spk, mem) into the next Conv2d (TypeError).",
    "norse": "norse.torch.from_nir (Norse 1.1, nirtorch.load's GraphExecutor), float32, dt as given, one unbatched "
             "sample at a time (NIR shapes carry no batch axis: a Flatten(start_dim=0) would flatten a batch)",
    "sinabs-nir": "sinabs.from_nir as 'sinabs', then every IAF layer set to NIR's IF: SingleSpike, MembraneReset "
                  "(to v_reset = 0), no lower bound on v (min_v_mem=None)",
    "sinabs": "sinabs.from_nir (Sinabs 3.1), float32: IF -> IAFSqueeze(min_v_mem=-v_threshold), Sinabs' default "
              "MultiSpike activation (several spikes per step when v >= 2 thresholds) and MembraneSubtract reset",
}


def _quiet():
    return contextlib.redirect_stdout(io.StringIO())


def run_snntorch(graph, x: np.ndarray) -> np.ndarray:
    import nir
    import nirtorch
    import torch
    from snntorch import import_nir

    mapped = (nir.Affine, nir.Linear, nir.Conv2d, nir.Flatten, nir.AvgPool2d, nir.IF, nir.LIF, nir.CubaLIF)
    node_map = {t: (lambda n: import_nir._nir_to_snntorch_module(n, init_hidden=True)) for t in mapped}
    outs = []
    for sample in range(x.shape[1]):  # one sample at a time, unbatched: NIR shapes carry no batch axis
        with _quiet():
            net = nirtorch.nir_to_torch(graph, node_map)
        state, ys = None, []
        with torch.no_grad():
            for t in range(x.shape[0]):
                y, state = net(torch.from_numpy(x[t, sample].astype(np.float32)), state)
                ys.append((y[0] if isinstance(y, tuple) else y).numpy())
        outs.append(np.stack(ys))
    return np.stack(outs, axis=1).astype(np.float64)


def run_norse(graph, x: np.ndarray, dt: float) -> np.ndarray:
    import norse.torch as norse
    import torch

    outs = []
    for sample in range(x.shape[1]):
        net = norse.from_nir(graph, dt=dt, ignore_warnings=True)
        state, ys = None, []
        with torch.no_grad():
            for t in range(x.shape[0]):
                y, state = net(torch.from_numpy(x[t, sample].astype(np.float32)), state)  # unbatched, as NIR
                ys.append(y.numpy())
        outs.append(np.stack(ys))
    return np.stack(outs, axis=1).astype(np.float64)


def run_sinabs(graph, x: np.ndarray, *, nir_semantics: bool = False) -> np.ndarray:
    """``nir_semantics``: after the import, set every IAF layer to NIR's IF (one spike per step, reset to
    v_reset = 0, no lower bound on v), to show that the differences are these conventions alone."""
    import sinabs
    import sinabs.activation as act
    import torch

    T, N = x.shape[:2]
    net = sinabs.from_nir(graph, batch_size=N, num_timesteps=T)
    if nir_semantics:
        for module in net.modules():
            if isinstance(module, sinabs.layers.IAF):
                module.spike_fn, module.reset_fn, module.min_v_mem = act.SingleSpike, act.MembraneReset(), None
    with torch.no_grad():  # Squeeze layers take (N T, ...), sample-major
        flat = torch.from_numpy(x.swapaxes(0, 1).reshape(N * T, *x.shape[2:]).astype(np.float32))
        y = net(flat)
    y = y[0] if isinstance(y, tuple) else y
    return y.numpy().reshape(N, T, *y.shape[1:]).swapaxes(0, 1).astype(np.float64)


def run(runtime: str, path: str, x: np.ndarray, dt: float | None) -> np.ndarray:
    import nir

    warnings.filterwarnings("ignore")
    graph = nir.read(path)
    if runtime == "snntorch":
        return run_snntorch(graph, x)
    if runtime == "norse":
        return run_norse(graph, x, dt)
    if runtime in ("sinabs", "sinabs-nir"):
        return run_sinabs(graph, x, nir_semantics=runtime == "sinabs-nir")
    raise SystemExit(f"unknown runtime {runtime!r}: {sorted(NOTES)}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runtime", required=True, choices=sorted(NOTES))
    p.add_argument("--graph", required=True)
    p.add_argument("--inputs", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--dt", type=float, default=1e-4)
    args = p.parse_args()
    np.save(args.out, run(args.runtime, args.graph, np.load(args.inputs), args.dt))


if __name__ == "__main__":
    main()
