"""SpikingBERT to NIR: the SBIF neuron, the per-layer K/V fragments against the PyTorch simulation
(reference executor and Lava), and the backends that refuse SBIF."""

import json
from collections import defaultdict

import nir
import numpy as np
import pytest
import torch

from spikebert.contract.extension import SBIF
from spikebert.contract.nirfile import read_graph
from spikebert.converters.spikingbert_to_nir import export_fragments, fragment_name
from spikebert.hardware import kernels
from spikebert.hardware.reference import ReferenceExecutor
from spikebert.spikingbert import IFPopulations, if_step
from spikebert.testing import make_ids
from tests.test_spikingbert import firing_model, tiny


class RecordingPopulations(IFPopulations):
    """IF populations that keep every step's spikes, (B, L, C) per population and step."""

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.steps: dict[str, list[torch.Tensor]] = defaultdict(list)

    def __call__(self, name: str, current: torch.Tensor) -> torch.Tensor:
        s = super().__call__(name, current)
        self.steps[name].append(s)
        return s


def simulated_steps(model, ids: torch.Tensor) -> dict[str, np.ndarray]:
    """Population -> spikes (T, B, C, L) of the model's own simulation (the NIR layout)."""
    pops = RecordingPopulations(threshold=model.cfg.threshold, leak=model.cfg.leak)
    with torch.no_grad():
        current, mask = model.embeddings(ids), model.token_mask(ids)
        for _ in range(model.cfg.time_steps):
            model._network(current, mask, pops.scoped)
    return {n: torch.stack(s).transpose(2, 3).numpy() for n, s in pops.steps.items()}


@pytest.mark.parametrize("leak", [1.0, 0.75])
def test_sbif_kernel_is_the_students_if_step(leak):
    rng = np.random.default_rng(0)
    currents = rng.normal(0.4, 0.8, (20, 3, 7))
    u_np, u_t = np.zeros((3, 7)), torch.zeros(3, 7, dtype=torch.float64)
    fired = 0.0
    for x in currents:
        s_np, u_np = kernels.if_subtract_step(u_np, x, r=1.0, v_threshold=0.9, leak=leak)
        s_t, u_t = if_step(torch.from_numpy(x), u_t, threshold=0.9, leak=leak)
        np.testing.assert_array_equal(s_np, s_t.numpy())
        np.testing.assert_array_equal(u_np, u_t.numpy())
        fired += s_np.sum()
    assert 0 < fired < currents.size


def test_sbif_rejects_bad_parameters():
    with pytest.raises(ValueError, match="share one shape"):
        SBIF(r=np.ones(3), v_threshold=np.ones(4), leak=np.ones(3))
    with pytest.raises(ValueError, match="positive"):
        SBIF(r=np.ones(3), v_threshold=np.zeros(3), leak=np.ones(3))
    with pytest.raises(ValueError, match="leak"):
        SBIF(r=np.ones(3), v_threshold=np.ones(3), leak=np.full(3, 1.5))


@pytest.mark.parametrize("leak", [1.0, 0.9])
def test_fragments_reproduce_the_simulated_key_and_value_spikes(tmp_path, leak):
    """Fed the recorded spikes of its input population, each layer's fragment (written and read back)
    fires exactly the K and V spikes of the PyTorch simulation, at every step and token."""
    from spikebert.contract.nirfile import write_graph

    cfg = tiny(leak=leak)
    model = firing_model(cfg).eval()
    ids = make_ids(4, cfg.max_len, cfg.vocab_size)
    steps = simulated_steps(model, ids)
    graphs = export_fragments(model, metadata={"task": "toy"})
    assert list(graphs) == [fragment_name(i) for i in range(cfg.depth)]
    for i, (name, graph) in enumerate(graphs.items()):
        write_graph(tmp_path / f"{name}.nir", graph)
        graph = read_graph(tmp_path / f"{name}.nir")
        assert graph.metadata["layer"] == i and graph.metadata["task"] == "toy"
        assert isinstance(graph.nodes[f"{name}.neurons"], SBIF)
        source = "embedding.population" if i == 0 else f"layer{i - 1}.output"
        expected = np.concatenate([steps[f"layer{i}.key"], steps[f"layer{i}.value"]], axis=2)  # (T, B, 2D, L)
        assert 0.05 < expected.mean() < 0.95
        got = ReferenceExecutor(graph).run_inputs(steps[source]).step_outputs
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("fuse", ["none", "blocks"])
@pytest.mark.lava
def test_fragment_runs_in_lava_as_the_reference(fuse):
    from spikebert.hardware.lava_runner import run_lava

    model = firing_model(tiny()).eval()
    ids = make_ids(3, model.cfg.max_len, model.cfg.vocab_size)
    x = simulated_steps(model, ids)["layer0.output"]
    graph = export_fragments(model)[fragment_name(1)]
    expected = ReferenceExecutor(graph).run_inputs(x).step_outputs
    lava = run_lava(graph, inputs=x, batch_size=1 if fuse == "none" else 2, fuse=fuse, progress=False)
    np.testing.assert_array_equal(lava.step_outputs, expected)


def test_loihi_fixed_point_and_netx_refuse_sbif():
    from spikebert.hardware.nir_to_netx import netx_layers
    from spikebert.hardware.quantize import quantize_graph

    graph = export_fragments(firing_model(tiny()))[fragment_name(0)]
    with pytest.raises(ValueError, match="subtraction reset"):
        quantize_graph(graph)
    with pytest.raises(ValueError, match="cannot be exported to netx"):
        netx_layers(graph)  # its token-wise Conv1d already; a plain Affine -> SBIF chain for the neuron
    nodes = {"input": nir.Input(input_type={"input": np.array([3])}),
             "fc": nir.Affine(weight=np.ones((2, 3)), bias=np.zeros(2)),
             "if": SBIF(r=np.ones(2), v_threshold=np.ones(2), leak=np.ones(2)),
             "output": nir.Output(output_type={"output": np.array([2])})}
    chain = nir.NIRGraph(nodes=nodes, edges=[("input", "fc"), ("fc", "if"), ("if", "output")],
                         metadata={"dt": 1.0, "time_steps": 2})
    with pytest.raises(ValueError, match="SBIF subtracts the threshold"):
        netx_layers(chain)


def test_partial_export_cli(tmp_path, caplog, tiny_task):
    """Whole export refuses and points at --partial; --partial writes one graph per layer and a manifest;
    a SpikeBERT checkpoint or another format with --partial is refused."""
    from spikebert.cli import main
    from spikebert.io import save_checkpoint
    from spikebert.spikingbert import SpikingBERT

    model = firing_model(tiny()).float()
    ckpt = tmp_path / "model.pt"
    save_checkpoint(ckpt, {"format": SpikingBERT.CHECKPOINT_FORMAT, "config": model.cfg.to_dict(),
                           "state_dict": model.state_dict(), "tokenizer": "tok", "tokenizer_sha256": "0" * 64,
                           "task": "toy", "metrics": {}, "distill_config": {}})
    caplog.clear()
    assert main(["export", "--to", "nir", str(ckpt)]) == 2
    assert "--partial" in caplog.text and "softmax" in caplog.text and not (tmp_path / "model.nir").exists()
    assert main(["export", "--to", "nir", "--partial", str(ckpt)]) == 0
    out = tmp_path / "model-nir"
    manifest = json.loads((out / "fragments.json").read_text())
    assert [f["file"] for f in manifest["fragments"]] == ["layer0.key_value.nir", "layer1.key_value.nir"]
    assert any("softmax" in g for g in manifest["not_expressible"]) and manifest["host"]
    graph = read_graph(out / "layer1.key_value.nir")
    assert graph.metadata["tokenizer"] == "tok" and graph.metadata["spike_condition"] == "v >= v_threshold"
    (out / "layer9.key_value.nir").write_text("stale")  # an earlier export's leftover goes with the swap
    assert main(["export", "--to", "nir", "--partial", str(ckpt), "-o", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["fragments.json", "layer0.key_value.nir",
                                                     "layer1.key_value.nir"]
    for target, why in [(ckpt, "is a file"), (tmp_path, "not an earlier fragment export")]:
        caplog.clear()
        assert main(["export", "--to", "nir", "--partial", str(ckpt), "-o", str(target)]) == 2 and why in caplog.text
    assert ckpt.is_file() and (tmp_path / "model.pt").is_file()
    caplog.clear()  # a fragment takes spikes: the sentence commands say so
    assert main(["simulate", str(out / "layer0.key_value.nir"), "--backend", "reference", "--data", "toy",
                 "--data-dir", str(tiny_task)]) == 2
    assert "takes spike tensors" in caplog.text and "run_inputs" in caplog.text
    caplog.clear()
    assert main(["export", "--to", "onnx", "--partial", str(ckpt)]) == 2 and "--to nir" in caplog.text
