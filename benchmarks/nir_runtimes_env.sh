#!/usr/bin/env bash
# Recreate the venv with the independent NIR runtimes that benchmarks/nir_paper.py compares against
# (--other-python): Norse 1.1.0 and Sinabs 3.1.3 (and pbr, which sinabs imports for its version).
# They run on the project venv's torch, nir and nirtorch: the new venv sees .venv's site-packages through
# a .pth file, and the two packages go in with --no-deps (their declared torch pins would pull another torch).
# snnTorch, the third runtime, is the project's own dependency.
#
# Usage: bash benchmarks/nir_runtimes_env.sh [VENV]   (from the repository root; default ../nirpaper-venv)
#   then: python benchmarks/nir_paper.py --other-python ../nirpaper-venv/bin/python --out benchmarks/results/nir_paper.json
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${1:-../nirpaper-venv}"
py="$(.venv/bin/python -c 'import sys; print(sys._base_executable)')"
"$py" -m venv "$venv"
site="$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
echo "$site" > "$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/project-venv.pth"
"$venv/bin/pip" install --no-deps "norse==1.1.0" "sinabs==3.1.3" pbr
"$venv/bin/python" -c "import norse, sinabs; print('norse', norse.__version__, 'sinabs', sinabs.__version__)"
