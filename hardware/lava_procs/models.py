"""ProcessModels of the custom Processes: float (``floating_pt``) and Loihi fixed point (``fixed_pt``).

A ``NodeGroup`` steps its nodes with the reference executor's own step functions
(``spikebert.hardware.reference.step_builder``: the float step, or the bit-exact fixed-point one for nodes
a quantised graph marks), so Lava and the reference executor cannot drift apart. The two models
differ only in their port types: Lava's fixed-point LIF and Dense exchange integers.
"""

from __future__ import annotations

import traceback

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from spikebert.contract.activity import NodeActivity
from spikebert.hardware import kernels
from spikebert.hardware.lava_procs.process import NodeGroup, ReadoutGroup, RecurrentDelay, TokenSpikeSource
from spikebert.hardware.reference import StepContext, step_builder


class reported:
    """Append the traceback of an exception to ``path`` before it propagates: lava-nc 0.10 hangs when a
    ProcessModel raises (the failed process waits on its ports), so the runner watches this file."""

    def __init__(self, path: str | None) -> None:
        self.path = path

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, value, tb) -> None:
        if kind is not None and self.path:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write("".join(traceback.format_exception(kind, value, tb)))


@implements(proc=TokenSpikeSource, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyTokenSpikeSourceModel(PyLoihiProcessModel):
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    spikes: np.ndarray = LavaPyType(np.ndarray, float)  # binary spikes, or a membrane student's embedding currents

    def run_spk(self) -> None:
        with reported(self.proc_params.get("error_path")):
            batch = min((self.time_step - 1) // self.proc_params["time_steps"], self.spikes.shape[0] - 1)
            self.s_out.send(self.spikes[batch].astype(float))


@implements(proc=TokenSpikeSource, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyTokenSpikeSourceModelFixed(PyTokenSpikeSourceModel):
    """Binary spikes, or the integer input currents of a quantised membrane-residual embedding (signed,
    24-bit messages), sent as int32."""

    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    spikes: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)

    def run_spk(self) -> None:
        with reported(self.proc_params.get("error_path")):
            batch = min((self.time_step - 1) // self.proc_params["time_steps"], self.spikes.shape[0] - 1)
            self.s_out.send(self.spikes[batch].astype(np.int32))


class _NodeGroupModel(PyLoihiProcessModel):
    stats: np.ndarray = LavaPyType(np.ndarray, float)

    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        spec = proc_params["spec"]
        self.spec = spec
        self.steps = {n: step_builder(spec.nodes[n])(n, spec.nodes[n], spec.dt) for n in spec.order}
        self.records = {n: NodeActivity() for n in spec.recorded}
        self.state = dict.fromkeys(spec.order)
        recurrent = getattr(spec, "recurrent_preds", {}) or {}
        self.recurrent = {n: ps for n, ps in recurrent.items() if ps}
        self.recurrent_sources = sorted({p for ps in self.recurrent.values() for p in ps})
        self.previous: dict = {}  # outputs of the recurrent sources at the last step of this window

    def run_spk(self) -> None:
        with reported(self.spec.error_path):
            self.step()

    def step(self) -> None:
        spec = self.spec
        x_in = self.s_in.recv()
        window = self.time_step - 1 - spec.latency  # steps since this group's first sentence arrived
        if spec.reset and window % spec.time_steps == 0:
            self.state = dict.fromkeys(spec.order)  # a new batch of sentences starts: all state to 0
            self.previous = {}
        batch = window // spec.time_steps
        live = 0 <= batch < spec.n_batches
        mask = spec.masks[min(max(batch, 0), spec.n_batches - 1)] if spec.masks is not None else None
        out = {}
        for name in spec.order:
            parts = [out[p] for p in spec.internal_preds[name]] + ([x_in] if name in spec.entries else [])
            parts += [self.previous[p] for p in self.recurrent.get(name, ()) if p in self.previous]
            if not parts:  # step 0 of a node fed by recurrent edges only: their zero
                parts = [np.zeros_like(out[self.recurrent[name][0]]) if self.recurrent[name][0] in out else
                         np.zeros((x_in.shape[0], *np.shape(spec.nodes[self.recurrent[name][0]].output_type["output"])))]
            x = parts[0] if len(parts) == 1 else sum(parts[1:], parts[0])
            record = self.records.get(name) if live else None
            if record is not None:
                nnz, abs_sum, elements = kernels.input_stats(x, mask)
                record.add(NodeActivity(input_nonzeros=nnz, input_abs_sum=abs_sum, input_elements=elements))
            ctx = StepContext(mask=mask, activity=record if record is not None else NodeActivity())
            out[name], self.state[name] = self.steps[name](x, self.state[name], ctx)
        if self.recurrent_sources:
            self.previous = {p: out[p] for p in self.recurrent_sources}
        if live:
            for i, name in enumerate(spec.recorded):
                r = self.records[name]
                self.stats[i] = (r.input_nonzeros, r.input_abs_sum, r.input_elements, r.qk_accumulates,
                                 r.av_accumulates)
        self.a_out.send(self.cast(out[spec.sends]))

    def cast(self, y: np.ndarray) -> np.ndarray:
        return y


@implements(proc=NodeGroup, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyNodeGroupModelFloat(_NodeGroupModel):
    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)


@implements(proc=NodeGroup, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyNodeGroupModelFixed(_NodeGroupModel):
    """Integer ports, as Lava's fixed-point LIF and Dense (a channel carries its sender's type)."""

    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)

    def cast(self, y: np.ndarray) -> np.ndarray:
        if not np.array_equal(y, np.rint(y)):
            raise TypeError(f"{self.spec.sends!r} sends non-integers in fixed point; only the readout may")
        return y.astype(np.int32)


@implements(proc=ReadoutGroup, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt", "fixed_pt")
class PyReadoutGroupModel(_NodeGroupModel):
    """Float64 output in either mode (a channel carries its sender's type, so integer inputs arrive as such)."""

    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)


class _RecurrentDelayModel(PyLoihiProcessModel):
    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        self.buffer = None

    def run_spk(self) -> None:
        window = self.time_step - 1 - self.proc_params["latency"]
        if self.buffer is None or window % self.proc_params["time_steps"] == 0:
            self.buffer = np.zeros(self.a_out.shape, dtype=self.a_out._dtype if hasattr(self.a_out, "_dtype") else float)
        self.a_out.send(self.buffer)  # first: the loop's other processes wait on it
        self.buffer = self.s_in.recv()


@implements(proc=RecurrentDelay, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyRecurrentDelayModelFloat(_RecurrentDelayModel):
    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)


@implements(proc=RecurrentDelay, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyRecurrentDelayModelFixed(_RecurrentDelayModel):
    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)


# --- lava-nc's Conv process, 1 x 1 kernels: CPU models for the deployable build -----------------------
# lava-nc's own Conv models loop over every (output, input) channel pair with scipy (C_out x C_in
# convolve2d calls per step); a 1 x 1 kernel is one matrix product. Same process, ports and Vars, same
# semantics: the value received at step t is sent at step t + 1, binary input unless num_message_bits,
# 24-bit clamp in fixed point. Selected per process instance (exception_proc_model_map).

from lava.proc.conv import utils as _conv_utils  # noqa: E402
from lava.proc.conv.models import PyConvModelFixed, PyConvModelFloat  # noqa: E402


class _Conv1x1:
    def run_spk(self) -> None:
        self.a_out.send(self.a_buf)
        s = self.s_in.recv()
        if self.num_message_bits.item() == 0:
            s = s.astype(bool)
        w = np.asarray(self.weight[:, 0, 0, :], dtype=np.float64)  # (C_out, C_in)
        x = np.asarray(s, dtype=np.float64).reshape(-1, w.shape[1])
        self.a_buf = self.finish((x @ w.T).reshape(*s.shape[:-1], w.shape[0]))

    def finish(self, a: np.ndarray) -> np.ndarray:
        return a


class PyConv1x1ModelFloat(_Conv1x1, PyConvModelFloat):
    """lava-nc ``Conv`` (1 x 1 kernel, stride 1, no padding, one group), floating point."""


class PyConv1x1ModelFixed(_Conv1x1, PyConvModelFixed):
    """lava-nc ``Conv`` (1 x 1 kernel, stride 1, no padding, one group), fixed point: integer weights (the
    effective ones, mantissa << weight_exp), exact integer sums (float64 products of integers below 2^53),
    clamped to 24 bits as lava-nc's fixed model does."""

    def finish(self, a: np.ndarray) -> np.ndarray:
        return _conv_utils.signed_clamp(np.rint(a).astype(np.int64), bits=24).astype(np.int32)
