"""Lava is an extra: without it, every Lava feature raises one SpikebertError line saying how to install it,
and the command line exits 2 with that line; everything else still runs."""

import os
import subprocess
import sys

import numpy as np
import pytest

from spikebert.contract.errors import SpikebertError
from spikebert.hardware import lava_env

LAVA_HINT = "needs Lava (lava-nc 0.10), which runs on Python 3.10 only: pip install 'spikebert[lava]' in a Python 3.10"
LAVA_DL_HINT = "pip install 'spikebert[lava-dl]' and then pip install --no-deps lava-dl==0.6.0"
# run in a child interpreter: Lava hidden before anything imports it
NO_LAVA = "import sys; sys.modules['lava'] = None; from spikebert.cli import main; sys.exit(main(sys.argv[1:]))"


@pytest.fixture
def no_lava(monkeypatch):
    """Lava as if not installed (an import of ``lava`` or ``lava.magma`` raises ModuleNotFoundError)."""
    for name in ("lava", "lava.magma"):
        monkeypatch.setitem(sys.modules, name, None)


def tiny_graph(path):
    """A tiny SpikeBERT graph on the offline MiniLM tokenizer, written to ``path``."""
    import torch

    from spikebert.config import StudentConfig
    from spikebert.contract.nirfile import write_graph
    from spikebert.converters.torch_to_nir import export_student
    from spikebert.model import SpikeBERT
    from spikebert.teacher import load_tokenizer
    from spikebert.testing import scale_up_linears
    from spikebert.tokenize import tokenizer_fingerprint

    tok = load_tokenizer("minilm-offline")
    cfg = StudentConfig(vocab_size=len(tok), pad_token_id=tok.pad_token_id, dim=16, depth=1, heads=2, max_len=8,
                        num_classes=2, time_steps=2)
    torch.manual_seed(0)
    model = SpikeBERT(cfg).eval()
    with torch.no_grad():
        scale_up_linears(model)
    graph = export_student(model, metadata={"tokenizer": "minilm-offline", "tokenizer_sha256": tokenizer_fingerprint(tok),
                                            "task": "toy"})
    write_graph(path, graph)
    return path


def test_require_lava_says_how_to_install(no_lava):
    with pytest.raises(SpikebertError) as err:
        lava_env.require_lava("the Lava backend")
    message = str(err.value)
    assert message.startswith(f"the Lava backend {LAVA_HINT}") and "\n" not in message
    assert not lava_env.lava_available()
    with pytest.raises(SpikebertError, match=r"netx export needs lava-dl 0\.6 \(netx\) and Lava") as err:
        lava_env.require_lava_dl("netx export")
    assert LAVA_DL_HINT in str(err.value) and "\n" not in str(err.value)


def test_lava_features_refuse_without_lava(no_lava):
    import nir

    from spikebert.hardware.lava_runner import run_lava
    from spikebert.hardware.nir_to_netx import check_netx_weights
    from spikebert.hardware.quantize import quantize_graph

    graph = nir.NIRGraph(nodes={"input": nir.Input(np.array([2])),
                                "fc": nir.Affine(weight=np.eye(2), bias=np.zeros(2)),
                                "lif": nir.LIF(tau=np.full(2, 2e-3), r=np.ones(2), v_leak=np.zeros(2),
                                               v_threshold=np.ones(2)),
                                "output": nir.Output(np.array([2]))},
                         edges=[("input", "fc"), ("fc", "lif"), ("lif", "output")], metadata={"dt": 1e-3})
    with pytest.raises(SpikebertError, match=r"^the Lava backend \(--backend lava\) needs Lava"):
        run_lava(graph, inputs=np.zeros((2, 1, 2)), progress=False)
    with pytest.raises(SpikebertError, match=r"^Loihi fixed point .* needs Lava"):
        quantize_graph(graph)
    with pytest.raises(SpikebertError, match=r"^netx export \(--to netx\) needs lava-dl"):
        check_netx_weights("fc", np.array([[1, 2]]))


def simulate_without_lava(tmp_path, data_dir, backend: str) -> subprocess.CompletedProcess:
    graph = tiny_graph(tmp_path / "model.nir")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run([sys.executable, "-c", NO_LAVA, "simulate", str(graph), "--backend", backend, "--data", "toy",
                           "--data-dir", str(data_dir), "--limit", "4", "--batch-size", "4"],
                          capture_output=True, text=True, env=env, timeout=300)


def test_cli_without_lava_logs_one_error_line(tmp_path, tiny_task, no_lava, caplog):
    from spikebert.cli import main

    graph = tiny_graph(tmp_path / "model.nir")
    assert main(["simulate", str(graph), "--backend", "lava", "--data", "toy", "--data-dir", str(tiny_task),
                 "--limit", "4"]) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and errors[0].startswith(f"the Lava backend (--backend lava) {LAVA_HINT}"), errors
    assert "\n" not in errors[0]


@pytest.mark.slow
def test_cli_without_lava_exits_2_with_one_line(tmp_path, tiny_task):
    """A fresh interpreter in which Lava was never importable: exit code 2, one line on stderr, no traceback."""
    run = simulate_without_lava(tmp_path, tiny_task, "lava")
    assert run.returncode == 2, run.stderr
    errors = [line for line in run.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "Traceback" not in run.stderr, run.stderr
    assert f" the Lava backend (--backend lava) {LAVA_HINT} environment (" in errors[0], errors[0]
    assert errors[0].endswith(")"), errors[0]


@pytest.mark.slow
def test_reference_backend_runs_without_lava(tmp_path, tiny_task):
    """The command line prepares Lava only where it is installed."""
    run = simulate_without_lava(tmp_path, tiny_task, "reference")
    assert run.returncode == 0, run.stderr
    assert '"sentences": 4' in run.stdout


@pytest.mark.lava
def test_require_lava_passes_where_lava_is_installed():
    lava_env.require_lava("the Lava backend")
    lava_env.require_lava_dl("netx export")
    assert lava_env.lava_available()
