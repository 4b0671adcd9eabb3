"""Graph utilities of the NIR contract: topological order, predecessors, per-sample port shapes.

NumPy and NIR only: every layer above (hardware, energy, converters, training) reads graphs with these.
"""

from __future__ import annotations

import nir
import numpy as np

from spikebert.contract.errors import SpikebertError
from spikebert.contract.extension import SBSpikeAttention, SBSpikeDrivenAttention, SBTokenMean

# nodes with synaptic weights: the rows of an activity record
SYNAPSE_TYPES = (nir.Conv1d, nir.Affine, nir.Linear, SBSpikeAttention, SBSpikeDrivenAttention, SBTokenMean)


def is_join(node: nir.NIRNode) -> bool:
    """A residual join: a ``Scale`` of ones, which only sums its inputs (NIR fan-in)."""
    return isinstance(node, nir.Scale) and bool(np.all(np.asarray(node.scale) == 1))


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
        raise SpikebertError(f"graph has a cycle through {sorted(set(graph.nodes) - set(order))}; "
                         "recurrent graphs are not supported by this executor yet")
    return order


def predecessors(graph: nir.NIRGraph) -> dict[str, list[str]]:
    preds: dict[str, list[str]] = {n: [] for n in graph.nodes}
    for src, dst in graph.edges:
        for end in (src, dst):
            if end not in graph.nodes:
                raise SpikebertError(f"edge ({src!r}, {dst!r}) names node {end!r}, which the graph does not have")
        preds[dst].append(src)
    return preds


def port_shape(node: nir.NIRNode, port: str) -> tuple[int, ...] | None:
    """Per-sample shape of a node's ``input`` or ``output`` port; None where NIR leaves it undefined."""
    if port == "input" and isinstance(node, nir.Conv1d) and node.input_shape is not None:
        # NIR 1.0.8 writes (C_in / groups, N); the input has C_in channels
        return (int(node.weight.shape[1] * node.groups), int(node.input_shape))
    types = node.input_type if port == "input" else node.output_type
    shape = (types or {}).get(port)
    if shape is None:
        return None
    shape = np.asarray(shape)
    if shape.size == 0 or shape.dtype == object:  # scalar parameters or an uninferred type: broadcast
        return None
    return tuple(int(s) for s in shape)


def check_edge_shapes(graph: nir.NIRGraph) -> None:
    """Every edge carries the shape its destination expects, where both ends define one."""
    for src, dst in graph.edges:
        out, inp = port_shape(graph.nodes[src], "output"), port_shape(graph.nodes[dst], "input")
        if out is not None and inp is not None and out != inp:
            raise SpikebertError(
                f"shape mismatch on edge ({src!r}, {dst!r}): {type(graph.nodes[src]).__name__} {src!r} outputs "
                f"{out} per sample, but {type(graph.nodes[dst]).__name__} {dst!r} takes {inp}; fix the parameter "
                "shapes of one of them, or insert a Flatten node between them"
            )
