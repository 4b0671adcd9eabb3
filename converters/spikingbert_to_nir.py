"""The part of a SpikingBERT student that NIR and the SB extension can express, as NIR fragments.

A SpikingBERT student has no whole NIR graph (``spikebert.converters.torch_to_nir.spikingbert_gaps``): its
attention is a softmax over a real-valued query, its intermediate current passes a GELU, and
LayerNorm acts on three of its currents per layer. Its neuron, IF with subtraction reset firing at
``v >= theta``, is expressible: the SB extension's ``SBIF`` node (docs/nir-extension.md).

What is left for a neuromorphic core is, per layer, the K and V populations and their synapses
from the layer's input spikes, ``s_K = IF(W_K s + b_K)`` and ``s_V = IF(W_V s + b_V)``: the only
populations whose current is an affine map of spikes alone. Each layer becomes one graph

    Input (D, L) spikes of the layer's input population, one frame per step
      -> Conv1d [W_K; W_V] (2D x D, kernel 1) -> SBIF (2D, L) -> Output (2D, L) = [s_K; s_V]

and the host does the rest between fragments (the metadata ``host`` lists it): the embedding
population (LayerNorm on the embedding), Q, the softmax attention, the self-output, intermediate
and output populations, the head. The query synapses ``W_Q s`` also take spikes but feed the
softmax only, so they stay with it on the host.

Tensor layout as the rest of the extension: per sample (C, L), L = the student's ``max_len``.
"""

from __future__ import annotations

import nir
import numpy as np
import torch

from spikebert.contract.errors import UnsupportedError
from spikebert.contract.extension import EXTENSION_VERSION, SBIF

FRAGMENT_POPULATIONS = ("key", "value")  # per layer, in the fragment's output order


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().double().numpy()


def fragment_name(layer: int) -> str:
    return f"layer{layer}.key_value"


def host_operations(cfg) -> list[str]:
    """What runs on the host around the fragments, in the order a step needs it."""
    head = "ReLU of the [CLS] rate" if cfg.pooling == "cls" else "the mean rate over real tokens"
    return [
        "embedding population: IF(LayerNorm(word + position embedding)), a constant current; its spikes "
        "drive layer 0's fragment",
        "per layer: Q = W_Q s + b_Q; A = Q s_K^T / sqrt(d_h) + mask; s_att = IF(softmax(A) s_V) "
        "(softmax over a real-valued query)",
        "per layer: s_so = IF(LayerNorm(W_O s_att + b_O + s)); s_I = IF(GELU(W_1 s_so + b_1)); "
        "s_out = IF(LayerNorm(W_2 s_I + b_2 + s_so)); s_out drives the next layer's fragment",
        f"head: the classifier on {head} of the last output population, rates averaged over the T steps",
    ]


def export_fragments(model, *, metadata: dict | None = None) -> dict[str, nir.NIRGraph]:
    """``{fragment name: graph}`` for every layer of a SpikingBERT student (see the module doc)."""
    from spikebert.spikingbert import SpikingBERT

    if not isinstance(model, SpikingBERT):
        raise UnsupportedError(f"export_fragments takes a SpikingBERT student, got {type(model).__name__}; SpikeBERT "
                        "students export whole (spikebert.converters.torch_to_nir.export_student)")
    cfg = model.cfg
    D, L = cfg.dim, cfg.max_len
    graphs = {}
    for i, layer in enumerate(model.layers):
        name = fragment_name(i)
        weight = np.concatenate([_np(layer.key.weight), _np(layer.value.weight)])[:, :, None]  # (2D, D, 1)
        bias = np.concatenate([_np(layer.key.bias), _np(layer.value.bias)])
        shape = (2 * D, L)
        nodes = {
            "input": nir.Input(input_type={"input": np.array([D, L])}),
            name: nir.Conv1d(input_shape=L, weight=weight, stride=1, padding=0, dilation=1, groups=1, bias=bias),
            f"{name}.neurons": SBIF(r=np.ones(shape), v_threshold=np.full(shape, float(cfg.threshold)),
                                    leak=np.full(shape, float(cfg.leak))),
            "output": nir.Output(output_type={"output": np.array(shape)}),
        }
        edges = [("input", name), (name, f"{name}.neurons"), (f"{name}.neurons", "output")]
        source = "embedding.population" if i == 0 else f"layer{i - 1}.output"
        meta = {
            "spikebert_extension": EXTENSION_VERSION,
            "producer": "spikebert",
            "model": "spikingbert",
            "fragment": name,
            "layer": i,
            "dt": 1.0,
            "discretisation": "discrete steps (SBIF has no time constant)",
            "time_steps": cfg.time_steps,
            "input": f"spikes of {source} (D, L) at every step; padding positions included",
            "output": f"[s_K; s_V] spikes of layer{i}.key and layer{i}.value (2D, L) at every step",
            "spike_condition": "v >= v_threshold",
            "reset": "subtract v_threshold, same step",
            "host": host_operations(cfg),
            **(metadata or {}),
        }
        graphs[name] = nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta)
    return graphs
