"""How much of a SpikingBERT student the NIR fragments (``spikebert-export --to nir --partial``) hold.

Reads ``spikebert energy`` reports of SpikingBERT students and sums the rows of the populations the
fragments express (every layer's ``key`` and ``value``): their share of the student's accumulates
and of its neuron updates. Nothing is re-run; writes JSON with the exact command, machine and date.

    python benchmarks/fragment_share.py benchmarks/results/spikingbert_sst2*/spikingbert_T*/energy_report.json \\
        --out benchmarks/results/spikingbert_sst2_full/fragment_share.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]  # package, helpers

from provenance import provenance  # noqa: E402

from spikebert.converters.spikingbert_to_nir import FRAGMENT_POPULATIONS  # noqa: E402


def share(report_path: Path) -> dict:
    report = json.loads(report_path.read_text(encoding="utf-8"))
    rows = report["layers"]

    def in_fragment(name: str) -> bool:  # "layer0.key" (synapses), "layer0.key.neurons" (neurons)
        parts = name.split(".")
        return parts[0].startswith("layer") and len(parts) > 1 and parts[1] in FRAGMENT_POPULATIONS

    acs = sum(r["acs"] for r in rows if in_fragment(r["name"]))
    updates = sum(r["neuron_updates"] for r in rows if in_fragment(r["name"]))
    return {"report": str(report_path), "time_steps": report["time_steps"], "samples": report["samples"],
            "fragment_acs": acs, "student_acs": report["student"]["acs"],
            "acs_share": acs / report["student"]["acs"],
            "neuron_updates_share": updates / report["student"]["neuron_updates"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("reports", nargs="+", type=Path, help="energy_report.json of SpikingBERT students")
    p.add_argument("--out", required=True, type=Path)
    args = p.parse_args()
    results = [share(r) for r in args.reports]
    for r in results:
        print(f"{r['report']}: T={r['time_steps']} ACs {r['acs_share']:.1%}, neuron updates "
              f"{r['neuron_updates_share']:.1%}")
    from spikebert.contract.fileio import atomic_write_text

    atomic_write_text(args.out, json.dumps({
        **provenance(),
        "populations": list(FRAGMENT_POPULATIONS),
        "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
