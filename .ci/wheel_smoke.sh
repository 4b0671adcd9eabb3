#!/usr/bin/env bash
# Smoke test of an installed spikebert wheel, run from a scratch folder outside the repository:
#   .ci/wheel_smoke.sh VENV WHEEL DATA_DIR
# VENV: a virtual environment with the wheel (and its dependencies, including the [lava] extra) installed;
# WHEEL: the .whl file; DATA_DIR: the task folders (sst-2/...). Fails on the first error.
set -euo pipefail
venv=$(cd "$1" && pwd)
wheel=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")
data_dir=$(cd "$3" && pwd)
py="$venv/bin/python"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

work=$(mktemp -d "${TMPDIR:-/tmp}/spikebert-smoke.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"
step() { printf '\n== %s\n' "$*"; }

step "console scripts"
"$venv/bin/spikebert" --help >/dev/null
"$venv/bin/spikebert-export" --help >/dev/null

step "one import root: spikebert, from this venv (not the editable checkout)"
"$py" - "$venv" "$wheel" <<'EOF'
import importlib.util
import sys
import zipfile
from pathlib import Path

venv, wheel = Path(sys.argv[1]).resolve(), sys.argv[2]
import spikebert

where = Path(spikebert.__file__).resolve()
assert venv in where.parents, f"spikebert imported from {where}, not from {venv}"
for name in ("converters", "hardware", "energy"):
    assert importlib.util.find_spec(name) is None, f"'import {name}' works: the wheel leaks a top-level name"
for name in ("spikebert.converters", "spikebert.hardware", "spikebert.energy", "spikebert.hardware.lava_procs"):
    assert venv in Path(importlib.util.find_spec(name).origin).resolve().parents, name
with zipfile.ZipFile(wheel) as whl:
    names = whl.namelist()
    tops = {n.split("/")[0] for n in names}
    info = {t for t in tops if t.endswith(".dist-info")}
    assert tops - info == {"spikebert"}, f"the wheel's top-level names: {sorted(tops)}"
    (info,) = info
    if f"{info}/top_level.txt" in names:
        assert whl.read(f"{info}/top_level.txt").decode().split() == ["spikebert"]
    assert any(n.startswith("spikebert/hardware/lava_procs/") for n in names)
print(f"spikebert from {where.parent}; wheel top level: {sorted(tops)}")
EOF

step "a tiny SpikeBERT student (model.pt)"
"$py" - <<'EOF'
from pathlib import Path

import torch

from spikebert.students import save_student
from spikebert.config import StudentConfig
from spikebert.model import SpikeBERT
from spikebert.teacher import load_tokenizer

tok = load_tokenizer("minilm-offline")
cfg = StudentConfig(vocab_size=len(tok), pad_token_id=tok.pad_token_id, dim=16, depth=1, heads=2, max_len=16,
                    num_classes=2, time_steps=2)
torch.manual_seed(0)
model = SpikeBERT(cfg).eval()
save_student(Path("model.pt"), model, tokenizer=tok, tokenizer_name="minilm-offline", task="sst-2", metrics={})
EOF
test -s model.pt

step "spikebert-export --to nir"
"$venv/bin/spikebert-export" --to nir model.pt -o model.nir
test -s model.nir

data=(--data sst-2 --data-dir "$data_dir")
step "spikebert simulate --backend reference"
"$venv/bin/spikebert" simulate model.nir --backend reference "${data[@]}" --limit 16 --out simulate.json >/dev/null
test -s simulate.json

step "spikebert energy"
"$venv/bin/spikebert" energy model.nir --teacher minilm-offline "${data[@]}" --limit 16 --out energy
ls energy/*.json energy/*.md >/dev/null

step "spikebert simulate --backend lava (Lava discovers the ProcessModels of the installed wheel)"
"$venv/bin/spikebert" simulate model.nir --backend lava "${data[@]}" --limit 8 --batch-size 8 --out lava.json >/dev/null
"$py" -c "import json; r = json.load(open('lava.json')); assert r['sentences'] == 8 and r['processes'] > 1, r; \
assert r['agreement_vs_reference'] == 1.0, r; print('lava:', r['processes'], 'processes,', r['wall_s'], 's')"

step "wheel smoke passed"
