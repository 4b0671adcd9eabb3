"""Lava backend: every build equals the reference executor step for step, in float and Loihi fixed point."""

import dataclasses
import gc
import multiprocessing
import sys

import nir
import numpy as np
import pytest

from spikebert.converters.torch_to_nir import export_student
from spikebert.hardware.lava_runner import run_lava
from spikebert.hardware.quantize import quantize_graph
from spikebert.hardware.reference import ReferenceExecutor
from spikebert.testing import make_ids, make_student


def assert_same_activity(got, expected, *, only=None):
    names = set(expected.nodes) if only is None else only
    assert names <= set(got.nodes)
    for name in names:
        a, b = got.nodes[name], expected.nodes[name]
        assert a.same_counts(b), name
        assert a.input_abs_sum == pytest.approx(b.input_abs_sum, rel=1e-12), name  # float summation order


@pytest.mark.parametrize("fuse", ["none", "blocks", "all"])
@pytest.mark.lava
def test_spikebert_float_equals_reference(trained_like_model, fuse):
    graph = export_student(trained_like_model)
    ids = make_ids(7, 8, trained_like_model.cfg.vocab_size).numpy()
    ref = ReferenceExecutor(graph)
    expected = ref.run(ids)
    lava = run_lava(graph, ids, batch_size=3, fuse=fuse, progress=False)  # 3 batches, the last with 2 filler rows
    np.testing.assert_array_equal(lava.step_outputs, expected.step_outputs)
    assert lava.num_steps == 3 * trained_like_model.cfg.time_steps and lava.output_latency == 0
    assert_same_activity(lava.activity, ref.activity)
    assert ref.activity.nodes["b1_attn"].qk_accumulates > 0
    if fuse == "none":
        assert lava.num_processes == len(graph.nodes) - 4 + 2  # input, embedding, encoder: host; output: the sink
    elif fuse == "blocks":
        assert lava.num_processes == 2 * 2 + 1 + 2  # two sub-blocks per block, the head, source and sink
    else:
        assert lava.num_processes == 3


@pytest.fixture
def batchnorm_student(tiny_cfg):
    return make_student(dataclasses.replace(tiny_cfg, norm="batch"), seed=1)


@pytest.mark.parametrize("fuse", ["none", "blocks"])
@pytest.mark.lava
def test_spikebert_fixed_point_is_bit_exact(batchnorm_student, fuse):
    graph = quantize_graph(export_student(batchnorm_student))
    ids = make_ids(5, 8, batchnorm_student.cfg.vocab_size).numpy()
    ref = ReferenceExecutor(graph)
    expected = ref.run(ids, record=("b1_lif2",))
    assert expected.spikes["b1_lif2"].any()
    lava = run_lava(graph, ids, batch_size=2, fuse=fuse, progress=False)
    assert lava.fixed_point
    np.testing.assert_array_equal(lava.step_outputs, expected.step_outputs)  # the readout gets identical integers
    assert_same_activity(lava.activity, ref.activity)


@pytest.mark.lava
def test_fixed_point_stays_close_to_float(batchnorm_student):
    graph = export_student(batchnorm_student)
    ids = make_ids(16, 8, batchnorm_student.cfg.vocab_size, seed=3).numpy()
    run = ReferenceExecutor(graph).run(ids, record=("b0_lif1",))
    fixed = ReferenceExecutor(quantize_graph(graph)).run(ids, record=("b0_lif1",))
    spikes, fixed_spikes = run.spikes["b0_lif1"], fixed.spikes["b0_lif1"]
    assert (spikes != fixed_spikes).mean() < 0.05  # 8-bit weights flip a few near-threshold neurons
    assert (run.logits.argmax(-1) == fixed.logits.argmax(-1)).mean() >= 0.75


# --- standard NIR graphs: lava-nc Dense and LIF, synaptic delays, residual branches ---------------


def lif(n: int, *, tau=2.0, threshold=1.0) -> nir.LIF:
    return nir.LIF(tau=np.full(n, tau), r=np.ones(n), v_leak=np.zeros(n), v_threshold=np.full(n, threshold))


def dyadic(rng, shape, scale=1.0):
    """Weights on a 1/16 grid: every float sum is exact, whatever the summation order."""
    return np.round(rng.normal(0, scale, shape) * 16) / 16


def sequential_graph(seed=0) -> nir.NIRGraph:
    rng = np.random.default_rng(seed)
    nodes = {"input": nir.Input(np.array([5])),
             "fc1": nir.Affine(weight=dyadic(rng, (6, 5), 1.5), bias=dyadic(rng, 6, 0.5)), "lif1": lif(6),
             "fc2": nir.Linear(weight=dyadic(rng, (4, 6), 1.5)), "lif2": lif(4, threshold=0.5),
             "output": nir.Output(np.array([4]))}
    path = list(nodes)
    return nir.NIRGraph(nodes=nodes, edges=list(zip(path[:-1], path[1:])), metadata={"dt": 1.0, "time_steps": 6})


def residual_graph(seed=0) -> nir.NIRGraph:
    """input -> fc1 -> lif1 -> fc2 -> lif2, and lif1 + lif2 -> join -> fc3 -> lif3: branches of depth 1 and 2."""
    rng = np.random.default_rng(seed)
    nodes = {"input": nir.Input(np.array([5])),
             "fc1": nir.Affine(weight=dyadic(rng, (6, 5), 1.5), bias=dyadic(rng, 6, 0.5)), "lif1": lif(6),
             "fc2": nir.Affine(weight=dyadic(rng, (6, 6), 1.5), bias=dyadic(rng, 6, 0.5)), "lif2": lif(6),
             "join": nir.Scale(scale=np.ones(6)),
             "fc3": nir.Affine(weight=dyadic(rng, (3, 6), 1.5), bias=np.full(3, 0.25)), "lif3": lif(3, threshold=0.5),
             "output": nir.Output(np.array([3]))}
    edges = [("input", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("fc2", "lif2"), ("lif1", "join"), ("lif2", "join"),
             ("join", "fc3"), ("fc3", "lif3"), ("lif3", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": 1.0, "time_steps": 6})


def spike_inputs(T=6, n=5, width=5, seed=1):
    return (np.random.default_rng(seed).random((T, n, width)) < 0.5).astype(float)


@pytest.mark.parametrize("make", [sequential_graph, residual_graph])
@pytest.mark.parametrize("quantised", [False, True])
@pytest.mark.parametrize("fuse", ["none", "blocks"])
@pytest.mark.lava
def test_standard_graphs_equal_reference(make, quantised, fuse):
    graph = quantize_graph(make()) if quantised else make()
    x = spike_inputs()
    ref = ReferenceExecutor(graph)
    expected = ref.run_inputs(x)
    lava = run_lava(graph, inputs=x, batch_size=1 if fuse == "none" else 2, fuse=fuse, progress=False)
    assert expected.step_outputs.any() and not expected.step_outputs.all()
    np.testing.assert_array_equal(lava.step_outputs, expected.step_outputs)
    if fuse == "none":  # lava-nc Dense for every Affine/Linear -> LIF: one step each, plus branch alignment
        assert lava.output_latency == (2 if make is sequential_graph else 3)
    else:
        assert lava.output_latency == 0
        assert_same_activity(lava.activity, ref.activity)


def test_naive_build_uses_lava_processes_and_aligns_branches():
    from spikebert.hardware.nir_to_lava import plan

    graph = residual_graph()
    units = plan(graph, ["fc1", "lif1", "fc2", "lif2", "join", "fc3", "lif3"], "none")
    assert [u.kind for u in units] == ["dense", "lif", "dense", "lif", "group", "dense", "lif"]


@pytest.mark.lava
def test_unsupported_node_is_refused():
    graph = sequential_graph()
    graph.nodes["fc1"] = nir.NIRGraph.from_list(nir.Scale(np.ones(5)))  # a nested subgraph: not inlined
    with pytest.raises(ValueError, match="NIRGraph"):
        run_lava(graph, inputs=spike_inputs(), progress=False)


@pytest.mark.lava
def test_failure_inside_a_process_stops_the_runtime():
    graph = quantize_graph(residual_graph())
    graph.nodes["join"].scale = np.full(6, 0.5)  # halves of spikes: not integers, refused in a fixed-point process
    before = set(multiprocessing.active_children())
    with pytest.raises(Exception, match="non-integers"):
        run_lava(graph, inputs=spike_inputs(), batch_size=1, fuse="none", progress=False)
    assert set(multiprocessing.active_children()) <= before  # no orphan Lava processes
    gc.collect()  # lava's __del__ of the abandoned network must not wait on the dead processes


@pytest.mark.lava
def test_quantize_refuses_layernorm_and_writes_a_nir_file(trained_like_model, batchnorm_student, tmp_path):
    from spikebert.contract.nirfile import read_graph, write_graph

    with pytest.raises(ValueError, match="LayerNorm is not Loihi-native"):
        quantize_graph(export_student(trained_like_model))
    graph = quantize_graph(export_student(batchnorm_student))
    with pytest.raises(ValueError, match="already quantised"):
        quantize_graph(graph)
    write_graph(tmp_path / "q.nir", graph)
    again = read_graph(tmp_path / "q.nir")
    lif = again.nodes["b0_lif1"].metadata["fixed_point"]
    assert lif["du"] == 4095 and lif["dv"] == 2048 and 0 < lif["vth"] < 2**17  # tau = 2: beta = 1/2
    assert np.all(np.abs(again.nodes["b0_fc1"].weight) <= 256) and again.metadata["fixed_point"]["format"] == "loihi"
    ids = make_ids(3, 8, batchnorm_student.cfg.vocab_size).numpy()
    np.testing.assert_array_equal(ReferenceExecutor(again).run(ids).step_outputs,
                                  ReferenceExecutor(graph).run(ids).step_outputs)


@pytest.mark.lava
def test_ctrl_c_stops_every_lava_process():
    import os
    import signal
    import threading

    graph = sequential_graph()
    x = spike_inputs(T=6, n=4000)  # tens of seconds: interrupted mid-run on any machine
    before = set(multiprocessing.active_children())
    stop = threading.Event()

    def interrupt_once_running():  # a starved build can take minutes: wait for the processes, or for the run's end
        while not stop.is_set():
            if set(multiprocessing.active_children()) - before:
                if not stop.wait(1.0):
                    os.kill(os.getpid(), signal.SIGINT)
                return
            stop.wait(0.05)

    interrupter = threading.Thread(target=interrupt_once_running, daemon=True)
    interrupter.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            run_lava(graph, inputs=x, batch_size=1, fuse="none", progress=False)
    finally:
        stop.set()
        interrupter.join()
    assert set(multiprocessing.active_children()) <= before
    gc.collect()


@pytest.mark.lava
def test_a_ctrl_c_swallowed_by_a_finaliser_is_raised_at_the_next_check(tmp_path, monkeypatch):
    """A SIGINT whose handler runs inside a __del__ (a finaliser that logs, as lava-nc's do) loses its
    KeyboardInterrupt ("Exception ignored"); the run loop's check raises it between batches."""
    import os
    import signal

    from spikebert.hardware.lava_runner import _watch

    class Finaliser:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):  # the handler runs here, inside __del__, and what it raises is ignored
                pass

    swallowed = []
    monkeypatch.setattr(sys, "unraisablehook", swallowed.append)
    with pytest.raises(KeyboardInterrupt) as caught, _watch(str(tmp_path / "errors")) as interrupt:
        Finaliser()  # collected at once
        assert [type(u.exc_value) for u in swallowed] == [KeyboardInterrupt]  # the handler's raise was lost
        interrupt.check()
    assert caught.traceback[-1].name == "check"  # raised again by the check
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.lava
def test_a_run_leaves_the_loggers_as_it_found_them(caplog):
    """lava-nc adds a StreamHandler to the root logger per Process it builds, and one to its compiler's
    logger per compile; the runner removes them, so our lines keep their format and print once."""
    import logging

    loggers = [logging.getLogger(), logging.getLogger("lava.magma.compiler.compiler")]
    before = [(list(lg.handlers), lg.level) for lg in loggers]
    run_lava(sequential_graph(), inputs=spike_inputs(n=2), batch_size=1, fuse="none", progress=False)
    assert [(list(lg.handlers), lg.level) for lg in loggers] == before
    with caplog.at_level(logging.ERROR):
        logging.getLogger("spikebert.test").error("once")
    assert [r.getMessage() for r in caplog.records].count("once") == 1


SIGINT_SCRIPT = """
import sys
from spikebert.hardware.lava_runner import prepare_lava
prepare_lava()
from tests.test_lava import sequential_graph, spike_inputs
from spikebert.hardware.lava_runner import run_lava
print("started", flush=True)
try:
    run_lava(sequential_graph(), inputs=spike_inputs(T=6, n=4000), batch_size=1, fuse="none", progress=False)
except KeyboardInterrupt:
    print("interrupted", flush=True)
"""


@pytest.mark.lava
@pytest.mark.slow
def test_ctrl_c_in_a_terminal_prints_one_line_and_leaks_no_shared_memory():
    """A terminal's Ctrl-C sends SIGINT to the whole process group (Lava's processes too): they ignore it,
    the runner stops them and shuts Lava's shared-memory manager down, so the interpreter exits without
    the resource tracker's "leaked shared_memory objects" warning or a traceback per Lava process."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    proc = subprocess.Popen([sys.executable, "-c", SIGINT_SCRIPT], cwd=Path(__file__).resolve().parents[1],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert proc.stdout.readline().strip() == "started"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # wait for the Lava processes (children of the child)
            children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
            if len(children) >= 4:
                break
            time.sleep(0.1)
        time.sleep(1.0)
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, err[-2000:]
    assert "interrupted" in out
    assert "leaked shared_memory" not in err, err[-2000:]
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Lava processes after Ctrl-C" in lines[0], err[-2000:]


@pytest.mark.lava
@pytest.mark.slow
def test_interpreter_exits_after_a_failed_run():
    """lava-nc's __del__ would wait forever on the killed processes at exit; the runner abandons the runtime."""
    import subprocess
    import sys
    from pathlib import Path

    script = ("import numpy as np\n"
              "from tests.test_lava import residual_graph, spike_inputs\n"
              "from spikebert.hardware.quantize import quantize_graph\n"
              "from spikebert.hardware.lava_runner import LavaProcessError, run_lava\n"
              "graph = quantize_graph(residual_graph())\n"
              "graph.nodes['join'].scale = np.full(6, 0.5)\n"
              "try:\n"
              "    run_lava(graph, inputs=spike_inputs(), batch_size=1, fuse='none', progress=False)\n"
              "except LavaProcessError:\n"
              "    print('failed as expected')\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).resolve().parents[1], timeout=120,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "failed as expected" in done.stdout
    assert "leaked shared_memory" not in done.stderr, done.stderr[-2000:]
