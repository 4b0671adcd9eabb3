#!/usr/bin/env bash
# Recreate the environments of the peer energy counters that benchmarks/energy_peers.py and
# tests/test_energy_peers.py compare the energy module against (issue #18).
#
#   NeuroBench 2.3.0: beside our dependencies in the project venv (.venv, Python 3.10). Its metrics,
#     hooks and models import only torch, snntorch, numpy and tqdm, all ours already; its declared
#     dependencies (torchaudio, tonic, numba, llvmlite, librosa, ...) serve its datasets, which we do
#     not use, and torchaudio would pull a torch of its own. So: --no-deps.
#   SpikingJelly 2.0.0: requires Python >= 3.11, so its own venv (.venv-sj). torch 2.13.0+cpu (the
#     wheel this machine carries; 2.0.0 wants torch >= 2.6), spikingjelly --no-deps (its declared
#     torchvision, torchaudio, tensorboard, SciencePlots serve datasets and plots), plus what
#     op_counter imports (numpy, loguru, packaging, tqdm), nir (our contract, so spikebert.model and
#     spikebert.energy import there from the source tree), snntorch --no-deps (our LIF wraps snn.Leaky)
#     and transformers (the BERT-base check).
#
# Usage: bash benchmarks/peer_envs.sh [neurobench|spikingjelly|all]   (from the repository root)
# Env: PY311 (default python3.11), TORCH_SJ (default: the local torch 2.13.0 cp311 CPU wheel, else torch==2.13.0).
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-all}"

if [[ "$what" == neurobench || "$what" == all ]]; then
    .venv/bin/pip install --no-deps "neurobench==2.3.0"
    .venv/bin/python -c "import neurobench, neurobench.benchmarks, neurobench.metrics.workload; print('neurobench', neurobench.__version__)"
fi

if [[ "$what" == spikingjelly || "$what" == all ]]; then
    PY311="${PY311:-python3.11}"
    wheel=/opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl
    TORCH_SJ="${TORCH_SJ:-$( [[ -f $wheel ]] && echo "$wheel" || echo 'torch==2.13.0' )}"
    [[ -x .venv-sj/bin/python ]] || "$PY311" -m venv .venv-sj
    .venv-sj/bin/pip install "$TORCH_SJ"
    .venv-sj/bin/pip install --no-deps "spikingjelly==2.0.0"
    .venv-sj/bin/pip install "numpy<2.5" "loguru>=0.7,<1" packaging tqdm "nir==1.0.8" "transformers==5.20.2"
    .venv-sj/bin/pip install --no-deps "snntorch==1.0.0"  # spikebert.neurons.LIF wraps an snn.Leaky
    .venv-sj/bin/python -c "from spikingjelly.activation_based.op_counter import LemaireEnergyProfiler, SynOpCounter; print('spikingjelly op_counter ok')"
fi
