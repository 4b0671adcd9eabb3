"""netx export: a quantised sequential graph runs in lava-dl's netx spike for spike as the reference executor."""

import h5py
import nir
import numpy as np
import pytest

from spikebert.contract.extension import SBLayerNorm
from spikebert.hardware.nir_to_netx import check_netx_weights, export_netx, netx_layers, run_netx
from spikebert.hardware.quantize import quantize_graph
from spikebert.hardware.reference import ReferenceExecutor


def lif(n: int, tau: float = 4.0, thr: float = 1.0) -> nir.LIF:
    """r = tau: v += I - v dt/tau, snnTorch's convention."""
    return nir.LIF(tau=np.full(n, tau), r=np.full(n, tau), v_leak=np.zeros(n), v_threshold=np.full(n, thr),
                   v_reset=np.zeros(n))


def chain(nodes: dict[str, nir.NIRNode], extra_edges=(), type_check=True) -> nir.NIRGraph:
    """The nodes in order, each feeding the next, plus ``extra_edges``; dt = 1."""
    names = list(nodes)
    return nir.NIRGraph(nodes=nodes, edges=[*zip(names[:-1], names[1:]), *extra_edges], metadata={"dt": 1.0},
                        type_check=type_check)


def sequential_graph(*, seed: int = 0, integrator: bool = False) -> nir.NIRGraph:
    """Input(4) -> Affine(4->6, biased) -> LIF -> Affine(6->3) -> LIF (or IF) -> Output."""
    rng = np.random.default_rng(seed)
    last = nir.IF(r=np.ones(3), v_threshold=np.full(3, 1.0), v_reset=np.zeros(3)) if integrator else lif(3, 4.0, 0.8)
    return chain({
        "input": nir.Input(np.array([4])),
        "fc1": nir.Affine(weight=rng.normal(0, 1.0, (6, 4)), bias=np.array([0.3, -0.2, 0.5, 0.0, 0.25, -0.4])),
        "lif1": lif(6, 5.0, 1.0),
        "fc2": nir.Affine(weight=rng.normal(0.3, 1.0, (3, 6)), bias=np.zeros(3)),
        "lif2": last,
        "output": nir.Output(np.array([3])),
    })


@pytest.mark.parametrize("integrator", [False, True])
@pytest.mark.lava
def test_netx_runs_spike_for_spike(tmp_path, integrator):
    graph = quantize_graph(sequential_graph(integrator=integrator), bias_exp_min=6)
    path = tmp_path / "net.net"
    export_netx(graph, path)
    with h5py.File(path) as f:  # the integers netx reads: iDecay = du + 1, bias in weight units
        assert f["layer/0/type"][0] == b"input" and f["layer/1/neuron/type"][0] == b"CUBA"
        assert int(f["layer/1/neuron/iDecay"][()]) == 4096
        assert int(f["layer/1/neuron/vDecay"][()]) == graph.nodes["lif1"].metadata["fixed_point"]["dv"]
        np.testing.assert_array_equal(f["layer/1/bias"][()] * 64, graph.nodes["lif1"].metadata["fixed_point"][
            "bias_mant"] * 2 ** graph.nodes["lif1"].metadata["fixed_point"]["bias_exp"])
        assert f["layer/1/bias"][()].any()
    x = (np.random.default_rng(1).random((20, 2, 4)) < 0.5).astype(np.int64)  # (T, B, n_in)

    got = run_netx(path, x)
    expected = ReferenceExecutor(graph).run_inputs(x).step_outputs

    assert got.shape == expected.shape == (20, 2, 3)
    assert 0.1 < expected.mean() < 0.9 and expected.any(axis=(0, 1)).all()  # every output neuron fires
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("weight", [[[100, -50], [6, 0]], [[40, 20], [0, 255]], [[-63, -8], [-1, -20]]])
@pytest.mark.lava
def test_netx_weights_round_trip(weight):
    """netx re-derives mantissa and exponent (here x2, x4 with exponents -1, -2); Lava's Dense computes the same."""
    check_netx_weights("fc", np.array(weight))


@pytest.mark.parametrize("weight", [[[-64, -8]], [[-32, -5, 0]]])
@pytest.mark.lava
def test_netx_weights_quirk_without_positive_weight(weight):
    with pytest.raises(ValueError, match="netx cannot hold these weights exactly"):
        check_netx_weights("fc", np.array(weight))


def test_netx_refuses_float_graph(tmp_path):
    with pytest.raises(ValueError, match=r"float.*quantize_graph\(graph, bias_exp_min=6\)"):
        export_netx(sequential_graph(), tmp_path / "net.net")


@pytest.mark.lava
def test_netx_refuses_bias_off_the_weight_grid(tmp_path):
    graph = quantize_graph(sequential_graph(), bias_exp_min=0)
    with pytest.raises(ValueError, match=r"'lif1'.*not a multiple of 64.*bias_exp_min=6"):
        export_netx(graph, tmp_path / "net.net")


@pytest.mark.lava
def test_netx_refuses_residual(tmp_path):
    rng = np.random.default_rng(0)
    nodes = {"input": nir.Input(np.array([4])),
             "fc1": nir.Affine(weight=rng.normal(0, 1, (6, 4)), bias=np.zeros(6)), "lif1": lif(6),
             "fc2": nir.Affine(weight=rng.normal(0, 1, (6, 6)), bias=np.zeros(6)), "lif2": lif(6),
             "fc3": nir.Affine(weight=rng.normal(0, 1, (3, 6)), bias=np.zeros(3)), "lif3": lif(3),
             "output": nir.Output(np.array([3]))}
    graph = chain(nodes, extra_edges=[("lif1", "fc3")])  # fc3 sums lif1 and lif2: a residual join
    with pytest.raises(ValueError, match=r"'lif1' has 2 outputs.*strictly sequentially.*simulate --backend lava"):
        netx_layers(graph)
    graph = quantize_graph(graph, bias_exp_min=6)
    graph.edges.remove(("lif1", "fc2"))  # only the join left: fc3 has 2 inputs, lif1 1 output
    with pytest.raises(ValueError, match=r"'fc3' has 2 inputs.*residual joins.*simulate --backend lava"):
        export_netx(graph, tmp_path / "net.net")


def test_netx_refuses_spikebert_node():
    nodes = {**sequential_graph().nodes, "norm": SBLayerNorm(weight=np.ones(3), bias=np.zeros(3), groups=1, eps=1e-5,
                                                             tokens=1)}
    nodes["output"] = nodes.pop("output")
    with pytest.raises(ValueError, match=r"'norm' \(SBLayerNorm\).*LayerNorm.*simulate --backend lava"):
        netx_layers(chain(nodes, type_check=False))  # SBLayerNorm works on (C, L)


@pytest.mark.lava
def test_export_cli_quantises_and_writes_netx(tmp_path):
    from spikebert.cli import export_main

    graph = sequential_graph()
    nir.write(tmp_path / "seq.nir", graph)
    assert export_main([str(tmp_path / "seq.nir"), "--to", "netx"]) == 0
    export_netx(quantize_graph(graph, bias_exp_min=6), tmp_path / "direct.net")
    with h5py.File(tmp_path / "seq.net") as cli, h5py.File(tmp_path / "direct.net") as direct:
        for layer in ("1", "2"):
            for key in ("weight", "bias", "neuron/vThMant", "neuron/vDecay", "neuron/iDecay"):
                np.testing.assert_array_equal(cli[f"layer/{layer}/{key}"][()], direct[f"layer/{layer}/{key}"][()])
    assert export_main([str(tmp_path / "model.pt"), "--to", "netx"]) == 2  # students are not sequential
