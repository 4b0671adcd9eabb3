"""lava-dl netx for convolutional graphs: pools folded into the next synapse (netx has no pooling layer), Conv2d
quantised to Loihi integers, exported as netx conv/flatten/dense layers; netx equals the reference's fixed point."""

import importlib.util
from pathlib import Path

import nir
import numpy as np
import pytest

from spikebert.hardware.nir_to_netx import fold_pools
from spikebert.hardware.reference import ReferenceExecutor
from tests.test_reference_recurrent import cnn_graph

ROOT = Path(__file__).resolve().parents[1]
CNN = ROOT.parent / "shared" / "data" / "nir-paper" / "paper" / "02_cnn" / "cnn_sinabs.nir"


def pooled_cnn(pool=nir.SumPool2d, seed=0) -> nir.NIRGraph:
    """input (2, 8, 8) -> conv -> IF -> pool -> conv -> IF -> pool -> flatten -> affine -> IF -> output."""
    rng = np.random.default_rng(seed)
    w = lambda *s: np.round(rng.normal(0, 0.6, s) * 16) / 16  # noqa: E731  (dyadic: exact float sums)
    two = np.array([2, 2])
    nodes = {"input": nir.Input(np.array([2, 8, 8])),
             "c1": nir.Conv2d(input_shape=(8, 8), weight=w(4, 2, 3, 3), stride=1, padding=1, dilation=1, groups=1,
                              bias=np.zeros(4)),
             "n1": nir.IF(r=np.ones((4, 8, 8)), v_threshold=np.ones((4, 8, 8))),
             "p1": pool(kernel_size=two, stride=two, padding=np.array([0, 0])),
             "c2": nir.Conv2d(input_shape=(4, 4), weight=w(3, 4, 3, 3), stride=1, padding=1, dilation=1, groups=1,
                              bias=np.zeros(3)),
             "n2": nir.IF(r=np.ones((3, 4, 4)), v_threshold=np.ones((3, 4, 4))),
             "p2": pool(kernel_size=two, stride=two, padding=np.array([0, 0])),
             "flat": nir.Flatten(input_type={"input": np.array([3, 2, 2])}, start_dim=0, end_dim=-1),
             "fc": nir.Affine(w(5, 12), np.zeros(5)), "n3": nir.IF(r=np.ones(5), v_threshold=np.full(5, 0.5)),
             "output": nir.Output(np.array([5]))}
    path = list(nodes)
    return nir.NIRGraph(nodes=nodes, edges=list(zip(path[:-1], path[1:])), metadata={"dt": 1.0})


def spikes(shape, rate=0.3, seed=1):
    return (np.random.default_rng(seed).random(shape) < rate).astype(float)


@pytest.mark.parametrize("pool", [nir.SumPool2d, nir.AvgPool2d])
def test_folding_pools_is_exact(pool):
    graph = pooled_cnn(pool)
    folded = fold_pools(graph)
    assert not any(isinstance(n, (nir.SumPool2d, nir.AvgPool2d)) for n in folded.nodes.values())
    assert folded.nodes["c2"].weight.shape == (3, 4, 6, 6) and folded.nodes["fc"].weight.shape == (5, 48)
    x = spikes((6, 3, 2, 8, 8))
    expected = ReferenceExecutor(graph).run_inputs(x).step_outputs
    assert expected.any()
    np.testing.assert_array_equal(ReferenceExecutor(folded).run_inputs(x).step_outputs, expected)


def test_pools_that_cannot_fold_are_named():
    graph = cnn_graph()  # its pool feeds a Flatten -> Affine: folds; an overlapping pool does not
    graph.nodes["pool"] = nir.SumPool2d(kernel_size=np.array([3, 3]), stride=np.array([1, 1]), padding=np.array([0, 0]))
    with pytest.raises(ValueError, match="SumPool2d 'pool'.*cannot be folded"):
        fold_pools(graph)


def _netx_ready():
    from spikebert.hardware.lava_env import lava_dl_problem

    problem = lava_dl_problem()
    if problem:
        pytest.skip(f"needs lava-dl's netx: {problem}")


@pytest.mark.lava
@pytest.mark.slow
def test_pooled_cnn_runs_in_netx_bit_exact(tmp_path):
    _netx_ready()
    from spikebert.hardware.nir_to_netx import export_netx, run_netx
    from spikebert.hardware.quantize import quantize_graph

    graph = quantize_graph(pooled_cnn(), bias_exp_min=6)
    export_netx(graph, tmp_path / "cnn.net")
    x = spikes((8, 2, 2, 8, 8))
    expected = ReferenceExecutor(graph).run_inputs(x).step_outputs
    assert expected.any()
    np.testing.assert_array_equal(run_netx(tmp_path / "cnn.net", x), expected)


@pytest.mark.lava
@pytest.mark.slow
@pytest.mark.skipif(not CNN.exists(), reason="the NIR paper's data is not at ../shared/data/nir-paper")
def test_paper_cnn_exports_to_netx_from_the_command_line(tmp_path):
    """spikebert-export --to netx cnn_sinabs.nir --dt 1: quantised, pools folded, three conv, two dense layers."""
    _netx_ready()
    import h5py

    from spikebert.cli import export_main
    from spikebert.contract.nirfile import read_graph
    from spikebert.hardware.nir_to_netx import run_netx
    from spikebert.hardware.quantize import quantize_graph

    assert export_main([str(CNN), "--to", "netx", "--dt", "1", "-o", str(tmp_path / "cnn.net")]) == 0
    with h5py.File(tmp_path / "cnn.net") as f:
        kinds = [f[f"layer/{i}/type"][0].decode() for i in range(len(f["layer"]))]
    assert kinds == ["input", "conv", "conv", "conv", "flatten", "dense", "dense"]
    spec = importlib.util.spec_from_file_location("nir_paper", ROOT / "benchmarks" / "nir_paper.py")
    nir_paper = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(nir_paper)
    x = nir_paper.random_spikes((30, 2, 2, 34, 34), 0.1, seed=2)
    expected = ReferenceExecutor(quantize_graph(read_graph(CNN), dt=1.0, bias_exp_min=6)).run_inputs(x).step_outputs
    assert expected.any()
    np.testing.assert_array_equal(run_netx(tmp_path / "cnn.net", x), expected)
