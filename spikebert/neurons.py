"""Spiking neurons for the student, built on snnTorch.

The official SpikeBERT uses SpikingJelly's ``LIFNode(tau, decay_input=True, v_reset=0)``:

    V[t] = (1 - 1/tau) * V[t-1] + X[t] / tau          (eq. N1, charge)
    S[t] = H(V[t] - theta)                             (eq. N2, fire; H(x) = 1 for x > 0)
    V[t] = 0 where S[t] = 1                            (eq. N3, hard reset to zero)

snnTorch's ``Leaky(beta, reset_mechanism="zero")`` computes ``U[t] = beta * U[t-1] + I[t]`` with the
reset applied to the previous membrane (``reset_delay``), which gives the same spike trains. So
``beta = 1 - dt/tau`` and the input is multiplied by the gain ``g = dt/tau`` (``dt = 1``) before it
reaches the neuron. This is exactly NIR's ``LIF`` under forward Euler with ``dt = 1``, ``r = 1``.
One deviation: SpikingJelly fires at ``V >= theta``; snnTorch, NIR and Lava at ``V > theta``.
We use the strict form everywhere so every backend agrees bit for bit.
"""

from __future__ import annotations

import snntorch as snn
import torch
from snntorch import surrogate
from torch import nn

DT = 1.0  # one time step of the discrete-time network; recorded in every exported NIR graph


def lif_coefficients(tau: float, dt: float = DT) -> tuple[float, float]:
    """(beta, input gain) of eq. N1 for forward-Euler discretisation with step ``dt``."""
    return 1.0 - dt / tau, dt / tau


class LIF(nn.Module):
    """A population of LIF neurons (eqs. N1-N3) run over the leading time axis.

    Parameters: ``tau`` membrane time constant in steps, ``threshold`` firing threshold,
    ``surrogate_alpha`` slope of the ATan surrogate gradient.
    """

    def __init__(self, *, tau: float, threshold: float, surrogate_alpha: float) -> None:
        super().__init__()
        self.tau = float(tau)
        self.threshold = float(threshold)
        beta, self.input_gain = lif_coefficients(self.tau)
        self.neuron = snn.Leaky(
            beta=beta,
            threshold=threshold,
            spike_grad=surrogate.atan(alpha=surrogate_alpha),
            reset_mechanism="zero",
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (T, ...) input currents -> (T, ...) binary spikes."""
        mem = torch.zeros_like(x[0])
        spikes = []
        for x_t in x:
            spk, mem = self.neuron(x_t * self.input_gain, mem)
            spikes.append(spk.to(x.dtype))  # snnTorch's surrogate returns float32
        return torch.stack(spikes)


class HeavisideEncoder(nn.Module):
    """Binary spikes from real values, ``z = H(x)``, with the ATan surrogate in the backward pass.

    The official model applies this to the token embedding (no membrane, same value every step).
    """

    def __init__(self, *, surrogate_alpha: float) -> None:
        super().__init__()
        self.spike = surrogate.atan(alpha=surrogate_alpha)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spike(x).to(x.dtype)  # snnTorch's surrogate returns float32
