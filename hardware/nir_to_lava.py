"""Build a Lava process network from a NIR graph of the reference executor's node set.

Two builds of the same graph, equal step for step to the reference executor (float or, for a
graph quantised by ``spikebert.hardware.quantize``, Loihi fixed point):

``fuse="none"`` (naive): one Lava process per NIR node. ``LIF``/``IF`` run as lava-nc's own
``LIFReset`` (float: ``du = 1, dv = 1 - beta``; fixed: the quantised du/dv/vth/bias); an
``Affine``/``Linear`` that alone feeds one such population runs as lava-nc's ``Dense``
(``num_message_bits = 24`` for graded input; fixed: the 8-bit mantissas, weight exponent and
sign mode; its bias moves into the neuron's bias). Every other node is a ``NodeGroup`` of one
node, stepped by the reference's own step function.

``fuse="blocks"`` (default): ``NodeGroup`` processes of several nodes: the graph is cut after
every node that all later nodes depend on alone (a residual join, in SpikeBERT), and each piece
that contains a join (a residual block) or ends the graph becomes one process. ``fuse="all"``:
one process for the whole graph.

Time. ``NodeGroup`` processes receive and send in the same step (no delay), like the reference.
Lava's ``Dense`` sends at step t+1 what it received at step t: the builder tracks every node's
latency (the Dense on its path), delays the shorter branch into every join (a NIR ``Delay``
group), gives every neuron a reset at the first step of each sentence window it sees
(``LIFReset``'s offset = 1 + latency, so a bias that acts before delayed input arrives is wiped
with the rest of the state), and reads the output ``latency`` steps late.

The LIF input gain ``r dt/tau`` (float) is applied as the last operation of its producer (a
``Scale`` node appended to the producer's group, or folded into the Dense weights), so Lava's LIF
integrates ``beta v + gain I`` as the reference does; the Dense fold is exact when the gain is a
power of two (SpikeBERT: 1/2; snnTorch exports: 1).
"""

from __future__ import annotations

import dataclasses
import logging

import nir
import numpy as np

from spikebert.contract.errors import SpikebertError
from spikebert.contract.extension import SBPositionSpikes, SBTokenEmbedding
from spikebert.contract.graph import SYNAPSE_TYPES, port_shape, predecessors
from spikebert.hardware.fixed_point import fixed_params, is_quantised
from spikebert.hardware.lava_env import require_lava
from spikebert.hardware.lava_network import GroupSpec, LavaNetwork
from spikebert.hardware.quantize import BINARY, SPIKING, population_constants
from spikebert.hardware.reference import SUPPORTED, Schedule, host_nodes, resolve_dt, schedule

log = logging.getLogger(__name__)

FUSE_MODES = ("none", "blocks", "all", "deploy")
GRADED_BITS = 24  # num_message_bits of a lava Dense fed by graded values


@dataclasses.dataclass
class _Unit:
    """One planned process: a lava LIF, a lava Dense, or a NodeGroup over ``names``."""

    kind: str  # "lif" | "dense" | "group"
    names: list[str]


HOST_SOURCES = (SBTokenEmbedding, SBPositionSpikes)  # evaluated on the host; their outputs reach Lava from sources


def cut_nodes(graph: nir.NIRGraph, order: list[str], recurrent: list[tuple[str, str]] = ()) -> set[str]:
    """Nodes no edge jumps over in ``order``: everything after such a node depends on it alone. A
    recurrent edge (u, v) also keeps v (where its loop starts) from ending a piece, so that every
    loop stays inside one piece."""
    pos = {n: i for i, n in enumerate(order)}
    back = {tuple(e) for e in recurrent}
    spans = [(pos[d] - 0.5, pos[s]) if (s, d) in back else (pos[s], pos[d])
             for s, d in graph.edges if s in pos and d in pos]
    return {n for n in order if not any(a < pos[n] < b for a, b in spans)}


def loop_nodes(graph: nir.NIRGraph, plan: Schedule) -> set[str]:
    """Nodes on a recurrent loop: for each recurrent edge (u, v), the nodes on a same-step path from v to u."""
    succ = {n: [] for n in graph.nodes}
    for dst, srcs in plan.preds.items():
        for src in srcs:
            succ[src].append(dst)

    def reach(start: str, step) -> set[str]:
        seen, todo = {start}, [start]
        while todo:
            for m in step(todo.pop()):
                if m not in seen:
                    seen.add(m)
                    todo.append(m)
        return seen

    nodes: set[str] = set()
    for u, v in plan.recurrent:
        nodes |= reach(v, lambda n: succ[n]) & reach(u, lambda n: plan.preds[n])
    return nodes


def _lava_lif_hosts(graph: nir.NIRGraph, name: str, dt: float | None) -> bool:
    """Whether lava-nc's LIF holds this population: one beta, gain and threshold for all its neurons, reset to
    0, no leak towards v_leak (``population_constants``); otherwise the naive build steps it in a NodeGroup."""
    try:
        population_constants(name, graph.nodes[name], dt if dt is not None else graph.metadata.get("dt"))
    except SpikebertError as err:
        log.info("%s runs in a NodeGroup, not lava-nc's LIF: %s", name, err)
        return False
    return True


def _single_input_groups(compute: list[str], preds: dict[str, list[str]], *, cuts: set[str]) -> list[_Unit]:
    """``compute`` in NodeGroups, each ending at a cut node once it holds a join (``fuse="blocks"``; no cuts:
    ``fuse="all"``). A NodeGroup has one input port, so a node that would give its group a second producer
    from outside (a position synapse beside the embedding, both from the host) starts a new group, alone if it
    joins several such producers (their sum arrives at its port)."""
    units, current = [], []
    for name in compute:
        outside = {p for n in (*current, name) for p in preds[n] if p not in current and p != name}
        if len(outside) > 1 and current:
            units.append(_Unit("group", current))
            current, outside = [], set(preds[name])
        if len(outside) > 1:
            units.append(_Unit("group", [name]))
            continue
        current.append(name)
        if name in cuts and any(len(preds[n]) > 1 for n in current):
            units.append(_Unit("group", current))
            current = []
    if current:
        units.append(_Unit("group", current))
    return units


def plan(graph: nir.NIRGraph, compute: list[str], fuse: str, steps: Schedule | None = None,
         dt: float | None = None) -> list[_Unit]:
    """Processes for the nodes in ``compute`` (topological order, Output excluded)."""
    if fuse not in FUSE_MODES:
        raise SpikebertError(f"fuse={fuse!r}: choose one of {FUSE_MODES}")
    steps = steps or schedule(graph)
    if fuse == "all":
        return _single_input_groups(compute, steps.preds, cuts=set())
    preds = steps.preds
    succ = {n: [] for n in graph.nodes}
    for dst, srcs in preds.items():
        for src in srcs:
            succ[src].append(dst)
    if fuse == "blocks":
        return _single_input_groups(compute, preds, cuts=cut_nodes(graph, compute, steps.recurrent))
    units = []
    looped = loop_nodes(graph, steps)  # a lava Dense's one-step delay would lengthen the loop
    for name in compute:
        node = graph.nodes[name]
        if isinstance(node, SPIKING) and not steps.recurrent_preds[name] and _lava_lif_hosts(graph, name, dt):
            units.append(_Unit("lif", [name]))
        elif (isinstance(node, (nir.Affine, nir.Linear)) and len(succ[name]) == 1 and name not in looped
              and isinstance(graph.nodes[succ[name][0]], SPIKING) and preds[succ[name][0]] == [name]
              and not steps.recurrent_preds[succ[name][0]] and np.asarray(node.weight).ndim == 2
              and _lava_lif_hosts(graph, succ[name][0], dt)):
            units.append(_Unit("dense", [name]))
        else:
            units.append(_Unit("group", [name]))
    return units


def build_network(graph: nir.NIRGraph, *, source_node: str, source, batch: int, n_batches: int, time_steps: int,
                  dt: float | None, masks: np.ndarray | None, fuse: str = "blocks",
                  error_path: str | None = None, extra_sources: dict[str, object] | None = None) -> LavaNetwork:
    """Processes for every node downstream of ``source_node``, whose output the Lava process ``source`` sends
    (its port ``s_out``, shape (batch, ...)); ``masks`` (n_batches, batch, positions) or None.
    ``extra_sources``: other host-side nodes (a position population, ``SBPositionSpikes``) -> the Lava process
    that sends their output, in step with ``source``. The nodes upstream of the sources are the host's.

    ``time_steps``: the T of this run, the one the source streams each batch over (the caller's, never
    the graph metadata's: a tensor input may have any T); every sentence window, ``LIFReset``
    interval and the sink's length follow from it. ``dt``: the run's step, as
    :func:`spikebert.hardware.reference.resolve_dt` resolves it (the metadata's, else this argument).
    """
    require_lava("the Lava backend (--backend lava)")
    from lava.proc.io.sink import PyReceiveModelFloat, RingBuffer

    from spikebert.hardware.lava_procs.process import NodeGroup, ReadoutGroup, RecurrentDelay

    fixed = is_quantised(graph)
    dt = resolve_dt(graph, dt)
    T = int(time_steps)
    if T < 1 or n_batches < 1:
        raise SpikebertError(f"a Lava run needs at least one step and one batch, got T={T}, {n_batches} batches")
    sources = {source_node: source, **(extra_sources or {})}
    if fuse == "none" and not fixed:
        graph = _own_gain_stages(graph, source_node)
    steps = schedule(graph)
    order = steps.order
    for name in order:
        if type(graph.nodes[name]) not in SUPPORTED:
            raise SpikebertError(f"node {name!r} has type {type(graph.nodes[name]).__name__}, which has no Lava mapping; "
                             f"supported: {sorted(t.__name__ for t in SUPPORTED)}")
    preds = steps.preds
    outputs = [n for n in order if isinstance(graph.nodes[n], nir.Output)]
    if len(outputs) != 1:
        raise SpikebertError(f"graph must have exactly one Output node, found {outputs}")
    host = host_nodes(order, preds, sources)
    compute = [n for n in order if n not in host and n != outputs[0]]
    unsent = [n for n in compute if isinstance(graph.nodes[n], HOST_SOURCES)]
    if unsent:
        raise SpikebertError(f"{unsent} are host-side sources, not Lava processes: pass a process sending each one's "
                             "output as extra_sources (spikebert.hardware.lava_runner.run_lava does)")
    if fuse == "deploy":
        from spikebert.hardware.lava_deploy import build_deploy

        return build_deploy(graph, sources=sources, batch=batch, n_batches=n_batches, T=T,
                            dt=dt, masks=masks, error_path=error_path, steps=steps, compute=compute,
                            output=outputs[0], sink_cls=RingBuffer, float_sink_model=PyReceiveModelFloat)
    units = plan(graph, compute, fuse, steps, dt)
    if batch != 1 and any(u.kind == "dense" for u in units):
        raise SpikebertError(f"fuse='none' maps Affine/Linear -> LIF to lava-nc Dense, whose ports are 1-D: batch must "
                         f"be 1, got {batch}")
    owner = {n: i for i, u in enumerate(units) for n in u.names}
    succ: dict[str, list[str]] = {n: [] for n in graph.nodes}
    for dst, srcs in preds.items():
        for src in srcs:
            succ[src].append(dst)
    gains, biases = _lif_gains(graph, units, dt, fixed, preds)
    in_ports: dict[str, object] = {}  # the input port of a unit's first node: where recurrent edges arrive

    ports: dict[str, object] = {n: p.s_out for n, p in sources.items()}  # node -> the OutPort carrying its output
    latency: dict[str, int] = dict.fromkeys(sources, 0)
    groups, lava_processes, loops = {}, {}, {}

    def feed(name: str, in_port, at: int) -> None:
        """Connect the outputs of ``name``'s predecessors to ``in_port``, each delayed to arrive at latency ``at``."""
        for p in preds[name]:
            port, lag = ports[p], at - latency[p]
            if lag:
                port = _delay_group(NodeGroup, p, port, lag, graph, T, latency[p], n_batches, masks, batch, groups,
                                    error_path)
            _connect(port, in_port)

    for i, unit in enumerate(units):
        first = unit.names[0]
        external = sorted({p for n in unit.names for p in preds[n] if owner.get(p) != i}, key=order.index)
        at = max(latency[p] for p in external)
        if unit.kind == "lif":
            proc = _lava_lif(graph, first, batch=batch, T=T, at=at, dt=dt, fixed=fixed,
                             bias=biases.get(first))
            feed(first, proc.a_in, at)
            ports[first], latency[first], in_ports[first] = proc.s_out, at, proc.a_in
            lava_processes[first] = proc
            continue
        if unit.kind == "dense":
            proc = _lava_dense(graph, first, gain=gains.get(first, 1.0), fixed=fixed,
                               graded=not _binary(graph, preds[first][0]))
            feed(first, proc.s_in, at)
            ports[first], latency[first], in_ports[first] = proc.a_out, at + 1, proc.s_in
            lava_processes[first] = proc
            continue
        if len(external) > 1 and len(unit.names) > 1:
            raise AssertionError(f"group {unit.names} has several external producers {external}")  # plan() prevents it
        exported = _exported(unit.names, succ, steps)
        spec = _group_spec(graph, unit.names, preds, gains, dt=dt, T=T, latency=at, n_batches=n_batches, masks=masks,
                           error_path=error_path, recurrent_preds=steps.recurrent_preds, output=exported)
        last = spec.order[-1]
        cls = ReadoutGroup if fixed and spec.float_output else NodeGroup
        proc = cls(spec=spec, in_shape=(batch, *_shape(graph, external[0], "output")),
                   out_shape=(batch, *_shape(graph, exported, "output")), name=f"group_{first}")
        if len(unit.names) == 1:
            feed(first, proc.s_in, at)
            in_ports[first] = proc.s_in
        else:
            _connect(ports[external[0]], proc.s_in)
        for n in unit.names:
            latency[n] = at
        ports[exported] = proc.a_out
        groups[last] = proc

    for u, v in steps.recurrent:  # between processes: a one-step delay that sends first (no deadlock)
        if owner.get(u) == owner.get(v) and units[owner[v]].kind == "group" and len(units[owner[v]].names) > 1:
            continue  # inside one NodeGroup, which keeps the previous step's output itself
        if v not in in_ports or u not in ports:
            raise SpikebertError(f"recurrent edge ({u!r}, {v!r}) cannot be built: {v!r} reads it inside a fused group "
                                 "whose loop is split; use fuse='all'")
        if latency[u] != latency[v]:
            raise SpikebertError(f"recurrent edge ({u!r}, {v!r}): the loop holds {latency[u] - latency[v]} lava Dense "
                                 "delays, so it cannot carry the previous step; use fuse='blocks'")
        delay = RecurrentDelay(shape=tuple(in_ports[v].shape), time_steps=T, latency=latency[v],
                               name=f"{u}__to__{v}__recurrent")
        _connect(ports[u], delay.s_in)
        _connect(delay.a_out, in_ports[v])
        loops[delay.name] = delay

    out = outputs[0]
    out_latency = max(latency[p] for p in preds[out])
    num_steps = n_batches * T + out_latency
    sink = RingBuffer(shape=(batch, *_shape(graph, preds[out][0], "output")), buffer=num_steps)
    feed(out, sink.a_in, out_latency)
    return LavaNetwork(source=source, sink=sink, groups=groups, lava_processes=lava_processes, num_steps=num_steps,
                       output_latency=out_latency, exceptions={sink: PyReceiveModelFloat} if fixed else {}, loops=loops)


def _connect(out_port, in_port) -> None:
    """Connect, through a reshape where a lava Dense's 1-D ports meet a batch-of-one (1, n) port."""
    if out_port.shape != in_port.shape:
        out_port = out_port.reshape(in_port.shape)
    out_port.connect(in_port)


def _shape(graph: nir.NIRGraph, name: str, port: str) -> tuple[int, ...]:
    shape = port_shape(graph.nodes[name], port)
    if shape is None:
        raise SpikebertError(f"node {name!r} has no defined {port} shape; Lava ports need one (run nir's type inference)")
    return shape


def _binary(graph: nir.NIRGraph, name: str) -> bool:
    """Whether ``name`` outputs spikes: a lava Dense after it needs no graded messages."""
    return isinstance(graph.nodes[name], BINARY)


def _own_gain_stages(graph: nir.NIRGraph, source_node: str) -> nir.NIRGraph:
    """The graph with a ``Scale(1)`` node ``{lif}__in`` before every LIF whose producer cannot apply its
    input gain (the producer is the host source, or also feeds other nodes: a membrane-residual join).
    The naive build applies a lava LIF's gain as its producer's last operation; these stages give each
    such LIF a producer of its own. Node names and the computed values are unchanged."""
    preds = predecessors(graph)
    consumers: dict[str, list[str]] = {n: [] for n in graph.nodes}
    for src, dst in graph.edges:
        consumers[src].append(dst)
    isolate = [n for n, node in graph.nodes.items() if isinstance(node, (nir.LIF, nir.IF)) and len(preds[n]) == 1
               and (preds[n][0] == source_node or len(consumers[preds[n][0]]) > 1)]
    if not isolate:
        return graph
    nodes, edges = dict(graph.nodes), list(graph.edges)
    for name in isolate:
        stage, producer = f"{name}__in", preds[name][0]
        shape = port_shape(graph.nodes[name], "input")
        nodes[stage] = nir.Scale(scale=np.ones(shape or (1,)))
        edges = [(src, stage if (src, dst) == (producer, name) else dst) for src, dst in edges] + [(stage, name)]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=dict(graph.metadata))


def _lif_gains(graph, units, dt, fixed, preds) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Float, for the lava LIFs of the naive build: the input gain each one's producer applies last
    (producer -> gain), and the bias a lava Dense hands its LIF (LIF -> gain x bias)."""
    gains, biases = {}, {}
    if fixed:
        return gains, biases
    dense = {u.names[0] for u in units if u.kind == "dense"}
    for name in (u.names[0] for u in units if u.kind == "lif"):
        if len(preds[name]) != 1:
            raise SpikebertError(f"LIF {name!r} sums {preds[name]}: Lava's LIF applies its input gain to one "
                             "producer; insert a Scale(1) join before it")
        producer = preds[name][0]
        _, gains[producer], _ = population_constants(name, graph.nodes[name], dt)
        if producer in dense and isinstance(graph.nodes[producer], nir.Affine):
            biases[name] = gains[producer] * np.asarray(graph.nodes[producer].bias, float)
    return gains, biases


def _lava_lif(graph, name: str, *, batch: int, T: int, at: int, dt, fixed: bool, bias):
    from lava.proc.lif.process import LIFReset

    node = graph.nodes[name]
    shape = (batch, *np.shape(node.v_threshold))
    if batch == 1 and len(shape) == 2:
        shape = shape[1:]  # 1-D, as the lava Dense that may feed it
    common = dict(shape=shape, reset_interval=T, reset_offset=(1 + at) % T, name=name)
    if fixed:
        p = fixed_params(node)
        return LIFReset(du=int(p["du"]), dv=int(p["dv"]), vth=int(p["vth"]),
                        bias_mant=np.broadcast_to(np.asarray(p["bias_mant"], np.int32), shape).copy(),
                        bias_exp=np.full(shape, int(p["bias_exp"]), np.int32), **common)
    beta, _, vth = population_constants(name, node, dt)
    dv = 1.0 - beta
    if 1.0 - dv != beta:
        log.warning("LIF %s: beta=%r is not exactly 1 - dv in float64; Lava's decay differs by one ulp", name, beta)
    bias_mant = np.zeros(shape) if bias is None else np.broadcast_to(bias, shape).copy()
    return LIFReset(du=1.0, dv=dv, vth=vth, bias_mant=bias_mant, **common)


def _lava_dense(graph, name: str, *, gain: float, fixed: bool, graded: bool):
    from lava.proc.dense.process import Dense
    from lava.utils.weightutils import SignMode

    node = graph.nodes[name]
    bits = GRADED_BITS if graded or not fixed else 0
    if fixed:
        p = fixed_params(node)
        return Dense(weights=np.asarray(node.weight, dtype=np.int32), weight_exp=int(p["weight_exp"]),
                     num_weight_bits=int(p["num_weight_bits"]), sign_mode=SignMode(int(p["sign_mode"])),
                     num_message_bits=bits, name=name)
    return Dense(weights=gain * np.asarray(node.weight, dtype=np.float64), num_message_bits=bits, name=name)


def _exported(names: list[str], succ, steps: Schedule) -> str:
    """The one node of a group that nodes outside it read (same step or over a recurrent edge); the last
    node when nothing outside reads the group."""
    inside = set(names)
    exported = [n for n in names if any(s not in inside for s in succ[n])
                or any(u == n and v not in inside for u, v in steps.recurrent)]
    if len(exported) > 1:
        raise SpikebertError(f"nodes {exported} of one fused group are all read outside it; use fuse='none'")
    return exported[0] if exported else names[-1]


def _group_spec(graph, names: list[str], preds, gains, *, dt, T, latency, n_batches, masks, error_path,
                recurrent_preds=None, output: str | None = None) -> GroupSpec:
    inside = set(names)
    nodes = {n: graph.nodes[n] for n in names}
    internal = {n: [p for p in preds[n] if p in inside] for n in names}
    entries = {n for n in names if any(p not in inside for p in preds[n])}
    order = list(names)
    output = output or names[-1]
    if output in gains:  # this group feeds a lava LIF: apply its input gain last, as the reference does
        scale = f"{output}__gain"
        shape = port_shape(graph.nodes[output], "output")
        nodes[scale] = nir.Scale(scale=np.full(shape or (1,), gains[output]))
        internal[scale] = [output]
        order.append(scale)
        output = scale
    recorded = [n for n in names if isinstance(graph.nodes[n], SYNAPSE_TYPES)]
    looped = {n: [p for p in (recurrent_preds or {}).get(n, []) if p in inside] for n in names} if len(names) > 1 else {}
    return GroupSpec(nodes=nodes, order=order, internal_preds=internal, entries=entries, recorded=recorded, dt=dt,
                     time_steps=T, latency=latency, n_batches=n_batches, masks=masks, error_path=error_path,
                     recurrent_preds={n: ps for n, ps in looped.items() if ps}, output=output)


def _delay_group(NodeGroup, name: str, port, lag: int, graph, T, at, n_batches, masks, batch, groups, error_path):
    """A NodeGroup holding a NIR Delay of ``lag`` steps after ``name`` (branch alignment): a pure shift
    that keeps its history across sentence windows, since what it holds always belongs to the
    sentence its output window is in."""
    shape = _shape(graph, name, "output")
    node = nir.Delay(delay=np.full(shape, float(lag)))
    key = f"{name}__delay{lag}"
    spec = GroupSpec(nodes={key: node}, order=[key], internal_preds={key: []}, entries={key}, recorded=[], dt=1.0,
                     time_steps=T, latency=at, n_batches=n_batches, masks=masks, reset=False,
                     error_path=error_path)
    proc = NodeGroup(spec=spec, in_shape=(batch, *shape), out_shape=(batch, *shape), name=key)
    _connect(port, proc.s_in)
    groups[key] = proc
    return proc.a_out
