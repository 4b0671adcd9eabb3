"""Export a trained SpikeBERT student to a NIR graph (standard primitives + the SB extension).

The graph is derived from the model, not described beside it: ``torch.fx`` traces
``SpikeBERT.core`` (the forward pass without its input checks) with the mapped module types as
leaves, and every traced operation that reaches the logits becomes a NIR node, an edge, or nothing:

- a leaf module call -> the node its ``MODULE_MAP`` mapper builds, named for the module path
  (:func:`node_name`), with an edge from its signal input. The token mask it also takes is
  dropped: SB nodes find the padding themselves (``mask_padding``, ``SBTokenEmbedding.pad_token_id``);
- a residual ``a + b`` of two signals -> a ``Scale(1)`` join with both as fan-in edges (NIR sums fan-in);
- a ``TokenBatchNorm``, at inference a per-feature affine map, -> folded into the Linear before it,
  or through the token mean (with which it commutes) into the Linear after it (the classifier);
- token embedding + position table (a constant) -> ``SBTokenEmbedding.position_weight``;
- the position population (``position_encoding = "spikes"``) -> ``SBPositionSpikes`` on the ids, its synapse a
  ``Conv1d``, summed with the embedding in a ``Scale(1)`` join (``res1``);
- ``unsqueeze(0)`` / ``expand`` over the new time axis -> nothing: the input is held over the steps;
- the mean over time of the logits -> nothing: it is the graph's metadata ``readout``;
- values computed from the mask, constants or shapes alone -> nothing;
- operations that do not reach the logits (the distillation taps ``hidden``) -> pruned.

Any other operation on a signal raises TypeError naming the fx node and module path.

Why not nirtorch 2.6's ``torch_to_nir(module, module_map)``: its mappers see the module alone, but
NIR's per-neuron arrays need the channel and token counts at that point of the graph; ``add`` is
the only operation it accepts (the time broadcast, the position slice and the readout raise
ValueError), and an unmapped module a KeyError; residuals become bare fan-in without a join node;
nodes are named by fx (``blocks_0_attn_qkv``); and it can neither fold the batch norms nor write
graph metadata. What it does is trace with a ``torch.fx.Tracer`` whose leaves are the mapped
types: that part is kept here, as :class:`_Tracer`, with the rules above on top.

Per-sample layout (C, L), no batch or time axis. Discretisation recorded in the graph metadata:
forward Euler with ``dt = 1`` step, so a NIR ``LIF`` with ``tau``, ``r = 1``, ``v_leak = 0`` is
``v <- (1 - 1/tau) v + I / tau``, the student's neuron.
"""

from __future__ import annotations

import dataclasses
import operator
import re
from collections.abc import Callable

import nir
import numpy as np
import torch
from torch import fx, nn

from spikebert.contract.errors import UnsupportedError
from spikebert.contract.extension import (
    EXTENSION_VERSION,
    READOUT,
    SBLayerNorm,
    SBPositionSpikes,
    SBSpikeAttention,
    SBSpikeDrivenAttention,
    SBTokenEmbedding,
    SBTokenMean,
)
from spikebert.model import (
    GroupLayerNorm,
    PositionSpikes,
    SpikeAttention,
    SpikeBERT,
    SpikeDrivenAttention,
    TokenBatchNorm,
    TokenMean,
)
from spikebert.neurons import DT, LIF, HeavisideEncoder


def _np(t) -> np.ndarray:
    return t.detach().cpu().double().numpy()


def _shape(channels: int, tokens: int | None) -> tuple[int, ...]:
    """Per-sample NIR shape: (C, L) for token sequences, (C,) after pooling."""
    return (channels,) if tokens is None else (channels, tokens)


# ---- mappers: module -> NIR node ---------------------------------------------------------------
# Called as mapper(module, channels=..., tokens=..., pad_token_id=...): ``channels`` is the width of
# the module's output, ``tokens`` the token count of its input (None after pooling).

def _linear(m: nn.Linear, *, tokens: int | None, **_) -> nir.NIRNode:
    """Token-wise Linear as Conv1d with kernel 1 over (C_in, L); after pooling, an Affine."""
    bias = _np(m.bias) if m.bias is not None else np.zeros(m.out_features)
    if tokens is None:
        return nir.Affine(weight=_np(m.weight), bias=bias)
    return nir.Conv1d(input_shape=tokens, weight=_np(m.weight)[:, :, None], stride=1, padding=0,
                      dilation=1, groups=1, bias=bias)


def _embedding(m: nn.Embedding, *, tokens: int, pad_token_id: int, **_) -> nir.NIRNode:
    return SBTokenEmbedding(weight=_np(m.weight), max_len=tokens, pad_token_id=pad_token_id)


def _position_spikes(m: PositionSpikes, *, tokens: int, **_) -> nir.NIRNode:
    return SBPositionSpikes(max_len=tokens, pad_token_id=m.pad_token_id)


def _lif(m: LIF, *, channels: int, tokens: int | None, **_) -> nir.NIRNode:
    if not m.nir_exact:
        raise UnsupportedError(f"the snnTorch neuron {m.kind!r} ({type(m.neuron).__name__}) has no exact NIR form: "
                               "NIR 1.0.8's LIF resets to v_reset in the step of the spike (snnTorch reset 'zero'), "
                               "and this exporter maps no current-based Synaptic neuron; train with neuron='leaky' "
                               "to export to NIR and Lava")
    shape = _shape(channels, tokens)
    return nir.LIF(tau=np.full(shape, m.tau), r=np.ones(shape), v_leak=np.zeros(shape),
                   v_threshold=np.full(shape, m.threshold), v_reset=np.zeros(shape))


def _layer_norm(m: GroupLayerNorm, *, tokens: int, **_) -> nir.NIRNode:
    return SBLayerNorm(weight=_np(m.weight), bias=_np(m.bias), groups=m.groups, eps=m.eps, tokens=tokens)


def _attention(m: SpikeAttention, *, tokens: int, **_) -> nir.NIRNode:
    return SBSpikeAttention(dim=m.dim, heads=m.heads, scale=m.export_scale(), tokens=tokens, mask_padding=m.mask_padding,
                            relative_bias=m.export_relative())


def _spike_driven_attention(m: SpikeDrivenAttention, *, tokens: int, **_) -> nir.NIRNode:
    lif = _lif(m.lif, channels=m.dim, tokens=None)  # its population: one neuron per channel
    return SBSpikeDrivenAttention(dim=m.dim, tokens=tokens, mask_padding=m.mask_padding, tau=lif.tau, r=lif.r,
                                  v_leak=lif.v_leak, v_threshold=lif.v_threshold, v_reset=lif.v_reset)


def _token_mean(m: TokenMean, *, channels: int, tokens: int, **_) -> nir.NIRNode:
    return SBTokenMean(dim=channels, tokens=tokens, mask_padding=m.mask_padding)


def _heaviside(m: HeavisideEncoder, *, channels: int, tokens: int | None, **_) -> nir.NIRNode:
    return nir.Threshold(threshold=np.zeros(_shape(channels, tokens)))


MODULE_MAP: dict[type, Callable[..., nir.NIRNode]] = {
    nn.Linear: _linear,
    nn.Embedding: _embedding,
    PositionSpikes: _position_spikes,
    LIF: _lif,
    GroupLayerNorm: _layer_norm,
    SpikeAttention: _attention,
    SpikeDrivenAttention: _spike_driven_attention,
    TokenMean: _token_mean,
    HeavisideEncoder: _heaviside,
}
"""module type -> mapper; the traced student's leaf modules must all be here or in ``FOLDED``."""

FOLDED: dict[type, Callable[[nn.Module], tuple[np.ndarray, np.ndarray]]] = {
    TokenBatchNorm: lambda m: tuple(_np(t) for t in m.affine()),
}
"""module type -> its per-feature map ``y = a * x + c`` as (a, c); folded into a neighbouring Linear."""

# Per-feature maps pass through these on the way to a Linear. Through the token mean that is exact
# for every sample with a real token; an all-padding sample pools to 0, and the fold then adds W c.
_COMMUTES_WITH_AFFINE = (TokenMean,)


def _fold_after(node: nir.NIRNode, a: np.ndarray, c: np.ndarray) -> nir.NIRNode:
    """``a * (W x + b) + c`` as one node: ``W' = diag(a) W``, ``b' = a * b + c``."""
    w = node.weight * (a[:, None, None] if isinstance(node, nir.Conv1d) else a[:, None])
    return dataclasses.replace(node, weight=w, bias=a * node.bias + c)


def _fold_before(node: nir.NIRNode, a: np.ndarray, c: np.ndarray) -> nir.NIRNode:
    """``W (a * x + c) + b`` as one node: ``W' = W diag(a)``, ``b' = b + W c``."""
    w = node.weight[..., 0] if isinstance(node, nir.Conv1d) else node.weight  # (out, in)
    folded = w * a[None, :]
    return dataclasses.replace(node, weight=folded[..., None] if isinstance(node, nir.Conv1d) else folded,
                               bias=node.bias + w @ c)


# ---- names -------------------------------------------------------------------------------------

_BLOCK_PATH = re.compile(r"blocks\.(\d+)(?:\.(?:attn|mlp))?(?:\.(\w+))?")
_RENAMED = {"encoder": "spikes"}  # the encoder's node is named for what it emits


def node_name(path: str) -> str:
    """NIR node name for a module path: ``blocks.0.attn.qkv`` -> ``b0_qkv``, ``blocks.1`` -> ``b1``,
    ``encoder`` -> ``spikes``; any other path with dots as underscores."""
    block = _BLOCK_PATH.fullmatch(path)
    if block:
        index, leaf = block.groups()
        return f"b{index}" + (f"_{leaf}" if leaf else "")
    return _RENAMED.get(path, path.replace(".", "_"))


# ---- tracing -----------------------------------------------------------------------------------

class _Tracer(fx.Tracer):
    """Traces ``SpikeBERT.core`` with the mapped and folded module types as leaves."""

    traced_func_name = "core"

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return type(m) in MODULE_MAP or type(m) in FOLDED or super().is_leaf_module(m, module_qualified_name)


def _trace(model: SpikeBERT) -> fx.GraphModule:
    """``model.core`` as an fx graph whose call_module nodes are the mapped (or torch.nn) modules."""
    try:
        graph = _Tracer().trace(model)
    except fx.proxy.TraceError as err:
        raise UnsupportedError(f"torch.fx cannot trace {type(model).__name__}.core for NIR export: {err}. Keep "
                        "core free of Python branches on tensor values, or make the module doing it a leaf "
                        "by adding a mapper for its type to spikebert.converters.torch_to_nir.MODULE_MAP") from err
    return fx.GraphModule(model, graph)


def _example_values(traced: fx.GraphModule, model: SpikeBERT) -> dict[fx.Node, object]:
    """Every traced node's value for one unpadded sample of ``max_len`` tokens: shapes and constants.

    Run in eval mode (a training-mode batch norm would update its running statistics).
    """
    cfg = model.cfg
    ids = torch.full((1, cfg.max_len), (cfg.pad_token_id + 1) % cfg.vocab_size)  # (B=1, L)
    interpreter = fx.Interpreter(traced, garbage_collect_values=False)
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            interpreter.run(ids, model.token_mask(ids))
    finally:
        model.train(training)
    return interpreter.env


# ---- traced graph -> NIR -----------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class _Signal:
    """A traced value that carries spikes or activations: the NIR node whose output it is."""

    source: str
    time: bool  # has the leading time axis: (T, B, ...) rather than (B, ...)
    tokens: int | None  # token count of the per-sample value, None after pooling
    affine: tuple[np.ndarray, np.ndarray] | None = None  # a folded norm's (a, c) still to be applied
    affine_from: str = ""  # that norm's module path, for errors


_ADD = {("call_function", operator.add), ("call_function", torch.add), ("call_method", "add")}
_METADATA_METHODS = {"size", "dim"}
_METADATA_ATTRIBUTES = {"shape", "ndim", "dtype", "device"}


def _reads_metadata(node: fx.Node) -> bool:
    """``x.shape``, ``x.size()``, ...: facts about a tensor, not its values."""
    if node.op == "call_method":
        return node.target in _METADATA_METHODS
    return node.target is getattr and node.args[1] in _METADATA_ATTRIBUTES


def _enclosing(node: fx.Node) -> tuple[str, type | None]:
    """(path, type) of the module a traced op was called in, from fx's module stack; ('', None) at the top."""
    stack = node.meta.get("nn_module_stack") or {}
    return next(reversed(stack.values())) if stack else ("", None)


def _module_path(node: fx.Node) -> str:
    return _enclosing(node)[0]


def _where(node: fx.Node) -> str:
    path = _module_path(node)
    what = node.target if node.op == "call_method" else getattr(node.target, "__name__", node.target)
    return f"fx node {node.name!r} ({node.op} {what}" + (f" in module {path})" if path else " at the top level)")


class _Exporter:
    """Walks the traced graph in order, building the NIR nodes and edges (see the module docstring)."""

    def __init__(self, model: SpikeBERT) -> None:
        self.model, self.cfg = model, model.cfg
        self.traced = _trace(model)
        self.values = _example_values(self.traced, model)
        self.nodes: dict[str, nir.NIRNode] = {}
        self.edges: list[tuple[str, str]] = []
        self.signals: dict[fx.Node, _Signal] = {}
        self.masked: set[fx.Node] = set()  # values derived from the token mask (dropped)
        self.made_by: dict[str, fx.Node] = {}  # NIR node -> the call_module node that built it
        self.joins: dict[str, int] = {}  # scope -> residual joins named so far

    def export(self) -> tuple[dict[str, nir.NIRNode], list[tuple[str, str]]]:
        output = next(n for n in self.traced.graph.nodes if n.op == "output")
        result = output.args[0]
        if not (isinstance(result, dict) and isinstance(result.get("logits"), fx.Node)):
            raise UnsupportedError(f"{type(self.model).__name__}.core must return a dict with the tensor 'logits', "
                            f"as SpikeBERT.core; the trace returns {result!r}")
        self.logits = result["logits"]
        needed = self._ancestors(self.logits)
        for node in self.traced.graph.nodes:
            if node in needed:
                self._visit(node)
        logits = self.signals.get(self.logits)
        if logits is None or self.logits.op != "call_method" or self.logits.target != "mean":
            raise UnsupportedError(f"the logits ({_where(self.logits)}) must be the mean over the time steps of the "
                            f"step outputs: the NIR graph's readout is '{READOUT}'")
        self._check_no_affine(logits, "the graph output")
        self._add("output", nir.Output(output_type={"output": np.array(self._per_sample(self.logits, logits.time))}),
                  [logits.source])
        return self.nodes, self.edges

    @staticmethod
    def _ancestors(node: fx.Node) -> set[fx.Node]:
        seen, todo = set(), [node]
        while todo:
            n = todo.pop()
            if n not in seen:
                seen.add(n)
                todo += n.all_input_nodes
        return seen

    def _add(self, name: str, node: nir.NIRNode, sources: list[str]) -> str:
        """Add a node, named ``name``, or ``name_1``, ... if taken (a module called twice); its name."""
        base, k = name, 0
        while name in self.nodes:
            k += 1
            name = f"{base}_{k}"
        self.nodes[name] = node
        self.edges += [(s, name) for s in sources]
        return name

    def _per_sample(self, node: fx.Node, time: bool) -> tuple[int, ...]:
        return tuple(self.values[node].shape[2 if time else 1:])

    def _visit(self, node: fx.Node) -> None:
        if node.op == "placeholder":
            self._placeholder(node)
        elif node.op == "get_attr":
            return  # a constant: used through the ops that read it
        elif node.op == "call_module":
            self._module(node)
        elif node.op in ("call_function", "call_method"):
            self._op(node)
        else:
            raise UnsupportedError(f"{_where(node)} has no NIR mapping")

    def _placeholder(self, node: fx.Node) -> None:
        if node.target == "mask":
            self.masked.add(node)
            return
        (length,) = self._per_sample(node, time=False)  # token ids (L,)
        self._add("input", nir.Input(input_type={"input": np.array([length])}), [])
        self.signals[node] = _Signal(source="input", time=False, tokens=length)

    def _inputs(self, node: fx.Node) -> tuple[list[fx.Node], list[fx.Node]]:
        """(signal inputs, other inputs) of a traced node, in argument order."""
        inputs = node.all_input_nodes
        return [n for n in inputs if n in self.signals], [n for n in inputs if n not in self.signals]

    def _module(self, node: fx.Node) -> None:
        module = self.traced.get_submodule(node.target)
        kind = type(module)
        where = f"module {node.target} (fx node {node.name!r})"
        if kind not in MODULE_MAP and kind not in FOLDED:
            raise UnsupportedError(
                f"cannot export {where} of type {kind.__name__} to NIR: no mapper. Add one to "
                f"spikebert.converters.torch_to_nir.MODULE_MAP; supported: {sorted(t.__name__ for t in MODULE_MAP)}"
            )
        signals, others = self._inputs(node)
        if len(signals) != 1 or node.args[0] is not signals[0]:
            raise UnsupportedError(f"{where} must take one signal as its first argument (NIR nodes have one input "
                            f"port); it takes {[n.name for n in signals]}")
        if any(n not in self.masked for n in others):
            raise UnsupportedError(f"{where} takes {[n.name for n in others]} besides its signal: only the token mask "
                            "can be left out of the NIR graph")
        x = self.signals[signals[0]]
        if kind in FOLDED:
            self._fold(node, module, x)
            return
        built = MODULE_MAP[kind](module, channels=self.values[node].shape[-1], tokens=x.tokens,
                                 pad_token_id=self.cfg.pad_token_id)
        affine, affine_from = None, ""
        if isinstance(module, nn.Linear) and x.affine is not None:
            built = _fold_before(built, *x.affine)
        elif isinstance(module, _COMMUTES_WITH_AFFINE):
            affine, affine_from = x.affine, x.affine_from
        else:
            self._check_no_affine(x, f"{where} of type {kind.__name__}")
        name = self._add(self._name(node, module, x), built, [x.source])
        self.made_by[name] = node
        shape = self._per_sample(node, x.time)  # (L, C) or (C,)
        self.signals[node] = _Signal(source=name, time=x.time, tokens=shape[0] if len(shape) == 2 else None,
                                     affine=affine, affine_from=affine_from)

    def _name(self, node: fx.Node, module: nn.Module, x: _Signal) -> str:
        """The module path's name; a norm after a Linear is named for that Linear (``b0_fc1_norm``)."""
        producer = self.made_by.get(x.source)
        if (isinstance(module, GroupLayerNorm) and producer is not None
                and isinstance(self.traced.get_submodule(producer.target), nn.Linear)):
            return x.source + "_norm"
        return node_name(node.target)

    def _fold(self, node: fx.Node, module: nn.Module, x: _Signal) -> None:
        """A per-feature affine norm: into the Linear before it if that feeds only the norm, else carried
        forward to the next Linear."""
        a, c = FOLDED[type(module)](module)
        producer = self.made_by.get(x.source)
        if (x.affine is None and producer is not None and len(producer.users) == 1
                and isinstance(self.nodes[x.source], (nir.Conv1d, nir.Affine))):
            self.nodes[x.source] = _fold_after(self.nodes[x.source], a, c)
            self.signals[node] = x
            return
        self._check_no_affine(x, f"module {node.target}")
        self.signals[node] = dataclasses.replace(x, affine=(a, c), affine_from=node.target)

    def _check_no_affine(self, x: _Signal, consumer: str) -> None:
        if x.affine is not None:
            raise UnsupportedError(f"cannot fold the norm {x.affine_from} into {consumer}: a folded norm must reach a "
                            f"Linear directly or through {[t.__name__ for t in _COMMUTES_WITH_AFFINE]}")

    def _op(self, node: fx.Node) -> None:
        signals, others = self._inputs(node)
        key = (node.op, node.target)
        if not signals or _reads_metadata(node):  # shapes, constants and masks: no NIR node
            if any(n in self.masked for n in others):
                self.masked.add(node)
            return
        if key in _ADD:
            self._add_op(node, signals, others)
        elif key == ("call_method", "unsqueeze") and self._time_axis_inserted(node, signals[0]):
            self.signals[node] = dataclasses.replace(self.signals[signals[0]], time=True)
        elif key == ("call_method", "expand") and self._only_time_axis_grows(node, signals[0]):
            self.signals[node] = self.signals[signals[0]]
        elif node is self.logits and key == ("call_method", "mean") and self._mean_over_time(node, signals[0]):
            self.signals[node] = dataclasses.replace(self.signals[signals[0]], time=False)
        else:
            path, kind = _enclosing(node)
            holder = f"{kind.__name__} (as {path}) or " if kind is not None else ""
            raise UnsupportedError(f"{_where(node)} has no NIR mapping. Add a mapper to "
                            "spikebert.converters.torch_to_nir.MODULE_MAP "
                            f"for a module type that holds it, {holder}a new module around it")

    def _add_op(self, node: fx.Node, signals: list[fx.Node], others: list[fx.Node]) -> None:
        if len(signals) + len(others) != 2:  # x + x, x + 1.0
            raise UnsupportedError(f"{_where(node)} has no NIR mapping: only the sum of two different signals (a "
                            "residual join) or of the token embedding and a position table has one")
        if len(signals) == 2:  # a residual: the sum of both is the join's input (NIR fan-in)
            a, b = (self.signals[s] for s in signals)
            for s in (a, b):
                self._check_no_affine(s, f"the residual join at {_where(node)}")
            scope = node_name(_module_path(node)) if _module_path(node) else ""
            k = self.joins[scope] = self.joins.get(scope, 0) + 1
            name = f"{scope}_res{k}" if scope else f"res{k}"
            channels = self.values[node].shape[-1]
            self._add(name, nir.Scale(scale=np.ones(_shape(channels, a.tokens))), [a.source, b.source])
            self.signals[node] = dataclasses.replace(a, source=name)
            return
        x = self.signals[signals[0]]
        (constant,) = others
        embed = self.nodes.get(x.source)
        if not isinstance(embed, SBTokenEmbedding) or x.affine is not None or constant in self.masked:
            raise UnsupportedError(f"{_where(node)} adds a constant to {x.source!r}: no NIR mapping (only a position "
                            f"table added to the token embedding has one)")
        table = _np(self.values[constant])
        if table.shape != embed.position_weight.shape:
            raise UnsupportedError(f"{_where(node)} adds a constant of shape {table.shape} to the token embedding "
                            f"{x.source!r}: a position table must be (max_len, dim) = {embed.position_weight.shape}")
        self.nodes[x.source] = dataclasses.replace(embed, position_weight=embed.position_weight + table)
        self.signals[node] = x

    def _time_axis_inserted(self, node: fx.Node, x: fx.Node) -> bool:
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        return not self.signals[x].time and dim == 0

    def _only_time_axis_grows(self, node: fx.Node, x: fx.Node) -> bool:
        before, after = self.values[x].shape, self.values[node].shape
        return self.signals[x].time and before[0] == 1 and after[1:] == before[1:]

    def _mean_over_time(self, node: fx.Node, x: fx.Node) -> bool:
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        return self.signals[x].time and dim == 0 and not node.kwargs.get("keepdim", False)


class NotExpressibleError(ValueError):
    """The model has operations that NIR and the SB extension cannot express with their dynamics."""


def spikingbert_gaps(cfg) -> list[str]:
    """What keeps a SpikingBERT student (``spikebert.spikingbert``, config ``cfg``) from one NIR graph,
    one line per operation with where it acts and why (docs/spikingbert.md). Its IF neurons are not
    among them: the SB extension's ``SBIF`` expresses them (``spikebert.converters.spikingbert_to_nir``)."""
    return [
        f"softmax attention in each of the {cfg.depth} layers: softmax(Q s_K^T / sqrt(d_h)) s_V with a real-valued "
        "query Q; NIR has no attention node and SBSpikeAttention is SpikeBERT's softmax-free spike product",
        f"GELU on the intermediate current in each of the {cfg.depth} layers: no NIR node (a non-linearity "
        "before the neuron, not a neuron model)",
        f"LayerNorm on the embedding and on the self-output and output currents ({1 + 2 * cfg.depth} norms): "
        "SBLayerNorm expresses it only as a floating-point host operation, not on a neuromorphic core",
    ]


def export_student(model: nn.Module, *, metadata: dict | None = None) -> nir.NIRGraph:
    """The student's inference graph, traced from ``model.core`` (distillation taps and projections
    are not part of it). A SpikingBERT student raises :class:`NotExpressibleError` naming its gaps."""
    from spikebert.spikingbert import SpikingBERT

    if isinstance(model, SpikingBERT):
        gaps = "\n".join(f"  - {g}" for g in spikingbert_gaps(model.cfg))
        raise NotExpressibleError(
            "a SpikingBERT student has no whole NIR graph; these operations have no neuromorphic form:\n"
            f"{gaps}\n`spikebert-export --to nir --partial` writes what is expressible (the K and V populations "
            "of every layer, with the SB extension's SBIF neuron) as one graph per layer; `spikebert eval` and "
            "`spikebert energy` simulate the whole student in PyTorch.")
    if not isinstance(model, SpikeBERT):
        raise UnsupportedError(f"export_student takes a SpikeBERT student, got {type(model).__name__}")
    nodes, edges = _Exporter(model).export()
    meta = {
        "spikebert_extension": EXTENSION_VERSION,
        "producer": "spikebert",
        "dt": DT,
        "discretisation": "forward-euler",
        "time_steps": model.cfg.time_steps,
        "input": "token ids, held constant over the time steps",
        "readout": READOUT,
        "spike_condition": "v > v_threshold",
        "reset": "to v_reset, same step",
        **(metadata or {}),
    }
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta)
