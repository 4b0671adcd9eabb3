"""Lava Processes for what lava-nc lacks: a host-side token spike source, and ``NodeGroup``, a
piece of a NIR graph (one node, or a fused block of nodes) stepped by the reference kernels.

Every Process works on a batch of B sentences at once (a leading batch axis on every port), which
keeps the semantics (sentences never interact) and divides the per-step messaging cost by B.
"""

from __future__ import annotations

import numpy as np
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var

N_STATS = 5  # per recorded node: input nonzeros, input |x| sum, input elements, QK^T and AV accumulates


class TokenSpikeSource(AbstractProcess):
    """Streams host-encoded token spikes: batch k is sent, unchanged, during steps kT+1 .. kT+T
    (the last batch repeats after that, while deeper processes finish).

    spikes: (n_batches, B, D, L): binary, or a membrane-residual student's embedding currents (real in
    floating point; integers at the stream's scale in fixed point).
    """

    def __init__(self, *, spikes: np.ndarray, time_steps: int, error_path: str | None = None,
                 name: str | None = None) -> None:
        super().__init__(time_steps=time_steps, error_path=error_path, name=name)
        _, B, D, L = spikes.shape
        self.spikes = Var(shape=spikes.shape, init=np.asarray(spikes, dtype=np.float64))
        self.s_out = OutPort(shape=(B, D, L))


class NodeGroup(AbstractProcess):
    """NIR nodes run in one Lava process, with zero delay: each step receives the group's input
    (the sum of every OutPort connected to ``s_in``), steps the nodes in topological order and
    sends the last node's output.

    ``spec`` (a ``spikebert.hardware.lava_network.GroupSpec``) names the nodes, their internal edges, which
    nodes read the external input, the batch, T, the group's latency (the step at which its first
    sentence arrives, minus one) and the token masks; state resets at the start of every sentence
    window. ``stats`` accumulates per recorded node the activity counts, over real tokens and
    real sentences only.
    """

    def __init__(self, *, spec, in_shape: tuple[int, ...], out_shape: tuple[int, ...], name: str | None = None) -> None:
        super().__init__(spec=spec, name=name)
        self.s_in = InPort(shape=in_shape)
        self.a_out = OutPort(shape=out_shape)
        rows = max(len(spec.recorded), 1)
        self.stats = Var(shape=(rows, N_STATS), init=np.zeros((rows, N_STATS)))


class ReadoutGroup(NodeGroup):
    """The graph's last group when it ends in float nodes (a quantised graph's host-side readout):
    sends float64 in fixed-point runs too."""


class RecurrentDelay(AbstractProcess):
    """A recurrent NIR edge between two processes: sends, at every step, what it received at the step
    before (zero at the first step of each sample window), *then* receives; sending first is what
    lets a loop of zero-delay processes run without deadlock, as lava-nc's Dense does. Unlike a
    Dense (which would carry the last step of the previous sample into the next one), it clears at
    every window: ``time_steps`` (T) and ``latency`` (the window's offset at the receiving node).
    """

    def __init__(self, *, shape: tuple[int, ...], time_steps: int, latency: int, name: str | None = None) -> None:
        super().__init__(time_steps=time_steps, latency=latency, name=name)
        self.s_in = InPort(shape=shape)
        self.a_out = OutPort(shape=shape)
