"""The reference executor on standard NIR graphs: snnTorch exports spike for spike, analytic responses, errors."""

import dataclasses
import warnings

import nir
import numpy as np
import pytest
import torch

from spikebert.contract.nirfile import read_graph
from spikebert.hardware import kernels
from spikebert.hardware.reference import ReferenceExecutor

SNNTORCH_DT = 1e-4  # snntorch.export_nir hard-codes this step into tau = dt / (1 - beta) and r = tau / dt


def roundtrip(tmp_path, graph: nir.NIRGraph) -> nir.NIRGraph:
    path = tmp_path / "g.nir"
    nir.write(path, graph)
    return read_graph(path)


def chain(*nodes: nir.NIRNode, dt: float | None = 1.0) -> nir.NIRGraph:
    """Input -> n0 -> n1 -> ... -> Output, with ``dt`` in the metadata unless None."""
    names = [f"n{i}" for i in range(len(nodes))]
    path = ["input", *names, "output"]
    return nir.NIRGraph(
        nodes={"input": nir.Input(nodes[0].input_type["input"]), **dict(zip(names, nodes)),
               "output": nir.Output(nodes[-1].output_type["output"])},
        edges=list(zip(path[:-1], path[1:])),
        metadata={} if dt is None else {"dt": dt},
    )


def run(tmp_path, graph: nir.NIRGraph, x: np.ndarray, **kwargs) -> np.ndarray:
    """Per-step Output of the file round-tripped graph, (T, B, ...)."""
    return ReferenceExecutor(roundtrip(tmp_path, graph), **kwargs).run_inputs(x).step_outputs


def full(n: int, value: float) -> np.ndarray:
    return np.full(n, float(value))


# --- snnTorch export_to_nir, spike for spike ------------------------------------------------------


def snntorch_net(hidden: str, *, reset="zero", reset_delay=True, n_in=6, n_hidden=10, n_out=4, seed=0):
    """Linear -> Leaky (or Synaptic) -> Linear -> Leaky; per-neuron beta/threshold, which export needs."""
    import snntorch as snn

    torch.manual_seed(seed)
    neuron = dict(init_hidden=True, reset_mechanism=reset, reset_delay=reset_delay)
    if hidden == "leaky":
        layer1 = snn.Leaky(beta=torch.linspace(0.6, 0.95, n_hidden), threshold=torch.full((n_hidden,), 1.0), **neuron)
    else:
        layer1 = snn.Synaptic(alpha=torch.linspace(0.3, 0.8, n_hidden), beta=torch.linspace(0.6, 0.9, n_hidden),
                              threshold=torch.full((n_hidden,), 1.5), **neuron)
    layer2 = snn.Leaky(beta=torch.full((n_out,), 0.8), threshold=torch.full((n_out,), 0.7), init_hidden=True,
                       reset_mechanism=reset)
    net = torch.nn.Sequential(torch.nn.Linear(n_in, n_hidden), layer1, torch.nn.Linear(n_hidden, n_out), layer2)
    with torch.no_grad():
        net[0].weight.mul_(2.0)
        net[2].weight.mul_(3.0)
    return net


def export(net: torch.nn.Module, n_in: int) -> nir.NIRGraph:
    from snntorch.export_nir import export_to_nir

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # export uses nirtorch's deprecated tracer
        return export_to_nir(net, torch.zeros(1, n_in), ignore_dims=[0])  # NIR shapes have no batch axis


def simulate(net: torch.nn.Sequential, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """snnTorch's own loop over x (T, B, n_in): (hidden spikes, output spikes), each (T, B, n)."""
    for m in net:
        if hasattr(m, "reset_mem"):
            m.reset_mem()
    hidden, out = [], []
    with torch.no_grad():
        for x_t in x:
            hidden.append(net[1](net[0](x_t)))
            out.append(net[3](net[2](hidden[-1])))
    return torch.stack(hidden).numpy(), torch.stack(out).numpy()


@pytest.mark.parametrize("hidden,reset_delay", [("leaky", True), ("leaky", False), ("synaptic", False)])
def test_snntorch_export_runs_spike_for_spike(tmp_path, hidden, reset_delay):
    T, B, n_in = 40, 3, 6
    net = snntorch_net(hidden, reset_delay=reset_delay)
    graph = roundtrip(tmp_path, export(net, n_in))
    assert {type(n).__name__ for n in graph.nodes.values()} >= {"Affine", "LIF"}
    x = torch.rand(T, B, n_in, generator=torch.Generator().manual_seed(1))
    hidden_spikes, out_spikes = simulate(net, x)

    executor = ReferenceExecutor(graph, dt=SNNTORCH_DT)
    result = executor.run_inputs(x.numpy(), record=("1",))

    assert hidden_spikes.sum() > 0.1 * hidden_spikes.size and out_spikes.sum() > 0.1 * out_spikes.size
    np.testing.assert_array_equal(result.spikes["1"], hidden_spikes)
    np.testing.assert_array_equal(result.step_outputs, out_spikes)
    act = executor.activity
    assert (act.samples, act.time_steps, act.real_tokens) == (B, T, B)
    assert act.nodes["2"].input_nonzeros == hidden_spikes.sum()  # spikes into the second layer
    assert act.nodes["0"].input_elements == T * B * n_in
    assert act.nodes["0"].input_abs_sum == pytest.approx(float(x.abs().sum()), rel=1e-6)


def test_snntorch_export_needs_dt(tmp_path):
    graph = roundtrip(tmp_path, export(snntorch_net("leaky"), 6))
    with pytest.raises(ValueError, match=r"no 'dt'.*dt=1e-4"):
        ReferenceExecutor(graph)


@pytest.mark.parametrize("hidden,lost", [
    ("leaky", dict(reset="subtract")),
    ("leaky", dict(reset="none")),
    ("synaptic", dict(reset_delay=True)),  # snnTorch holds the membrane at 0 for a step after a spike
])
def test_snntorch_features_lost_at_export(hidden, lost):
    """export_to_nir writes these exactly as the representable network (reset to v_reset, same step):
    NIR 1.0.8 has no subtract reset, no 'no reset' LIF, no delayed reset. The executor cannot tell
    them apart and runs the representable dynamics, so they are not reproduced."""
    reference = export(snntorch_net(hidden, reset="zero", reset_delay=False), 6)
    graph = export(snntorch_net(hidden, **{"reset": "zero", "reset_delay": False, **lost}), 6)
    for name, node in reference.nodes.items():
        for field in dataclasses.fields(node):
            value = getattr(node, field.name)
            if isinstance(value, np.ndarray):
                np.testing.assert_array_equal(getattr(graph.nodes[name], field.name), value, err_msg=name)


# --- hand-built graphs with analytic responses ------------------------------------------------------


def test_lif_leak_reset_and_dt(tmp_path):
    """dt = 0.5, tau = 1: beta = 1/2. Constant input 1: v = 1, 1.5, 1.75 > 1.6 fires, resets, ...

    Neuron 0: r = 2 (gain 1); neuron 1: r = 0, v_leak = 2 (bias 1), the same trace; neuron 2 as
    neuron 0 with v_reset = 0.5: 1.25, 1.625 > 1.6, so it fires every second step after the first.
    """
    lif = nir.LIF(tau=full(3, 1.0), r=np.array([2.0, 0.0, 2.0]), v_leak=np.array([0.0, 2.0, 0.0]),
                  v_threshold=full(3, 1.6), v_reset=np.array([0.0, 0.0, 0.5]))
    y = run(tmp_path, chain(lif, dt=0.5), np.ones((10, 1, 3)))[:, 0]
    np.testing.assert_array_equal(np.flatnonzero(y[:, 0]), [2, 5, 8])
    np.testing.assert_array_equal(y[:, 1], y[:, 0])
    np.testing.assert_array_equal(np.flatnonzero(y[:, 2]), [2, 4, 6, 8])


def test_if_integrates_r_dt_and_fires_strictly_above(tmp_path):
    """dt = 0.5, r = 0.5: v += 0.25 per unit input; v = 1.0 does not fire (strict >), 1.25 does."""
    if_ = nir.IF(r=full(1, 0.5), v_threshold=full(1, 1.0), v_reset=full(1, 0.0))
    y = run(tmp_path, chain(if_, dt=0.5), np.ones((12, 1, 1)))
    np.testing.assert_array_equal(np.flatnonzero(y[:, 0, 0]), [4, 9])


def test_li_and_i_impulse_responses(tmp_path):
    """LI, dt = 0.5, tau = 2, r = 4: beta = 3/4, gain 1, so v[t] = (3/4)^t. I, r = 2: the step v[t] = t + 1."""
    T = 8
    impulse = np.zeros((T, 1, 1))
    impulse[0] = 1.0
    li = nir.LI(tau=full(1, 2.0), r=full(1, 4.0), v_leak=full(1, 0.0))
    np.testing.assert_allclose(run(tmp_path, chain(li, dt=0.5), impulse)[:, 0, 0], 0.75 ** np.arange(T),
                               rtol=1e-15)
    integrator = nir.I(r=full(1, 2.0))
    np.testing.assert_array_equal(run(tmp_path, chain(integrator, dt=0.5), np.ones((T, 1, 1)))[:, 0, 0],
                                  np.arange(1, T + 1))


def test_cuba_impulse_responses(tmp_path):
    """dt = 0.5, tau_syn = 1, w_in = 2: i[t] = (1/2)^t; tau_mem = 2, r = 4: v = 3/4 v + i, so

        v[t] = sum_k (3/4)^(t-k) (1/2)^k = 4 ((3/4)^(t+1) - (1/2)^(t+1)) = 1, 1.25, 1.1875, ...

    CubaLI outputs v; CubaLIF with threshold 1.1 fires at t = 1 and resets, so not at t = 2.
    """
    T = 8
    impulse = np.zeros((T, 1, 1))
    impulse[0] = 1.0
    params = dict(tau_syn=full(1, 1.0), tau_mem=full(1, 2.0), r=full(1, 4.0), v_leak=full(1, 0.0), w_in=full(1, 2.0))
    t = np.arange(T)
    v = run(tmp_path, chain(nir.CubaLI(**params), dt=0.5), impulse)[:, 0, 0]
    np.testing.assert_allclose(v, 4 * (0.75 ** (t + 1) - 0.5 ** (t + 1)), rtol=1e-15)
    cuba = nir.CubaLIF(**params, v_threshold=full(1, 1.1), v_reset=full(1, 0.0))
    spikes = run(tmp_path, chain(cuba, dt=0.5), impulse)[:, 0, 0]
    np.testing.assert_array_equal(np.flatnonzero(spikes), [1])


def test_delay_shifts_by_whole_steps(tmp_path):
    """Per-element delays 0, 2 and 3 steps of dt = 1e-4 (3e-4 / 1e-4 is 2.9999999999999996 in floats)."""
    T, B = 7, 2
    x = np.random.default_rng(0).normal(size=(T, B, 3))
    delay = nir.Delay(np.array([0.0, 2e-4, 3e-4]))
    y = run(tmp_path, chain(delay, dt=1e-4), x)
    expected = np.zeros_like(x)
    for channel, d in enumerate((0, 2, 3)):
        expected[d:, :, channel] = x[:T - d, :, channel]
    np.testing.assert_array_equal(y, expected)


def test_flatten_affine_bias(tmp_path):
    """Flatten (2, 3, 4) per sample to 24, then W x + b; and start_dim = 1 keeps the first dim (2, 12)."""
    rng = np.random.default_rng(0)
    w, b = rng.normal(size=(5, 24)), rng.normal(size=5)
    x = rng.normal(size=(3, 2, 2, 3, 4))  # (T, B, 2, 3, 4)
    graph = chain(nir.Flatten({"input": np.array([2, 3, 4])}, start_dim=0), nir.Affine(w, b))
    np.testing.assert_allclose(run(tmp_path, graph, x), x.reshape(3, 2, 24) @ w.T + b, rtol=1e-13)
    keep_first = chain(nir.Flatten({"input": np.array([2, 3, 4])}, start_dim=1))
    np.testing.assert_array_equal(run(tmp_path, keep_first, x), x.reshape(3, 2, 2, 12))


def test_linear_scale_threshold_and_fan_in_sum(tmp_path):
    """Two branches, W x and 3 x, are summed into Threshold(2): y = [W x + 3 x > 2]."""
    w = np.array([[1.0, 0.0], [0.5, 0.5]])
    graph = nir.NIRGraph(
        nodes={"input": nir.Input(np.array([2])), "lin": nir.Linear(w), "scale": nir.Scale(full(2, 3.0)),
               "thr": nir.Threshold(full(2, 2.0)), "output": nir.Output(np.array([2]))},
        edges=[("input", "lin"), ("input", "scale"), ("lin", "thr"), ("scale", "thr"), ("thr", "output")],
    )
    x = np.array([[[0.5, 0.0], [0.6, 0.0]], [[0.0, 0.6], [0.0, 0.4]]])  # (T=2, B=2, 2)
    # W x + 3 x = (2.0, 0.25), (2.4, 0.3) | (0, 2.1), (0, 1.4); 2.0 does not fire (strict >)
    np.testing.assert_array_equal(run(tmp_path, graph, x), [[[0, 0], [1, 0]], [[0, 1], [0, 0]]])


@pytest.mark.parametrize("stride,padding,dilation,groups", [(1, 0, 1, 1), (2, 1, 1, 1), (1, "same", 2, 2),
                                                           (1, "valid", 1, 3)])
def test_conv1d_equals_torch(tmp_path, stride, padding, dilation, groups):
    rng = np.random.default_rng(0)
    c_in, c_out, length, k = 6, 12, 11, 3
    w, b = rng.normal(size=(c_out, c_in // groups, k)), rng.normal(size=c_out)
    conv = nir.Conv1d(input_shape=length, weight=w, stride=stride, padding=padding, dilation=dilation,
                      groups=groups, bias=b)
    graph = chain(conv)
    if groups > 1:  # NIR 1.0.8 types the input as (C_in / groups, N) and rejects the graph; the executor does not
        graph = nir.NIRGraph(graph.nodes, graph.edges, metadata=graph.metadata, type_check=False)
        graph.nodes["input"] = nir.Input(np.array([c_in, length]))
    x = rng.normal(size=(2, 3, c_in, length))
    y = (ReferenceExecutor(graph).run_inputs(x).step_outputs if groups > 1 else run(tmp_path, graph, x))
    expected = torch.nn.functional.conv1d(torch.from_numpy(x.reshape(6, c_in, length)), torch.from_numpy(w),
                                          torch.from_numpy(b), stride=stride, padding=padding, dilation=dilation,
                                          groups=groups)
    np.testing.assert_allclose(y, expected.numpy().reshape(2, 3, c_out, -1), rtol=1e-12, atol=1e-12)


def test_conv1d_kernel_one_is_token_linear_bit_for_bit():
    """SpikeBERT's token-wise layers: the general kernel must not move the Lava/reference equality."""
    rng = np.random.default_rng(0)
    x, w, b = rng.normal(size=(3, 8, 5)), rng.normal(size=(6, 8)), rng.normal(size=6)
    y = kernels.conv1d(x, w[:, :, None], b, stride=1, padding=0, dilation=1, groups=1)
    np.testing.assert_array_equal(y, kernels.token_linear(x, w, b))


# --- errors -----------------------------------------------------------------------------------------


def test_unsupported_node_is_named():
    inner = nir.NIRGraph.from_list(nir.Scale(np.ones(2)))  # a nested subgraph: not inlined
    graph = nir.NIRGraph(nodes={"input": nir.Input(np.array([2])), "sub": inner, "output": nir.Output(np.array([2]))},
                         edges=[("input", "sub"), ("sub", "output")], type_check=False)
    with pytest.raises(ValueError, match=r"node 'sub' has type NIRGraph.*supported: \[.*inline their nodes"):
        ReferenceExecutor(graph)


def test_non_integer_delay_is_an_error():
    with pytest.raises(ValueError, match=r"Delay 'n0'.*not whole.*multiples of dt"):
        ReferenceExecutor(chain(nir.Delay(np.array([1.5e-4, 1e-4])), dt=1e-4))


def test_edge_shape_mismatch_names_the_edge():
    graph = nir.NIRGraph(nodes={"input": nir.Input(np.array([3])), "fc": nir.Affine(np.ones((2, 4)), np.zeros(2)),
                                "output": nir.Output(np.array([2]))},
                         edges=[("input", "fc"), ("fc", "output")], type_check=False)
    with pytest.raises(ValueError, match=r"shape mismatch on edge \('input', 'fc'\).*\(3,\).*\(4,\)"):
        ReferenceExecutor(graph)


def test_dt_and_input_errors():
    lif = nir.LIF(tau=full(2, 2.0), r=full(2, 1.0), v_leak=full(2, 0.0), v_threshold=full(2, 1.0))
    with pytest.raises(ValueError, match="contradicts the graph metadata dt=1.0"):
        ReferenceExecutor(chain(lif, dt=1.0), dt=0.5)
    executor = ReferenceExecutor(chain(lif, dt=None), dt=0.5)
    with pytest.raises(ValueError, match=r"must be \(T, B, 2\), got \(4, 1, 3\)"):
        executor.run_inputs(np.zeros((4, 1, 3)))
    executor.run_inputs(np.zeros((4, 1, 2)))
    with pytest.raises(ValueError, match="runs of 4 steps, got 5"):
        executor.run_inputs(np.zeros((5, 1, 2)))
