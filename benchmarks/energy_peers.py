"""Cross-check the energy module against NeuroBench 2.3.0 and SpikingJelly 2.0.0 (issue #18).

Two tiny freshly initialised students that fire (built as ``spikebert.testing.make_student``:
random weights scaled up; no trained student is on this machine) on the offline MiniLM tokenizer:
(a) SpikeBERT with the SEW (integer) residual, (b) SpikingBERT. The same sentences (the first N of
SST-2 dev) go through

- ours: PyTorch hooks -> activity -> :func:`spikebert.energy.counting.count_operations` (SpikeBERT)
  or :func:`~spikebert.energy.counting.spikingbert_counts` (SpikingBERT), reports written with
  ``EnergyReport`` (45nm-fp32 and lemaire, teacher MiniLM-L6 at the same lengths);
- NeuroBench (in this process, .venv): ``Benchmark`` with SynapticOperations, ActivationSparsity,
  MembraneUpdates, NeuronOperations, ClassificationAccuracy, Footprint, ConnectionSparsity,
  ParameterCount, plus NeuroBench's own ``single_layer_MACs`` per nn.Linear for the per-layer view;
- SpikingJelly (``.venv-sj``, Python 3.11, run as ``--peer spikingjelly``): ``DispatchCounterMode``
  with SynOpCounter, MACCounter, ACCounter, FlopCounter per module scope, ``estimate_simple_energy``
  and the Lemaire profiler (our LIF wrapped as an SJ ``LIFNode`` so it sees the neurons).

Every peer runs one sentence per batch (no padding: NeuroBench and SpikingJelly would count pad
tokens; ours counts real tokens only, and records in padded batches). Per layer, our count beside
theirs, each difference classified. Also: our Lemaire estimator against SpikingJelly's on a small
Linear/LIF/IF network, and BERT-base at 128 tokens under both tools' conventions.

    .venv/bin/python benchmarks/energy_peers.py --sentences 64 --out benchmarks/results/energy_peers.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SJ_PYTHON = REPO / ".venv-sj" / "bin" / "python"
SPIKEBERT_CFG = dict(dim=32, depth=2, heads=2, mlp_ratio=4.0, time_steps=4, norm="batch", residual="spike")
SPIKINGBERT_CFG = dict(dim=32, depth=2, heads=2, mlp_ratio=4.0, time_steps=8, pooling="mean")
TOKENIZER = "minilm-offline"
REL = 1e-9  # equal: within float rounding


# ---- the students (both sides build them from the same seed and config) ---------------------------------

def build_spikebert(vocab: int, ids_for_stats, *, seed: int = 0):
    """As spikebert.testing make_student: N(0, 0.5) Linear weights and biases, batch-norm statistics from
    one training-mode batch, norm scales in [0.5, 1.5], a +1 bias on the Q/K/V norm (so attention fires)."""
    import torch

    from spikebert.config import StudentConfig
    from spikebert.model import SpikeBERT, TokenBatchNorm

    cfg = StudentConfig(vocab_size=vocab, num_classes=2, max_len=64, **SPIKEBERT_CFG)
    torch.manual_seed(seed)
    model = SpikeBERT(cfg).double()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Linear):
                m.weight.normal_(0, 0.5)
                m.bias.normal_(0, 0.5)
        model.train()
        model(ids_for_stats)
        for m in model.modules():
            if isinstance(m, TokenBatchNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.3)
        for block in model.blocks:
            block.attn.qkv_norm.bias.add_(1.0)
    return model.eval()


def build_spikingbert(vocab: int, *, seed: int = 0):
    """N(0, 0.5) Linear weights and biases (BERT's N(0, 0.02) leaves the populations silent)."""
    import torch

    from spikebert.config import SpikingBERTConfig
    from spikebert.spikingbert import SpikingBERT

    cfg = SpikingBERTConfig(vocab_size=vocab, num_classes=2, max_len=64, **SPIKINGBERT_CFG)
    torch.manual_seed(seed)
    model = SpikingBERT(cfg)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Linear):
                m.weight.normal_(0, 0.5)
                m.bias.normal_(0, 0.5)
    return model.double().eval()


class Logits:
    """``net(ids)`` -> logits: the peers call the model on one batch tensor."""

    @staticmethod
    def wrap(model):
        import torch

        class Net(torch.nn.Module):
            def __init__(self, inner):
                super().__init__()
                self.inner = inner

            def forward(self, ids):
                return self.inner(ids).logits

        return Net(model)


# ---- module name <-> our row name ----------------------------------------------------------------------

def spikebert_row(module: str) -> str | None:
    """Our row of a SpikeBERT module (NIR node name), or None."""
    from spikebert.converters.torch_to_nir import node_name

    return node_name(module)  # blocks.0.attn.attn (SpikeAttention) -> b0_attn


def spikingbert_row(module: str) -> str:
    """``layers.0.query`` -> ``layer0.query``."""
    parts = module.split(".")
    if parts[0] == "layers":
        return f"layer{parts[1]}" + ("." + ".".join(parts[2:]) if len(parts) > 2 else "")
    return module


# ---- ours ----------------------------------------------------------------------------------------------

def our_counts(kind: str, model, ids_list, padded, teacher_config: dict, lengths: list[int], out_dir: Path):
    """Our rows (per sample, all sentences recorded in padded batches), the Lemaire totals also per
    sentence (one record per sentence, priced, averaged: SpikingJelly's per-call buffers), and the
    reports (45nm-fp32 + lemaire against the MiniLM teacher at the same lengths)."""
    from spikebert.energy import lemaire
    from spikebert.energy.counting import count_operations, spikingbert_counts, teacher_counts
    from spikebert.energy.profiles import select_profiles
    from spikebert.energy.report import EnergyReport
    from spikebert.students import kind_of

    def rows_of(ids):
        if kind == "spikebert":
            from spikebert.converters.torch_to_nir import export_student

            graph = export_student(model)
            logits, act = kind_of(model).record_activity(model, ids, batch_size=64, graph=graph)
            return logits, count_operations(graph, act, residual="mac"), act
        logits, act = kind_of(model).record_activity(model, ids, batch_size=64)
        cfg = model.cfg
        rows, other = spikingbert_counts(depth=cfg.depth, dim=cfg.dim, mlp_dim=cfg.mlp_dim, heads=cfg.heads,
                                         num_classes=cfg.num_classes, activity=act, leak=cfg.leak)
        return logits, rows, act

    t0 = time.perf_counter()
    logits, rows, act = rows_of(padded)
    wall = time.perf_counter() - t0
    T = act.time_steps
    per_sentence, sparsity = [], []
    for ids in ids_list:
        _, r, _ = rows_of(ids)
        per_sentence.append(lemaire.price_rows(r, time_steps=T, neurons_in_model=True))
        pops = [x for x in r if x.kind == "neurons"]
        sparsity.append(None if any(x.output_spikes is None for x in pops) else
                        1 - sum(x.output_spikes for x in pops) / sum(x.neuron_updates for x in pops))
    names = [r.name for r in per_sentence[0]]
    lemaire_rows = {}
    for i, name in enumerate(names):
        parts = [p[i] for p in per_sentence]
        lemaire_rows[name] = {
            **{f: sum(getattr(p, f) for p in parts) / len(parts) for f in ("ac", "mac", "acc_addr", "read_in_bytes",
                                                                         "write_out_bytes", "params_bytes",
                                                                         "potential_bytes")},
            **{f"{c}_pj": sum(p.energy_pj[c] for p in parts) / len(parts) for c in lemaire.COMPONENTS}}
    teacher = teacher_counts(teacher_config, lengths)
    report = EnergyReport(profile=select_profiles("45nm-fp32")[0], more_profiles=select_profiles("lemaire,loihi"),
                          residual_convention="mac" if kind == "spikebert" else "none", layers=rows,
                          teacher_macs=teacher.macs, teacher_weight_reads=teacher.weight_reads,
                          teacher_layers=list(teacher.layers),
                          teacher_method=f"analytic (MiniLM-L6 config), at the same {len(lengths)} sentences' real "
                                         f"token lengths (mean {sum(lengths) / len(lengths):.1f})",
                          samples=act.samples, time_steps=T, backend=act.backend,
                          accuracy=None,
                          extra={"student": f"tiny {kind} student, freshly initialised (benchmarks/energy_peers.py)",
                                 "data": f"sst-2 dev, first {len(lengths)} sentences"})
    paths = report.write(out_dir, formats=("md", "json"), stem=f"energy_report_{kind}")
    mean_sparsity = None if None in sparsity else sum(sparsity) / len(sparsity)
    return {"rows": rows, "report": report, "lemaire_per_sentence": lemaire_rows, "wall_s": wall, "activity": act,
            "output_sparsity_mean_of_sentences": mean_sparsity,
            "logits": logits, "paths": [os.path.relpath(p, REPO) for p in paths]}


# ---- NeuroBench ----------------------------------------------------------------------------------------

def neurobench_counts(kind: str, model, ids_list, labels) -> dict:
    """NeuroBench's Benchmark over the sentences (batch 1), and its single_layer_MACs per nn.Linear."""
    import torch
    from neurobench.benchmarks import Benchmark
    from neurobench.metrics.static import ConnectionSparsity, Footprint, ParameterCount
    from neurobench.metrics.utils.layers import single_layer_MACs
    from neurobench.metrics.workload import (
        ActivationSparsity,
        ClassificationAccuracy,
        MembraneUpdates,
        NeuronOperations,
        SynapticOperations,
    )
    from neurobench.models import TorchModel

    from spikebert.neurons import LIF

    net = Logits.wrap(model)
    nb_model = TorchModel(net)
    if kind == "spikebert":
        nb_model.add_activation_module(LIF)
    data = torch.utils.data.DataLoader([(ids[0], torch.tensor(y)) for ids, y in zip(ids_list, labels)], batch_size=1)
    metrics = [[Footprint, ConnectionSparsity, ParameterCount],
               [SynapticOperations, ActivationSparsity, MembraneUpdates, NeuronOperations, ClassificationAccuracy]]
    t0 = time.perf_counter()
    bench = Benchmark(nb_model, data, [], [lambda preds: preds.argmax(-1)], metrics)
    results = bench.run(quiet=True)
    wall = time.perf_counter() - t0

    # per layer: NeuroBench's own rule on every call's input (computed with no hook on the layer: its
    # binary copy is a deepcopy)
    per_layer: dict[str, dict[str, float]] = {}
    linears = {name: m for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    for ids in ids_list:
        calls: list[tuple[str, torch.Tensor]] = []
        handles = [m.register_forward_pre_hook(
            lambda m, inputs, name=name, calls=calls: calls.append((name, inputs[0].detach())))
            for name, m in linears.items()]
        with torch.no_grad():
            net(ids)
        for h in handles:
            h.remove()
        for name, x in calls:
            m = linears[name]
            ops, spiking = single_layer_MACs(x, m)
            dense, _ = single_layer_MACs(x, m, total=True)
            rec = per_layer.setdefault(name, {"Effective_MACs": 0.0, "Effective_ACs": 0.0, "Dense": 0.0,
                                              "calls_spiking": 0, "calls": 0})
            rec["Effective_ACs" if spiking else "Effective_MACs"] += float(ops)
            rec["Dense"] += float(dense)
            rec["calls_spiking"] += int(spiking)
            rec["calls"] += 1
    n = len(ids_list)
    for rec in per_layer.values():
        for k in ("Effective_MACs", "Effective_ACs", "Dense"):
            rec[k] /= n
    return {"results": _jsonable(results), "per_layer": per_layer, "wall_s": wall}


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if hasattr(x, "item"):
        return x.item()
    return x


# ---- SpikingJelly (runs in .venv-sj) --------------------------------------------------------------------

def sj_main(payload_dir: Path) -> None:
    """``--peer spikingjelly``: counts of the saved students and teacher, the Lemaire check, BERT-base."""
    import torch

    payload = torch.load(payload_dir / "payload.pt", weights_only=False)
    out = {"versions": {"spikingjelly": _version("spikingjelly"), "torch": torch.__version__,
                        "python": platform.python_version()}}
    ids_list = payload["ids"]
    for kind in ("spikebert", "spikingbert"):
        model = (build_spikebert(payload["vocab"], payload["stats_ids"]) if kind == "spikebert"
                 else build_spikingbert(payload["vocab"]))
        model.load_state_dict(payload[kind])
        out[kind] = sj_student(kind, model.double().eval(), ids_list)
    out["teacher"] = sj_teacher(payload["teacher_config"], payload["teacher_ids"])
    out["lemaire_check"] = sj_lemaire_check()
    out["bert_base"] = sj_bert_base()
    (payload_dir / "sj.json").write_text(json.dumps(out, indent=1))


def sj_tiny_main(payload_dir: Path) -> None:
    """``--peer spikingjelly-tiny`` (tests/test_energy_peers.py): SpikingJelly's per-module counts and Lemaire
    profile of a saved tiny SpikeBERT on its sentences, and the small-network Lemaire check."""
    import torch

    from spikebert.config import StudentConfig
    from spikebert.model import SpikeBERT

    payload = torch.load(payload_dir / "payload.pt", weights_only=False)
    model = SpikeBERT(StudentConfig.from_dict(payload["cfg"])).double()
    model.load_state_dict(payload["state"])
    model.eval()
    ops = _sj_op_counts(model, payload["ids"])
    lem = _sj_lemaire(model, payload["ids"], wrap_lif=True)
    out = {"ops": ops, "lemaire": lem, "lemaire_check": sj_lemaire_check()}
    if "bert_config" in payload:  # a small BERT: MACs with eager and with fused (SDPA) attention
        from spikingjelly.activation_based.op_counter import DispatchCounterMode, MACCounter

        for attn in ("eager", "sdpa"):
            counter = MACCounter()
            with torch.no_grad(), DispatchCounterMode([counter]):
                _bert(payload["bert_config"], attn)(payload["bert_ids"])
            out[f"bert_macs_{attn}"] = float(counter.get_total())
    (payload_dir / "sj_tiny.json").write_text(json.dumps(out, indent=1))


def _version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


def _sj_op_counts(model, ids_list):
    """Per module scope, per counter: SynOps, MACs, ACs, FLOPs summed over sentences (then / n)."""
    import torch
    from spikingjelly.activation_based.op_counter import (
        ACCounter,
        DispatchCounterMode,
        FlopCounter,
        MACCounter,
        SynOpCounter,
    )

    counters = {"synop": SynOpCounter(), "mac": MACCounter(), "ac": ACCounter(), "flop": FlopCounter()}
    scopes: dict[str, dict[str, dict[str, float]]] = {}
    root = type(model).__name__
    with torch.no_grad():
        for ids in ids_list:
            for c in counters.values():
                c.reset() if hasattr(c, "reset") else None
                c.records.clear()
            with DispatchCounterMode(list(counters.values())):
                model(ids)
            for cname, c in counters.items():
                for scope, funcs in c.get_counts().items():
                    if scope == root:  # the same records as "Global"
                        continue
                    name = "Global" if scope == "Global" else scope[len(root) + 1:]
                    rec = scopes.setdefault(name, {}).setdefault(cname, {})
                    for func, value in funcs.items():
                        rec[str(func)] = rec.get(str(func), 0.0) + float(value)
    n = len(ids_list)
    for rec in scopes.values():
        for funcs in rec.values():
            for k in funcs:
                funcs[k] /= n
    return scopes


def _sj_lemaire(model, ids_list, *, wrap_lif: bool):
    """The Lemaire profiler over the sentences, per module (rules instrumented to tag each access)."""
    import torch
    from spikingjelly.activation_based.op_counter import LemaireEnergyConfig, LemaireEnergyProfiler

    if wrap_lif:
        _wrap_lifs(model)
    names = {m: n for n, m in model.named_modules()}
    prof = LemaireEnergyProfiler(config=LemaireEnergyConfig(strict=False))
    prof.bind_model(model)
    counter = prof.lemaire_counter
    cost = prof.config.cost_config
    per_module: dict[str, dict[str, float]] = {}
    current = {"name": None}
    original_record = counter._record

    def record(name, nbytes, capacity):
        original_record(name, nbytes, capacity)
        rec = per_module.setdefault(current["name"], {})
        rec[name] = rec.get(name, 0.0) + nbytes
        comp = {"read_in_bytes": "inout_pj", "write_out_bytes": "inout_pj", "read_params_bytes": "params_pj"}.get(
            name, "potential_pj")
        rec[comp] = rec.get(comp, 0.0) + nbytes * cost.memory_cost_pj(capacity)

    counter._record = record
    for key, rule in list(counter.rules.items()):
        def tagged(module, inputs, kwargs, output, rule=rule):
            current["name"] = names.get(module, "?")
            before = (counter.paper_ac, counter.paper_mac, counter.paper_acc_addr, counter.paper_mac_addr)
            value = rule(module, inputs, kwargs, output)
            after = (counter.paper_ac, counter.paper_mac, counter.paper_acc_addr, counter.paper_mac_addr)
            rec = per_module.setdefault(current["name"], {})
            for k, b, a in zip(("ac", "mac", "acc_addr", "mac_addr"), before, after):
                rec[k] = rec.get(k, 0.0) + (a - b)
            return value
        counter.rules[key] = tagged
    totals = None
    with torch.no_grad():
        for ids in ids_list:
            with prof:
                model(ids)
            r = prof.get_report()
            part = {"total_pj": r.total_pj, **r.breakdown_pj, **{k: float(v) for k, v in r.counts.items()}}
            totals = part if totals is None else {k: totals[k] + part[k] for k in totals}
    n = len(ids_list)
    for rec in per_module.values():
        for k in rec:
            rec[k] /= n
        rec["ops_pj"] = rec.get("ac", 0) * cost.e_add_pj + rec.get("mac", 0) * (cost.e_mul_pj + cost.e_add_pj)
        rec["addressing_pj"] = (rec.get("acc_addr", 0) * cost.e_add_pj
                                + rec.get("mac_addr", 0) * (cost.e_mul_pj + cost.e_add_pj))
    return {"totals": {k: v / n for k, v in totals.items()}, "per_module": per_module,
            "warnings": sorted(set(prof.get_report().warnings))}


def _wrap_lifs(model) -> None:
    """Replace every spikebert LIF (and mark every Linear, time-major) so SpikingJelly's Lemaire rules see
    LIF populations over T steps: an SJ ``LIFNode`` subclass whose forward is ours."""
    import torch
    from spikingjelly.activation_based.neuron import LIFNode

    from spikebert.neurons import LIF

    class OurLIF(LIFNode):
        def __init__(self, inner):
            super().__init__(tau=2.0, step_mode="m")
            self.inner = inner

        def forward(self, x):
            return self.inner(x)

    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, LIF):
                setattr(module, child_name, OurLIF(child))
            elif isinstance(child, torch.nn.Linear):
                child.step_mode = "m"  # (T, B, ...) inputs: SJ divides the output buffer by T for the membranes


def sj_student(kind: str, model, ids_list) -> dict:
    import torch
    from spikingjelly.activation_based.op_counter import estimate_simple_energy

    t0 = time.perf_counter()
    ops = _sj_op_counts(model, ids_list)
    simple = None
    with torch.no_grad():
        for ids in ids_list:
            r = estimate_simple_energy(model, ids)
            part = {"total_pj": r.energy_total_pj, "compute_pj": r.energy_compute_pj, "memory_pj": r.energy_memory_pj,
                    **{k: float(v) for k, v in r.counts.items()}}
            simple = part if simple is None else {k: simple[k] + part[k] for k in simple}
    simple = {k: v / len(ids_list) for k, v in simple.items()}
    lem = _sj_lemaire(model, ids_list, wrap_lif=kind == "spikebert")
    return {"ops": ops, "simple_energy": simple, "lemaire": lem, "wall_s": time.perf_counter() - t0}


def _bert(config: dict, attn: str):
    from transformers import BertConfig, BertForSequenceClassification

    cfg = BertConfig(**{k: v for k, v in config.items() if k in ("hidden_size", "intermediate_size",
                                                                  "num_hidden_layers", "num_attention_heads",
                                                                  "vocab_size", "max_position_embeddings")},
                     num_labels=2, attn_implementation=attn)
    import torch

    torch.manual_seed(0)
    return BertForSequenceClassification(cfg).eval()


def sj_teacher(config: dict, ids_list) -> dict:
    """The MiniLM-shaped teacher (random weights: counts do not depend on them) per sentence: MACs per
    module and the Lemaire profiler (no neurons: every layer writes its output)."""
    t0 = time.perf_counter()
    model = _bert(config, "eager")
    ops = _sj_op_counts(model, ids_list)
    lem = _sj_lemaire(model, ids_list, wrap_lif=False)
    return {"ops": {k: v for k, v in ops.items() if "mac" in v}, "lemaire": lem, "wall_s": time.perf_counter() - t0}


def sj_lemaire_check() -> dict:
    """Ours against SpikingJelly's Lemaire profiler on a small network: dense-input Linear -> LIF ->
    Linear (spike input) -> IF -> Linear (spike input) -> LIF, T = 3, batch 1, 5 positions."""
    import torch
    from spikingjelly.activation_based import layer, neuron
    from spikingjelly.activation_based.op_counter import LemaireEnergyConfig, estimate_lemaire_energy

    from spikebert.energy import lemaire
    from spikebert.energy.counting import LayerCount

    torch.manual_seed(1)
    T, P = 3, 5
    net = torch.nn.Sequential(layer.Linear(12, 10, step_mode="m"), neuron.LIFNode(tau=2.0, step_mode="m"),
                              layer.Linear(10, 8, step_mode="m"), neuron.IFNode(step_mode="m"),
                              layer.Linear(8, 6, bias=False, step_mode="m"), neuron.LIFNode(tau=2.0, step_mode="m"))
    with torch.no_grad():
        for m in net:
            if isinstance(m, torch.nn.Linear):
                m.weight.normal_(0, 1.5)
    x = torch.randn(T, 1, P, 12)
    seen = []
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append((m, i[0].detach(), o.detach()))) for m in net]
    with torch.no_grad():
        net(x)
    for h in hooks:
        h.remove()
    from spikingjelly.activation_based import functional

    functional.reset_net(net)
    report = estimate_lemaire_energy(net, x, config=LemaireEnergyConfig(strict=True))
    rows = []
    for i, (m, inp, outp) in enumerate(seen):
        if isinstance(m, torch.nn.Linear):
            binary = bool(((inp == 0) | (inp == 1)).all())
            k, mo = m.in_features, m.out_features
            nnz = float(inp.count_nonzero())
            common = dict(input_elements=float(inp.numel()), fan_in=k, fan_out=mo, output_elements=float(outp.numel()),
                          params=float(sum(p.numel() for p in m.parameters())), has_bias=m.bias is not None)
            if binary:
                rows.append(LayerCount(f"fc{i}", "affine", "spike", nnz / inp.numel(), outp.numel() * k, 0.0,
                                       nnz * mo, 0.0, **common))
            else:
                rows.append(LayerCount(f"fc{i}", "affine", "real", 1.0, outp.numel() * k, outp.numel() * k, 0.0, 0.0,
                                       **common))
        else:
            rows.append(LayerCount(f"n{i}", "neurons", "-", 0.0, 0.0, 0.0, 0.0, float(outp.numel()),
                                   output_elements=float(outp.numel()), output_spikes=float(outp.count_nonzero()),
                                   leaky=isinstance(m, neuron.LIFNode)))
    ours = lemaire.totals(lemaire.price_rows(rows, time_steps=T))
    theirs = {"total_pj": report.total_pj, **report.breakdown_pj, **{k: float(v) for k, v in report.counts.items()}}
    pairs = {"total_pj": "total_pj", "ops_pj": "ops_pj", "addressing_pj": "addressing_pj", "inout_pj": "inout_pj",
             "params_pj": "params_pj", "potential_pj": "potential_pj", "ac": "ac", "mac": "mac", "acc_addr": "acc_addr",
             "mac_addr": "mac_addr", "read_in_bytes": "read_in_bytes", "write_out_bytes": "write_out_bytes",
             "params_bytes": "read_params_bytes"}
    table = {k: {"ours": ours[k], "spikingjelly": theirs[v],
                 "equal": math.isclose(ours[k], theirs[v], rel_tol=1e-12, abs_tol=1e-9)} for k, v in pairs.items()}
    table["potential_bytes"] = {"ours": ours["potential_bytes"],
                                "spikingjelly": theirs["read_potential_bytes"] + theirs["write_potential_bytes"],
                                "equal": math.isclose(ours["potential_bytes"], theirs["read_potential_bytes"]
                                                      + theirs["write_potential_bytes"], rel_tol=1e-12)}
    # the same sample 8 times in one batch: SpikingJelly sizes the input and membrane buffers by the whole
    # batch tensor, so its energy per sample changes with the batch size
    functional.reset_net(net)
    batched = estimate_lemaire_energy(net, x.expand(T, 8, P, 12).contiguous(),
                                      config=LemaireEnergyConfig(strict=True))
    return {"network": "Linear(12,10) real input -> LIF -> Linear(10,8) -> IF -> Linear(8,6, no bias) -> LIF; "
                       f"T={T}, batch 1, {P} positions, SJ layer.Linear/LIFNode/IFNode (step_mode m)",
            "components": table, "all_equal": all(v["equal"] for v in table.values()),
            "spikingjelly_batch_dependence": {
                "per_sample_total_pj_batch_1": report.total_pj, "per_sample_total_pj_batch_8": batched.total_pj / 8,
                "per_sample_memory_pj_batch_1": report.breakdown_pj["memory_pj"],
                "per_sample_memory_pj_batch_8": batched.breakdown_pj["memory_pj"] / 8,
                "note": "input and membrane buffer capacities are the whole batch tensor's bytes, so the cost per "
                        "byte, and the energy per sample, grow with the batch size; ours (and SpikingJelly at "
                        "batch 1) size them per sample"}}


def sj_bert_base() -> dict:
    """BERT-base (random weights), one sentence of 128 tokens: MACs and FLOPs, eager vs SDPA attention."""
    import torch
    from spikingjelly.activation_based.op_counter import DispatchCounterMode, FlopCounter, MACCounter, estimate_simple_energy

    base = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12,
            "vocab_size": 30522, "max_position_embeddings": 512}
    out = {}
    ids = torch.randint(1000, 2000, (1, 128))
    for attn in ("eager", "sdpa"):
        model = _bert(base, attn)
        mac, flop = MACCounter(), FlopCounter()
        with torch.no_grad(), DispatchCounterMode([mac, flop]):
            model(ids)
        simple = estimate_simple_energy(model, ids)
        out[attn] = {"macs": float(mac.get_total()), "flops": float(flop.get_total()),
                     "simple_energy_mj": simple.energy_total_pj / 1e9,
                     "simple_compute_mj": simple.energy_compute_pj / 1e9,
                     "simple_memory_mj": simple.energy_memory_pj / 1e9}
        del model
    return out


# ---- BERT-base under NeuroBench (in .venv) --------------------------------------------------------------

def neurobench_bert_base() -> dict:
    import torch
    from neurobench.benchmarks import Benchmark
    from neurobench.metrics.workload import SynapticOperations
    from neurobench.models import TorchModel

    base = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12,
            "vocab_size": 30522, "max_position_embeddings": 512}
    model = _bert(base, "eager")

    class Net(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, ids):
            return self.inner(input_ids=ids).logits

    ids = torch.randint(1000, 2000, (1, 128))
    data = torch.utils.data.DataLoader([(ids[0], torch.tensor(0))], batch_size=1)
    bench = Benchmark(TorchModel(Net(model)), data, [], [], [[], [SynapticOperations]])
    return _jsonable(bench.run(quiet=True))["SynapticOperations"]


# ---- comparison ----------------------------------------------------------------------------------------

def close(a, b) -> bool:
    return a is not None and b is not None and math.isclose(a, b, rel_tol=REL, abs_tol=1e-6)


def compare_spikebert(ours, nb, sj, extra) -> list[dict]:
    rows = {r.name: r for r in ours["rows"]}
    T = ours["report"].time_steps
    out = []
    nb_layers = {spikebert_row(k): v for k, v in nb["per_layer"].items()}
    sj_scopes = {spikebert_row(k) if k != "Global" else "Global": v for k, v in sj["ops"].items()}
    for name, r in rows.items():
        if r.kind == "neurons":
            continue
        entry = {"layer": name, "kind": r.kind, "input": r.input_kind,
                 "ours": {"acs": r.acs, "macs": r.macs, "dense_macs": r.dense_macs}}
        nbl, sjl = nb_layers.get(name), sj_scopes.get(name, {})
        syn = sum(sjl.get("synop", {}).values())
        mac = sum(sjl.get("mac", {}).values())
        entry["neurobench"] = None if nbl is None else {k: nbl[k] for k in ("Effective_ACs", "Effective_MACs", "Dense",
                                                                           "calls_spiking", "calls")}
        entry["spikingjelly"] = {"synops": syn, "macs": mac, "acs_all_rules": sum(sjl.get("ac", {}).values())}
        nonzero_macs = r.input_rate * r.input_elements * r.fan_out  # NeuroBench's effective MACs on our record
        if r.kind in ("conv1d", "affine") and r.input_kind == "spike":
            entry["neurobench_cls"] = "equal" if close(nbl["Effective_ACs"], r.acs) and not nbl["Effective_MACs"] \
                else "DIFFERENT"
            entry["spikingjelly_cls"] = "equal" if close(syn, r.acs) and not mac else "DIFFERENT"
        elif r.kind in ("conv1d", "affine"):  # integer (residual stream) or real input: ours dense MACs
            eff_ok = close(nbl["Effective_MACs"] + nbl["Effective_ACs"], nonzero_macs)
            dense_ok = close(nbl["Dense"], r.dense_macs)
            if close(nbl["Effective_MACs"], r.macs):
                entry["neurobench_cls"] = "equal"
            elif eff_ok and dense_ok:
                entry["neurobench_cls"] = ("convention: NeuroBench counts effective MACs (nonzero inputs x nonzero "
                                           f"weights, {nbl['Effective_MACs']:.6g}) where ours counts dense MACs; its "
                                           "Dense equals ours, its effective count equals our record's nonzero inputs "
                                           "x fan-out" + (f"; {nbl['calls_spiking']} of {nbl['calls']} calls had "
                                                          "inputs in {-1,0,1} and went to its ACs"
                                                          if nbl["calls_spiking"] else ""))
            else:
                entry["neurobench_cls"] = "DIFFERENT"
            entry["ours"]["nonzero_inputs_x_fan_out"] = nonzero_macs
            entry["spikingjelly_cls"] = "equal" if close(mac, r.macs) and not syn else "DIFFERENT"
        elif r.kind == "attention":
            entry["neurobench_cls"] = "invisible: functional matmul (NeuroBench hooks nn.Linear/Conv/RNN only)"
            qk, av_dense = extra[name]["qk"], extra[name]["av_dense"]
            entry["ours"]["qk_coincidences"] = qk
            entry["ours"]["qk_recorded"] = ours["activity"].nodes[name].qk_accumulates / ours["activity"].samples
            entry["ours"]["av_under_sj_rule"] = av_dense
            if close(syn, qk + av_dense) and close(qk, entry["ours"]["qk_recorded"]):
                entry["spikingjelly_cls"] = (
                    "convention: Q K^T equal (both binary: coincidences); for A V (integer A x binary V) SpikingJelly "
                    "counts every V spike x every query row (nnz(V) L), ours only the nonzero A entries x V spikes; "
                    f"ours under its rule: {qk + av_dense:.6g} = its count")
            else:
                entry["spikingjelly_cls"] = "DIFFERENT"
        elif r.kind == "token-mean":
            entry["neurobench_cls"] = "invisible: functional mean (no nn.Module with weights)"
            entry["spikingjelly_cls"] = ("convention: not a synaptic op for SpikingJelly (SynOps/MACs 0); its "
                                         "ACCounter counts the reduction's adds (acs_all_rules)")
        out.append(entry)
    del T
    return out


def compare_spikingbert(ours, nb, sj) -> list[dict]:
    rows = {r.name: r for r in ours["rows"]}
    nb_layers = {spikingbert_row(k): v for k, v in nb["per_layer"].items()}
    sj_scopes = {spikingbert_row(k): v for k, v in sj["ops"].items()}
    out = []
    for name, r in rows.items():
        if r.kind == "neurons":
            continue
        entry = {"layer": name, "kind": r.kind, "input": r.input_kind,
                 "ours": {"acs": r.acs, "macs": r.macs, "dense_macs": r.dense_macs}}
        if r.kind == "affine":
            nbl, sjl = nb_layers[name], sj_scopes.get(name, {})
            syn, mac = sum(sjl.get("synop", {}).values()), sum(sjl.get("mac", {}).values())
            entry["neurobench"] = {k: nbl[k] for k in ("Effective_ACs", "Effective_MACs", "Dense", "calls_spiking",
                                                       "calls")}
            entry["spikingjelly"] = {"synops": syn, "macs": mac}
            if r.input_kind == "spike":
                entry["neurobench_cls"] = "equal" if close(nbl["Effective_ACs"], r.acs) else "DIFFERENT"
                entry["spikingjelly_cls"] = "equal" if close(syn, r.acs) and not mac else "DIFFERENT"
            else:
                entry["neurobench_cls"] = ("equal" if close(nbl["Effective_MACs"], r.macs) else
                                           "convention: NeuroBench counts effective MACs (nonzero rates only, "
                                           f"{nbl['Effective_MACs']:.6g}); its Dense {nbl['Dense']:.6g} equals ours"
                                           if close(nbl["Dense"], r.dense_macs) else "DIFFERENT")
                entry["spikingjelly_cls"] = "equal" if close(mac, r.macs) else "DIFFERENT"
        else:  # scores / context: real x spike products inside the layer module
            layer = name.split(".")[0]
            scope = sj_scopes.get(layer, {})
            bmm = sum(v for k, v in scope.get("synop", {}).items() if "bmm" in k or k.endswith("mm.default")
                      and "addmm" not in k)
            entry["spikingjelly"] = {"layer_products_synops": bmm}
            pair = [rows[f"{layer}.scores"].acs, rows[f"{layer}.context"].acs]
            entry["neurobench_cls"] = "invisible: functional matmul"
            entry["spikingjelly_cls"] = ("equal (scores + context of the layer together: "
                                         f"{sum(pair):.6g} ours, {bmm:.6g} theirs)" if close(bmm, sum(pair))
                                         else f"DIFFERENT (layer products ours {sum(pair):.6g}, theirs {bmm:.6g})")
        out.append(entry)
    return out


def compare_lemaire(ours_lemaire: dict, sj_lem: dict, name_of, explain) -> list[dict]:
    """Per row of ours: our Lemaire counts and energy beside SpikingJelly's for the module it maps to;
    ``explain(row, differing keys or None when SpikingJelly has no such module)`` classifies."""
    keys = ("ac", "mac", "acc_addr", "read_in_bytes", "write_out_bytes", "params_bytes", "ops_pj", "addressing_pj",
            "inout_pj", "params_pj", "potential_pj")
    theirs_by_row = {}
    for module, rec in sj_lem["per_module"].items():
        row = name_of(module) if module else None
        if row:
            theirs = {k: rec.get(k, 0.0) for k in ("ac", "mac", "acc_addr", "ops_pj", "addressing_pj", "inout_pj",
                                                   "params_pj", "potential_pj")}
            theirs.update(read_in_bytes=rec.get("read_in_bytes", 0.0), write_out_bytes=rec.get("write_out_bytes", 0.0),
                          params_bytes=rec.get("read_params_bytes", 0.0))
            theirs_by_row[row] = theirs
    out = []
    for row, mine in ours_lemaire.items():
        theirs = theirs_by_row.get(row)
        mine = {k: mine.get(k, 0.0) for k in keys}
        total = sum(mine[k] for k in keys if k.endswith("_pj"))
        if theirs is None:
            out.append({"layer": row, "ours_pj": total, "spikingjelly_pj": None, "classification": explain(row, None)})
            continue
        diff = [k for k in keys if not close(mine[k], theirs[k])]
        out.append({"layer": row, "ours_pj": total, "spikingjelly_pj": sum(theirs[k] for k in keys if k.endswith("_pj")),
                    "classification": "equal" if not diff else explain(row, diff),
                    **({"ours": mine, "spikingjelly": theirs} if diff else {})})
    return out


def lemaire_explain(kind: str):
    def explain(row: str, diff: list[str] | None) -> str:
        if diff is None:
            if kind == "teacher":
                return ("invisible: Q K^T / A V are functional matmuls; SpikingJelly's Lemaire rules see nn.Linear/Conv "
                        "only (ours prices them as dense layers whose weights are K, V)")
            if kind == "spikingbert" and not any(x in row for x in ("scores", "context")):
                return ("invisible: SpikingBERT's IF populations are functions, not modules (no SpikingJelly "
                        "IFNode to hook)")
            return ("invisible: functional attention / token mean (SpikeAttention, TokenMean are no Linear/Conv/"
                    "IFNode/LIFNode); ours prices them with the stored operand as weights")
        if kind == "spikingbert" and set(diff) <= {"write_out_bytes", "inout_pj"}:
            return ("convention: SpikingJelly finds no neuron module in SpikingBERT (functional populations), so it "
                    "applies the FNN rule to its dense classifier and writes its outputs; ours knows the network "
                    "spikes (outputs go into neurons or the readout)")
        return f"DIFFERENT: {diff}"
    return explain


def attention_extra(model, ids_list) -> dict[str, dict[str, float]]:
    """Per SpikeBERT attention row, per sample: Q K^T coincidences and nnz(V) x L (SpikingJelly's A V rule
    for an integer A)."""
    import torch

    from spikebert.model import SpikeAttention

    acc: dict[str, dict[str, float]] = {}

    def make_hook(row):
        def hook(m, inputs, _out):
            qkv, mask = inputs
            q, k, v = m.split_heads(qkv, mask)
            rec = acc.setdefault(row, {"qk": 0.0, "av_dense": 0.0})
            rec["qk"] += float((q @ k.transpose(-2, -1)).sum())
            rec["av_dense"] += float(v.count_nonzero()) * q.shape[-2]
        return hook

    handles = [m.register_forward_hook(make_hook(spikebert_row(name))) for name, m in model.named_modules()
               if isinstance(m, SpikeAttention)]
    with torch.no_grad():
        for ids in ids_list:
            model(ids)
    for h in handles:
        h.remove()
    return {row: {k: v / len(ids_list) for k, v in rec.items()} for row, rec in acc.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sentences", type=int, default=64)
    p.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data"))
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "energy_peers.json"))
    p.add_argument("--reports", default=str(REPO / "benchmarks" / "results" / "energy_peers"),
                   help="folder for our energy reports of the two students")
    p.add_argument("--peer", choices=["spikingjelly", "spikingjelly-tiny"], default=None, help=argparse.SUPPRESS)
    p.add_argument("--payload", default=None, help=argparse.SUPPRESS)
    p.add_argument("--no-bert-base", action="store_true", help="skip BERT-base under NeuroBench")
    args = p.parse_args()
    if args.peer:
        sys.path.insert(0, str(REPO))
        import spikebert

        spikebert.__path__.append(str(REPO))  # spikebert.energy etc. from the source tree (setuptools package-dir)
        (sj_main if args.peer == "spikingjelly" else sj_tiny_main)(Path(args.payload))
        return

    import torch
    from provenance import load_average, provenance  # benchmarks/, beside this script

    from spikebert.contract.fileio import atomic_write_text
    from spikebert.data import load_split
    from spikebert.teacher import load_tokenizer, resolve_teacher_name
    from spikebert.tokenize import Batcher

    torch.set_num_threads(1)
    started = time.perf_counter()
    made = provenance()  # its machine records the one PyTorch thread
    tok = load_tokenizer(TOKENIZER)
    data = load_split("sst-2", "dev", data_dir=args.data_dir)
    sentences, labels = data.sentences[: args.sentences], data.labels[: args.sentences]
    batcher = Batcher(tok, max_len=64)
    padded = batcher.encode(sentences)["input_ids"]
    ids_list = [batcher.encode([s])["input_ids"] for s in sentences]
    lengths = [int(x.shape[1]) for x in ids_list]
    from transformers import AutoConfig

    teacher_config = AutoConfig.from_pretrained(resolve_teacher_name(TOKENIZER)).to_dict()
    teacher_config = {k: teacher_config[k] for k in ("hidden_size", "intermediate_size", "num_hidden_layers",
                                                     "num_attention_heads", "vocab_size", "max_position_embeddings")}
    teacher_config["num_labels"] = 2
    models = {"spikebert": build_spikebert(len(tok), padded[:4]), "spikingbert": build_spikingbert(len(tok))}
    reports_dir = Path(args.reports)
    reports_dir.mkdir(parents=True, exist_ok=True)
    result = {"issue": 18, **made,
              "sentences": f"sst-2 dev, first {len(sentences)} (lengths {min(lengths)}-{max(lengths)} tokens, "
                           f"mean {sum(lengths) / len(lengths):.2f}, MiniLM tokenizer, max 64)",
              "students": {
                  "spikebert": f"freshly initialised, not trained: SpikeBERT {SPIKEBERT_CFG}, N(0, 0.5) Linear "
                               "weights, batch-norm statistics from 4 of the sentences, +1 Q/K/V norm bias "
                               "(tests/conftest.py make_student), float64",
                  "spikingbert": f"freshly initialised, not trained: SpikingBERT {SPIKINGBERT_CFG}, N(0, 0.5) Linear "
                                 "weights, float64"},
              "peers": {"neurobench": _version("neurobench")}}

    ours, nb = {}, {}
    for kind, model in models.items():
        ours[kind] = our_counts(kind, model, ids_list, padded, teacher_config, lengths, reports_dir)
        ours[kind]["accuracy"] = float((ours[kind]["logits"].argmax(-1) == torch.as_tensor(labels)).double().mean())
        nb[kind] = neurobench_counts(kind, model, ids_list, labels)
    extra = attention_extra(models["spikebert"], ids_list)

    sj = None
    if SJ_PYTHON.exists():
        with tempfile.TemporaryDirectory() as tmp:
            torch.save({"vocab": len(tok), "stats_ids": padded[:4], "ids": ids_list, "teacher_config": teacher_config,
                        "teacher_ids": [batcher.encode([s])["input_ids"] for s in sentences],
                        **{k: m.state_dict() for k, m in models.items()}}, Path(tmp) / "payload.pt")
            env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
            t0 = time.perf_counter()
            subprocess.run([str(SJ_PYTHON), __file__, "--peer", "spikingjelly", "--payload", tmp], check=True, env=env)
            sj = json.loads((Path(tmp) / "sj.json").read_text())
            sj["wall_s"] = time.perf_counter() - t0
        result["peers"]["spikingjelly"] = sj["versions"]
    else:
        result["peers"]["spikingjelly"] = "not run: .venv-sj missing (bash benchmarks/peer_envs.sh spikingjelly)"

    # --- per layer --------------------------------------------------------------------------------------
    result["spikebert"] = summarise("spikebert", ours["spikebert"], nb["spikebert"], sj and sj["spikebert"])
    result["spikebert"]["layers"] = compare_spikebert(ours["spikebert"], nb["spikebert"], sj["spikebert"], extra) \
        if sj else None
    result["spikingbert"] = summarise("spikingbert", ours["spikingbert"], nb["spikingbert"], sj and sj["spikingbert"])
    result["spikingbert"]["layers"] = compare_spikingbert(ours["spikingbert"], nb["spikingbert"], sj["spikingbert"]) \
        if sj else None
    if sj:
        result["spikebert"]["lemaire_layers"] = compare_lemaire(
            ours["spikebert"]["lemaire_per_sentence"], sj["spikebert"]["lemaire"], spikebert_row,
            lemaire_explain("spikebert"))
        result["spikingbert"]["lemaire_layers"] = compare_lemaire(
            ours["spikingbert"]["lemaire_per_sentence"], sj["spikingbert"]["lemaire"], spikingbert_row,
            lemaire_explain("spikingbert"))
        result["teacher"] = teacher_lemaire(teacher_config, lengths, sj["teacher"])
        result["lemaire_check_small_network"] = sj["lemaire_check"]
    result["bert_base_128"] = bert_base(sj, None if args.no_bert_base else neurobench_bert_base())
    result["classification_summary"] = classification_summary(result)
    result["wall_s"] = time.perf_counter() - started
    result["load_average_at_end"] = load_average()
    atomic_write_text(Path(args.out), json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out} in {result['wall_s']:.0f} s")


def classification_summary(result: dict) -> dict:
    """Per model and peer: how many of our rows are equal, a stated convention, invisible to the peer, or
    different (a bug on one side)."""
    def kind_of(text: str) -> str:
        for k in ("equal", "convention", "invisible"):
            if text.startswith(k):
                return k
        return "DIFFERENT"

    out = {}
    for model in ("spikebert", "spikingbert"):
        layers = result[model].get("layers") or []
        for peer, key in (("neurobench", "neurobench_cls"), ("spikingjelly", "spikingjelly_cls")):
            counts = {}
            for e in layers:
                counts[kind_of(e[key])] = counts.get(kind_of(e[key]), 0) + 1
            out[f"{model} ops vs {peer}"] = counts
        counts = {}
        for e in result[model].get("lemaire_layers") or []:
            counts[kind_of(e["classification"])] = counts.get(kind_of(e["classification"]), 0) + 1
        out[f"{model} lemaire vs spikingjelly"] = counts
    if "teacher" in result:
        counts = {}
        for e in result["teacher"]["layers_not_equal"]:
            counts[kind_of(e["classification"])] = counts.get(kind_of(e["classification"]), 0) + 1
        counts["equal"] = result["teacher"]["layers_equal"]
        out["teacher lemaire vs spikingjelly"] = counts
    return out


def summarise(kind, ours, nb, sj) -> dict:
    """Totals: ours (mac convention for SpikeBERT) beside NeuroBench's and SpikingJelly's."""
    rep = ours["report"]
    r = nb["results"]
    lif = [x for x in ours["rows"] if x.kind == "neurons"]
    known = [x for x in lif if x.output_spikes is not None]
    out = {
        "ours": {"acs": rep.student_acs, "macs": rep.student_macs, "dense_macs": rep.student_total("dense_macs"),
                 "neuron_updates": rep.student_total("neuron_updates"),
                 "activation_sparsity_inputs": rep.activation_sparsity,
                 "activation_sparsity_outputs": (1 - sum(x.output_spikes for x in known)
                                                 / sum(x.neuron_updates for x in known)) if known else None,
                 "activation_sparsity_outputs_mean_of_sentences": ours["output_sparsity_mean_of_sentences"],
                 "accuracy": ours["accuracy"],
                 "energy_45nm_fp32_mj": rep.student_mj,
                 "energy_lemaire_mj": rep.student_pj(rep.more_profiles[0]) / 1e9,
                 "teacher_lemaire_mj": rep.teacher_pj(rep.more_profiles[0]) / 1e9,
                 "teacher_45nm_fp32_mj": rep.teacher_mj,
                 "lemaire_components_mj": {k: v / 1e9 for k, v in rep.lemaire_totals()["student"].items()
                                           if k.endswith("_pj")},
                 "teacher_lemaire_components_mj": {k: v / 1e9 for k, v in rep.lemaire_totals()["teacher"].items()
                                                   if k.endswith("_pj")},
                 "reports": ours["paths"], "wall_s": ours["wall_s"]},
        "neurobench": {**r, "wall_s": nb["wall_s"]},
    }
    if sj:
        g = sj["ops"].get("Global", {})
        out["spikingjelly"] = {"synops": sum(g.get("synop", {}).values()), "macs": sum(g.get("mac", {}).values()),
                               "acs_all_rules": sum(g.get("ac", {}).values()),
                               "flops": sum(g.get("flop", {}).values()), "simple_energy": sj["simple_energy"],
                               "lemaire_totals": sj["lemaire"]["totals"], "lemaire_warnings": sj["lemaire"]["warnings"],
                               "wall_s": sj["wall_s"]}
    return out


def teacher_lemaire(config, lengths, sj_teacher_result) -> dict:
    """Our teacher rows priced by Lemaire (mean rows, and per sentence) beside SpikingJelly's per module."""
    from spikebert.energy import lemaire
    from spikebert.energy.counting import teacher_counts

    hf = {"attention.self.query": "query", "attention.self.key": "key", "attention.self.value": "value",
          "attention.output.dense": "out", "intermediate.dense": "ffn1", "output.dense": "ffn2"}

    def name_of(module: str) -> str | None:
        if module == "bert.pooler.dense":
            return "pooler"
        if module == "classifier":
            return "classifier"
        parts = module.split(".")
        if module.startswith("bert.encoder.layer.") and ".".join(parts[4:]) in hf:
            return f"l{parts[3]}.{hf['.'.join(parts[4:])]}"
        return None

    per_sentence = [lemaire.price_rows(list(teacher_counts(config, [n]).layers), time_steps=1, neurons_in_model=False)
                    for n in lengths]
    mean = {}
    for i, row in enumerate(per_sentence[0]):
        parts = [p[i] for p in per_sentence]
        mean[row.name] = {
            **{f: sum(getattr(x, f) for x in parts) / len(parts) for f in ("ac", "mac", "acc_addr", "read_in_bytes",
                                                                         "write_out_bytes", "params_bytes")},
            **{f"{c}_pj": sum(x.energy_pj[c] for x in parts) / len(parts) for c in lemaire.COMPONENTS}}
    layers = compare_lemaire(mean, sj_teacher_result["lemaire"], name_of, lemaire_explain("teacher"))
    products = {x["layer"]: mean[x["layer"]] for x in layers if x["spikingjelly_pj"] is None}
    mean_rows_total = lemaire.totals(lemaire.price_rows(list(teacher_counts(config, lengths).layers), time_steps=1,
                                                        neurons_in_model=False))
    return {"config": config,
            "ours_total_mj_per_sentence_buffers": sum(sum(v[f"{c}_pj"] for c in lemaire.COMPONENTS)
                                                      for v in mean.values()) / 1e9,
            "ours_total_mj_mean_sentence_buffers": mean_rows_total["total_pj"] / 1e9,
            "ours_attention_products_mj": sum(sum(v[f"{c}_pj"] for c in lemaire.COMPONENTS)
                                              for v in products.values()) / 1e9,
            "spikingjelly_total_mj": sj_teacher_result["lemaire"]["totals"]["total_pj"] / 1e9,
            "spikingjelly_warnings": sj_teacher_result["lemaire"]["warnings"],
            "layers_equal": sum(x["classification"] == "equal" for x in layers), "layers": len(layers),
            "layers_not_equal": [x for x in layers if x["classification"] != "equal"],
            "macs_per_module_spikingjelly": {name_of(k) or k: sum(v["mac"].values())
                                             for k, v in sj_teacher_result["ops"].items() if name_of(k)}}


def bert_base(sj, nb_result) -> dict:
    from spikebert.energy.counting import teacher_counts

    cfg = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_labels": 2}
    ours = teacher_counts(cfg, [128]).macs
    out = {"ours_macs": ours, "ours_mj_45nm_fp32": ours * 4.6 / 1e9,
           "ours_encoder_macs": ours - 768 * 768 - 768 * 2}
    if nb_result:
        out["neurobench"] = {**nb_result, "Effective_MACs_x_4.6pJ_mj": nb_result["Effective_MACs"] * 4.6 / 1e9,
                             "note": "module hooks: nn.Linear only, attention products QK^T and AV invisible"}
    if sj:
        b = sj["bert_base"]
        out["spikingjelly"] = {**b, "eager_macs_x_4.6pJ_mj": b["eager"]["macs"] * 4.6 / 1e9,
                               "sdpa_macs_x_4.6pJ_mj": b["sdpa"]["macs"] * 4.6 / 1e9,
                               "note": "dispatch level: sees bmm (eager attention) but has no MAC rule for the fused "
                                       "SDPA kernel; FlopCounter has one (2 FLOPs per MAC)"}
    return out


if __name__ == "__main__":
    main()
