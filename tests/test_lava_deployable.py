"""fuse='deploy': every synaptic layer a lava-nc Conv, every population a lava-nc LIFReset; custom processes only
for spike attention, the host readout and branch delays. Bit-exact with the reference executor in fixed point."""

import dataclasses

import numpy as np
import pytest

from spikebert.converters.torch_to_nir import export_student
from spikebert.hardware.quantize import quantize_graph
from spikebert.hardware.reference import ReferenceExecutor
from spikebert.testing import make_ids, make_student
from tests.test_lava import residual_graph, sequential_graph, spike_inputs

pytestmark = pytest.mark.lava


def student_graph(tiny_cfg, residual: str):
    cfg = dataclasses.replace(tiny_cfg, norm="batch", residual=residual)
    return export_student(make_student(cfg, seed=1, attention_bias=1.0))


@pytest.mark.slow
@pytest.mark.parametrize("quantised", [False, True], ids=["float", "fixed"])
def test_spike_residual_student_deploys_bit_exact(tiny_cfg, quantised):
    from spikebert.hardware.lava_runner import run_lava

    graph = student_graph(tiny_cfg, "spike")
    graph = quantize_graph(graph) if quantised else graph
    ids = make_ids(5, 8, tiny_cfg.vocab_size).numpy()
    ref = ReferenceExecutor(graph)
    expected = ref.run(ids, record=("b1_lif2", "b1_attn_lif"))
    assert expected.spikes["b1_lif2"].any() and expected.spikes["b1_attn_lif"].any()
    run = run_lava(graph, ids, batch_size=2, fuse="deploy", progress=False)  # 3 windows, filler rows in the last
    np.testing.assert_array_equal(run.step_outputs, expected.step_outputs)
    assert run.output_latency > 0  # one step per lava-nc Conv on the longest path
    for name in ("b0_attn", "b1_attn", "pool", "classifier"):  # what custom processes compute is recorded
        assert run.activity.nodes[name].same_counts(ref.activity.nodes[name]), name


@pytest.mark.slow
def test_membrane_residual_student_deploys_in_float(tiny_cfg):
    """A population reads the sum of several synapses (converging Convs) and the embedding's currents."""
    from spikebert.hardware.lava_runner import run_lava

    graph = student_graph(tiny_cfg, "membrane")
    ids = make_ids(4, 8, tiny_cfg.vocab_size).numpy()
    expected = ReferenceExecutor(graph).run(ids).step_outputs
    run = run_lava(graph, ids, batch_size=2, fuse="deploy", progress=False)
    np.testing.assert_allclose(run.step_outputs, expected, rtol=0, atol=1e-12)  # float sums in another order


def test_inventory_maps_every_synapse_and_population_to_lava_nc(tiny_cfg):
    """Without running: the build's processes. Every Conv reads the binary spikes of one population (or the
    encoder); a join is split into converging Convs (block 1's qkv reads the encoder, b0_proj_lif and b0_lif2)."""
    from spikebert.hardware.lava_env import lava_available

    if not lava_available():
        pytest.skip("needs lava-nc")
    graph = quantize_graph(student_graph(tiny_cfg, "spike"))
    procs = build_inventory(graph, make_ids(2, 8, tiny_cfg.vocab_size).numpy())
    kinds = {}
    for p in procs:
        kinds.setdefault(p.kind, []).append(p)
    assert {p.nodes[0] for p in kinds["lava-nc LIFReset"]} == {n for n in graph.nodes if "lif" in n}
    convs = kinds["lava-nc Conv"]
    assert all(p.lava_nc for p in convs + kinds["lava-nc LIFReset"])
    assert sorted(p.source for p in convs if p.nodes == ["b1_qkv"]) == ["b0_lif2", "b0_proj_lif", "spikes"]
    assert {p.source for p in convs} <= {n for n in graph.nodes if "lif" in n} | {"spikes"}
    assert {p.nodes[0] for p in kinds["custom attention"]} == {"b0_attn", "b1_attn"}
    assert [p.nodes for p in kinds["custom readout"]] == [["pool", "classifier"]]
    assert set(kinds) <= {"lava-nc LIFReset", "lava-nc Conv", "custom attention", "custom readout", "custom delay"}


def build_inventory(graph, ids):
    from spikebert.hardware.lava_runner import _batched, _token_source
    from spikebert.hardware.nir_to_lava import build_network
    from spikebert.hardware.reference import encode_tokens

    enc = encode_tokens(graph, ids)
    mask = enc.mask if enc.mask is not None else np.ones(ids.shape, bool)
    source = _token_source(_batched(enc.spikes, len(ids)), 4, None)
    net = build_network(graph, source_node=enc.first_node, source=source, batch=len(ids), n_batches=1,
                        time_steps=int(graph.metadata["time_steps"]), dt=graph.metadata.get("dt"),
                        masks=_batched(mask, len(ids)), fuse="deploy")
    return net.inventory


@pytest.mark.parametrize("make", [sequential_graph, residual_graph])
@pytest.mark.parametrize("quantised", [False, True], ids=["float", "fixed"])
def test_standard_graphs_deploy(make, quantised):
    """(C,) vectors run as (1, B, C) through 1 x 1 Convs; the residual graph's join becomes converging Convs."""
    from spikebert.hardware.lava_runner import run_lava

    graph = quantize_graph(make()) if quantised else make()
    x = spike_inputs()
    expected = ReferenceExecutor(graph).run_inputs(x).step_outputs
    run = run_lava(graph, inputs=x, batch_size=2, fuse="deploy", progress=False)
    np.testing.assert_array_equal(run.step_outputs, expected)


@pytest.mark.parametrize("fixed", [False, True], ids=["float", "fixed"])
def test_conv1x1_model_equals_lava_ncs_own_conv_model(fixed):
    """Our CPU model of lava-nc's Conv process (one matrix product) against lava-nc's own model (scipy loops):
    the same process, the same outputs step for step (one step of delay, binary input, 24-bit clamp)."""
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.conv.process import Conv
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source

    from spikebert.hardware.lava_procs.models import PyConv1x1ModelFixed, PyConv1x1ModelFloat

    rng = np.random.default_rng(0)
    x = (rng.random((5, 2, 6, 7)) < 0.5).astype(np.int32 if fixed else float)  # (W=L, H=B, C_in, steps)
    w = rng.integers(-128, 128, (4, 1, 1, 6)) * 2 if fixed else rng.normal(size=(4, 1, 1, 6))
    outs = []
    for ours in (False, True):
        src, conv, sink = Source(data=x), Conv(weight=w, input_shape=(5, 2, 6)), Sink(shape=(5, 2, 4), buffer=7)
        src.s_out.connect(conv.s_in)
        conv.a_out.connect(sink.a_in)
        model = PyConv1x1ModelFixed if fixed else PyConv1x1ModelFloat
        cfg = Loihi2SimCfg(select_tag="fixed_pt" if fixed else "floating_pt",
                           exception_proc_model_map={conv: model} if ours else {})
        src.run(condition=RunSteps(num_steps=7), run_cfg=cfg)
        outs.append(sink.data.get())
        src.stop()
    assert np.abs(outs[0]).sum() > 0
    np.testing.assert_allclose(outs[1], outs[0], rtol=1e-12, atol=1e-12)


def test_recurrent_graphs_are_refused_with_the_fix():
    from spikebert.hardware.lava_runner import run_lava
    from tests.test_reference_recurrent import rnn_graph

    with pytest.raises(ValueError, match="recurrent edges.*fuse='none' or 'blocks'"):
        run_lava(rnn_graph(), inputs=spike_inputs(width=4), fuse="deploy", progress=False)
