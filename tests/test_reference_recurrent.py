"""Any standard NIR graph: recurrent edges (previous step's output, zero at step 0), Conv2d, SumPool2d, AvgPool2d
and Flatten of 2-D maps, in the reference executor and in every Lava build."""

import nir
import numpy as np
import pytest
import torch

from spikebert.contract.graph import topological_order
from spikebert.hardware import kernels
from spikebert.hardware.reference import ReferenceExecutor, recurrent_edges, schedule


def lif(n: int, *, tau=2.0, threshold=1.0) -> nir.LIF:
    return nir.LIF(tau=np.full(n, tau), r=np.ones(n), v_leak=np.zeros(n), v_threshold=np.full(n, threshold))


def dyadic(rng, shape, scale=1.0):
    """Weights on a 1/16 grid: every float sum is exact, whatever the summation order."""
    return np.round(rng.normal(0, scale, shape) * 16) / 16


def rnn_graph(seed=0, *, bias=True, self_loop=False) -> nir.NIRGraph:
    """input -> fc -> lif <-> w_rec, lif -> out -> lif_out -> output (the Braille shape, with LIF)."""
    rng = np.random.default_rng(seed)
    n = 6
    nodes = {"input": nir.Input(np.array([4])), "fc": nir.Affine(dyadic(rng, (n, 4), 1.5), dyadic(rng, n, 0.3)),
             "lif": lif(n), "w_rec": nir.Affine(dyadic(rng, (n, n), 1.0), dyadic(rng, n, 0.3) if bias else np.zeros(n)),
             "out": nir.Linear(dyadic(rng, (3, n), 1.5)), "lif_out": lif(3, threshold=0.5),
             "output": nir.Output(np.array([3]))}
    edges = [("input", "fc"), ("fc", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "out"), ("out", "lif_out"),
             ("lif_out", "output")]
    if self_loop:
        nodes["leak"] = nir.Scale(np.full(3, 0.5))
        edges += [("lif_out", "leak"), ("leak", "lif_out")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": 1.0})


def hand_rnn(graph: nir.NIRGraph, x: np.ndarray) -> np.ndarray:
    """The same network written out: lif[t] reads fc(x[t]) + w_rec(lif[t-1]), w_rec's output zero at t = 0."""
    n = graph.nodes
    v, v_out, spikes, ys = 0.0, 0.0, None, []
    for x_t in x:
        rec = 0.0 if spikes is None else spikes @ n["w_rec"].weight.T + n["w_rec"].bias
        spikes, v = kernels.lif_step(v if np.ndim(v) else np.zeros(6), x_t @ n["fc"].weight.T + n["fc"].bias + rec,
                                     beta=0.5, gain=0.5, bias=0.0, v_threshold=1.0, v_reset=0.0)
        y, v_out = kernels.lif_step(v_out if np.ndim(v_out) else np.zeros((len(x_t), 3)), spikes @ n["out"].weight.T,
                                    beta=0.5, gain=0.5, bias=0.0, v_threshold=0.5, v_reset=0.0)
        ys.append(y)
    return np.stack(ys)


def spikes(T, n, width, seed=1, rate=0.5):
    return (np.random.default_rng(seed).random((T, n, width)) < rate).astype(float)


def test_recurrent_edges_close_cycles_only():
    g = rnn_graph(self_loop=True)
    assert recurrent_edges(g) == [("w_rec", "lif"), ("leak", "lif_out")]
    plan = schedule(g)
    assert plan.recurrent_preds["lif"] == ["w_rec"] and plan.preds["lif"] == ["fc"]
    assert plan.order.index("lif") < plan.order.index("w_rec")
    self_loop = nir.NIRGraph(nodes={"input": nir.Input(np.array([2])), "s": nir.Scale(np.full(2, 0.5)),
                                    "output": nir.Output(np.array([2]))},
                             edges=[("input", "s"), ("s", "s"), ("s", "output")], metadata={"dt": 1.0})
    assert recurrent_edges(self_loop) == [("s", "s")]


def test_acyclic_graphs_keep_their_order():
    g = rnn_graph()
    g.edges.remove(("w_rec", "lif"))
    g.edges.remove(("lif", "w_rec"))
    del g.nodes["w_rec"]
    assert recurrent_edges(g) == [] and schedule(g).order == topological_order(g)


def test_recurrent_edge_carries_the_previous_step():
    g = rnn_graph()
    x = spikes(12, 5, 4)
    got = ReferenceExecutor(g).run_inputs(x).step_outputs
    np.testing.assert_array_equal(got, hand_rnn(g, x))
    assert got.any() and not got.all()


def test_scale_self_loop_is_a_leaky_accumulator():
    """y[t] = x[t] + 0.5 y[t-1], y[-1] = 0: a Scale node on a self-loop."""
    g = nir.NIRGraph(nodes={"input": nir.Input(np.array([1])), "s": nir.Scale(np.full(1, 0.5)),
                            "sum": nir.Scale(np.ones(1)), "output": nir.Output(np.array([1]))},
                     edges=[("input", "sum"), ("sum", "s"), ("s", "sum"), ("sum", "output")], metadata={"dt": 1.0})
    x = np.array([1.0, 0.0, 0.0, 2.0])[:, None, None]
    y = ReferenceExecutor(g).run_inputs(x).step_outputs[:, 0, 0]
    np.testing.assert_array_equal(y, [1.0, 0.5, 0.25, 2.125])


# --- Conv2d, pooling, Flatten of maps against torch --------------------------------------------------


@pytest.mark.parametrize("stride,padding,dilation,groups", [(1, 0, 1, 1), (2, 1, 1, 1), ((2, 1), (1, 2), 1, 1),
                                                           (1, "same", 2, 2), (1, "valid", (1, 2), 3)])
def test_conv2d_equals_torch(stride, padding, dilation, groups):
    rng = np.random.default_rng(0)
    c_in, c_out = 6, 12
    w, b = rng.normal(size=(c_out, c_in // groups, 3, 2)), rng.normal(size=c_out)
    x = rng.normal(size=(3, c_in, 9, 8))
    y = kernels.conv2d(x, w, b, stride=stride, padding=padding, dilation=dilation, groups=groups)
    expected = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b),
                                          stride=stride, padding=padding, dilation=dilation, groups=groups)
    np.testing.assert_allclose(y, expected.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kernel,stride,padding", [(2, 2, 0), ((3, 2), (1, 2), (1, 0))])
def test_pooling_equals_torch(kernel, stride, padding):
    x = torch.from_numpy(np.random.default_rng(1).random((2, 3, 7, 6)))
    avg = torch.nn.functional.avg_pool2d(x, kernel, stride, padding)  # count_include_pad: / kernel area
    area = np.prod(kernels.pair(kernel))
    summed = kernels.sum_pool2d(x.numpy(), kernel_size=kernel, stride=stride, padding=padding)
    np.testing.assert_allclose(summed, avg.numpy() * area, rtol=1e-12)
    g = nir.NIRGraph.from_list(nir.AvgPool2d(kernel_size=np.array(kernels.pair(kernel)),
                                             stride=np.array(kernels.pair(stride)),
                                             padding=np.array(kernels.pair(padding))), type_check=False)
    g.nodes["input"] = nir.Input(np.array([3, 7, 6]))
    y = ReferenceExecutor(g).run_inputs(x.numpy()[None]).step_outputs[0]
    np.testing.assert_allclose(y, avg.numpy(), rtol=1e-12)


def cnn_graph(seed=0) -> nir.NIRGraph:
    """input (2, 8, 8) -> conv 3x3 -> IF -> sumpool 2 -> flatten -> affine -> LIF -> output, dyadic weights."""
    rng = np.random.default_rng(seed)
    nodes = {"input": nir.Input(np.array([2, 8, 8])),
             "conv": nir.Conv2d(input_shape=(8, 8), weight=dyadic(rng, (4, 2, 3, 3), 0.6), stride=1, padding=1,
                                dilation=1, groups=1, bias=dyadic(rng, 4, 0.1)),
             "if": nir.IF(r=np.ones((4, 8, 8)), v_threshold=np.ones((4, 8, 8))),
             "pool": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
             "flat": nir.Flatten(input_type={"input": np.array([4, 4, 4])}, start_dim=0, end_dim=-1),
             "fc": nir.Affine(dyadic(rng, (5, 64), 0.5), np.zeros(5)), "lif": lif(5, threshold=0.5),
             "output": nir.Output(np.array([5]))}
    path = list(nodes)
    return nir.NIRGraph(nodes=nodes, edges=list(zip(path[:-1], path[1:])), metadata={"dt": 1.0})


def test_cnn_graph_runs_and_round_trips(tmp_path):
    from spikebert.contract.nirfile import read_graph, write_graph

    g = cnn_graph()
    write_graph(tmp_path / "cnn.nir", g)
    x = spikes(6, 3, 1, rate=0.3)[:, :, :, None, None] * np.ones((1, 1, 2, 8, 8))
    x = (np.random.default_rng(2).random((6, 3, 2, 8, 8)) < 0.3).astype(float)
    y = ReferenceExecutor(read_graph(tmp_path / "cnn.nir")).run_inputs(x).step_outputs
    assert y.shape == (6, 3, 5) and y.any()


# --- Lava ---------------------------------------------------------------------------------------------


@pytest.mark.lava
@pytest.mark.parametrize("fuse", ["none", "blocks", "all"])
@pytest.mark.parametrize("make", [rnn_graph, lambda: rnn_graph(self_loop=True)], ids=["rnn", "rnn+self-loop"])
def test_recurrent_graphs_in_lava_equal_the_reference(make, fuse):
    from spikebert.hardware.lava_runner import run_lava

    g = make()
    x = spikes(7, 5, 4)
    expected = ReferenceExecutor(g).run_inputs(x).step_outputs
    run = run_lava(g, inputs=x, fuse=fuse, batch_size=1 if fuse == "none" else 2, progress=False)
    np.testing.assert_array_equal(run.step_outputs, expected)  # 5 samples in windows: the loop restarts at zero


@pytest.mark.lava
@pytest.mark.parametrize("fuse", ["none", "blocks"])
def test_cnn_in_lava_equals_the_reference(fuse):
    from spikebert.hardware.lava_runner import run_lava

    g = cnn_graph()
    x = (np.random.default_rng(3).random((5, 3, 2, 8, 8)) < 0.3).astype(float)
    expected = ReferenceExecutor(g).run_inputs(x).step_outputs
    run = run_lava(g, inputs=x, fuse=fuse, batch_size=1 if fuse == "none" else 2, progress=False)
    np.testing.assert_array_equal(run.step_outputs, expected)


def test_simulate_cli_runs_a_spike_tensor(tmp_path, capsys):
    """spikebert simulate GRAPH --inputs X.npy --dt --spikes-out Y.npy --activity A.json (reference backend)."""
    import json

    from spikebert.cli import main
    from spikebert.contract.nirfile import write_graph

    g = rnn_graph()
    g.metadata = {}
    write_graph(tmp_path / "rnn.nir", g)
    x = spikes(9, 2, 4)
    np.save(tmp_path / "x.npy", x)
    code = main(["simulate", str(tmp_path / "rnn.nir"), "--backend", "reference", "--inputs", str(tmp_path / "x.npy"),
                 "--dt", "1", "--spikes-out", str(tmp_path / "y.npy"), "--activity", str(tmp_path / "a.json")])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    y = np.load(tmp_path / "y.npy")
    np.testing.assert_array_equal(y, hand_rnn(g, x))
    assert report["time_steps"] == 9 and report["samples"] == 2 and report["output_sum"] == y.sum()
    assert json.loads((tmp_path / "a.json").read_text())["samples"] == 2
