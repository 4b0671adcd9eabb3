"""Lava's time axis (issue #15): one T per run, from the input for tensor graphs, from the metadata for token
graphs; one dt check for both backends. Lava equals the reference executor element for element for any input T,
any batch split, and graphs with or without ``time_steps``/``dt`` metadata."""

import logging
import multiprocessing

import nir
import numpy as np
import pytest

from spikebert.contract.errors import SpikebertError
from spikebert.converters.torch_to_nir import export_student
from spikebert.hardware.lava_runner import run_lava
from spikebert.hardware.quantize import quantize_graph
from spikebert.hardware.reference import ReferenceExecutor
from spikebert.testing import make_ids
from tests.test_lava import residual_graph, sequential_graph, spike_inputs

META_T = 6  # the time_steps of tests.test_lava's graphs


def without(graph: nir.NIRGraph, *keys: str) -> nir.NIRGraph:
    graph.metadata = {k: v for k, v in graph.metadata.items() if k not in keys}
    return graph


def assert_lava_equals_reference(graph, x, *, batch_size, fuse, dt=None):
    expected = ReferenceExecutor(graph, dt=dt).run_inputs(x).step_outputs
    assert expected.any() and not expected.all(), "a test input must make the output spike, but not everywhere"
    extra = {} if dt is None else {"dt": dt}
    run = run_lava(graph, inputs=x, batch_size=batch_size, fuse=fuse, progress=False, **extra)
    assert run.step_outputs.shape == expected.shape
    wrong = int((run.step_outputs != expected).sum())
    assert wrong == 0, f"{wrong} of {expected.size} elements differ from the reference"
    assert run.activity.time_steps == len(x)
    return run


def split(fuse: str) -> tuple[int, int]:
    """(samples, batch size): several batches, the last one partial where the build allows a batch above 1
    (the naive build's lava-nc Dense takes one sample per batch)."""
    return (3, 1) if fuse == "none" else (5, 2)


@pytest.mark.parametrize("T", [1, 5, 10])
@pytest.mark.parametrize("make", [sequential_graph, residual_graph])
@pytest.mark.parametrize("fuse", ["none", "blocks", "all"])
@pytest.mark.lava
def test_input_steps_differ_from_metadata_float(make, fuse, T):
    n, batch = split(fuse)
    x = spike_inputs(T=T, n=n, seed=T) if T > 1 else spike_inputs(T=1, n=n, seed=3) * 2  # one step: fire at once
    assert_lava_equals_reference(make(), x, batch_size=batch, fuse=fuse)


@pytest.mark.parametrize("T", [5, 10])
@pytest.mark.parametrize("make", [sequential_graph, residual_graph])
@pytest.mark.parametrize("fuse", ["none", "blocks"])
@pytest.mark.lava
def test_input_steps_differ_from_metadata_fixed_point(make, fuse, T):
    n, batch = split(fuse)
    run = assert_lava_equals_reference(quantize_graph(make()), spike_inputs(T=T, n=n, seed=T), batch_size=batch,
                                       fuse=fuse)
    assert run.fixed_point


@pytest.mark.parametrize("T", [5, 10])
@pytest.mark.parametrize("fuse", ["none", "blocks"])
@pytest.mark.lava
def test_one_batch_of_any_length(fuse, T):
    """All samples in one batch (batch_size above N), fewer and more steps than the metadata states."""
    n = 1 if fuse == "none" else 5
    assert_lava_equals_reference(residual_graph(), spike_inputs(T=T, n=n, seed=T), batch_size=8, fuse=fuse)


@pytest.mark.parametrize("quantised", [False, True])
@pytest.mark.parametrize("make", [sequential_graph, residual_graph])
@pytest.mark.parametrize("fuse", ["none", "blocks", "all"])
@pytest.mark.lava
def test_graph_without_time_steps_takes_them_from_the_input(make, fuse, quantised):
    """A standard NIR graph (nir alone, snnTorch's export_to_nir) states no time_steps."""
    n, batch = split(fuse)
    graph = without(make(), "time_steps")
    graph = quantize_graph(graph) if quantised else graph
    assert "time_steps" not in graph.metadata
    assert_lava_equals_reference(graph, spike_inputs(T=7, n=n, seed=2), batch_size=batch, fuse=fuse)


@pytest.mark.parametrize("make", [sequential_graph, residual_graph])
@pytest.mark.parametrize("fuse", ["none", "blocks"])
@pytest.mark.lava
def test_graph_without_dt_runs_with_a_dt_argument(make, fuse):
    n, batch = split(fuse)
    graph = without(make(), "dt", "time_steps")
    assert_lava_equals_reference(graph, spike_inputs(T=4, n=n, seed=3), batch_size=batch, fuse=fuse, dt=1.0)


@pytest.mark.lava
def test_dt_argument_changes_the_dynamics_as_in_the_reference():
    """dt = 0.5 with tau = 2: beta = 3/4 instead of 1/2, and an input gain of 1/4: exact in float."""
    graph = without(residual_graph(), "dt")
    x = spike_inputs(T=8, n=5, seed=4) * 4
    assert_lava_equals_reference(graph, x, batch_size=2, fuse="blocks", dt=0.5)


@pytest.mark.parametrize("fuse", ["none", "blocks"])
@pytest.mark.lava
def test_missing_dt_is_refused_before_any_lava_process_starts(fuse, monkeypatch):
    import spikebert.hardware.nir_to_lava as nir_to_lava

    def no_build(*args, **kwargs):
        raise AssertionError("the network was built before the dt check")

    monkeypatch.setattr(nir_to_lava, "build_network", no_build)
    graph = without(sequential_graph(), "dt")
    before = set(multiprocessing.active_children())
    with pytest.raises(SpikebertError, match=r"no 'dt'.*dt=") as lava_error:
        run_lava(graph, inputs=spike_inputs(n=1), batch_size=1, fuse=fuse, progress=False)
    with pytest.raises(SpikebertError) as reference_error:
        ReferenceExecutor(graph)
    assert str(lava_error.value) == str(reference_error.value)  # one check for both backends
    assert "lif1" in str(lava_error.value) and "run_lava" in str(lava_error.value)
    assert set(multiprocessing.active_children()) <= before


@pytest.mark.lava
def test_dt_contradicting_the_metadata_is_refused():
    with pytest.raises(SpikebertError, match="contradicts the graph metadata dt"):
        run_lava(sequential_graph(), inputs=spike_inputs(), dt=0.5, progress=False)


@pytest.mark.lava
def test_graph_without_time_constants_needs_no_dt():
    rng = np.random.default_rng(0)
    nodes = {"input": nir.Input(np.array([5])), "fc": nir.Affine(weight=rng.normal(size=(3, 5)), bias=np.ones(3)),
             "th": nir.Threshold(threshold=np.full(3, 0.5)), "output": nir.Output(np.array([3]))}
    graph = nir.NIRGraph(nodes=nodes, edges=[("input", "fc"), ("fc", "th"), ("th", "output")])
    assert_lava_equals_reference(graph, spike_inputs(T=3, n=5), batch_size=2, fuse="blocks")


@pytest.mark.lava
def test_input_steps_win_over_the_metadata_and_say_so(caplog):
    with caplog.at_level(logging.INFO, logger="spikebert.hardware.lava_runner"):
        run = run_lava(sequential_graph(), inputs=spike_inputs(T=4, n=3), batch_size=2, progress=False)
    assert run.num_steps == 2 * 4
    assert any("T=4" in r.getMessage() and f"time_steps={META_T}" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="spikebert.hardware.lava_runner"):
        run_lava(sequential_graph(), inputs=spike_inputs(T=META_T, n=3), batch_size=2, progress=False)
    assert not any("time_steps=" in r.getMessage() for r in caplog.records)


@pytest.mark.lava
def test_snntorch_export_runs_in_lava():
    """snnTorch's export_to_nir writes neither dt nor time_steps; per-neuron beta needs the fused build."""
    import torch

    from tests.test_reference_standard import SNNTORCH_DT, export, snntorch_net

    net = snntorch_net("leaky")
    graph = export(net, 6)
    assert "dt" not in graph.metadata and "time_steps" not in graph.metadata
    x = (torch.rand(9, 5, 6, generator=torch.Generator().manual_seed(0)) < 0.5).double().numpy()
    assert_lava_equals_reference(graph, x, batch_size=2, fuse="blocks", dt=SNNTORCH_DT)


@pytest.mark.parametrize("time_steps", [None, 3, 7])
@pytest.mark.lava
def test_token_ids_run_the_metadata_steps(trained_like_model, time_steps):
    """run(ids) holds the encoded tokens for the metadata's T (1 when absent), in both backends, over several
    batches, the last one partial."""
    graph = export_student(trained_like_model)
    if time_steps is None:
        graph = without(graph, "time_steps")
    else:
        graph.metadata["time_steps"] = time_steps
    ids = make_ids(5, 8, trained_like_model.cfg.vocab_size).numpy()
    expected = ReferenceExecutor(graph).run(ids).step_outputs
    run = run_lava(graph, ids, batch_size=2, fuse="blocks", progress=False)
    T = time_steps or 1
    assert expected.shape[0] == T and run.num_steps == 3 * T and run.activity.time_steps == T
    np.testing.assert_array_equal(run.step_outputs, expected)
