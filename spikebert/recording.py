"""What the PyTorch student does inside, recorded with forward hooks: activity, spikes, attention.

:func:`record_activity` fills the :class:`spikebert.contract.activity.Activity` that
``ReferenceExecutor(export_student(model)).run(ids)`` records, counted on the PyTorch run instead
of the NumPy one (so on any device, at PyTorch speed), for the energy module. Same conventions:

- one :class:`NodeActivity` per synapse node of the exported graph (Linear -> Conv1d/Affine,
  SpikeAttention, TokenMean), named as the exporter names it (:func:`spikebert.converters.torch_to_nir.node_name`);
- totals over samples, time steps and positions; a graph that masks padding (``mask_padding``)
  counts real tokens only, and for the pooled classifier input the samples with a real token;
- the input of a synapse node is the input of its *graph* node. Batch norms fold into the Linear
  before them (its input is unchanged) or, after the residual stream (``head_norm``), are carried
  through the token mean into the classifier: there the graph's pool and classifier see the stream
  before the norm, and so does the record.

:func:`record_spikes` and :func:`record_attention` keep the spikes of every LIF population and the
per-head coincidence counts ``A = Q K^T`` (eq. SSA) for figures (:mod:`spikebert.figures`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator

import nir
import torch
from torch import nn

from spikebert.contract.activity import Activity, NodeActivity
from spikebert.contract.errors import SpikebertError
from spikebert.contract.extension import SBTokenEmbedding
from spikebert.contract.graph import SYNAPSE_TYPES
from spikebert.converters.torch_to_nir import export_student, node_name
from spikebert.model import SpikeAttention, SpikeBERT, SpikeDrivenAttention, TokenBatchNorm, TokenMean
from spikebert.neurons import LIF, HeavisideEncoder
from spikebert.outputs import StudentOutput

_FIELDS = ("input_nonzeros", "input_abs_sum", "input_elements", "qk_accumulates", "av_accumulates")
COUNT_DTYPE = torch.float64  # totals exceed float32's 2^24 exact integers on a dev split
# the student's modules whose forward the recorder hooks, in the order of ActivityRecorder._hook's table
HOOKED = (nn.Linear, SpikeAttention, SpikeDrivenAttention, TokenMean, TokenBatchNorm)


# ---- counting: torch twins of spikebert.hardware.kernels.input_stats / attention_stats ---------------------

def input_stats(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """(nonzeros, sum of |x|, elements) of a synapse input over all steps, as a (3,) tensor.

    ``x`` is (T, B, L, C) per token or (T, B, C) pooled; ``mask`` (B, L) the real tokens, or None
    when the graph does not mask padding. Pooled rows of a sample without a real token are batch
    filler and are left out, as in the reference.
    """
    if mask is not None and x.dim() == 4:
        x = x * mask[None, :, :, None].to(x.dtype)  # (T, B, L, C)
        elements = mask.sum(dtype=COUNT_DTYPE) * x.shape[0] * x.shape[-1]
    else:
        if mask is not None:
            x = x[:, mask.any(dim=1)]  # (T, B', C)
        elements = torch.tensor(float(x.numel()), dtype=COUNT_DTYPE, device=x.device)
    return torch.stack([torch.count_nonzero(x).to(COUNT_DTYPE), x.abs().sum(dtype=COUNT_DTYPE), elements])


def attention_counts(module: SpikeAttention, qkv: torch.Tensor,
                     mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-head coincidence counts ``A = Q K^T`` and the values V that ``module`` multiplies.

    ``qkv`` (T, B, L, 3D) spikes and ``mask`` (B, L) are the module's own inputs; keys and values
    of padded tokens are removed as the module removes them. Returns A (T, B, H, L, L), with
    ``A[t, b, h, i, j]`` the number of channels of head h in which query token i and key token j
    both spike at step t, and V (T, B, H, L, dh).
    """
    q, k, v = module.split_heads(qkv, mask)
    return q @ k.transpose(-2, -1), v


def attention_stats(a: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, *,
                    mixing: torch.Tensor | None = None) -> torch.Tensor:
    """Accumulates of Q K^T (sum of A) and of W V (one per nonzero W[i, j] per spike of V at key j; W =
    ``mixing``, A + B with relative positions, else A), over real query tokens, as a (2,) tensor. Shapes as
    :func:`attention_counts`."""
    exact = torch.promote_types(a.dtype, torch.float32)  # per-query counts stay below 2^24: exact
    w = a if mixing is None else mixing
    spikes_v = (v != 0).sum(dim=-1).to(exact)  # (T, B, H, L): spikes of V per key token
    qk = a.sum(dim=-1, dtype=COUNT_DTYPE)  # (T, B, H, L) per query token
    av = ((w != 0).to(exact) @ spikes_v.unsqueeze(-1)).squeeze(-1).to(COUNT_DTYPE)  # (T, B, H, L)
    if mask is not None:
        queries = mask[None, :, None, :].to(COUNT_DTYPE)  # (1, B, 1, L)
        qk, av = qk * queries, av * queries
    return torch.stack([qk.sum(), av.sum()])


def spike_driven_counts(module: SpikeDrivenAttention, qkv: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The accumulates of spike-driven attention as a (2,) tensor: the K * V coincidences it sums over the
    tokens (padded keys removed as the module removes them), and 0 for the mask of Q (an AND, no sum)."""
    _, k, v = qkv.split(module.dim, dim=-1)
    coincide = k * v
    if module.mask_padding:
        coincide = coincide * mask[None, :, :, None].to(coincide.dtype)
    return torch.stack([coincide.sum(dtype=COUNT_DTYPE), torch.zeros((), dtype=COUNT_DTYPE, device=qkv.device)])


# ---- hooks ---------------------------------------------------------------------------------------

@contextlib.contextmanager
def _inference(model: nn.Module) -> Iterator[None]:
    """Eval mode (batch norms use their running estimates, as the exported graph) without autograd."""
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(training)


@contextlib.contextmanager
def _hooked(model: nn.Module, types: tuple[type, ...],
            make_hook: Callable[[str, nn.Module], Callable]) -> Iterator[None]:
    """Forward hooks ``make_hook(node name, module)`` on every module of ``types``, removed on exit."""
    handles = [m.register_forward_hook(make_hook(node_name(path), m))
               for path, m in model.named_modules() if isinstance(m, types)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


class _IdentityMap:
    """A dict keyed by tensor identity (tensors hash by id; ``==`` is elementwise). Keeps keys alive."""

    def __init__(self) -> None:
        self._map: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def __contains__(self, x: torch.Tensor) -> bool:
        entry = self._map.get(id(x))
        return entry is not None and entry[0] is x

    def get(self, x: torch.Tensor, default: torch.Tensor) -> torch.Tensor:
        return self._map[id(x)][1] if x in self else default

    def set(self, x: torch.Tensor, value: torch.Tensor) -> None:
        self._map[id(x)] = (x, value)

    def clear(self) -> None:
        self._map.clear()


class ActivityRecorder:
    """Counts what :meth:`spikebert.hardware.reference.ReferenceExecutor.run` counts, from the PyTorch student.

    Use as a context manager (installs the hooks) and call it on token id batches (B, L); the
    :attr:`activity` accumulates over calls, as one executor's does over its runs::

        with ActivityRecorder(model) as rec:
            for ids in batches:
                rec(ids)
        rec.activity.to_json("activity.json")

    ``graph`` is ``export_student(model)`` (exported here when not given): it names the nodes and
    says whether padding is masked.
    """

    def __init__(self, model: SpikeBERT, *, graph: nir.NIRGraph | None = None) -> None:
        self.model = model
        self.graph = export_student(model) if graph is None else graph
        self.synapses = [n for n, node in self.graph.nodes.items() if isinstance(node, SYNAPSE_TYPES)]
        embed = next((node for node in self.graph.nodes.values() if isinstance(node, SBTokenEmbedding)), None)
        if embed is None:
            raise SpikebertError("the graph has no SBTokenEmbedding node: it is not a SpikeBERT student's graph; "
                             "pass graph=export_student(model)")
        self.pad_token_id = int(embed.pad_token_id)
        self.masked = any(getattr(node, "mask_padding", False) for node in self.graph.nodes.values())
        self.time_steps = int(self.graph.metadata.get("time_steps", model.cfg.time_steps))
        self._counts: dict[str, torch.Tensor] = {}
        self._samples, self._real_tokens = 0, 0.0
        self._mask: torch.Tensor | None = None
        # The graph's signal where it is not the tensor PyTorch passes on: the stream before a batch
        # norm that is carried forward to the classifier (see the module docstring).
        self._carried = _IdentityMap()
        self._linear_outputs = _IdentityMap()  # a batch norm on one of these folds into its Linear
        self._stack: contextlib.ExitStack | None = None

    def __enter__(self) -> ActivityRecorder:
        self._stack = contextlib.ExitStack()
        self._stack.enter_context(_hooked(self.model, HOOKED, self._hook))
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()
        self._stack = None

    def _add(self, name: str, values: torch.Tensor, fields: slice) -> None:
        if name not in self.synapses:
            raise SpikebertError(f"module {name!r} of the student is not a synapse node of the graph "
                             f"({self.synapses}); pass graph=export_student(model) for this model")
        counts = self._counts.setdefault(name, torch.zeros(len(_FIELDS), dtype=COUNT_DTYPE, device=values.device))
        counts[fields] += values

    def _hook(self, name: str, module: nn.Module) -> Callable:
        def linear(m, inputs, out):
            x = inputs[0]
            if m is getattr(self.model, "position_synapse", None):  # positions: (B, L, max_len), held over T steps
                x = x.unsqueeze(0).expand(self.time_steps, *x.shape)  # (T, B, L, max_len)
            self._add(name, input_stats(self._carried.get(x, x), self._mask), slice(0, 3))
            self._linear_outputs.set(out, out)

        def attention(m, inputs, out):
            qkv, module_mask = inputs
            self._add(name, input_stats(qkv, self._mask), slice(0, 3))
            a, v = attention_counts(m, qkv, module_mask)
            self._add(name, attention_stats(a, v, self._mask, mixing=m.mixing(a)), slice(3, 5))

        def spike_driven_attention(m, inputs, out):
            qkv, module_mask = inputs
            self._add(name, input_stats(qkv, self._mask), slice(0, 3))
            self._add(name, spike_driven_counts(m, qkv, module_mask), slice(3, 5))

        def token_mean(m, inputs, out):
            x, *rest = inputs
            signal = self._carried.get(x, x)
            self._add(name, input_stats(signal, self._mask), slice(0, 3))
            if signal is not x:  # a per-feature norm commutes with the mean: carried on to the next Linear
                self._carried.set(out, m.forward(signal, *rest))  # forward: no hooks, no second count

        def batch_norm(m, inputs, out):
            x = inputs[0]
            if x not in self._linear_outputs:  # not folded into a Linear before it: carried forward
                self._carried.set(out, self._carried.get(x, x))

        for kind, hook in zip(HOOKED, (linear, attention, spike_driven_attention, token_mean, batch_norm), strict=True):
            if isinstance(module, kind):
                return hook
        raise AssertionError(f"no hook for {type(module).__name__}")

    def __call__(self, ids: torch.Tensor) -> StudentOutput:
        """Run the student on ids (B, L) in eval mode, adding to :attr:`activity`; its output."""
        if self._stack is None:
            raise SpikebertError("ActivityRecorder records inside its context only: `with ActivityRecorder(model) as rec:`")
        device = next(self.model.parameters()).device
        ids = torch.as_tensor(ids).to(device)
        real = ids != self.pad_token_id  # (B, L)
        self._mask = real if self.masked else None
        try:
            with _inference(self.model):
                out = self.model(ids)
        finally:
            self._mask = None
            self._carried.clear()
            self._linear_outputs.clear()
        self._samples += ids.shape[0]
        self._real_tokens += float(real.sum()) if self.masked else float(ids.numel())
        return out

    @property
    def activity(self) -> Activity:
        """The totals so far, in the reference executor's record (``backend="torch"``)."""
        missing = sorted(set(self.synapses) - set(self._counts))
        if self._samples and missing:
            raise SpikebertError(f"graph synapse nodes {missing} got no input from the student: the graph is not "
                             "this model's; pass graph=export_student(model)")
        nodes = {}
        for name in self.synapses:
            values = self._counts[name].tolist() if name in self._counts else [0.0] * len(_FIELDS)
            nodes[name] = NodeActivity(**dict(zip(_FIELDS, values)))
        return Activity(backend="torch", samples=self._samples, time_steps=self.time_steps,
                        real_tokens=self._real_tokens, nodes=nodes)


def record_activity(model: SpikeBERT, ids: torch.Tensor, *, graph: nir.NIRGraph | None = None) -> Activity:
    """The activity of the student on token ids (B, L), as ``ReferenceExecutor(graph).run(ids)``
    records it on ``graph = export_student(model)``. For many batches, use :class:`ActivityRecorder`."""
    with ActivityRecorder(model, graph=graph) as recorder:
        recorder(ids)
    return recorder.activity


@torch.no_grad()
def record_batches(model: SpikeBERT, ids: torch.Tensor, *, batch_size: int = 64, graph: nir.NIRGraph | None = None,
                   time_steps: int | None = None) -> tuple[torch.Tensor, Activity]:
    """(logits (N, C), activity) of the student on token ids (N, L), ``batch_size`` rows at a time, in
    float64 (the reference executor's precision, so the counts agree exactly). ``time_steps`` must be
    None: a SpikeBERT student runs at its config's T."""
    if time_steps is not None:
        raise SpikebertError("time_steps: a SpikeBERT student runs at its config's T (its graph was exported at it)")
    model = model.double()
    with ActivityRecorder(model, graph=graph) as recorder:
        logits = torch.cat([recorder(chunk).logits for chunk in ids.split(batch_size)])
    return logits, recorder.activity


# ---- spikes and attention maps, for figures ------------------------------------------------------

def record_spikes(model: SpikeBERT, ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """Spikes of the encoder (``spikes``, held over the steps) and of every LIF population, by NIR
    node name, in execution order: each (T, B, L, C), on the model's device."""
    spikes: dict[str, torch.Tensor] = {}
    T = model.cfg.time_steps

    def make_hook(name, module):
        def hook(m, inputs, out):
            spikes[name] = out if out.dim() == 4 else out.unsqueeze(0).expand(T, *out.shape)  # (T, B, L, C)
        return hook

    device = next(model.parameters()).device
    with _inference(model), _hooked(model, (LIF, HeavisideEncoder), make_hook):
        model(torch.as_tensor(ids).to(device))
    return spikes


def record_attention(model: SpikeBERT, ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """Coincidence counts ``A = Q K^T`` (:func:`attention_counts`) of every block, by NIR node name
    (``b0_attn``, ...): each (T, B, H, L, L), on the model's device."""
    maps: dict[str, torch.Tensor] = {}

    def make_hook(name, module):
        def hook(m, inputs, out):
            maps[name] = attention_counts(m, *inputs)[0]
        return hook

    device = next(model.parameters()).device
    with _inference(model), _hooked(model, (SpikeAttention,), make_hook):
        model(torch.as_tensor(ids).to(device))
    return maps


def step_rates(model: SpikeBERT, batches: Iterable[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Firing rate per step of every spiking population over token id batches: node name -> (T,),
    the share of (neuron, real token) pairs that spike at step t. Pads are left out."""
    fired: dict[str, torch.Tensor] = {}
    positions = 0.0
    for ids in batches:
        ids = torch.as_tensor(ids)
        real = model.token_mask(ids)  # (B, L)
        for name, s in record_spikes(model, ids).items():
            m = real.to(s.device, s.dtype)[None, :, :, None]  # (1, B, L, 1)
            counts = (s * m).sum(dim=(1, 2), dtype=COUNT_DTYPE)  # (T, C)
            fired[name] = fired.get(name, 0) + counts.sum(dim=-1) / s.shape[-1]
        positions += float(real.sum())
    if not positions:
        raise SpikebertError("step_rates got no real token: pass at least one non-empty batch")
    return {name: f.cpu() / positions for name, f in fired.items()}


# ---- attention diagnostics (does the attention carry information?) --------------------------------

@torch.no_grad()
def attention_heads(model: SpikeBERT, id_batches: Iterable[torch.Tensor], *,
                    total_acs: float | None = None) -> dict[str, list[dict[str, float]]]:
    """Per block (NIR node name) and head: the firing rates of Q, K, V and of the attention LIF's output
    over real tokens and steps, and the accumulates of Q K^T and A V per sample (``share`` of
    ``total_acs``, the student's accumulates per sample, when given)."""
    sums: dict[str, torch.Tensor] = {}  # name -> (H, 8): q, k, v, out spikes; q/k/v/out elements... see below
    samples = 0

    def make_hook(name, module):
        def hook(m, inputs, out):
            qkv, mask = inputs
            q, k, v = m.split_heads(qkv, mask)  # (T, B, H, L, dh)
            real = mask[None, :, None, :, None].to(q.dtype)  # (1, B, 1, L, 1)
            a = q @ k.transpose(-2, -1)  # (T, B, H, L, L)
            spikes_v = (v != 0).sum(dim=-1).to(a.dtype)  # (T, B, H, L)
            qmask = mask[None, :, None, :].to(a.dtype)  # (1, B, 1, L)
            qk = (a.sum(-1) * qmask).sum(dim=(0, 1, 3))  # (H,)
            av = (((m.mixing(a) != 0).to(a.dtype) @ spikes_v.unsqueeze(-1)).squeeze(-1) * qmask).sum(dim=(0, 1, 3))
            elems = (real.sum() * q.shape[0] * q.shape[-1]).expand(q.shape[2])  # per head
            row = torch.stack([(t * real).sum(dim=(0, 1, 3, 4)) for t in (q, k, v)] + [elems, qk, av], dim=1)
            sums[name] = sums.get(name, 0) + row.double().cpu()
        return hook

    def out_hook(name):
        def hook(m, inputs, out):  # the attention LIF's spikes (T, B, L, D), heads = equal channel slices
            spikes, heads = out, len(sums[name])
            mask = mask_box["mask"][None, :, :, None].to(spikes.dtype)
            per_head = (spikes * mask).reshape(*spikes.shape[:-1], heads, -1).sum(dim=(0, 1, 2, 4))
            key = name + "#out"
            sums[key] = sums.get(key, 0) + per_head.double().cpu()
        return hook

    from spikebert.converters.torch_to_nir import node_name

    mask_box: dict[str, torch.Tensor] = {}
    hooks = []
    for path, module in model.named_modules():
        if isinstance(module, SpikeAttention):
            name = node_name(path)
            hooks.append(module.register_forward_hook(make_hook(name, module)))
            parent = model.get_submodule(path.rpartition(".")[0])
            hooks.append(parent.attn_lif.register_forward_hook(out_hook(name)))
    device = next(model.parameters()).device
    try:
        with _inference(model):
            for ids in id_batches:
                ids = torch.as_tensor(ids).to(device)
                mask_box["mask"] = model.token_mask(ids)
                model(ids)
                samples += len(ids)
    finally:
        for h in hooks:
            h.remove()
    report = {}
    for name, rows in sums.items():
        if name.endswith("#out"):
            continue
        out = sums[name + "#out"]
        report[name] = [{"q_rate": float(r[0] / r[3]), "k_rate": float(r[1] / r[3]), "v_rate": float(r[2] / r[3]),
                         "out_rate": float(o / r[3]), "qk_accumulates": float(r[4] / samples),
                         "av_accumulates": float(r[5] / samples),
                         **({"share_of_acs": float((r[4] + r[5]) / samples / total_acs)} if total_acs else {})}
                        for r, o in zip(rows, out)]
    return report
