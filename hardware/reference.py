"""Reference executor: runs a NIR graph of the supported node set in discrete time with NumPy.

Semantics (also those of the Lava backend): at every step, nodes run in topological order; a
node's input is the sum of its predecessors' outputs in the same step (no synaptic delay); LIF
nodes follow ``hardware.kernels.lif_step`` with forward-Euler coefficients for the graph's ``dt``
(metadata, default 1). The token-embedding prefix (SBTokenEmbedding -> Threshold) is the host-side
encoder and runs once per sample. The readout is the mean over time of the output node.
"""

from __future__ import annotations

import dataclasses
import logging

import nir
import numpy as np

from converters.nir_ext import SBLayerNorm, SBSpikeAttention, SBTokenEmbedding, SBTokenMean
from hardware import kernels
from hardware.activity import Activity, NodeActivity

log = logging.getLogger(__name__)

SYNAPSE_TYPES = (nir.Conv1d, nir.Affine, nir.Linear, SBSpikeAttention, SBTokenMean)


def topological_order(graph: nir.NIRGraph) -> list[str]:
    """Kahn's algorithm; a cycle (recurrence) is reported with the nodes involved."""
    preds = predecessors(graph)
    indeg = {n: len(p) for n, p in preds.items()}
    succ: dict[str, list[str]] = {n: [] for n in graph.nodes}
    for src, dst in graph.edges:
        succ[src].append(dst)
    ready = [n for n in graph.nodes if indeg[n] == 0]
    order = []
    while ready:
        n = ready.pop(0)
        order.append(n)
        for m in succ[n]:
            indeg[m] -= 1
            if indeg[m] == 0:
                ready.append(m)
    if len(order) != len(graph.nodes):
        raise ValueError(f"graph has a cycle through {sorted(set(graph.nodes) - set(order))}; "
                         "recurrent graphs are not supported by this executor yet")
    return order


def predecessors(graph: nir.NIRGraph) -> dict[str, list[str]]:
    preds: dict[str, list[str]] = {n: [] for n in graph.nodes}
    for src, dst in graph.edges:
        for end in (src, dst):
            if end not in graph.nodes:
                raise ValueError(f"edge ({src!r}, {dst!r}) names node {end!r}, which the graph does not have")
        preds[dst].append(src)
    return preds


@dataclasses.dataclass
class EncodedInput:
    """Host-side encoding of token ids: spikes (B, D, L) held over time, validity mask (B, L)."""

    spikes: np.ndarray
    mask: np.ndarray | None
    first_node: str  # the node the encoded spikes stand for (the Threshold after the embedding)


def encode_tokens(graph: nir.NIRGraph, ids: np.ndarray) -> EncodedInput:
    """Run the Input -> SBTokenEmbedding -> Threshold prefix of a SpikeBERT graph."""
    embed_name = next((n for n, node in graph.nodes.items() if isinstance(node, SBTokenEmbedding)), None)
    if embed_name is None:
        raise ValueError("graph has no SBTokenEmbedding node: token ids cannot be encoded")
    embed: SBTokenEmbedding = graph.nodes[embed_name]
    succ = [d for s, d in graph.edges if s == embed_name]
    if len(succ) != 1 or not isinstance(graph.nodes[succ[0]], nir.Threshold):
        raise ValueError(f"{embed_name} must feed exactly one Threshold node (the spike encoder), found {succ}")
    ids = np.asarray(ids)
    if ids.ndim != 2 or ids.shape[1] != embed.max_len:
        raise ValueError(f"token ids must be (batch, {embed.max_len}), got {ids.shape}; pad to max_len")
    if ids.min() < 0 or ids.max() >= embed.weight.shape[0]:
        raise ValueError(f"token ids outside the vocabulary of {embed.weight.shape[0]}")
    threshold = graph.nodes[succ[0]].threshold
    x = (embed.weight[ids] + embed.position_weight[None]).transpose(0, 2, 1)  # (B, D, L)
    spikes = (x > threshold).astype(np.float64)
    masked = any(getattr(n, "mask_padding", False) for n in graph.nodes.values())
    mask = (ids != embed.pad_token_id) if masked else None
    return EncodedInput(spikes=spikes, mask=mask, first_node=succ[0])


@dataclasses.dataclass
class RunResult:
    step_outputs: np.ndarray  # (T, B, C)
    spikes: dict[str, np.ndarray]  # recorded node outputs (T, B, ...), only for requested nodes

    @property
    def logits(self) -> np.ndarray:
        return self.step_outputs.mean(axis=0)


class ReferenceExecutor:
    """Run a SpikeBERT-style NIR graph (or any graph of the supported node set) batch by batch."""

    def __init__(self, graph: nir.NIRGraph) -> None:
        self.graph = graph
        self.dt = float(graph.metadata.get("dt", 1.0))
        self.time_steps = int(graph.metadata.get("time_steps", 1))
        self.order = topological_order(graph)
        self.preds = predecessors(graph)
        for name in self.order:
            node = graph.nodes[name]
            if not isinstance(node, SUPPORTED):
                raise ValueError(
                    f"node {name!r} has type {type(node).__name__}, which the reference executor does "
                    f"not support; supported: {sorted(t.__name__ for t in SUPPORTED)}"
                )
            if isinstance(node, nir.Conv1d) and (node.weight.shape[2] != 1 or node.groups != 1):
                raise ValueError(f"Conv1d {name!r}: only kernel size 1, groups 1 (token-wise) is supported")
        outputs = [n for n in self.order if isinstance(graph.nodes[n], nir.Output)]
        if len(outputs) != 1:
            raise ValueError(f"graph must have exactly one Output node, found {outputs}")
        self.output = outputs[0]
        self.activity = Activity(backend="reference", samples=0, time_steps=self.time_steps, real_tokens=0.0,
                                 nodes={n: NodeActivity() for n in self.order
                                        if isinstance(graph.nodes[n], SYNAPSE_TYPES)})

    def run(self, ids: np.ndarray, *, record: tuple[str, ...] = ()) -> RunResult:
        enc = encode_tokens(self.graph, ids)
        B = enc.spikes.shape[0]
        self.activity.samples += B
        self.activity.real_tokens += float(enc.mask.sum()) if enc.mask is not None else float(ids.size)
        state: dict[str, np.ndarray] = {}
        steps, recorded = [], {n: [] for n in record}
        compute_nodes = self.order[self.order.index(enc.first_node) + 1:]  # after the host encoder
        for _ in range(self.time_steps):
            out = {enc.first_node: enc.spikes}
            for name in compute_nodes:
                x = sum(out[p] for p in self.preds[name])
                out[name] = self._step(name, x, state, enc.mask)
            steps.append(out[self.output])
            for n in record:
                recorded[n].append(out[n])
        return RunResult(np.stack(steps), {n: np.stack(v) for n, v in recorded.items()})

    def _step(self, name: str, x: np.ndarray, state: dict, mask: np.ndarray | None) -> np.ndarray:
        node = self.graph.nodes[name]
        act = self.activity.nodes.get(name)
        if act is not None:
            nnz, abs_sum, elements = kernels.input_stats(x, mask)
            act.add(NodeActivity(input_nonzeros=nnz, input_abs_sum=abs_sum, input_elements=elements))
        if isinstance(node, (nir.Output, nir.Input)):
            return x
        if isinstance(node, nir.Conv1d):
            return kernels.token_linear(x, node.weight[:, :, 0], node.bias)
        if isinstance(node, nir.Affine):
            return kernels.affine(x, node.weight, node.bias)
        if isinstance(node, nir.Linear):
            return kernels.affine(x, node.weight, np.zeros(node.weight.shape[0]))
        if isinstance(node, nir.Scale):
            return x * node.scale
        if isinstance(node, nir.Threshold):
            return (x > node.threshold).astype(np.float64)
        if isinstance(node, SBLayerNorm):
            return kernels.layer_norm(x, node.weight, node.bias, groups=node.groups, eps=node.eps)
        if isinstance(node, SBTokenMean):
            return kernels.token_mean(x, mask if node.mask_padding else None)
        if isinstance(node, SBSpikeAttention):
            y, a, v = kernels.spike_attention(x, dim=node.dim, heads=node.heads, scale=node.scale,
                                             key_mask=mask if node.mask_padding else None)
            qk, av = kernels.attention_stats(a, v, mask)
            act.add(NodeActivity(qk_accumulates=qk, av_accumulates=av))
            return y
        if isinstance(node, (nir.LIF, nir.IF)):
            return self._neuron(name, node, x, state)
        raise AssertionError(f"unhandled node type {type(node).__name__}")  # guarded in __init__

    def _neuron(self, name: str, node, x: np.ndarray, state: dict) -> np.ndarray:
        if isinstance(node, nir.LIF):
            beta, gain, bias = kernels.lif_coefficients(node.tau, node.r, node.v_leak, self.dt)
        else:  # IF: dv/dt = r I
            beta, gain, bias = np.ones_like(node.r), node.r * self.dt, np.zeros_like(node.r)
        v = state.get(name, np.zeros_like(x))
        spikes, state[name] = kernels.lif_step(v, x, beta=beta, gain=gain, bias=bias,
                                               v_threshold=node.v_threshold, v_reset=node.v_reset)
        return spikes


SUPPORTED = (nir.Input, nir.Output, nir.Conv1d, nir.Affine, nir.Linear, nir.Scale, nir.Threshold, nir.LIF, nir.IF,
             SBTokenEmbedding, SBLayerNorm, SBSpikeAttention, SBTokenMean)
