"""Memory-aware energy after Lemaire et al., "An Analytical Estimation of Spiking Neural Networks
Energy Efficiency", ICONIP 2022 (LNCS 13623, doi 10.1007/978-3-031-30105-6_48; arXiv 2210.13107).

Per layer, operations + addressing + memory, priced with 45 nm costs (pJ):

    E = E_ops + E_addr + E_mem
    E_ops  = N_AC E_ADD + N_MAC (E_MUL + E_ADD)
    E_addr = N_acc_addr E_ADD + N_mac_addr (E_MUL + E_ADD)
    E_mem  = sum over accesses of  bytes x e(capacity of the buffer accessed)

The rules follow SpikingJelly 2.0.0's implementation of the paper
(``spikingjelly.activation_based.op_counter.analytical_energy``, ``_LemaireCounter``), which the
paper's own code does not exist to check against; ``benchmarks/energy_peers.py --lemaire-check``
compares the two component by component on a small network. 32-bit words (``WORD_BYTES``):

- synaptic layer, spike input (``e`` input spikes, fan-out ``m``, ``e m`` synaptic ops):
  ``e m`` accumulates and as many accumulate-addressings; reads ``e`` words of input from a spike
  FIFO of ``FIFO_ELEMENTS`` words, ``e m`` weights (+ one bias per output) from a buffer holding
  the layer's parameters, and reads and writes ``e m`` membrane words in a buffer of one step's
  outputs (each synaptic op updates its target's membrane);
- synaptic layer, real (or integer, counted as MACs) input: ``outputs x fan-in`` MACs, ``inputs +
  outputs`` accumulate-addressings; reads every input word (buffer: the input), one weight per MAC
  (+ biases; the paper's layer-by-layer FNN reads a weight for every use), and writes its outputs
  only in a network without neurons (in an SNN they go into membranes);
- biases: one accumulate per output element;
- neurons (a LIF/IF population over T steps): a membrane read and write per neuron and step (buffer:
  one step's membranes), one accumulate per output spike, one multiply-accumulate per update if the
  neuron leaks (LIF; none for IF), and each output spike written to a spike FIFO.

Extensions of the paper's rules to what it does not have, stated in every report that uses them:
attention products of the student are synaptic layers whose stored operand (the K or V spikes,
SpikingBERT's real-valued Q or softmax scores) plays the weights; the teacher's Q K^T and A V are
dense layers whose weights are K and V; SpikeBERT's token mean is one accumulate per input element,
its input read whole and its outputs accumulated in place.

Constants: E_ADD 0.1 pJ and E_MUL 3.1 pJ are the 32-bit integer add and multiply of Horowitz,
"Computing's energy problem (and what we can do about it)", ISSCC 2014, Figure 1.1.9 (45 nm, 0.9 V);
e(S) interpolates linearly between the same figure's cache reads of a 64-bit access: 8 KB 10 pJ,
32 KB 20 pJ, 1 MB 100 pJ (0 at 0 B, clamped above 1 MB), spent per 32-bit word as in SpikingJelly's
``LemaireEnergyCostConfig`` (10 pJ / 4 B = 2.5 pJ per byte at 8 KB; our 45nm-fp32-mem* profiles
charge half a 64-bit access per word instead). The 1000-word spike FIFO is SpikingJelly's default,
"following the paper's experiments".
"""

from __future__ import annotations

import dataclasses

from spikebert.contract.errors import SpikebertError
from spikebert.energy.counting import LayerCount

WORD_BYTES = 4
FIFO_ELEMENTS = 1000
# Horowitz ISSCC 2014, Fig. 1.1.9: 32-bit integer add and multiply (pJ)
INT32_ADD_PJ, INT32_MUL_PJ = 0.1, 3.1
# (buffer bytes, pJ per byte): the figure's 64-bit cache reads, 8 KB 10 pJ, 32 KB 20 pJ, 1 MB 100 pJ, per 32-bit word
SRAM_BREAKPOINTS = ((0.0, 0.0), (8 * 1024.0, 10.0 / WORD_BYTES), (32 * 1024.0, 20.0 / WORD_BYTES),
                    (1024 * 1024.0, 100.0 / WORD_BYTES))
COMPONENTS = ("ops", "addressing", "inout", "params", "potential")
COMPONENT_LABELS = {"ops": "operations (AC, MAC)", "addressing": "addressing", "inout": "input/output memory",
                    "params": "weight memory", "potential": "membrane memory"}


@dataclasses.dataclass(frozen=True)
class LemaireCost:
    """The estimator's constants (module docstring)."""

    e_add_pj: float = INT32_ADD_PJ
    e_mul_pj: float = INT32_MUL_PJ
    breakpoints: tuple[tuple[float, float], ...] = SRAM_BREAKPOINTS
    fifo_elements: int = FIFO_ELEMENTS
    word_bytes: int = WORD_BYTES

    def pj_per_byte(self, capacity_bytes: float) -> float:
        """e(S): piecewise linear through the breakpoints, clamped to the first and last."""
        points = self.breakpoints
        s = min(max(capacity_bytes, points[0][0]), points[-1][0])
        for (x0, y0), (x1, y1) in zip(points, points[1:]):
            if s <= x1:
                return y0 + (y1 - y0) * (s - x0) / (x1 - x0)
        return points[-1][1]


@dataclasses.dataclass
class LemaireRow:
    """One row priced: the counts and the energy (pJ) of each component."""

    name: str
    ac: float = 0.0
    mac: float = 0.0
    acc_addr: float = 0.0
    mac_addr: float = 0.0
    read_in_bytes: float = 0.0
    write_out_bytes: float = 0.0
    params_bytes: float = 0.0
    potential_bytes: float = 0.0  # reads + writes
    energy_pj: dict[str, float] = dataclasses.field(default_factory=lambda: dict.fromkeys(COMPONENTS, 0.0))
    unknown_spikes: bool = False  # a population whose output spikes the record does not give (not priced)

    @property
    def total_pj(self) -> float:
        return sum(self.energy_pj.values())

    def access(self, component: str, field: str, nbytes: float, capacity_bytes: float, cost: LemaireCost) -> None:
        setattr(self, field, getattr(self, field) + nbytes)
        self.energy_pj[component] += nbytes * cost.pj_per_byte(capacity_bytes)


def price_row(row: LayerCount, *, time_steps: int, neurons_in_model: bool,
              cost: LemaireCost = LemaireCost()) -> LemaireRow:
    """The Lemaire rules (module docstring) for one row of :mod:`spikebert.energy.counting`, per sample.
    ``time_steps`` is the row's T (the teacher's 1); ``neurons_in_model``: dense outputs go into
    membranes (an SNN) rather than being written out (an FNN)."""
    if time_steps < 1:
        raise SpikebertError(f"time_steps={time_steps}: at least 1")
    w, fifo = cost.word_bytes, cost.fifo_elements * cost.word_bytes
    out = LemaireRow(row.name)
    if row.kind == "neurons":
        per_step = row.neuron_updates / time_steps
        out.access("potential", "potential_bytes", 2 * row.neuron_updates * w, per_step * w, cost)
        if row.output_spikes is None:
            out.unknown_spikes = True
        else:
            out.ac += row.output_spikes
            out.access("inout", "write_out_bytes", row.output_spikes * w, fifo, cost)
        if row.leaky:
            out.mac += row.neuron_updates
    elif row.kind == "token-mean":
        out.ac += row.acs
        out.access("inout", "read_in_bytes", row.input_elements * w, row.input_elements * w, cost)
        out.access("potential", "potential_bytes", 2 * row.acs * w, row.output_elements / time_steps * w, cost)
    elif row.macs > 0:
        bias = row.output_elements if row.has_bias else 0.0
        out.mac += row.macs
        out.ac += bias
        out.acc_addr += row.input_elements + row.output_elements
        out.access("inout", "read_in_bytes", row.input_elements * w, row.input_elements * w, cost)
        if not neurons_in_model:
            out.access("inout", "write_out_bytes", row.output_elements * w, row.output_elements * w, cost)
        out.access("params", "params_bytes", (row.macs + bias) * w, row.params * w, cost)
    elif row.acs > 0 or row.input_kind in ("spike", "integer"):
        bias = row.output_elements if row.has_bias else 0.0
        if row.kind in ("affine", "conv1d") and row.fan_out:
            events = row.acs / row.fan_out  # input spikes (or, counted as accumulates, the residual's sum)
        else:
            events = row.input_rate * row.input_elements
        out.ac += row.acs + bias
        out.acc_addr += row.acs
        out.access("inout", "read_in_bytes", events * w, fifo, cost)
        out.access("params", "params_bytes", (row.acs + bias) * w, row.params * w, cost)
        out.access("potential", "potential_bytes", 2 * row.acs * w, row.output_elements / time_steps * w, cost)
    out.energy_pj["ops"] = out.ac * cost.e_add_pj + out.mac * (cost.e_mul_pj + cost.e_add_pj)
    out.energy_pj["addressing"] = out.acc_addr * cost.e_add_pj + out.mac_addr * (cost.e_mul_pj + cost.e_add_pj)
    return out


def price_rows(rows: list[LayerCount], *, time_steps: int, neurons_in_model: bool | None = None,
               cost: LemaireCost = LemaireCost()) -> list[LemaireRow]:
    """:func:`price_row` for every row; ``neurons_in_model`` defaults to whether any row is a population."""
    if neurons_in_model is None:
        neurons_in_model = any(r.kind == "neurons" for r in rows)
    return [price_row(r, time_steps=time_steps, neurons_in_model=neurons_in_model, cost=cost) for r in rows]


def totals(priced: list[LemaireRow]) -> dict[str, float]:
    """Sums over rows: counts, bytes and energy per component (``*_pj``) and ``total_pj``."""
    fields = ("ac", "mac", "acc_addr", "mac_addr", "read_in_bytes", "write_out_bytes", "params_bytes",
              "potential_bytes")
    out = {f: float(sum(getattr(r, f) for r in priced)) for f in fields}
    out.update({f"{c}_pj": float(sum(r.energy_pj[c] for r in priced)) for c in COMPONENTS})
    out["total_pj"] = float(sum(r.total_pj for r in priced))
    out["unknown_spike_populations"] = float(sum(r.unknown_spikes for r in priced))
    return out
