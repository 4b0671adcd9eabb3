"""Spiking neurons for the student: one pure LIF step, one time loop, one fused BPTT for training.

The official SpikeBERT uses SpikingJelly's ``LIFNode(tau, decay_input=True, v_reset=0)``:

    V[t] = (1 - 1/tau) * V[t-1] + X[t] / tau          (eq. N1, charge)
    S[t] = H(V[t] - theta)                             (eq. N2, fire; H(x) = 1 for x > 0)
    V[t] = 0 where S[t] = 1                            (eq. N3, hard reset to zero)

In the backward pass dH/dx is replaced by the ATan surrogate of SpikingJelly and snnTorch,

    H'(x) ~ alpha / (2 (1 + (pi/2 alpha x)^2))        (eq. N4, snnTorch ``surrogate.atan(alpha)``)

and the reset of eq. N3 is detached: no gradient flows through S[t] into V[t+1].

Each step hands the next the membrane *before* its reset, U[t], and the spikes S[t]; the reset of
step t-1 is applied at the start of step t. Eqs. N1-N3 then read, with ``beta = 1 - dt/tau``,
``gain = dt/tau``:

    U[t] = beta * ((1 - S[t-1]) * U[t-1]) + gain * X[t],    S[t] = H(U[t] - theta)

which is exactly snnTorch's ``Leaky(beta, threshold, reset_mechanism="zero")`` (reset_delay) driven
with ``gain * X``: the tests hold this module to snnTorch spike for spike and gradient for gradient,
in float32 and float64 (snnTorch given beta and theta in float64; by default it stores them as
float32 tensors, which rounds beta = 0.9 for tau = 10).
It is also NIR's ``LIF`` under forward Euler with ``dt = 1``, ``r = 1``. One deviation: SpikingJelly
fires at ``V >= theta``; snnTorch, NIR and Lava at ``V > theta``. We use the strict form everywhere
so every backend agrees bit for bit.

:func:`lif_step` is the maths; :func:`lif_scan` is the time loop, written once. Training runs the
loop inside one autograd node (:class:`FusedLIF`: forward without a graph, hand-written BPTT
backward) instead of a dozen autograd nodes per step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from spikebert.contract.errors import SpikebertError

DT = 1.0  # one time step of the discrete-time network; recorded in every exported NIR graph


def lif_coefficients(tau: float, dt: float = DT) -> tuple[float, float]:
    """(beta, input gain) of eq. N1 for forward-Euler discretisation with step ``dt``."""
    return 1.0 - dt / tau, dt / tau


def membrane_dtype(dtype: torch.dtype) -> torch.dtype:
    """Membranes integrate in float32 at least: half-precision inputs (autocast) are upcast."""
    return torch.promote_types(dtype, torch.float32)


def heaviside(x: torch.Tensor) -> torch.Tensor:
    """Eq. N2 without a gradient: 1 where x > 0, else 0, in x's dtype.

    Written with a floating-point ``out``: on CPU, ``(x > 0).to(dtype)`` goes through a bool tensor
    and costs about ten times as much. ONNX export cannot translate ``out=``: there, the bool form.
    """
    if torch.onnx.is_in_onnx_export():
        return (x > 0).to(x.dtype)
    return torch.gt(x, 0, out=torch.empty_like(x))


def atan_surrogate_grad(x: torch.Tensor, alpha: float) -> torch.Tensor:
    """Eq. N4: alpha / 2 / (1 + (pi/2 alpha x)^2).

    The same operations in the same order as snnTorch's ``ATan.backward`` (``a / t`` is
    ``t.reciprocal() * a`` in PyTorch), so the two agree to the last bit; in place after the first.
    """
    return (math.pi / 2 * alpha * x).pow_(2).add_(1).reciprocal_().mul_(alpha / 2)


class ATanHeaviside(torch.autograd.Function):
    """z = H(x) (eq. N2) forward, eq. N4 backward; keeps x's dtype (snnTorch's returns float32)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, alpha: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.alpha = alpha
        return heaviside(x)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_z: torch.Tensor):
        (x,) = ctx.saved_tensors
        return atan_surrogate_grad(x, ctx.alpha).mul_(grad_z), None


class LIFState(NamedTuple):
    """What one step hands the next: U[t-1], the membrane before its reset, and the spikes S[t-1]."""

    u: torch.Tensor
    s: torch.Tensor


def lif_step(
    x_t: torch.Tensor,
    state: LIFState,
    *,
    beta: float,
    gain: float,
    threshold: float,
    spike: Callable[[torch.Tensor], torch.Tensor] = heaviside,
) -> tuple[torch.Tensor, LIFState]:
    """One step of eqs. N1-N3: (X[t], state of t-1) -> (S[t], state of t).

    ``spike`` is H applied to U - theta: :func:`heaviside`, or an autograd function with a surrogate.
    The reset uses S[t-1] detached: no gradient flows through it.
    """
    u = beta * ((1 - state.s.detach()) * state.u) + gain * x_t  # eq. N3 of step t-1, then eq. N1
    s = spike(u - threshold)  # eq. N2
    return s, LIFState(u, s)


def lif_scan(
    x: torch.Tensor,
    *,
    beta: float,
    gain: float,
    threshold: float,
    spike: Callable[[torch.Tensor], torch.Tensor] = heaviside,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The time loop: run :func:`lif_step` from rest over x (T, ...) -> (spikes S, membranes U), both (T, ...)."""
    rest = torch.zeros_like(x[0])
    state = LIFState(u=rest, s=rest)
    spikes, membranes = [], []
    for x_t in x:
        z, state = lif_step(x_t, state, beta=beta, gain=gain, threshold=threshold, spike=spike)
        spikes.append(z)
        membranes.append(state.u)
    return torch.stack(spikes), torch.stack(membranes)


class FusedLIF(torch.autograd.Function):
    """:func:`lif_scan` over all T steps as a single autograd node.

    Forward runs the loop without a graph and keeps the membranes U and the spikes S, (T, ...).
    Backward is BPTT through eqs. N1-N4 with the reset detached, from the last step to the first:

        dL/dU[t] = dL/dS[t] * H'(U[t] - theta) + beta * (1 - S[t]) * dL/dU[t+1]
        dL/dX[t] = gain * dL/dU[t]

    Membranes are float32 for half-precision inputs; spikes and gradients come back in x's dtype.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, beta: float, gain: float, threshold: float, alpha: float) -> torch.Tensor:
        spikes, membranes = lif_scan(x.to(membrane_dtype(x.dtype)), beta=beta, gain=gain, threshold=threshold)
        spikes = spikes.to(x.dtype)
        ctx.save_for_backward(membranes, spikes)
        ctx.beta, ctx.gain, ctx.threshold, ctx.alpha = beta, gain, threshold, alpha
        return spikes

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_spikes: torch.Tensor):
        u, spikes = ctx.saved_tensors  # (T, ...) each
        # dL/dU in place: the spike term of every step at once, then the recurrence, last step first.
        # Products in snnTorch's order ((g * beta) * (1 - S)), so its gradients agree to the last bit.
        grad_u = atan_surrogate_grad(u - ctx.threshold, ctx.alpha).mul_(grad_spikes)
        for t in range(u.shape[0] - 2, -1, -1):
            grad_u[t] += grad_u[t + 1] * ctx.beta * (1 - spikes[t])
        return grad_u.mul_(ctx.gain).to(grad_spikes.dtype), None, None, None, None


NEURONS = ("leaky", "leaky-subtract", "synaptic")
"""snnTorch neurons a student can use (``StudentConfig.neuron``): ``leaky`` = ``snn.Leaky(reset_mechanism="zero")``
(the paper's LIF; NIR ``LIF``, Lava ``LIF``), ``leaky-subtract`` = ``snn.Leaky(reset_mechanism="subtract")``,
``synaptic`` = ``snn.Synaptic(alpha=beta, reset_mechanism="zero")`` (a current-based LIF). Only ``leaky`` has
a NIR/Lava form here: NIR 1.0.8's LIF resets to v_reset, and the exporter maps no Synaptic."""


def snntorch_neuron(kind: str, *, beta: float, threshold: float, surrogate_alpha: float) -> nn.Module:
    """The snnTorch module of ``kind`` (see :data:`NEURONS`) with the ATan surrogate (eq. N4)."""
    import snntorch as snn
    from snntorch import surrogate

    grad = surrogate.atan(alpha=surrogate_alpha)
    if kind == "leaky":
        return snn.Leaky(beta=beta, threshold=threshold, spike_grad=grad, reset_mechanism="zero")
    if kind == "leaky-subtract":
        return snn.Leaky(beta=beta, threshold=threshold, spike_grad=grad, reset_mechanism="subtract")
    if kind == "synaptic":
        return snn.Synaptic(alpha=beta, beta=beta, threshold=threshold, spike_grad=grad, reset_mechanism="zero")
    raise SpikebertError(f"unknown neuron {kind!r}; snnTorch neurons here: {NEURONS}")


class LIF(nn.Module):
    """A population of spiking neurons run over the leading time axis: an snnTorch neuron (``neuron``,
    default ``snn.Leaky`` with reset to zero, eqs. N1-N4) driven with ``input_gain * x``.

    Parameters: ``tau`` membrane time constant in steps, ``threshold`` firing threshold,
    ``surrogate_alpha`` slope of the ATan surrogate gradient (eq. N4), ``neuron`` the snnTorch kind.

    Fast path: for ``snn.Leaky`` with reset to zero (the default) the time loop runs as one fused
    autograd node (:class:`FusedLIF`) with spikes and gradients identical to snnTorch's own loop
    (tests/test_neurons.py); ``fused=False`` runs snnTorch's loop instead. Other neurons always run
    snnTorch's loop.
    """

    def __init__(self, *, tau: float, threshold: float, surrogate_alpha: float, neuron: str = "leaky",
                 fused: bool = True) -> None:
        super().__init__()
        self.tau = float(tau)
        self.threshold = float(threshold)
        self.surrogate_alpha = float(surrogate_alpha)
        self.kind = neuron
        self.beta, self.input_gain = lif_coefficients(self.tau)
        self.neuron = snntorch_neuron(neuron, beta=self.beta, threshold=self.threshold,
                                      surrogate_alpha=self.surrogate_alpha)
        for name, buffer in list(self.neuron.named_buffers(recurse=False)):  # all derived from the config: not
            self.neuron.register_buffer(name, buffer, persistent=False)  # saved, checkpoints keep their keys
        self.fused = fused
        self.register_load_state_dict_pre_hook(_snntorch_buffers_from_config)

    @property
    def uses_fast_path(self) -> bool:
        return self.fused and self.kind == "leaky"

    @property
    def nir_exact(self) -> bool:
        """Whether NIR's LIF (and Lava's) computes exactly this neuron."""
        return self.kind == "leaky"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (T, ...) input currents -> (T, ...) binary spikes in x's dtype."""
        if self.uses_fast_path:
            if torch.onnx.is_in_onnx_export():  # the exporter cannot trace a custom autograd Function: same loop
                spikes, _ = lif_scan(x.to(membrane_dtype(x.dtype)), beta=self.beta, gain=self.input_gain,
                                     threshold=self.threshold)
                return spikes.to(x.dtype)
            return FusedLIF.apply(x, self.beta, self.input_gain, self.threshold, self.surrogate_alpha)
        return self._snntorch_loop(x)

    def _snntorch_loop(self, x: torch.Tensor) -> torch.Tensor:
        """snnTorch's own time loop: state from rest, ``neuron(gain * x[t], state...)`` per step."""
        work = membrane_dtype(x.dtype)
        neuron = self.neuron
        # the coefficients in the working precision, from the exact floats (a float32 buffer upcast to float64
        # would differ from beta = 1 - 1/tau in the last bits)
        coefficients = {"beta": self.beta, "threshold": self.threshold, **({"alpha": self.beta} if self.kind ==
                                                                              "synaptic" else {})}
        for name, value in coefficients.items():
            setattr(neuron, name, torch.tensor(value, dtype=work, device=x.device))
        state = tuple(torch.zeros_like(x[0], dtype=work) for _ in range(2 if self.kind == "synaptic" else 1))
        spikes = []
        for x_t in x.to(work):
            spk, *state = neuron(x_t * self.input_gain, *state)
            spikes.append(spk)
        return torch.stack(spikes).to(x.dtype)

    def extra_repr(self) -> str:
        return (f"tau={self.tau}, threshold={self.threshold}, surrogate_alpha={self.surrogate_alpha}, "
                f"neuron={self.kind!r}, fast_path={self.uses_fast_path}")


def _snntorch_buffers_from_config(module: LIF, state_dict: dict, prefix: str, *args) -> None:
    """The snnTorch neuron's buffers (beta, threshold, ...) follow from the config and are not saved.
    Checkpoints written when they were (``{prefix}neuron.beta``, ...) still load; their values must
    agree with the config."""
    for name, value in module.neuron.named_buffers(recurse=False):
        stored = state_dict.pop(f"{prefix}neuron.{name}", None)
        if stored is None:
            continue
        if stored.numel() != value.numel() or not torch.allclose(stored.double().reshape(value.shape),
                                                                  value.double(), rtol=1e-6, atol=0):
            raise SpikebertError(f"{prefix}neuron.{name}={stored.tolist()!r} in the checkpoint disagrees with the "
                                 f"config ({value.tolist()!r}); rebuild the model from the checkpoint's own config")
    for name in ("reset_mechanism_val",):  # snnTorch < 1.0's buffer, no longer held
        state_dict.pop(f"{prefix}neuron.{name}", None)


class HeavisideEncoder(nn.Module):
    """Binary spikes from real values, ``z = H(x)`` (eq. N2), with the ATan surrogate (eq. N4) backward.

    The official model applies this to the token embedding (no membrane, same value every step).
    """

    def __init__(self, *, surrogate_alpha: float) -> None:
        super().__init__()
        self.surrogate_alpha = float(surrogate_alpha)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.onnx.is_in_onnx_export():  # inference only, and the exporter cannot trace ATanHeaviside
            return heaviside(x)
        return ATanHeaviside.apply(x, self.surrogate_alpha)
