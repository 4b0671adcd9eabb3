"""The NIR paper's benchmark graphs (../shared/data/nir-paper/paper): the reference executor and Lava against the
paper's platforms' saved outputs and against independent NIR runtimes executing the same file on the same input.

Skipped when the data is absent. benchmarks/nir_paper.py writes the full comparison (Norse, Sinabs too)."""

import contextlib
import importlib.util
import io
from pathlib import Path

import nir
import numpy as np
import pytest
import torch

from spikebert.contract.errors import SpikebertError
from spikebert.contract.nirfile import read_graph
from spikebert.hardware.reference import ReferenceExecutor, recurrent_edges

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("nir_paper", ROOT / "benchmarks" / "nir_paper.py")
nir_paper = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(nir_paper)
PAPER = nir_paper.PAPER

pytestmark = pytest.mark.skipif(not (PAPER / "01_lif" / "lif_norse.nir").exists(),
                                reason="the NIR paper's data is not at ../shared/data/nir-paper/paper")


def graph(key: str) -> tuple[nir.NIRGraph, float]:
    rel, dt = nir_paper.GRAPHS[key]
    return read_graph(PAPER / rel), dt


def figure_input() -> np.ndarray:
    return nir_paper.braille_figure_input(PAPER / "figures" / "rnn_braille_input.pdf")


# --- 01_lif: one LIF neuron on the ramp, spike for spike ------------------------------------------


@pytest.mark.parametrize("platform", ["exact", "norse", "snntorch", "spinnaker2", "nengo"])
def test_lif_graph_equals_the_exact_and_platform_traces(platform):
    g, dt = graph("01_lif")
    trace = nir_paper.lif_trace(PAPER, platform)
    out = ReferenceExecutor(g, dt=dt).run_inputs(trace["input"][:, None, None]).step_outputs[:, 0, 0]
    assert np.flatnonzero(out).tolist() == np.flatnonzero(trace["spikes"]).tolist() == [460, 510, 710, 760]


def test_lif_graph_lava_traces_are_one_step_late():
    """The paper's Lava traces (CPU float and fixed, Loihi) spike one step later: their Dense delivers at t + 1."""
    g, dt = graph("01_lif")
    ramp = nir_paper.lif_trace(PAPER, "exact")["input"]
    out = ReferenceExecutor(g, dt=dt).run_inputs(ramp[:, None, None]).step_outputs[:, 0, 0] != 0
    for name in ("lava_cpu_float", "lava_cpu_fixed", "lava_loihi_fixed"):
        np.testing.assert_array_equal(np.roll(out, 1), nir_paper.lif_trace(PAPER, name)["spikes"])


# --- 03_rnn: Braille CubaLIF with a recurrent edge --------------------------------------------------


def test_figure_input_is_recovered():
    x = figure_input()
    assert x.shape == (256, 12) and set(np.unique(x)) == {0.0, 1.0} and int(x.sum()) == 539


@pytest.mark.parametrize("variant", ["bias_zero", "noBias_subtract"])
def test_braille_hidden_spikes_equal_norse_saved_activity(variant):
    """On the figure's sample, the hidden layer equals Norse's saved spikes entry for entry (256 x 38 / 40)."""
    g, dt = graph(f"03_rnn_{variant}")
    assert recurrent_edges(g) == [("lif1.w_rec", "lif1.lif")]
    run = ReferenceExecutor(g, dt=dt).run_inputs(figure_input()[:, None], record=("lif1.lif",))
    ours = run.spikes["lif1.lif"][:, 0] != 0
    saved = nir_paper.saved_activity(PAPER, "norse", variant)
    assert ours.any()
    np.testing.assert_array_equal(ours, saved)


def snntorch_outputs(path: Path, x: np.ndarray) -> np.ndarray:
    spec = importlib.util.spec_from_file_location("nir_runtimes", ROOT / "benchmarks" / "nir_runtimes.py")
    runtimes = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runtimes)
    with contextlib.redirect_stdout(io.StringIO()):
        return runtimes.run_snntorch(nir.read(path), x)


@pytest.mark.parametrize("variant", ["bias_zero", "noBias_subtract"])
def test_braille_equals_snntorch_under_nirtorch(variant, one_thread):
    """snnTorch's node mapping (Synaptic for CubaLIF) under nirtorch's interpreter, float32, on the figure's
    sample and random spikes: the output spikes are the reference executor's, spike for spike."""
    key = f"03_rnn_{variant}"
    g, dt = graph(key)
    x = np.concatenate([figure_input()[:, None], nir_paper.random_spikes((256, 2, 12), 0.1, seed=5)], axis=1)
    expected = ReferenceExecutor(g, dt=dt).run_inputs(x).step_outputs
    assert expected.sum() > 50
    np.testing.assert_array_equal(snntorch_outputs(PAPER / nir_paper.GRAPHS[key][0], x), expected)


# --- 02_cnn: Conv2d, IF, SumPool2d, Flatten, Affine -------------------------------------------------


class NirIF(torch.nn.Module):
    """NIR's IF as the CNN's platforms run it (dt = 1): v += r I; spike where v > v_threshold; v = v_reset there."""

    def __init__(self, node: nir.IF):
        super().__init__()
        self.r, self.thr, self.reset = (torch.from_numpy(np.asarray(a, np.float64)) for a in
                                        (node.r, node.v_threshold, node.v_reset))

    def forward(self, x, state=None):
        v = (torch.zeros_like(x) if state is None else state) + self.r * x
        spikes = (v > self.thr).to(x.dtype)
        return spikes, torch.where(spikes > 0, self.reset, v)


def torch_cnn(path: Path, x: np.ndarray) -> np.ndarray:
    """nirtorch 2.6's interpreter with its own Conv2d / SumPool2d (LPPool2d, p=1) / Flatten, float64, one
    unbatched sample at a time (NIR shapes have no batch axis); Affine with its bias (nirtorch 2.6 drops it)."""
    import nirtorch

    def affine(node):
        m = torch.nn.Linear(node.weight.shape[1], node.weight.shape[0]).double()
        m.weight.data, m.bias.data = (torch.from_numpy(np.asarray(a, np.float64)) for a in (node.weight, node.bias))
        return m

    outs = []
    for sample in range(x.shape[1]):
        net = nirtorch.nir_to_torch(nir.read(path), {nir.IF: NirIF, nir.Affine: affine}, dtype=torch.float64)
        state, ys = None, []
        with torch.no_grad():
            for t in range(x.shape[0]):
                y, state = net(torch.from_numpy(x[t, sample]), state)
                ys.append(y.numpy())
        outs.append(np.stack(ys))
    return np.stack(outs, axis=1)


def test_cnn_equals_torch_layers_under_nirtorch(one_thread):
    g, dt = graph("02_cnn")
    x = nir_paper.random_spikes((40, 2, 2, 34, 34), 0.08, seed=2)
    expected = ReferenceExecutor(g, dt=dt).run_inputs(x).step_outputs
    assert expected.sum() > 5
    np.testing.assert_array_equal(torch_cnn(PAPER / nir_paper.GRAPHS["02_cnn"][0], x), expected)


def test_cnn_needs_a_per_step_integrator():
    """With the paper's dt = 1e-4, NIR's IF (v += r dt I) never reaches threshold on this CNN."""
    g, _ = graph("02_cnn")
    x = nir_paper.random_spikes((10, 1, 2, 34, 34), 0.2, seed=3)
    assert ReferenceExecutor(g, dt=1e-4).run_inputs(x).step_outputs.sum() == 0
    assert ReferenceExecutor(g, dt=1.0).run_inputs(x).step_outputs.sum() > 0


# --- Lava: every build equals the reference on the paper's graphs --------------------------------------


@pytest.mark.lava
@pytest.mark.slow
@pytest.mark.parametrize("key", ["01_lif", "03_rnn_bias_zero", "02_cnn"])
@pytest.mark.parametrize("fuse", ["blocks", "none"])
def test_paper_graphs_in_lava_equal_the_reference(key, fuse):
    from spikebert.hardware.lava_runner import run_lava

    g, dt = graph(key)
    if key == "01_lif":
        ramp = nir_paper.lif_trace(PAPER, "exact")["input"]
        x = np.stack([ramp, ramp[::-1]], axis=1)[:, :, None]  # two samples: batch_size=1 runs two windows
    elif key == "02_cnn":
        x = nir_paper.random_spikes((12, 3, 2, 34, 34), 0.1, seed=4)
    else:
        x = np.concatenate([figure_input()[:, None], nir_paper.random_spikes((256, 2, 12), 0.1, seed=6)], axis=1)
    expected = ReferenceExecutor(g, dt=dt).run_inputs(x).step_outputs
    assert expected.any()
    run = run_lava(g, inputs=x, dt=dt, fuse=fuse, batch_size=1 if key == "01_lif" or fuse == "none" else 2,
                   progress=False)  # several batches: every state and recurrent edge resets between them
    np.testing.assert_array_equal(run.step_outputs, expected)


# --- the files nir.read itself rejects -----------------------------------------------------------------


@pytest.mark.parametrize("rel", nir_paper.UNREADABLE)
def test_unreadable_files_give_one_line_naming_the_file(rel):
    with pytest.raises(SpikebertError) as err:
        read_graph(PAPER / rel)
    message = str(err.value)
    assert "\n" not in message and str(PAPER / rel) in message
