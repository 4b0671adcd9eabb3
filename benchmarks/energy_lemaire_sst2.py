"""The trained SST-2 students priced by the Lemaire estimator, beside their teacher (issue #18).

The trained checkpoints are not on this machine, but their energy reports are
(``benchmarks/results/spikingbert_sst2_full/*/energy_report.json``, all 872 dev sentences). Those
reports were written before rows carried shapes; every shape the estimator needs follows from the
recorded counts by exact algebra (SpikeBERT: mean real tokens from the attention row, 2 n^2 D T / 3 n D T;
a conv row's fan-out = dense MACs / input elements, ...), and each is checked against the row's dense
MACs. Output spikes of a population are the nonzero inputs of the synapse that reads it; the
populations that only feed a residual sum (SpikeBERT's proj_lif and lif2), and SpikingBERT's last
output population (read as rates), are not in these reports: their spike writes are bounded below
(no spike) and above (every neuron fires every step), and both bounds are reported.

The teacher (fine-tuned MiniLM-L6: its config is the offline MiniLM's, 2 classes) is counted at the
real lengths of the same 872 sentences (MiniLM tokenizer, at most 64 tokens), checked against the
MACs and weight reads the reports carry. Each report is written again with the rows, the teacher's
layers and the ``lemaire`` profile added (``--out``/NAME/energy_report.json and .md), so that
``spikebert plot front`` can draw its panel.

    .venv/bin/python benchmarks/energy_lemaire_sst2.py
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REPORTS = REPO / "benchmarks" / "results" / "spikingbert_sst2_full"
NAMES = ("spikebert", "spikingbert_T8", "spikingbert_T16", "spikingbert_T32")


def spikebert_rows(rows, T):
    """Shapes of a SpikeBERT report's rows (NIR names b{i}_*, pool, classifier), from a report written before rows
    carried their shapes: the token count is read off the SSA attention row (dense 2 n^2 D T)."""
    if any("/" in r.name for r in rows):  # "<name>/population": spike-driven attention, whose dense count differs
        raise SystemExit("this report has spike-driven attention rows; its rows carry their shapes already (price "
                         "them with spikebert.energy.lemaire.price_rows directly)")
    att = next(r for r in rows if r.kind == "attention")
    tok = 1.5 * att.dense_macs / att.input_elements  # dense 2 n^2 D T, inputs 3 n D T
    by = {r.name: r for r in rows}
    out = []
    for r in rows:
        if r.kind == "conv1d":
            fan_out = r.dense_macs / r.input_elements
            fan_in = r.input_elements / (tok * T)
            r = dataclasses.replace(r, fan_in=fan_in, fan_out=fan_out, output_elements=fan_out * tok * T,
                                    params=fan_in * fan_out + fan_out, has_bias=True)
            assert math.isclose(fan_in * fan_out * tok * T, r.dense_macs, rel_tol=1e-9)
        elif r.kind == "attention":
            dim = r.input_elements / (3 * tok * T)
            r = dataclasses.replace(r, fan_in=tok, fan_out=tok, output_elements=dim * tok * T, params=2 * dim * tok)
            assert math.isclose(2 * tok * tok * dim * T, r.dense_macs, rel_tol=1e-9)
        elif r.kind == "token-mean":
            dim = r.input_elements / (tok * T)
            r = dataclasses.replace(r, fan_in=tok, fan_out=1.0, output_elements=dim * T)
        elif r.kind == "affine":
            fan_out, fan_in = r.dense_macs / r.input_elements, r.input_elements / T
            r = dataclasses.replace(r, fan_in=fan_in, fan_out=fan_out, output_elements=fan_out * T,
                                    params=fan_in * fan_out + fan_out, has_bias=True)
        elif r.kind == "neurons":
            block, _, pop = r.name.partition("_")
            reader = {"qkv_lif": f"{block}_attn", "attn_lif": f"{block}_proj", "lif1": f"{block}_fc2"}.get(pop)
            spikes = by[reader].input_rate * by[reader].input_elements if reader else None
            r = dataclasses.replace(r, output_elements=r.neuron_updates, leaky=True, output_spikes=spikes)
        out.append(r)
    return out, tok


def spikingbert_rows(rows, T, *, heads: int):
    """Shapes of a SpikingBERT report's rows (spikebert.energy.counting.spikingbert_counts names)."""
    by = {r.name: r for r in rows}
    dim = by["classifier"].input_elements
    tok = by["layer0.query"].input_elements / (dim * T)
    pairs = by["layer0.scores"].dense_macs / (dim * T)
    depth = sum(1 for r in rows if r.name.endswith(".query"))
    readers = {"embedding.population": "layer0.query"}
    for i in range(depth):
        readers.update({f"layer{i}.key.neurons": f"layer{i}.scores", f"layer{i}.value.neurons": f"layer{i}.context",
                        f"layer{i}.attention.neurons": f"layer{i}.out", f"layer{i}.self_output.neurons": f"layer{i}.fc1",
                        f"layer{i}.intermediate.neurons": f"layer{i}.fc2"})
        if i + 1 < depth:
            readers[f"layer{i}.output.neurons"] = f"layer{i + 1}.query"
    out = []
    for r in rows:
        if r.kind == "affine" and r.name != "classifier":
            fan_out = r.dense_macs / r.input_elements
            fan_in = r.input_elements / (tok * T)
            r = dataclasses.replace(r, fan_in=fan_in, fan_out=fan_out, output_elements=fan_out * tok * T,
                                    params=fan_in * fan_out + fan_out, has_bias=True)
        elif r.kind == "attention":
            scores = heads * pairs
            stored, outputs = (dim * tok, scores) if r.name.endswith("scores") else (scores, dim * tok)
            r = dataclasses.replace(r, fan_in=tok, fan_out=tok, output_elements=outputs * T, params=stored)
        elif r.name == "classifier":
            fan_out = r.dense_macs / dim
            r = dataclasses.replace(r, fan_in=dim, fan_out=fan_out, output_elements=fan_out,
                                    params=r.dense_macs + fan_out, has_bias=True)
        elif r.kind == "neurons":
            reader = readers.get(r.name)
            spikes = by[reader].input_rate * by[reader].input_elements if reader else None
            r = dataclasses.replace(r, output_elements=r.neuron_updates, leaky=False, output_spikes=spikes)
        out.append(r)
    return out, tok


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data"))
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "energy_lemaire_sst2"))
    args = p.parse_args()
    from provenance import provenance  # benchmarks/, beside this script

    started, made = time.perf_counter(), provenance()

    from transformers import AutoConfig

    from spikebert.data import load_split
    from spikebert.energy import lemaire
    from spikebert.energy.counting import teacher_counts
    from spikebert.energy.profiles import get_profile
    from spikebert.energy.report import PJ_PER_MJ, EnergyReport
    from spikebert.teacher import load_tokenizer, resolve_teacher_name
    from spikebert.tokenize import Batcher

    config = AutoConfig.from_pretrained(resolve_teacher_name("minilm-offline")).to_dict()
    config = {k: config[k] for k in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")}
    config["num_labels"] = 2
    sentences = load_split("sst-2", "dev", data_dir=args.data_dir).sentences
    lengths = Batcher(load_tokenizer("minilm-offline"), max_len=64).encode(sentences)["attention_mask"].sum(1).tolist()
    teacher = teacher_counts(config, lengths)
    prof = get_profile("lemaire")
    out_dir = Path(args.out)
    results = {"issue": 18, **made,
               "teacher": {"config": config, "sentences": len(lengths), "mean_length": sum(lengths) / len(lengths),
                           "macs": teacher.macs, "weight_reads": teacher.weight_reads},
               "profile": dataclasses.asdict(prof), "students": {}}
    for name in NAMES:
        data = json.loads((REPORTS / name / "energy_report.json").read_text())
        old = EnergyReport.from_dict(data)
        assert math.isclose(old.teacher_macs, teacher.macs, rel_tol=1e-12), (old.teacher_macs, teacher.macs)
        assert math.isclose(old.teacher_weight_reads, teacher.weight_reads, rel_tol=1e-12)
        T = old.time_steps
        if name == "spikebert":
            rows, tok = spikebert_rows(old.layers, T)
        else:
            rows, tok = spikingbert_rows(old.layers, T, heads=4)
        unknown = [r.name for r in rows if r.kind == "neurons" and r.output_spikes is None]
        report = dataclasses.replace(old, layers=rows, teacher_layers=list(teacher.layers),
                                     more_profiles=(*old.more_profiles, prof),
                                     extra={**old.extra, "repriced": "benchmarks/energy_lemaire_sst2.py: shapes from "
                                                                     "the recorded counts, lemaire profile added"})
        bounds = {}
        for bound, fill in (("no_spikes", lambda r: 0.0), ("all_fire", lambda r: r.neuron_updates)):
            filled = [dataclasses.replace(r, output_spikes=fill(r)) if r.name in unknown else r for r in rows]
            bounds[bound] = report.student_pj(prof) if not unknown else sum(
                lemaire.price_row(r, time_steps=T, neurons_in_model=True).total_pj for r in filled)
        totals = report.lemaire_totals()
        results["students"][name] = {
            "accuracy": report.accuracy, "time_steps": T, "mean_tokens": tok,
            "unknown_spike_populations": unknown,
            "student_mj": {k: v / PJ_PER_MJ for k, v in bounds.items()},
            "teacher_mj": report.teacher_pj(prof) / PJ_PER_MJ,
            "ratio": {k: v / report.teacher_pj(prof) for k, v in bounds.items()},
            "student_components_mj (unknown spikes unpriced)": {k[:-3]: v / PJ_PER_MJ
                                                                for k, v in totals["student"].items()
                                                                if k.endswith("_pj")},
            "teacher_components_mj": {k[:-3]: v / PJ_PER_MJ for k, v in totals["teacher"].items()
                                      if k.endswith("_pj")},
            "other_profiles": {p.name: {"student_mj": report.student_pj(p) / PJ_PER_MJ,
                                        "teacher_mj": report.teacher_pj(p) / PJ_PER_MJ}
                               for p in report.profiles if not p.per_layer},
        }
        report.write(out_dir / name, formats=("md", "json"))
    results["wall_s"] = time.perf_counter() - started
    (out_dir / "lemaire_sst2.json").write_text(json.dumps(results, indent=1) + "\n")
    for name, r in results["students"].items():
        print(f"{name:<16} acc {r['accuracy']:.4f}  lemaire student {r['student_mj']['no_spikes']:.4g}-"
              f"{r['student_mj']['all_fire']:.4g} mJ  teacher {r['teacher_mj']:.4g} mJ  ratio "
              f"{r['ratio']['no_spikes']:.2%}-{r['ratio']['all_fire']:.2%}")


if __name__ == "__main__":
    main()
