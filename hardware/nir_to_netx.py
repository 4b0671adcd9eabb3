"""Export a quantised sequential NIR graph to lava-dl's netx HDF5 format, and run it with netx.

netx (``lava.lib.dl.netx.hdf5.Network``) builds a chain of layer blocks, each a Lava ``Dense``
synapse into a CUBA population (Lava ``LIF``), layer i feeding only layer i + 1. It therefore hosts

    Input -> (Affine | Linear -> LIF | IF)+ -> Output        (every node one predecessor, one successor)

and nothing that branches: no residual joins, no spike attention (a product of two activations),
no LayerNorm, no token-wise Conv1d over (C, L). SpikeBERT students have all four; they run as
direct Lava processes (``spikebert.hardware.nir_to_lava``, ``spikebert simulate --backend lava``).

The graph must be quantised first (``spikebert.hardware.quantize.quantize_graph(graph, bias_exp_min=6)``):
netx reads integers only. File layout, as SLAYER's ``export_hdf5`` writes it and
``netx.utils.NetDict`` / ``Network._create`` read it:

    /layer/0/type                   (1,) S10  b"input"
    /layer/0/shape                  (n_in,)
    /layer/i/type                   (1,) S10  b"dense"
    /layer/i/shape, inFeatures, outFeatures
    /layer/i/weight                 (out, in) int32: effective integer weights, mantissa << weight_exp
    /layer/i/bias                   (out,) int32 in weight units: netx sets bias_mant = bias, bias_exp = 6
    /layer/i/neuron/type            (1,) S10  b"CUBA"
    /layer/i/neuron/iDecay, vDecay, vThMant, refDelay, gradedSpike

netx maps CUBA to ``LIF(du=iDecay - 1, dv=vDecay, vth=vThMant, bias_mant=bias, bias_exp=6)`` and
re-derives each layer's mantissas and exponent with its own ``optimize_weight_bits``;
:func:`export_netx` checks that Lava's ``Dense`` then computes the quantised graph's effective
weights exactly.

Timing (:func:`run_netx`). Every netx layer's ``Dense`` adds one step: the output of step t
appears at step t + k, k = number of layers. Lava's LIF adds its bias from step 1, before the
delayed input arrives; netx's ``reset_interval`` (``LIFReset``, reset phase staggered by one step
per layer) zeroes each layer's state on the step its first input of a sample arrives, which also
discards that early bias. With the delay removed, the output equals
``spikebert.hardware.reference.ReferenceExecutor(graph).run_inputs(x).step_outputs`` step for step.
"""

from __future__ import annotations

from pathlib import Path

import nir
import numpy as np

from spikebert.contract.errors import SpikebertError
from spikebert.contract.extension import (
    SBIF,
    SBLayerNorm,
    SBPositionSpikes,
    SBSpikeAttention,
    SBSpikeDrivenAttention,
    SBTokenEmbedding,
    SBTokenMean,
)
from spikebert.contract.fileio import atomic_write
from spikebert.contract.graph import port_shape, predecessors
from spikebert.hardware import kernels
from spikebert.hardware.fixed_point import fixed_params, is_quantised, neuron_bias
from spikebert.hardware.lava_env import LavaLogging, require_lava_dl
from spikebert.hardware.quantize import SPIKING

SYNAPSES = (nir.Affine, nir.Linear)
CONV = (nir.Conv2d,)
WEIGHT_BITS = 8  # Loihi's synaptic weight mantissa
NETX_BIAS_EXP = 6  # netx fixes bias_exp = 6: the file's bias is in weight units (a_in is MSB-aligned by 6 bits)
BIAS_MANT_MIN, BIAS_MANT_MAX = -(2**12), 2**12 - 1  # Loihi's 13-bit signed bias mantissa
DU_OFFSET = 1  # netx: du = iDecay - 1 (so iDecay = 4096 for du = 4095, no current memory)
REF_DELAY = 1  # SLAYER's CUBA value; Lava's LIF has no refractory period and netx ignores it
RESET_OFFSET = 1  # netx resets layer i = 1, 2, ... at step offset + i; its first input arrives at step 1 + i
HOW_TO_RUN = "run such graphs as direct Lava processes: `spikebert simulate --backend lava`"
SEQUENTIAL = "netx chains its layers strictly sequentially (layer i feeds only layer i + 1)"
UNHOSTABLE = {
    SBSpikeAttention: "spike attention multiplies two activations (Q K^T, then V); a netx layer is a weighted "
                      "sum of one input",
    SBSpikeDrivenAttention: "spike-driven attention sums K * V over the tokens and masks Q with its own spikes; a "
                            "netx layer is a weighted sum of one input",
    SBLayerNorm: "LayerNorm (a mean, variance and division per token) has no netx layer",
    SBTokenMean: "the token mean is a host-side readout over the token axis; netx has no such layer",
    SBTokenEmbedding: "the token embedding is a host-side table lookup, not a netx layer",
    SBPositionSpikes: "the position population is a host-side spike source, not a netx layer",
    nir.Conv1d: "token-wise Conv1d layers over (C, L) are not mapped to netx's 2-D conv layers over (W, H, C)",
    SBIF: "netx neurons (CUBA, with lava-nc's LIF) reset to 0; SBIF subtracts the threshold",
    nir.Delay: "netx has no delay node (only per-synapse delays inside a dense layer)",
}


def fold_pools(graph: nir.NIRGraph) -> nir.NIRGraph:
    """netx has no pooling layer (lava-dl 0.6 raises NotImplementedError for 'pool' and 'average'); a
    ``SumPool2d`` / ``AvgPool2d`` (kernel = stride k, no padding, map sizes divisible by k) that feeds a
    synapse directly is folded into it, exactly:

    * pool -> Conv2d(K, stride S, padding P): one Conv2d with kernel K' (k K x k K), K'[o, c, k p + a, k q + b]
      = K[o, c, p, q], stride k S, padding k P (dilation 1);
    * pool -> Flatten -> Affine/Linear W: the Affine on the unpooled map, W'[o, (c, k i + a, k j + b)] = W[o, (c, i, j)].

    AvgPool2d also divides by k^2. Returns a new graph (node names kept, pools removed); other graphs unchanged.
    """
    nodes, edges = dict(graph.nodes), list(graph.edges)
    for name, node in graph.nodes.items():
        if not isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
            continue
        k = np.ravel(node.kernel_size)
        succ = [d for s, d in edges if s == name]
        pred = [s for s, d in edges if d == name]
        shape = port_shape(node, "input")
        square = len(set(k.tolist())) == 1 and np.array_equal(np.ravel(node.stride), k)
        if (not square or np.any(np.ravel(node.padding))
                or len(succ) != 1 or len(pred) != 1 or shape is None or shape[1] % k[0] or shape[2] % k[0]):
            raise SpikebertError(f"{type(node).__name__} {name!r}: netx has no pooling layer, and this one cannot be "
                                 "folded into the next synapse (needs a square kernel equal to its stride, no padding, "
                                 "map sizes divisible by it, one input and one consumer)")
        k, scale = int(k[0]), (1.0 / float(k[0] ** 2) if isinstance(node, nir.AvgPool2d) else 1.0)
        if scale != 1.0 and is_quantised(graph):
            raise SpikebertError(f"AvgPool2d {name!r} in a quantised graph: fold the float graph (fold_pools), then "
                                 "quantise it")
        nxt = nodes[succ[0]]
        if isinstance(nxt, nir.Conv2d):
            if np.any(np.ravel(nxt.dilation) != 1) or isinstance(nxt.padding, (str, bytes)):
                raise SpikebertError(f"{name!r}: the Conv2d after it has dilation or string padding; cannot fold")
            w = np.asarray(nxt.weight, dtype=np.float64)
            folded = np.repeat(np.repeat(w, k, axis=2), k, axis=3) * scale
            nodes[succ[0]] = nir.Conv2d(input_shape=(shape[1], shape[2]), weight=folded,
                                        stride=np.ravel(nxt.stride) * k, padding=np.ravel(nxt.padding) * k,
                                        dilation=1, groups=int(nxt.groups), bias=np.asarray(nxt.bias),
                                        metadata=dict(nxt.metadata or {}))  # a quantised synapse keeps its integers
            consumer = succ[0]
        elif isinstance(nxt, nir.Flatten):
            after = [d for s, d in edges if s == succ[0]]
            syn = nodes[after[0]] if len(after) == 1 else None
            if not isinstance(syn, (nir.Affine, nir.Linear)) or int(nxt.start_dim) != 0:
                raise SpikebertError(f"{name!r}: netx cannot fold a pool whose Flatten does not feed one Affine/Linear")
            c, h, w_ = shape
            weight = np.asarray(syn.weight, dtype=np.float64).reshape(-1, c, h // k, w_ // k)
            weight = np.repeat(np.repeat(weight, k, axis=2), k, axis=3).reshape(weight.shape[0], -1) * scale
            nodes[after[0]] = (nir.Affine(weight, np.asarray(syn.bias), metadata=dict(syn.metadata or {}))
                               if isinstance(syn, nir.Affine) else nir.Linear(weight, metadata=dict(syn.metadata or {})))
            nodes[succ[0]] = nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0, end_dim=-1)
            consumer = succ[0]
        else:
            raise SpikebertError(f"{name!r}: netx cannot fold a pool into {type(nxt).__name__} {succ[0]!r}")
        del nodes[name]
        edges = [(s, d) for s, d in edges if d != name and s != name] + [(pred[0], consumer)]
    if len(nodes) == len(graph.nodes):
        return graph
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=dict(graph.metadata))


def netx_layers(graph: nir.NIRGraph) -> list[tuple[str, str]]:
    """The (synapse, neuron) node names of a graph netx can host, input to output; a Flatten between the
    conv and the dense layers is the pair ("<flatten>", "").

    Raises ValueError naming the first node netx cannot host, a branch, or a float graph.
    """
    for name, node in graph.nodes.items():
        if isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
            raise SpikebertError(f"node {name!r} ({type(node).__name__}): netx has no pooling layer; fold it into the "
                                 "next synapse first (spikebert.hardware.nir_to_netx.fold_pools, which export_netx "
                                 "applies)")
        if not isinstance(node, (nir.Input, nir.Output, nir.Flatten, *SYNAPSES, *CONV, *SPIKING)):
            why = UNHOSTABLE.get(type(node), "netx hosts only Affine/Linear synapses into LIF/IF populations")
            raise SpikebertError(f"node {name!r} ({type(node).__name__}) cannot be exported to netx: {why}; {HOW_TO_RUN}")
    preds = predecessors(graph)
    succs: dict[str, list[str]] = {n: [] for n in graph.nodes}
    for src, dst in graph.edges:
        succs[src].append(dst)
    for name in graph.nodes:
        for what, ends in (("inputs", preds[name]), ("outputs", succs[name])):
            if len(ends) > 1:
                raise SpikebertError(f"node {name!r} has {len(ends)} {what} {ends}: {SEQUENTIAL}, so residual joins, "
                                 f"fan-in and fan-out cannot be hosted; {HOW_TO_RUN}")
    inputs = [n for n, node in graph.nodes.items() if isinstance(node, nir.Input)]
    if len(inputs) != 1 or preds[inputs[0]]:
        raise SpikebertError(f"netx needs exactly one Input node, fed by no edge; the graph has {inputs}")
    chain = [inputs[0]]
    while succs[chain[-1]]:
        chain.append(succs[chain[-1]][0])
    if len(chain) != len(graph.nodes):
        raise SpikebertError(f"nodes {sorted(set(graph.nodes) - set(chain))} are not on the chain from {inputs[0]!r}: "
                         f"{SEQUENTIAL}")
    kinds = [type(graph.nodes[n]) for n in chain]
    pairs, body, dense = [], chain[1:-1], False
    while body:
        first = graph.nodes[body[0]]
        if isinstance(first, nir.Flatten) and pairs and not dense:
            pairs.append((body.pop(0), ""))
            continue
        if len(body) < 2 or not isinstance(graph.nodes[body[1]], SPIKING):
            break
        if isinstance(first, CONV) and not dense:
            pairs.append((body.pop(0), body.pop(0)))
        elif isinstance(first, SYNAPSES):
            dense = True
            pairs.append((body.pop(0), body.pop(0)))
        else:
            break
    if kinds[-1] is not nir.Output or body or not pairs or not pairs[-1][1]:
        raise SpikebertError(f"netx hosts Input -> (Conv2d -> LIF|IF)* -> [Flatten] -> (Affine|Linear -> LIF|IF)+ -> "
                             f"Output; the chain is {' -> '.join(f'{n} ({k.__name__})' for n, k in zip(chain, kinds))}")
    if not is_quantised(graph):
        raise SpikebertError("the graph is float; netx reads Loihi integers: quantise it first with "
                         "spikebert.hardware.quantize.quantize_graph(graph, bias_exp_min=6), or export the .nir with "
                         "`spikebert-export GRAPH.nir --to netx`, which quantises a float graph")
    return pairs


def export_netx(graph: nir.NIRGraph, path: str | Path) -> None:
    """Write the quantised sequential ``graph`` as a netx HDF5 file (layout in the module docstring)."""
    import h5py

    graph = fold_pools(graph)
    layers = [("flatten", {}) if not neuron else _layer(graph, syn, neuron) for syn, neuron in netx_layers(graph)]
    inputs = [n for n, node in graph.nodes.items() if isinstance(node, nir.Input)]
    in_shape = port_shape(graph.nodes[inputs[0]], "output")
    if in_shape is None:
        in_shape = (layers[0][1]["weight"].shape[1],)

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w") as f:
            _string(f, "layer/0/type", "input")
            f.create_dataset("layer/0/shape", data=np.array(in_shape))  # (C, H, W) or (n,): netx reverses it
            for i, (kind, layer) in enumerate(layers, start=1):
                group = f.create_group(f"layer/{i}")
                _string(group, "type", kind)
                if kind != "flatten":
                    _string(group, "neuron/type", "CUBA")
                for key, value in layer.items():
                    group.create_dataset(key, data=value)

    atomic_write(Path(path), write)


def _string(group, key: str, value: str) -> None:
    """The fixed-length (1,) S10 string SLAYER writes for types."""
    group.create_dataset(key, (1,), "S10", [value.encode("ascii")])


def _layer(graph: nir.NIRGraph, syn: str, neuron: str) -> tuple[str, dict[str, np.ndarray]]:
    """(netx layer type, HDF5 datasets relative to /layer/i) of one dense or conv layer."""
    s, p = fixed_params(graph.nodes[syn]), fixed_params(graph.nodes[neuron])
    if s is None or p is None:
        raise SpikebertError(f"{syn!r} -> {neuron!r} has no 'fixed_point' metadata; quantise the float graph with "
                         "quantize_graph(graph, bias_exp_min=6)")
    if isinstance(graph.nodes[syn], nir.Conv2d):
        return "conv", _conv_layer(graph, syn, neuron, s, p)
    mantissas = np.asarray(graph.nodes[syn].weight, dtype=np.int64)
    shape = tuple(np.shape(graph.nodes[neuron].v_threshold))
    if mantissas.ndim != 2 or shape != (mantissas.shape[0],):
        raise SpikebertError(f"{syn!r} -> {neuron!r}: netx dense layers need a 2-D weight (out, in) into a 1-D population, "
                         f"got weight {mantissas.shape} and population {shape}")
    weight = kernels.shift_exp(mantissas, int(s["weight_exp"]))
    check_netx_weights(syn, weight)
    bias = neuron_bias(p).reshape(-1)
    unit = 2**NETX_BIAS_EXP
    if np.any(bias % unit):
        raise SpikebertError(f"{neuron!r}: bias {bias.tolist()} (v units) is not a multiple of {unit}; netx holds biases "
                         f"as bias_mant << {NETX_BIAS_EXP} only: quantise the float graph with "
                         "quantize_graph(graph, bias_exp_min=6)")
    bias //= unit
    if bias.min() < BIAS_MANT_MIN or bias.max() > BIAS_MANT_MAX:
        raise SpikebertError(f"{neuron!r}: bias up to {np.abs(bias).max()} weight units exceeds Loihi's 13-bit mantissa at "
                         f"netx's fixed bias exponent {NETX_BIAS_EXP}")
    n_out, n_in = weight.shape
    return "dense", {
        "shape": np.array([n_out]), "inFeatures": n_in, "outFeatures": n_out,
        "weight": weight.astype(np.int32), "bias": bias.astype(np.int32), **_neuron(p),
    }


def _neuron(p: dict) -> dict:
    return {"neuron/iDecay": int(p["du"]) + DU_OFFSET, "neuron/vDecay": int(p["dv"]), "neuron/vThMant": int(p["vth"]),
            "neuron/refDelay": REF_DELAY, "neuron/gradedSpike": False}


def _conv_layer(graph: nir.NIRGraph, syn: str, neuron: str, s: dict, p: dict) -> dict[str, np.ndarray]:
    """A netx conv layer: weight (C_out, C_in, K_h, K_w) as PyTorch and SLAYER hold it (netx flips it for Lava's
    true convolution and orders it (C_out, W, H, C_in)); shape, stride, padding, dilation in (C,) H, W order
    (netx reverses them to W, H). netx hands these integers to lava-nc's ``Conv`` as they are (weight_exp 0, no
    re-optimisation, unlike its dense layers), so they must lie in Loihi's 8-bit range."""
    node = graph.nodes[syn]
    weight = kernels.shift_exp(np.asarray(node.weight, dtype=np.int64), int(s["weight_exp"]))
    if weight.min() < -256 or weight.max() > 255:
        raise SpikebertError(f"{syn!r}: conv weights in [{weight.min()}, {weight.max()}] exceed Loihi's 8-bit range; "
                             "quantise the float graph with quantize_graph")
    if np.any(neuron_bias(p)):
        raise SpikebertError(f"{neuron!r}: netx conv layers are exported without biases here; this layer has one")
    if isinstance(node.padding, (str, bytes)):
        raise SpikebertError(f"{syn!r}: string padding {node.padding!r}; give the padding in pixels for netx")
    shape = tuple(np.shape(graph.nodes[neuron].v_threshold))
    return {"shape": np.array(shape), "weight": weight.astype(np.int32),
            "stride": np.array(kernels.pair(node.stride)), "padding": np.array(kernels.pair(node.padding)),
            "dilation": np.array(kernels.pair(node.dilation)), "groups": int(node.groups), **_neuron(p)}


def check_netx_weights(name: str, weight: np.ndarray) -> None:
    """Raise ValueError unless Lava's ``Dense``, given what netx's ``optimize_weight_bits`` derives from
    the integer ``weight`` (out, in), computes ``weight`` exactly: ``(sum of active mantissas) << weight_exp``
    must be the sum of the active ``weight``.

    netx passes no sign mode, so Lava's Dense determines its own. They disagree on layers without a
    positive weight: netx scales the most negative weight towards -256 (and calls a layer of zeros and
    negatives mixed), Lava's inhibitory mode clips at -255. A layer of negative weights whose minimum
    is a power of two (-32, -64, ...) thus loses a unit in netx and is refused here.
    """
    require_lava_dl("netx export (--to netx)")
    from lava.lib.dl.netx.utils import optimize_weight_bits
    from lava.utils.weightutils import clip_weights, determine_sign_mode, truncate_weights

    if not weight.any():
        raise SpikebertError(f"{name!r}: all weights are zero, which netx's optimize_weight_bits cannot scale")
    lo, hi = (0, 255) if weight.min() >= 0 else (-255, 0) if weight.max() <= 0 else (-256, 254)  # Lava's clip
    if weight.min() < lo or weight.max() > hi:
        raise SpikebertError(f"{name!r}: weights in [{weight.min()}, {weight.max()}] exceed Loihi's 8-bit range "
                         f"[{lo}, {hi}] for this sign; quantise the float graph with quantize_graph")
    with np.errstate(divide="ignore"):  # netx divides by the largest weight, 0 in a non-positive layer
        mant, num_bits, exp, netx_mode = optimize_weight_bits(weight)
    if num_bits > WEIGHT_BITS:
        raise SpikebertError(f"{name!r}: netx needs {num_bits}-bit mantissas (odd weights in its mixed sign mode); Loihi "
                         f"synapses hold {WEIGHT_BITS} bits and quantize_graph keeps mixed-sign weights even")
    sign_mode = determine_sign_mode(mant)
    lava = truncate_weights(clip_weights(mant, sign_mode, num_bits=WEIGHT_BITS), sign_mode, num_bits).astype(np.int64)
    exact = np.array_equal(lava, weight * 2**-exp) if exp <= 0 else np.array_equal(lava * 2**exp, weight)
    if not exact:
        raise SpikebertError(f"{name!r}: netx cannot hold these weights exactly: from its {num_bits}-bit mantissas "
                         f"(exponent {exp}, sign mode {netx_mode.name}) Lava's Dense (sign mode {sign_mode.name}) "
                         "computes other weights; netx mis-scales layers without a positive weight")


def run_netx(path: str | Path, x: np.ndarray) -> np.ndarray:
    """Run a netx HDF5 file on input spikes x (T, B, n_in) in Lava's fixed-point CPU simulation.

    The B samples run back to back in one Lava run, each for T steps: netx's ``reset_interval = T``
    clears every layer's state when the sample's first input reaches it. Returns the output spikes
    (T, B, n_out) with netx's k-step delay removed (k = number of layers): entry t is what the
    network emitted at step t + k of the sample, the response to the input of step t.
    """
    from spikebert.hardware.lava_runner import prepare_lava

    require_lava_dl("running netx networks")
    prepare_lava()  # before Lava's runtime import fixes the multiprocessing start method
    from lava.lib.dl.netx.hdf5 import Network

    x = np.asarray(x)
    if x.ndim not in (3, 5) or not np.isin(x, (0, 1)).all():
        raise SpikebertError(f"x must hold binary spikes shaped (T, B, n_in) or (T, B, C, H, W), got shape {x.shape} "
                             f"with values {np.unique(x)[:5]}; netx's first layer reads unary spikes")
    with LavaLogging():  # lava-nc's handlers on the root logger, one per Process: removed after the run
        return _run_netx(Network, path, x)


def _run_netx(Network, path, x: np.ndarray) -> np.ndarray:
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source

    T, B = x.shape[:2]
    lava_in = tuple(x.shape[2:][::-1])  # netx holds (C, H, W) maps as (W, H, C)
    net = Network(net_config=str(path), reset_interval=T, reset_offset=RESET_OFFSET)
    try:
        if tuple(net.inp.shape) != lava_in:
            raise SpikebertError(f"{path}: the network takes {net.inp.shape} inputs (netx order), x has {x.shape[2:]}")
        k = len(net.layers)
        steps = B * T + k  # k more steps flush the last sample through the pipeline
        data = np.zeros((*lava_in, steps), dtype=np.int32)
        per_step = x.swapaxes(0, 1).reshape(B * T, *x.shape[2:])  # sample-major
        data[..., :B * T] = np.moveaxis(per_step.transpose(0, *range(per_step.ndim - 1, 0, -1)), 0, -1)
        source, sink = Source(data=data), Sink(shape=net.out.shape, buffer=steps)
        source.s_out.connect(net.inp)
        net.out.connect(sink.a_in)
        net.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        out = sink.data.get()  # (n_out, steps)
    finally:
        net.stop()
        net.net_config.f.close()  # netx reads the file while building and leaves it open
    n_out = out.shape[0]  # netx's dense output layer: (n_out, steps)
    return out[:, k:].T.reshape(B, T, n_out).transpose(1, 0, 2).astype(np.int64)  # (T, B, n_out)
