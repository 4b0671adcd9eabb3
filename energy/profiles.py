"""Energy per operation, with sources. E = E_MAC * #MAC + E_AC * #AC."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Profile:
    name: str
    e_mac_pj: float
    e_ac_pj: float
    source: str


PROFILES = {
    p.name: p
    for p in (
        Profile("45nm-fp32", 4.6, 0.9, "Horowitz, ISSCC 2014: FP32 mult 3.7 + add 0.9 pJ; AC = FP32 add 0.9 pJ "
                                        "(the convention of Spikformer/SpikeBERT papers)"),
        Profile("45nm-fp16", 1.5, 0.4, "Horowitz, ISSCC 2014: FP16 mult 1.1 + add 0.4 pJ"),
        Profile("45nm-int8", 0.23, 0.03, "Horowitz, ISSCC 2014: INT8 mult 0.2 + add 0.03 pJ"),
    )
}
DEFAULT_PROFILE = "45nm-fp32"


def get_profile(name: str) -> Profile:
    if name not in PROFILES:
        raise ValueError(f"unknown energy profile {name!r}; available: {sorted(PROFILES)}")
    return PROFILES[name]
