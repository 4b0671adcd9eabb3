"""Floating-point ProcessModels of the custom Processes; the maths is ``hardware.kernels``."""

from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from hardware import kernels
from hardware.lava_procs.process import (
    BatchDense,
    LayerNorm,
    SpikeAttention,
    TokenDense,
    TokenMean,
    TokenSpikeSource,
)


@implements(proc=TokenSpikeSource, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyTokenSpikeSourceModel(PyLoihiProcessModel):
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    mask_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    spikes: np.ndarray = LavaPyType(np.ndarray, np.uint8)
    mask: np.ndarray = LavaPyType(np.ndarray, np.uint8)

    def run_spk(self) -> None:
        batch = min((self.time_step - 1) // self.proc_params["time_steps"], self.spikes.shape[0] - 1)
        self.s_out.send(self.spikes[batch].astype(float))
        self.mask_out.send(self.mask[batch].astype(float))


class _SynapseModel(PyLoihiProcessModel):
    """Template: receive, compute, record input statistics, send ``out_gain * y`` in the same step."""

    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    mask_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    out_gain: np.ndarray = LavaPyType(np.ndarray, float)
    stats: np.ndarray = LavaPyType(np.ndarray, float)

    def run_spk(self) -> None:
        x = self.s_in.recv()
        mask = self.mask_in.recv().astype(bool)
        self.stats[:3] += kernels.input_stats(x, mask)
        y = self.compute(x, mask)
        self.a_out.send(y * self.out_gain[0])

    def compute(self, x: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
        raise NotImplementedError


class _WeightedSynapseModel(_SynapseModel):
    """Template for Processes that carry ``weight`` and ``bias`` Vars."""

    weight: np.ndarray = LavaPyType(np.ndarray, float)
    bias: np.ndarray = LavaPyType(np.ndarray, float)


@implements(proc=TokenDense, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyTokenDenseModel(_WeightedSynapseModel):
    def compute(self, x, mask):
        return kernels.token_linear(x, self.weight, self.bias)


@implements(proc=BatchDense, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyBatchDenseModel(_WeightedSynapseModel):
    def compute(self, x, mask):
        return kernels.affine(x, self.weight, self.bias)


@implements(proc=LayerNorm, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyLayerNormModel(_WeightedSynapseModel):
    def compute(self, x, mask):
        return kernels.layer_norm(x, self.weight, self.bias, groups=self.proc_params["groups"],
                                  eps=self.proc_params["eps"])


@implements(proc=SpikeAttention, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PySpikeAttentionModel(_SynapseModel):
    def compute(self, x, mask):
        p = self.proc_params
        y, a, v = kernels.spike_attention(x, dim=p["dim"], heads=p["heads"], scale=p["scale"],
                                          key_mask=mask if p["mask_padding"] else None)
        self.stats[3:5] += kernels.attention_stats(a, v, mask)
        return y


@implements(proc=TokenMean, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyTokenMeanModel(_SynapseModel):
    def compute(self, x, mask):
        return kernels.token_mean(x, mask if self.proc_params["mask_padding"] else None)
