"""The NIR paper's benchmark graphs (Pedersen et al., Nat. Commun. 2024) through the reference executor and Lava,
against the paper's platforms' saved outputs and against independent NIR runtimes on the same file and input.

    python benchmarks/nir_paper.py --out benchmarks/results/nir_paper.json \\
        [--other-python ../nirpaper-venv/bin/python]     # norse 1.1 + sinabs 3.1: benchmarks/nir_runtimes_env.sh

Data: ``../shared/data/nir-paper/paper`` (``--paper``). Per graph: does it load (``read_graph``), run (reference
executor; Lava in the fused, naive and deployable builds), and equal, spike for spike,

* 01_lif: the exact solution and every platform's trace of the ramp input (``01_lif/lif_*.csv``; Lava's traces
  one step late: its Dense delay);
* 03_rnn (Braille, CubaLIF with a recurrent edge): the input sample of the paper's figure
  (``figures/rnn_braille_input.pdf`` embeds it as a 256 x 12 one-bit image, recovered losslessly here), whose
  hidden-layer spikes each platform saved (``*_activity_*.npy``); and random spike inputs through snnTorch's
  node mapping under nirtorch and through Norse;
* 02_cnn (N-MNIST CNN: Conv2d, IF, SumPool2d, Flatten, Affine): random spike inputs (N-MNIST is not available
  offline) through Norse and Sinabs; the saved outputs are accuracies only.

The helpers (paper paths, the figure's input, the LIF traces) are imported by tests/test_nir_paper.py.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]  # the package, and the benchmarks' helpers

from provenance import load_average, provenance  # noqa: E402

PAPER = ROOT.parent / "shared" / "data" / "nir-paper" / "paper"
LIF_DT = RNN_DT = 1e-4  # the paper's step for its LIF and Braille graphs (the files store none)
CNN_DT = 1.0  # IF is dv/dt = r I: the CNN's platforms integrate r I per step, i.e. dt = 1 in the file's unit

GRAPHS = {
    "01_lif": ("01_lif/lif_norse.nir", LIF_DT),
    "01_lif_two_neurons": ("01_lif/debug_spike_representation/two_lif_neurons.nir", LIF_DT),
    "02_cnn": ("02_cnn/cnn_sinabs.nir", CNN_DT),
    "03_rnn_bias_zero": ("03_rnn/braille_noDelay_bias_zero.nir", RNN_DT),
    "03_rnn_noBias_subtract": ("03_rnn/braille_noDelay_noBias_subtract.nir", RNN_DT),
}
UNREADABLE = ["01_lif/lif_rockpool.nir", "03_rnn/extras/braille_noDelay_bias_zero_subgraph.nir",
              "03_rnn/extras/braille_noDelay_noBias_subtract_subgraph.nir"]
LIF_PLATFORMS = ["exact", "norse", "snntorch", "spinnaker2", "nengo", "sinabs", "rockpool", "spyx", "lava_cpu_float",
                 "lava_cpu_fixed", "lava_loihi_fixed"]
RNN_PLATFORMS = ["norse", "snntorch", "spyx", "s2", "nengo", "lava", "rockpool", "xylo"]

log = logging.getLogger("nir_paper")


# --- the paper's data -------------------------------------------------------------------------------


def lif_trace(paper: Path, platform_name: str) -> dict[str, np.ndarray]:
    """``01_lif/lif_<platform>.csv``: columns input, voltage, spike (1000 steps)."""
    a = np.loadtxt(paper / "01_lif" / f"lif_{platform_name}.csv", delimiter=",")
    return {"input": (a[:, 0] != 0).astype(np.float64), "voltage": a[:, 1], "spikes": (a[:, 2] != 0)}


def braille_figure_input(pdf: Path) -> np.ndarray:
    """The Braille sample drawn in ``figures/rnn_braille_input.pdf``, (256 steps, 12 channels) of 0/1.

    The figure embeds it losslessly: a 256 x 12 image of 1 bit per pixel (index 1 = a spike) behind a
    FlateDecode filter with PNG row predictors. Image row r is channel 11 - r (matplotlib's ``origin="lower"``):
    with this orientation the reference executor's hidden spikes equal Norse's saved activity exactly.
    """
    data = Path(pdf).read_bytes()
    head = data.find(b"/Subtype /Image")
    dictionary = data[head:data.find(b"stream", head)]
    width = int(re.search(rb"/Width (\d+)", dictionary).group(1))
    height = int(re.search(rb"/Height (\d+)", dictionary).group(1))
    if (width, height) != (256, 12) or b"/BitsPerComponent 1" not in dictionary:
        raise ValueError(f"{pdf}: expected a 256 x 12 one-bit image, found {width} x {height}")
    start = data.find(b"stream", head) + len(b"stream")
    start += 2 if data[start:start + 2] == b"\r\n" else 1
    raw = zlib.decompress(data[start:data.find(b"endstream", start)])
    stride = width // 8
    rows, previous = [], bytearray(stride)
    for r in range(height):
        kind = raw[r * (stride + 1)]
        line = bytearray(raw[r * (stride + 1) + 1:(r + 1) * (stride + 1)])
        for i in range(stride):  # PNG filters, one byte per pixel group
            a, b = (line[i - 1] if i else 0), previous[i]
            c = previous[i - 1] if i else 0
            if kind == 1:
                line[i] = (line[i] + a) & 255
            elif kind == 2:
                line[i] = (line[i] + b) & 255
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(np.unpackbits(np.frombuffer(bytes(line), np.uint8))[:width])
        previous = line
    return np.array(rows)[::-1].T.astype(np.float64)  # (256, 12)


def saved_activity(paper: Path, platform_name: str, variant: str) -> np.ndarray | None:
    """A platform's hidden-layer spikes on the figure's sample, (256, n_hidden) bool; None if not saved."""
    path = paper / "03_rnn" / f"{platform_name}_activity_noDelay_{variant}.npy"
    if not path.exists():
        return None
    a = np.load(path)
    return (a.T if a.shape[0] != 256 else a) != 0


def random_spikes(shape, rate: float, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).random(shape) < rate).astype(np.float64)


def other_runtime(runtime: str, graph: Path, x: np.ndarray, dt: float, python: str) -> tuple[np.ndarray | None, str]:
    """Run benchmarks/nir_runtimes.py with ``python``; returns (output per step or None, error line)."""
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "x.npy", x)
        done = subprocess.run([python, str(ROOT / "benchmarks" / "nir_runtimes.py"), "--runtime", runtime,
                               "--graph", str(graph), "--inputs", str(Path(tmp) / "x.npy"),
                               "--out", str(Path(tmp) / "y.npy"), "--dt", repr(dt)],
                              capture_output=True, text=True, timeout=1800)
        if done.returncode:
            lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
            return None, lines[-1][:300] if lines else f"exit {done.returncode}"
        return np.load(Path(tmp) / "y.npy"), ""


# --- the benchmark --------------------------------------------------------------------------------


def compare(y: np.ndarray | None, expected: np.ndarray) -> dict:
    if y is None:
        return {}
    if y.shape != expected.shape:
        return {"equal": False, "shape": list(y.shape), "expected_shape": list(expected.shape)}
    return {"equal": bool(np.array_equal(y, expected)), "differing_entries": int(np.count_nonzero(y != expected)),
            "output_spikes": float(y.sum()), "reference_output_spikes": float(expected.sum())}


def lava_builds(graph, x: np.ndarray, dt: float, builds: list[str]) -> dict:
    from spikebert.hardware.lava_runner import run_lava
    from spikebert.hardware.reference import ReferenceExecutor

    expected = ReferenceExecutor(graph, dt=dt).run_inputs(x).step_outputs
    out = {}
    for fuse in builds:
        t0 = time.perf_counter()
        try:
            batch = 1 if fuse == "none" else x.shape[1]  # the naive build's lava-nc Dense has 1-D ports
            run = run_lava(graph, inputs=x, dt=dt, fuse=fuse, batch_size=batch, progress=False)
        except Exception as err:  # reported, not fatal: the JSON says which build cannot host which graph
            out[fuse] = {"error": f"{type(err).__name__}: {str(err).splitlines()[0][:300]}"}
            continue
        out[fuse] = {"equal_reference": bool(np.array_equal(run.step_outputs, expected)),
                     "processes": run.num_processes, "output_latency": run.output_latency,
                     "wall_s": round(time.perf_counter() - t0, 2)}
    return out


def netx_cnn(graph, x: np.ndarray, dt: float) -> dict:
    """The CNN through lava-dl's netx: pools folded into the next synapse, Loihi fixed point, conv/flatten/dense
    layers; compared with the reference executor's fixed point on the same quantised graph."""
    from spikebert.hardware.lava_env import lava_dl_problem
    from spikebert.hardware.nir_to_netx import export_netx, fold_pools, run_netx
    from spikebert.hardware.quantize import quantize_graph
    from spikebert.hardware.reference import ReferenceExecutor

    if lava_dl_problem():
        return {"error": lava_dl_problem()}
    float_out = ReferenceExecutor(graph, dt=dt).run_inputs(x).step_outputs
    quantised = quantize_graph(fold_pools(graph), dt=dt, bias_exp_min=6)
    expected = ReferenceExecutor(quantised).run_inputs(x).step_outputs
    with tempfile.TemporaryDirectory() as tmp:
        export_netx(quantised, Path(tmp) / "cnn.net")
        t0 = time.perf_counter()
        y = run_netx(Path(tmp) / "cnn.net", x)
        wall = time.perf_counter() - t0
    return {"layers": "input, conv, conv (pool folded: 6x6 stride 2), conv (pool folded), flatten, dense (pool folded), "
                      "dense", "equal_reference_fixed_point": bool(np.array_equal(y, expected)),
            "output_spikes": int(y.sum()), "wall_s": round(wall, 1),
            "fixed_vs_float_reference_differing_entries": int(np.count_nonzero(expected != float_out)),
            "float_reference_output_spikes": float(float_out.sum())}


def main(argv=None) -> int:
    from spikebert.hardware.lava_runner import prepare_lava

    prepare_lava()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--paper", default=str(PAPER))
    p.add_argument("--other-python", default=None, help="python of a venv with norse and sinabs (optional)")
    p.add_argument("--samples", type=int, default=8, help="random input samples per graph")
    p.add_argument("--cnn-steps", type=int, default=100)
    p.add_argument("--builds", default="blocks,none,deploy")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import nir

    from spikebert.contract.fileio import atomic_write_text
    from spikebert.contract.nirfile import read_graph
    from spikebert.hardware.reference import ReferenceExecutor, recurrent_edges

    paper = Path(args.paper)
    builds = [b for b in args.builds.split(",") if b]
    t_start = time.perf_counter()
    result: dict = {**provenance(), "paper": str(paper),
                    "source": "neuromorphs/NIR paper/ at 7232ada (../shared/data/nir-paper/README.md)",
                    "conventions": {
                        "dt": {"01_lif": LIF_DT, "03_rnn": RNN_DT, "02_cnn": CNN_DT},
                        "recurrent_edge": "carries its source's previous-step output, zero at step 0",
                        "reset": "to v_reset in the step of the spike (NIR's definition)",
                        "threshold": "v > v_threshold (strict)"},
                    "graphs": {}, "unreadable": {}}
    other = args.other_python
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from nir_runtimes import NOTES

    result["runtimes"] = NOTES

    for rel in UNREADABLE:
        try:
            read_graph(paper / rel)
            result["unreadable"][rel] = "read (unexpectedly)"
        except Exception as err:
            result["unreadable"][rel] = {"error": str(err), "one_line": "\n" not in str(err)}
        try:
            nir.read(paper / rel)
            result["unreadable"][rel]["nir_read"] = "ok"
        except Exception as err:
            result["unreadable"][rel]["nir_read"] = f"{type(err).__name__}: {str(err)[:200]}"

    for key, (rel, dt) in GRAPHS.items():
        path = paper / rel
        entry: dict = {"file": rel, "dt": dt}
        result["graphs"][key] = entry
        graph = read_graph(path)
        entry["loads"] = True
        entry["nodes"] = {n: type(node).__name__ for n, node in graph.nodes.items()}
        entry["recurrent_edges"] = [list(e) for e in recurrent_edges(graph)]
        if key.startswith("01_lif"):
            ramp = lif_trace(paper, "exact")["input"][:, None, None]
            ref = ReferenceExecutor(graph, dt=dt).run_inputs(ramp).step_outputs[:, 0, 0] != 0
            entry["reference_spike_steps"] = np.flatnonzero(ref).tolist()
            if key == "01_lif":
                entry["vs_saved_traces"] = {}
                for name in LIF_PLATFORMS:
                    trace = lif_trace(paper, name)
                    shift = 1 if name.startswith("lava") else 0  # Lava's Dense delays by one step
                    same = np.array_equal(np.roll(ref, shift), trace["spikes"])
                    entry["vs_saved_traces"][name] = {
                        "spike_steps": np.flatnonzero(trace["spikes"]).tolist(), "equal": bool(same),
                        **({"compared_one_step_late": True} if shift else {})}
            entry["lava"] = lava_builds(graph, ramp, dt, builds)
            continue
        if key.startswith("03_rnn"):
            variant = key.split("03_rnn_")[1]
            figure = braille_figure_input(paper / "figures" / "rnn_braille_input.pdf")
            hidden = "lif1.lif"
            run = ReferenceExecutor(graph, dt=dt).run_inputs(figure[:, None], record=(hidden,))
            ours = run.spikes[hidden][:, 0] != 0
            entry["figure_input"] = {"spikes": int(figure.sum()), "hidden_spikes": int(ours.sum()),
                                     "output_spikes": int(run.step_outputs.sum())}
            entry["vs_saved_activity"] = {}
            for name in RNN_PLATFORMS:
                saved = saved_activity(paper, name, variant)
                if saved is not None:
                    entry["vs_saved_activity"][name] = {
                        "hidden_spikes": int(saved.sum()), "equal": bool(np.array_equal(saved, ours)),
                        "differing_entries": int(np.count_nonzero(saved != ours))}
            x = np.concatenate([figure[:, None], random_spikes((256, args.samples - 1, 12), 0.1, seed=1)], axis=1)
        else:  # 02_cnn
            x = random_spikes((args.cnn_steps, args.samples, 2, 34, 34), 0.05, seed=2)
        entry["input"] = {"shape": list(x.shape), "spikes": int(x.sum()),
                          "what": "the figure's sample, then random spikes at rate 0.1" if key.startswith("03")
                          else "random spikes at rate 0.05 (N-MNIST is not available offline)"}
        t0 = time.perf_counter()
        expected = ReferenceExecutor(graph, dt=dt).run_inputs(x).step_outputs
        entry["reference"] = {"output_spikes": float(expected.sum()), "wall_s": round(time.perf_counter() - t0, 2)}
        entry["lava"] = lava_builds(graph, x, dt, builds)
        if key == "02_cnn":
            entry["netx"] = netx_cnn(graph, x, dt)
        entry["independent_runtimes"] = {}
        runtimes = [("snntorch", sys.executable)]
        if other:
            runtimes += [("norse", other), ("sinabs", other), ("sinabs-nir", other)]
        for name, python in runtimes:
            if name.startswith("sinabs") and key.startswith("03_rnn"):
                entry["independent_runtimes"][name] = {"error": "Sinabs' NIR import has no CubaLIF"}
                continue
            y, error = other_runtime(name, path, x, dt, python)
            entry["independent_runtimes"][name] = compare(y, expected) if y is not None else {"error": error}
        log.info("%s done", key)
    result["wall_s"] = round(time.perf_counter() - t_start, 1)
    result["load_average_at_end"] = load_average()
    atomic_write_text(Path(args.out), json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "graphs"}, indent=1)[:2000])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
