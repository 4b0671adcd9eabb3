"""SpikingBERT student: IF dynamics, equilibrium rates, eq. IDE gradients, losses, training, CLI, energy."""

import json

import pytest
import torch

from spikebert.cli import main
from spikebert.config import SpikingBERTConfig, SpikingDistillConfig
from spikebert.energy.counting import PopulationActivity, spikingbert_counts
from spikebert.spiking_distill import (
    attention_loss,
    head_groups,
    prediction_loss,
    spiking_distill_loss,
    spiking_layer_map,
)
from spikebert.spikingbert import SpikingBERT, equilibrium_rate, if_step, population_names
from spikebert.testing import make_ids


def tiny(**kw) -> SpikingBERTConfig:
    return SpikingBERTConfig(**{"vocab_size": 50, "dim": 8, "depth": 2, "heads": 2, "max_len": 12, "time_steps": 8,
                                "hidden_dropout": 0.0, "attention_dropout": 0.0, **kw})


def firing_model(cfg: SpikingBERTConfig, seed: int = 0) -> SpikingBERT:
    torch.manual_seed(seed)
    model = SpikingBERT(cfg).double()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Linear):
                m.weight.normal_(0, 0.5)
                m.bias.normal_(0, 0.3)
    return model


def test_if_step_golden():
    """Constant 0.75 into theta = 1 (binary-exact): v = 0.75, 1.5 (fire, keep 0.5), 1.25 (fire, keep 0.25),
    1.0 (fire at v = theta, keep 0)."""
    u, spikes = torch.zeros(1), []
    for _ in range(4):
        s, u = if_step(torch.tensor([0.75]), u, threshold=1.0, leak=1.0)
        spikes.append(int(s))
    assert spikes == [0, 1, 1, 1] and float(u) == 0.0
    s, u = if_step(torch.tensor([1.5]), torch.zeros(1), threshold=1.0, leak=0.5)  # LIF: leak after the reset
    assert int(s) == 1 and torch.allclose(u, torch.tensor([0.25]))


@pytest.mark.parametrize("current", [-0.3, 0.0, 0.25, 0.7, 1.0, 2.5])
def test_rate_of_a_constant_current_is_the_equilibrium_rate(current):
    """Eq. EQ: an IF neuron's ASR over T steps is within 1/T of clamp(I / theta, 0, 1)."""
    T, theta = 64, 0.8
    u, fired = torch.zeros(1), 0.0
    for _ in range(T):
        s, u = if_step(torch.tensor([current]), u, threshold=theta, leak=1.0)
        fired += float(s)
    assert abs(fired / T - float(equilibrium_rate(torch.tensor(current), threshold=theta))) <= 1 / T


def test_simulation_shapes_rates_and_counts():
    cfg = tiny()
    model = firing_model(cfg).eval()
    ids = make_ids(3, 10, cfg.vocab_size)
    out = model(ids, record=True)
    assert out.logits.shape == (3, 2) and len(out.hidden) == cfg.depth + 1 and out.scores is None
    assert all(h.shape == (3, 10, cfg.dim) and h.min() >= 0 and h.max() <= 1 for h in out.hidden)
    assert list(out.spike_counts) == population_names(cfg.depth)
    # the embedding population sees a constant affine current: its rates are eq. EQ's within 1/T
    current = model.embeddings(ids)
    assert (out.hidden[0] - equilibrium_rate(current, threshold=cfg.threshold)).abs().max() <= 1 / cfg.time_steps
    real = int(model.token_mask(ids).sum())
    emb = out.spike_counts["embedding.population"]
    assert emb["neuron_steps"] == real * cfg.time_steps * cfg.dim
    assert out.spike_counts["layer0.intermediate"]["neuron_steps"] == real * cfg.time_steps * cfg.mlp_dim
    rates = [c["spikes"] / c["neuron_steps"] for c in out.spike_counts.values()]
    assert all(0 < r < 1 for r in rates), rates  # every population fires, none saturates


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_padding_changes_nothing_for_the_real_tokens(pooling):
    cfg = tiny(pooling=pooling)
    model = firing_model(cfg).eval()
    ids = make_ids(2, 6, cfg.vocab_size, pads=())
    padded = torch.cat([ids, torch.full((2, 4), cfg.pad_token_id)], dim=1)
    a, b = model(ids, record=True), model(padded, record=True)
    assert torch.allclose(a.logits, b.logits, atol=1e-12, rtol=0)
    assert a.spike_counts == b.spike_counts


def test_training_forward_is_the_simulation_and_its_gradient_the_rate_networks():
    """Eq. IDE: values from the T-step simulation, gradients exactly those of the rate network."""
    cfg = tiny()
    model = firing_model(cfg).train()
    ids = make_ids(2, 7, cfg.vocab_size)
    weights = [torch.randn(2, 7, cfg.dim, dtype=torch.float64, generator=torch.Generator().manual_seed(i))
               for i in range(cfg.depth + 1)]
    out = model(ids)
    simulated, _ = model.simulate(ids)
    for h, s in zip(out.hidden, simulated):
        assert torch.allclose(h, s, atol=1e-12)
    assert out.scores is not None and out.scores[0].shape == (2, cfg.heads, 7, 7)
    assert len(out.rate_gap) == cfg.depth + 1 and all(0 <= g <= 1 for g in out.rate_gap)
    sum(((h * w).sum() for h, w in zip(out.hidden, weights))).backward()
    grads = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    eq_hidden, _ = model.rate_network(ids)
    sum(((h * w).sum() for h, w in zip(eq_hidden, weights))).backward()
    assert grads and all(torch.equal(grads[k], p.grad) for k, p in model.named_parameters() if k in grads)
    assert any(g.abs().sum() > 0 for g in grads.values())


@pytest.mark.slow
def test_rate_network_approaches_the_simulation_as_t_grows():
    """Softmax, LayerNorm and GELU make eq. EQ approximate: the gap shrinks with T (the diagnostic of the notes)."""
    model = firing_model(tiny()).eval()
    ids = make_ids(2, 8, 50)
    with torch.no_grad():
        eq, _ = model.rate_network(ids)
        gaps = [float((model.simulate(ids, time_steps=T)[0][-1] - eq[-1]).abs().mean()) for T in (4, 256)]
    assert gaps[1] < gaps[0] and gaps[1] < 0.1


def test_config_errors():
    with pytest.raises(ValueError, match="divisible by heads"):
        tiny(heads=3)
    with pytest.raises(ValueError, match="leak"):
        tiny(leak=0.0)
    with pytest.raises(ValueError, match="every loss weight is 0"):
        SpikingDistillConfig(w_hid=0, w_att=0, w_pred=0)
    with pytest.raises(ValueError, match="exceeds max_len"):
        SpikingBERT(tiny()).eval()(torch.ones(1, 13, dtype=torch.long))
    with pytest.raises(ValueError, match="time_steps must be >= 1"):
        SpikingBERT(tiny()).eval()(torch.ones(1, 4, dtype=torch.long), time_steps=0)


def test_layer_maps_and_head_groups():
    assert spiking_layer_map(4, 12) == ([0, 3, 6, 9, 12], [2, 5, 8, 11])  # the official 12 -> 4 map
    assert spiking_layer_map(2, 6) == ([0, 3, 6], [2, 5])
    with pytest.raises(ValueError, match="multiple of the student depth 4"):
        spiking_layer_map(4, 6)  # would never distil teacher layers 5 and 6
    assert head_groups(4, 12) == 3 and head_groups(12, 12) == 1
    with pytest.raises(ValueError, match="w_att=0"):
        head_groups(8, 12)


def test_attention_loss_hand_computed():
    """Teacher heads (1, 3) and (2, 4)... averaged in groups of two; only real (query, key) pairs count."""
    mask = torch.tensor([[True, True, False]])
    s = torch.zeros(1, 1, 3, 3)
    t = torch.zeros(1, 2, 3, 3)
    t[0, 0, 0, 1], t[0, 1, 0, 1] = 2.0, 4.0  # mean 3 at a real pair
    t[0, :, 2, 2] = 100.0  # a pad pair: ignored
    assert torch.allclose(attention_loss([s], [t], mask), torch.tensor(9.0 / 4))


def test_prediction_loss_is_the_official_mean_over_batch_and_classes():
    s, t = torch.tensor([[1.0, -1.0, 0.5]]), torch.tensor([[0.2, 0.3, -2.0]])
    expected = -(t.softmax(-1) * s.log_softmax(-1)).sum() / 3
    assert torch.allclose(prediction_loss(s, t, 1.0), expected)


def test_distill_loss_skips_zero_weights():
    cfg = SpikingDistillConfig(w_att=0.0, w_pred=0.0, w_ce=1.0)
    model = firing_model(tiny()).train()
    ids = make_ids(2, 5, 50)
    out = model(ids)
    projected = [h for h in out.hidden]
    loss, parts = spiking_distill_loss(cfg, out=out, projected=projected, teacher_logits=torch.zeros(2, 2),
                                       teacher_hidden=[torch.zeros_like(h) for h in projected], teacher_scores=None,
                                       labels=torch.tensor([0, 1]), mask=model.token_mask(ids))
    assert set(parts) == {"hid", "ce", "loss", "rate_gap_last"} and loss.requires_grad


def test_teacher_scores_are_the_pre_softmax_attention(tiny_teacher):
    """softmax of the hooked scores = the attention probabilities transformers returns (eager attention)."""
    from spikebert.targets import OnlineScoredTargets
    from spikebert.teacher import load_teacher, load_tokenizer

    teacher = load_teacher(tiny_teacher).eval()
    teacher.config._attn_implementation = "eager"
    enc = load_tokenizer(tiny_teacher)(["a fine film", "dull"], padding=True, return_tensors="pt")
    enc = {k: enc[k] for k in ("input_ids", "attention_mask")}
    t = OnlineScoredTargets(teacher, [0, 2], [1])(torch.arange(2), enc)
    logits, hidden, scores = t.logits, t.hidden, t.scores
    with torch.no_grad():
        ref = teacher(**enc, output_attentions=True)
    assert torch.allclose(logits, ref.logits) and len(hidden) == 2 and len(scores) == 1
    assert torch.allclose(scores[0].softmax(-1), ref.attentions[1], atol=1e-6)


def test_energy_counts_hand_computed():
    """depth 1, D 2, F 4, one sentence of 3 tokens at T 2, hand-set spike counts."""
    pops = {name: {"spikes": 6.0, "neuron_steps": 12.0, "spikes_x_tokens": 18.0} for name in population_names(1)}
    pops["layer0.intermediate"] = {"spikes": 10.0, "neuron_steps": 24.0, "spikes_x_tokens": 30.0}
    act = PopulationActivity(samples=1, time_steps=2, real_tokens=3.0, token_pairs=9.0, populations=pops)
    rows, other = spikingbert_counts(depth=1, dim=2, mlp_dim=4, heads=1, num_classes=2, activity=act)
    by = {r.name: r for r in rows}
    assert by["layer0.key"].acs == 6 * 2 and by["layer0.key"].dense_macs == 2 * 2 * 3 * 2
    assert by["layer0.scores"].acs == 18 and by["layer0.scores"].dense_macs == 9 * 2 * 2
    assert by["layer0.fc1"].acs == 6 * 4 and by["layer0.fc2"].acs == 10 * 2
    assert by["layer0.intermediate.neurons"].neuron_updates == 4 * 3 * 2
    assert by["classifier"].macs == 4 and sum(r.macs for r in rows) == 4
    assert other.softmax == 9 * 2 and other.gelu == 4 * 3 * 2 and other.layer_norm == 2 * 3 * (1 + 2 * 2)
    with pytest.raises(ValueError, match="depth 2"):
        spikingbert_counts(depth=2, dim=2, mlp_dim=4, heads=1, num_classes=2, activity=act)


def test_population_activity_record_errors(tmp_path):
    path = tmp_path / "act.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not a SpikingBERT population activity record"):
        PopulationActivity.from_json(path)
    record = {"samples": 1, "time_steps": 2, "real_tokens": 3.0, "token_pairs": 9.0,
              "populations": {"embedding.population": {"spikes": 1.0}}}
    path.write_text(json.dumps(record))
    with pytest.raises(ValueError, match=r"\['embedding.population'\] lack"):
        PopulationActivity.from_json(path)


@pytest.mark.slow
def test_train_eval_energy_and_export_cli(tmp_path, tiny_teacher, tiny_task, capsys, caplog):
    """`train distill --method spikingbert` -> eval at another T -> energy report; NIR/ONNX export refuse."""
    common = ["--data", "toy", "--data-dir", str(tiny_task), "--teacher", tiny_teacher]
    student = ["--student-set", "dim=16", "--student-set", "heads=1", "--student-set", "max_len=8",
               "--student-set", "time_steps=4"]
    run = tmp_path / "run"
    assert main(["train", "distill", "--method", "spikingbert", *common, *student, "--out", str(run),
                 "--set", "epochs=1", "--set", "lr=1e-3", "--set", "batch_size=4", "--set", "train_samples=80"]) == 0
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any({"hid", "att", "pred", "rate_gap_last"} <= set(m) for m in metrics)
    capsys.readouterr()
    assert main(["eval", str(run / "model.pt"), "--data", "toy", "--data-dir", str(tiny_task), "--time-steps", "6",
                 "--json", str(tmp_path / "eval.json")]) == 0
    result = json.loads((tmp_path / "eval.json").read_text())
    assert result["time_steps"] == 6 and result["examples"] == 24
    assert set(result["firing_rates"]) == set(population_names(2))

    out = tmp_path / "energy"
    assert main(["energy", str(run / "model.pt"), "--teacher", tiny_teacher, "--data", "toy", "--data-dir",
                 str(tiny_task), "--time-steps", "6", "--profile", "45nm-fp32,loihi", "--out", str(out)]) == 0
    report = json.loads((out / "energy_report.json").read_text())
    assert report["time_steps"] == 6 and report["samples"] == 24 and report["accuracy"] == result["accuracy"]
    assert "LayerNorm" in json.dumps(report["extra"])
    recorded = PopulationActivity.from_json(out / "activity.json")
    assert recorded.rate("layer0.key") == pytest.approx(result["firing_rates"]["layer0.key"])
    # the recorded activity gives the same report
    again = tmp_path / "again"
    assert main(["energy", str(run / "model.pt"), "--teacher", tiny_teacher, "--data", "toy", "--data-dir",
                 str(tiny_task), "--activity", str(out / "activity.json"), "--out", str(again)]) == 0
    assert json.loads((again / "energy_report.json").read_text())["layers"] == report["layers"]

    caplog.clear()
    assert main(["export", "--to", "nir", str(run / "model.pt"), "--output", str(tmp_path / "m.nir")]) == 2
    err = caplog.text
    assert "softmax" in err and "GELU" in err and "--partial" in err and not (tmp_path / "m.nir").exists()
    caplog.clear()
    assert main(["export", "--to", "onnx", str(run / "model.pt")]) == 2
    assert "is a SpikingBERT student" in caplog.text
    assert main(["train", "teacher", "--method", "spikingbert", *common, "--out", str(tmp_path / "t")]) == 2


@pytest.mark.slow
def test_interrupted_run_resumes_to_the_same_weights_with_dropout(tmp_path, tiny_teacher, tiny_task):
    """Dropout draws a new mask every simulated step: the engine's RNG state makes the resume exact."""
    from spikebert.data import load_split
    from spikebert.engine import Interrupted
    from spikebert.spiking_distill import distill_spikingbert
    from spikebert.teacher import load_tokenizer

    tok = load_tokenizer(tiny_teacher)
    student = SpikingBERTConfig(vocab_size=len(tok), pad_token_id=tok.pad_token_id, dim=16, depth=2, heads=1,
                                max_len=8, time_steps=3)
    cfg = SpikingDistillConfig(epochs=2, batch_size=16, checkpoint_every=2, lr=1e-3)
    train, dev = (load_split("toy", s, data_dir=tiny_task) for s in ("train", "dev"))
    kw = {"teacher_dir": tiny_teacher, "train": train, "dev": dev, "task": "toy"}
    straight = distill_spikingbert(student, cfg, run_dir=tmp_path / "a", **kw)
    with pytest.raises(Interrupted):
        distill_spikingbert(student, cfg, run_dir=tmp_path / "b", stop_after_steps=7, **kw)  # mid-epoch 2
    assert distill_spikingbert(student, cfg, run_dir=tmp_path / "b", **kw) == straight
    a = torch.load(tmp_path / "a" / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "b" / "model.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)

    # the official second task stage (prediction distillation) starts from the first run, strictly
    second = distill_spikingbert(student, SpikingDistillConfig(epochs=1, batch_size=16, w_hid=0, w_att=0),
                                 run_dir=tmp_path / "c", init=tmp_path / "a" / "model.pt", **kw)
    assert 0 <= second["dev_accuracy"] <= 1
    wider = SpikingBERTConfig(**{**student.to_dict(), "dim": 32})
    with pytest.raises(ValueError, match="dim=16"):
        distill_spikingbert(wider, cfg, run_dir=tmp_path / "d", init=tmp_path / "a" / "model.pt", **kw)
    leaky = SpikingBERTConfig(**{**student.to_dict(), "leak": 0.9})
    with pytest.raises(ValueError, match="leak=0.9"):
        distill_spikingbert(leaky, cfg, run_dir=tmp_path / "e", **kw)


@pytest.mark.slow
def test_intermediate_stage_keeps_the_last_epoch(tmp_path, tiny_teacher, tiny_task):
    """w_pred = w_ce = 0 (official IKD): the head is untrained, so model.pt is the last epoch's, also
    when the run is resumed after it finished."""
    from spikebert.data import load_split
    from spikebert.spiking_distill import distill_spikingbert
    from spikebert.teacher import load_tokenizer

    tok = load_tokenizer(tiny_teacher)
    student = SpikingBERTConfig(vocab_size=len(tok), pad_token_id=tok.pad_token_id, dim=16, depth=2, heads=1,
                                max_len=8, time_steps=3)
    cfg = SpikingDistillConfig(epochs=3, batch_size=32, lr=1e-3, w_pred=0.0)
    train, dev = (load_split("toy", s, data_dir=tiny_task) for s in ("train", "dev"))
    kw = {"teacher_dir": tiny_teacher, "train": train, "dev": dev, "task": "toy", "run_dir": tmp_path / "ikd"}
    result = distill_spikingbert(student, cfg, **kw)
    assert result["epoch"] == 3
    saved = torch.load(tmp_path / "ikd" / "model.pt", weights_only=True)
    final = torch.load(tmp_path / "ikd" / "state.pt", weights_only=True)["model"]
    assert all(torch.equal(v, final[f"student.{k}"]) for k, v in saved["state_dict"].items())
    assert distill_spikingbert(student, cfg, **kw)["dev_accuracy"] == result["dev_accuracy"]
