"""Energy per counted operation, each profile with its source.

One equation for every profile, student and teacher alike (counts per sample, energies in pJ):

    E = e_mac MACs + e_ac ACs + e_neuron neuron_updates + e_weight_read weight_reads
        + e_state_access state_accesses

The counts are those of :mod:`spikebert.energy.counting`: ACs are synaptic operations (accumulates of spike
inputs), a weight read is one per synaptic op and, for a MAC layer, one per weight and time step
(the teacher: one per weight and sample), a state access is one membrane read or write (two per
neuron update). A profile prices only what its source measures; 0 means "not counted", never "free".
Constants: Horowitz, ISSCC 2014 (45 nm arithmetic and SRAM); Davies et al., IEEE Micro 2018 (Loihi);
the memory-aware profiles follow Lemaire et al., ICONIP 2022.

One profile is not this equation: ``lemaire`` (``estimator="lemaire"``) prices every layer by its
shape, with buffer-size-dependent memory costs, addressing and spike traffic
(:mod:`spikebert.energy.lemaire`); its ``e_mac_pj``/``e_ac_pj`` are its operation costs.
"""

from __future__ import annotations

import dataclasses

from spikebert.contract.errors import SpikebertError

ESTIMATORS = ("linear", "lemaire")

# Horowitz, "Computing's energy problem", ISSCC 2014, 45 nm, 0.9 V (pJ per operation); a MAC is a
# multiply (FP32 3.7, FP16 1.1, INT32 3.1, INT8 0.2) plus an add, written as the sum to avoid float noise
FP32_MAC, FP32_ADD = 4.6, 0.9
FP16_MAC, FP16_ADD = 1.5, 0.4
INT32_MAC, INT32_ADD = 3.2, 0.1
INT8_MAC, INT8_ADD = 0.23, 0.03
LIF_UPDATE_FP32 = 5.5  # the leak v = beta v + I (an FP32 MAC) and the threshold compare (an FP32 add)
# Horowitz 2014 SRAM reads are per 64-bit access; the memory profiles move 32-bit words (fp32
# weights and membranes), so half of it per word, as in Lemaire-style estimates (PMC8934428 Table 3).
SRAM_8KB_64BIT, SRAM_1MB_64BIT = 10.0, 100.0
WORDS_PER_64BIT_ACCESS = 2
# Davies et al., "Loihi", IEEE Micro 38(1) 2018, Table 2 (pre-silicon, 14 nm, 0.75 V)
LOIHI_SYNAPTIC_OP = 23.6  # minimum energy per synaptic spike op
LOIHI_NEURON_UPDATE_ACTIVE = 81.0  # 52 pJ when inactive; the counts do not tell which, so all are active


@dataclasses.dataclass(frozen=True, kw_only=True)
class Profile:
    """Energies in pJ per operation of each kind (see the module equation); ``source`` says where
    every number comes from and what is left out, and is printed in every report."""

    name: str
    e_mac_pj: float
    e_ac_pj: float
    e_neuron_pj: float = 0.0
    e_weight_read_pj: float = 0.0
    e_state_access_pj: float = 0.0
    source: str
    estimator: str = "linear"  # "linear": the module equation; "lemaire": spikebert.energy.lemaire

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name.startswith("e_") and not (isinstance(value, (int, float)) and value >= 0):
                raise SpikebertError(f"profile {self.name!r}: {f.name}={value!r} must be a number >= 0 (pJ)")
        if self.estimator not in ESTIMATORS:
            raise SpikebertError(f"profile {self.name!r}: estimator {self.estimator!r}, use one of {ESTIMATORS}")

    def energy_pj(self, *, macs: float = 0.0, acs: float = 0.0, neuron_updates: float = 0.0,
                  weight_reads: float = 0.0, state_accesses: float = 0.0) -> float:
        """The module equation for one set of counts."""
        return (macs * self.e_mac_pj + acs * self.e_ac_pj + neuron_updates * self.e_neuron_pj
                + weight_reads * self.e_weight_read_pj + state_accesses * self.e_state_access_pj)

    @property
    def memory_aware(self) -> bool:
        """Prices weight reads and state accesses in the module equation (``lemaire`` prices memory its own way)."""
        return bool(self.e_weight_read_pj or self.e_state_access_pj)

    @property
    def per_layer(self) -> bool:
        """Prices each layer by its shape (needs the teacher's layers too): the ``lemaire`` estimator."""
        return self.estimator == "lemaire"


def _memory_profile(name: str, sram_64bit_pj: float, sram: str) -> Profile:
    word = sram_64bit_pj / WORDS_PER_64BIT_ACCESS
    return Profile(
        name=name, e_mac_pj=FP32_MAC, e_ac_pj=FP32_ADD,
        e_neuron_pj=LIF_UPDATE_FP32, e_weight_read_pj=word, e_state_access_pj=word,
        source=(f"Memory-aware, after Lemaire et al., ICONIP 2022 (arXiv 2210.13107): 45nm-fp32 compute plus "
                f"{word:g} pJ per 32-bit word read or written (Horowitz, ISSCC 2014: {sram} SRAM, "
                f"{sram_64bit_pj:g} pJ per 64-bit access, halved). One weight read per synaptic op, each weight "
                "of a MAC layer read once per time step (teacher: once per sample, K and V once per attention "
                "product); membrane read + write per neuron update, whose compute is the leak MAC 4.6 + threshold "
                "compare 0.9 pJ. Activation traffic, addressing and routing not counted."),
    )


PROFILES = {
    p.name: p
    for p in (
        Profile(name="45nm-fp32", e_mac_pj=FP32_MAC, e_ac_pj=FP32_ADD,
                source="Horowitz, ISSCC 2014, 45 nm: FP32 mult 3.7 + add 0.9 pJ; AC = FP32 add 0.9 pJ "
                       "(the convention of the Spikformer/SpikeBERT papers); compute only"),
        Profile(name="45nm-fp16", e_mac_pj=FP16_MAC, e_ac_pj=FP16_ADD,
                source="Horowitz, ISSCC 2014, 45 nm: FP16 mult 1.1 + add 0.4 pJ; compute only"),
        Profile(name="45nm-int32", e_mac_pj=INT32_MAC, e_ac_pj=INT32_ADD,
                source="Horowitz, ISSCC 2014, 45 nm: INT32 mult 3.1 + add 0.1 pJ; compute only"),
        Profile(name="45nm-int8", e_mac_pj=INT8_MAC, e_ac_pj=INT8_ADD,
                source="Horowitz, ISSCC 2014, 45 nm: INT8 mult 0.2 + add 0.03 pJ; compute only"),
        Profile(name="loihi", e_mac_pj=FP32_MAC, e_ac_pj=LOIHI_SYNAPTIC_OP,
                e_neuron_pj=LOIHI_NEURON_UPDATE_ACTIVE,
                source="Davies et al., IEEE Micro 38(1) 2018, Table 2 (Loihi, 14 nm, 0.75 V, pre-silicon): "
                       "23.6 pJ per synaptic op (minimum), 81 pJ per neuron update (all counted active; "
                       "inactive 52 pJ); on-core memory is inside these figures; spike routing (1.7 pJ "
                       "in-tile, 3-4 pJ per hop) not counted. Loihi does no MACs: non-spike inputs and the "
                       "teacher are priced at 45nm-fp32 4.6 pJ (Horowitz 2014), as on a host; with "
                       "--residual accumulate the residual stream runs as spikes"),
        _memory_profile("45nm-fp32-mem8k", SRAM_8KB_64BIT, "8 KB"),
        _memory_profile("45nm-fp32-mem1m", SRAM_1MB_64BIT, "1 MB"),
        Profile(name="lemaire", e_mac_pj=INT32_MAC, e_ac_pj=INT32_ADD, estimator="lemaire",
                source="Lemaire et al., ICONIP 2022 (arXiv 2210.13107), per layer as SpikingJelly 2.0.0 implements it: "
                       "INT32 ops (Horowitz, ISSCC 2014, Fig. 1.1.9: add 0.1, mult 3.1 pJ) plus addressing, plus "
                       "every 32-bit access to input/output spikes or activations, weights and membranes priced by "
                       "its buffer's size (the figure's 64-bit cache reads 8 KB 10, 32 KB 20, 1 MB 100 pJ, "
                       "interpolated, per word); weights read per synaptic op (SNN) or per MAC (teacher); "
                       "attention products with the stored operand as weights (spikebert.energy.lemaire)"),
    )
}
DEFAULT_PROFILE = "45nm-fp32"


def get_profile(name: str) -> Profile:
    if name not in PROFILES:
        raise SpikebertError(f"unknown energy profile {name!r}; available: {sorted(PROFILES)}")
    return PROFILES[name]


def select_profiles(spec: str) -> tuple[Profile, ...]:
    """``"a,b,c"`` -> those profiles in that order (the first is the report's headline); ``"all"`` -> every one."""
    names = list(PROFILES) if spec.strip() == "all" else [s.strip() for s in spec.split(",") if s.strip()]
    if not names:
        raise SpikebertError(f"--profile {spec!r}: name one or more of {list(PROFILES)}, comma-separated, or 'all'")
    if len(set(names)) != len(names):
        raise SpikebertError(f"--profile {spec!r} names a profile twice")
    return tuple(get_profile(n) for n in names)
