"""Teacher operations counted from its ONNX graph, with the shapes of an actual run.

Every MatMul and Gemm node is counted at the shapes onnxruntime gives its operands when the graph
runs one sample of n tokens (all real: attention mask 1). Static shape inference cannot be used on
the Hugging Face export, whose reshapes are computed from ``Shape`` nodes at run time.

    MatMul A (..., m, k) @ B (..., k, p):  MACs = prod(batch dims) m k p,  reads = numel(B)
    Gemm   A' (m, k) @ B' (k, p):          MACs = m k p,                 reads = numel(B)

B is the stationary operand: a weight (read once per sample), or K and V in attention. Bias
additions, and everything that is not a matrix product (embedding Gather, LayerNorm, softmax,
GELU), are not counted, as in :func:`spikebert.energy.counting.teacher_counts`. Needs ``onnx`` and
``onnxruntime``; no torch.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from spikebert.contract.errors import SpikebertError
from spikebert.energy.counting import LayerCount, TeacherCount, mean_rows

COUNTED_OPS = ("MatMul", "Gemm")
FIRST_TOKEN_ID = 0  # any valid id: the shapes do not depend on the token values


@dataclasses.dataclass(frozen=True)
class ProductCount:
    """One matrix-product node at one length: operand shapes, MACs, stationary-operand reads."""

    node: str
    op_type: str
    a_shape: tuple[int, ...]
    b_shape: tuple[int, ...]
    macs: int
    weight_reads: int
    has_bias: bool = False  # Gemm with C, or MatMul whose output an Add with a constant takes
    inner: int = 0  # k: MACs per output element
    outer: int = 0  # p: output features per row of A
    stationary: bool = True  # B is a constant (a weight); False: both operands computed (attention)


def _require(module: str):
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(f"counting the teacher from ONNX needs the package {module!r}: pip install {module}") from err


def product_macs(op_type: str, a: tuple[int, ...], b: tuple[int, ...], *, trans_a: bool = False,
                 trans_b: bool = False) -> int:
    """MACs of one MatMul (numpy broadcasting rules, 1-D operands promoted) or Gemm."""
    if op_type == "Gemm":
        (m, k), (k2, p) = (a[::-1] if trans_a else a), (b[::-1] if trans_b else b)
        batch = 1
    elif op_type == "MatMul":
        a2, b2 = ((1, *a) if len(a) == 1 else a), ((*b, 1) if len(b) == 1 else b)
        (m, k), (k2, p) = a2[-2:], b2[-2:]
        batch = int(np.prod(np.broadcast_shapes(a2[:-2], b2[:-2]), dtype=np.int64))
    else:
        raise SpikebertError(f"product_macs counts MatMul and Gemm, not {op_type!r}")
    if k != k2:
        raise SpikebertError(f"{op_type} operands {a} and {b} do not agree on the inner dimension")
    return batch * m * k * p


def count_products(path: str | Path, length: int) -> list[ProductCount]:
    """Every MatMul/Gemm of the graph at ``path`` for one sample of ``length`` tokens, in graph order."""
    onnx, ort = _require("onnx"), _require("onnxruntime")
    if length < 1:
        raise SpikebertError(f"length={length}: a sample has at least one token")
    model = onnx.load(str(path))
    graph = model.graph
    constants = {i.name: tuple(int(d) for d in i.dims) for i in graph.initializer}
    nodes = [n for n in graph.node if n.op_type in COUNTED_OPS]
    bias_added = {n.input[i] for n in graph.node if n.op_type == "Add" and len(n.input) == 2
                  for i in (0, 1) if n.input[1 - i] in constants}
    if not nodes:
        raise SpikebertError(f"{path} has no MatMul or Gemm node: not a teacher graph to count")
    # the run returns every non-constant operand, so its shape is read from the actual tensor
    wanted = sorted({x for n in nodes for x in n.input[:2] if x not in constants})
    known = {o.name for o in graph.output}
    graph.output.extend(onnx.ValueInfoProto(name=x) for x in wanted if x not in known)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # the graph as exported
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feed = {}
    for i in session.get_inputs():
        if i.name == "attention_mask":
            feed[i.name] = np.ones((1, length), dtype=np.int64)
        elif i.name in ("input_ids", "token_type_ids"):
            feed[i.name] = np.full((1, length), FIRST_TOKEN_ID, dtype=np.int64)
        else:
            raise SpikebertError(f"{path} takes an input {i.name!r}; a teacher graph takes input_ids, attention_mask "
                             "and token_type_ids (spikebert.converters.onnx_export.export_teacher_onnx)")
    names = [o.name for o in session.get_outputs()]
    shapes = dict(zip(names, (tuple(v.shape) for v in session.run(None, feed))))
    shapes.update(constants)
    rows = []
    for n in nodes:
        a, b = shapes[n.input[0]], shapes[n.input[1]]
        attrs = {x.name: x.i for x in n.attribute}
        macs = product_macs(n.op_type, a, b, trans_a=bool(attrs.get("transA", 0)),
                            trans_b=bool(attrs.get("transB", 0)))
        bias = (n.op_type == "Gemm" and len(n.input) > 2 and bool(n.input[2])) or n.output[0] in bias_added
        b2 = (b[::-1] if attrs.get("transB", 0) else b) if n.op_type == "Gemm" else ((*b, 1) if len(b) == 1 else b)
        rows.append(ProductCount(node=n.name or n.output[0], op_type=n.op_type, a_shape=a, b_shape=b, macs=macs,
                                 weight_reads=int(np.prod(b, dtype=np.int64)), has_bias=bias,
                                 stationary=n.input[1] in constants, inner=int(b2[-2]), outer=int(b2[-1])))
    return rows


def product_row(p: ProductCount) -> LayerCount:
    """One product as an energy row (:mod:`spikebert.energy.counting`): a weight product is ``affine``,
    a product of two computed operands (attention) ``attention``; real inputs, counted as MACs."""
    inputs = float(np.prod(p.a_shape, dtype=np.int64))
    fan_in, fan_out = float(p.inner), float(p.outer)
    outputs = p.macs / fan_in
    bias = fan_out if p.has_bias else 0.0
    return LayerCount(p.node, "affine" if p.stationary else "attention", "real", 1.0, float(p.macs), float(p.macs),
                      0.0, 0.0, weight_reads=float(p.weight_reads), input_elements=inputs, fan_in=fan_in,
                      fan_out=fan_out, output_elements=outputs, params=float(p.weight_reads) + bias,
                      has_bias=p.has_bias)


def onnx_teacher_counts(path: str | Path, lengths: Iterable[int]) -> TeacherCount:
    """Mean MACs and weight reads per sample of the teacher graph at ``path`` over samples of the
    given token lengths (one run per distinct length)."""
    histogram = Counter(int(n) for n in lengths)
    if not histogram:
        raise SpikebertError("onnx_teacher_counts needs at least one sequence length")
    macs = reads = 0
    runs = []
    for length, times in histogram.items():
        rows = count_products(path, length)
        macs += times * sum(r.macs for r in rows)
        reads += times * sum(r.weight_reads for r in rows)
        runs.append([product_row(r) for r in rows])
    samples = sum(histogram.values())
    return TeacherCount(macs=macs / samples, weight_reads=reads / samples, method=f"onnx ({Path(path).name})",
                        layers=tuple(mean_rows(runs, weights=list(histogram.values()))))
