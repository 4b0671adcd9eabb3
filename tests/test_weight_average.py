"""The exponential moving average of the weights (``DistillConfig.ema_decay``, ``Trainer(ema_decay=...)``):
the recurrence, what is selected and saved, resume, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from spikebert.config import DistillConfig
from spikebert.contract.errors import SpikebertError
from spikebert.engine import STATE_FILE, STATE_FORMAT, Interrupted, LoopConfig, Trainer
from spikebert.io import load_checkpoint, save_checkpoint

DECAY = 0.75


def _loop(**kw) -> LoopConfig:
    return LoopConfig(**{"epochs": 2, "batch_size": 2, "lr": 0.1, "weight_decay": 0.0, "seed": 0,
                         "checkpoint_every": 0, **kw})


class Recorder:
    """A step that records the weights it sees (those after the previous step) and an eval of the sum of weights."""

    def __init__(self) -> None:
        self.seen: list[torch.Tensor] = []
        self.best: list[torch.Tensor] = []
        self.x = torch.linspace(-1, 1, 12).reshape(6, 2)

    def step(self, model, idx):
        self.seen.append(model.weight.detach().clone())
        loss = ((model(self.x[idx]) - 1.0) ** 2).mean()
        return loss, {"loss": float(loss.detach())}

    def eval(self, model):
        total = float(model.weight.detach().sum())
        return {"metric": total, "weight_sum": total}

    def on_best(self, model, metrics):
        self.best.append(model.weight.detach().clone())


def _trainer(tmp_path, *, ema_decay=DECAY, **kw) -> Trainer:
    torch.manual_seed(0)
    return Trainer(run_dir=tmp_path, model=nn.Linear(2, 1), cfg=_loop(**kw), n_examples=6, fingerprint={"t": 1},
                   desc="test", ema_decay=ema_decay)


def test_the_average_follows_its_recurrence_and_is_what_is_selected(tmp_path):
    rec = Recorder()
    trainer = _trainer(tmp_path, epochs=1)
    trainer.fit(rec.step, rec.eval, rec.on_best)
    weights = [*rec.seen[1:], trainer.acc.unwrap_model(trainer.model).weight.detach()]  # after steps 1..n
    assert len(weights) == 3
    average = weights[0].clone()  # the first update copies
    for w in weights[1:]:
        average = DECAY * average + (1 - DECAY) * w
    assert len(rec.best) == 1
    torch.testing.assert_close(rec.best[0], average, rtol=0, atol=1e-7)
    assert not torch.allclose(rec.best[0], weights[-1])  # the trained weights are not what was selected
    record = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines() if "eval" in x][0]
    assert record["eval"]["weight_sum"] == pytest.approx(float(average.sum()), abs=1e-6)
    assert record["eval"]["raw_weight_sum"] == pytest.approx(float(weights[-1].sum()), abs=1e-6)
    assert "raw_metric" not in record["eval"]


def test_an_interrupted_run_resumes_to_the_same_average(tmp_path):
    straight = Recorder()
    _trainer(tmp_path / "a").fit(straight.step, straight.eval, straight.on_best)
    resumed = Recorder()
    with pytest.raises(Interrupted):
        _trainer(tmp_path / "b").fit(resumed.step, resumed.eval, resumed.on_best, stop_after_steps=4)  # mid-epoch 2
    trainer = _trainer(tmp_path / "b")
    trainer.fit(resumed.step, resumed.eval, resumed.on_best)
    assert len(straight.best) == len(resumed.best) >= 1
    assert torch.equal(straight.best[-1], resumed.best[-1])
    a = load_checkpoint(tmp_path / "a" / STATE_FILE, expected_format=STATE_FORMAT)["ema"]
    b = load_checkpoint(tmp_path / "b" / STATE_FILE, expected_format=STATE_FORMAT)["ema"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert int(a["n_averaged"]) == 6


def test_without_a_decay_the_trained_weights_are_selected(tmp_path):
    rec = Recorder()
    trainer = _trainer(tmp_path, ema_decay=0.0, epochs=1)
    trainer.fit(rec.step, rec.eval, rec.on_best)
    assert trainer.ema is None
    assert torch.equal(rec.best[0], trainer.acc.unwrap_model(trainer.model).weight.detach())
    assert "ema" not in load_checkpoint(tmp_path / STATE_FILE, expected_format=STATE_FORMAT)
    assert "raw_weight_sum" not in (tmp_path / "metrics.jsonl").read_text()


@pytest.mark.parametrize("decay", [1.0, -0.1, 1.5])
def test_a_decay_outside_0_1_is_refused(tmp_path, decay):
    with pytest.raises(SpikebertError, match=r"ema_decay must be in \[0, 1\)"):
        _trainer(tmp_path, ema_decay=decay)
    with pytest.raises(ValueError, match="ema_decay"):
        DistillConfig.from_dict({"ema_decay": decay})
    assert DistillConfig().ema_decay == 0.0  # off by default, as the official code


def test_a_state_without_an_average_is_refused_not_restarted(tmp_path):
    rec = Recorder()
    with pytest.raises(Interrupted):
        _trainer(tmp_path).fit(rec.step, rec.eval, rec.on_best, stop_after_steps=2)
    state = load_checkpoint(tmp_path / STATE_FILE, expected_format=STATE_FORMAT)
    save_checkpoint(tmp_path / STATE_FILE, {k: v for k, v in state.items() if k != "ema"})
    with pytest.raises(SpikebertError, match="holds no weight average"):
        _trainer(tmp_path)
    assert "ema" not in load_checkpoint(tmp_path / STATE_FILE, expected_format=STATE_FORMAT)  # left as it was


def test_calibrate_fn_sees_the_average_before_it_is_judged_and_its_change_is_kept(tmp_path):
    rec, seen = Recorder(), []

    def calibrate(model):
        seen.append(model.weight.detach().clone())
        model.bias.data.fill_(7.0)

    trainer = _trainer(tmp_path, epochs=1)
    trainer.fit(rec.step, rec.eval, rec.on_best, calibrate_fn=calibrate)
    assert len(seen) == 1 and torch.equal(seen[0], rec.best[0])
    ema = load_checkpoint(tmp_path / STATE_FILE, expected_format=STATE_FORMAT)["ema"]
    assert float(ema["module.bias"]) == 7.0  # saved with the state, so a resume continues from it


def _tiny_student(tiny_teacher, **kw):
    from spikebert.model import SpikeBERT
    from spikebert.teacher import load_tokenizer
    from tests.test_training import _student

    torch.manual_seed(0)
    return SpikeBERT(_student(load_tokenizer(tiny_teacher), **kw))


def test_recompute_batch_norm_gives_the_batches_statistics(tiny_teacher, tiny_task):
    import copy

    from spikebert.data import load_split
    from spikebert.distill import recompute_batch_norm
    from spikebert.model import TokenBatchNorm
    from spikebert.teacher import load_tokenizer
    from spikebert.tokenize import Batcher

    train = load_split("toy", "train", data_dir=tiny_task)
    batcher = Batcher(load_tokenizer(tiny_teacher), max_len=8)
    student = _tiny_student(tiny_teacher, norm="batch").eval()
    by_hand = copy.deepcopy(student)
    rng = torch.get_rng_state()
    assert recompute_batch_norm(student, batcher, train, batches=1, batch_size=16, seed=3) == 1
    assert torch.equal(torch.get_rng_state(), rng)  # the global RNG is untouched: a resumed run ends the same
    assert not student.training  # its mode is restored
    norms = [m for m in by_hand.modules() if isinstance(m, TokenBatchNorm)]
    for m in norms:
        m.momentum = 1.0  # one batch: the running values become that batch's statistics
    idx = torch.randperm(len(train), generator=torch.Generator().manual_seed(3))[:16]
    by_hand.train()
    with torch.no_grad():
        by_hand(batcher(train, idx)[0]["input_ids"])
    mine = {n: m for n, m in student.named_modules() if isinstance(m, TokenBatchNorm)}
    assert len(mine) == len(norms) > 0
    for name, m in by_hand.named_modules():
        if isinstance(m, TokenBatchNorm):
            torch.testing.assert_close(mine[name].running_mean, m.running_mean)
            torch.testing.assert_close(mine[name].running_var, m.running_var)
            assert mine[name].momentum == 0.1  # restored
    # several batches: the plain average of each batch's statistics, not a momentum-weighted one
    two = _tiny_student(tiny_teacher, norm="batch")
    recompute_batch_norm(two, batcher, train, batches=2, batch_size=16, seed=3)
    halves = []
    for k in range(2):
        one = _tiny_student(tiny_teacher, norm="batch")
        for m in one.modules():
            if isinstance(m, TokenBatchNorm):
                m.momentum = 1.0
        one.train()
        with torch.no_grad():
            chunk = torch.randperm(len(train), generator=torch.Generator().manual_seed(3)).split(16)[k]
            one(batcher(train, chunk)[0]["input_ids"])
        halves.append({n: m.running_var.clone() for n, m in one.named_modules() if isinstance(m, TokenBatchNorm)})
    first = next(n for n, m in two.named_modules() if isinstance(m, TokenBatchNorm))  # later norms see other inputs
    torch.testing.assert_close(dict(two.named_modules())[first].running_var, (halves[0][first] + halves[1][first]) / 2)
    assert recompute_batch_norm(_tiny_student(tiny_teacher, norm="layer"), batcher, train, batches=2, batch_size=16,
                                seed=3) == 0


@pytest.mark.slow
def test_recomputed_statistics_resume_to_the_same_student(tmp_path, tiny_teacher, tiny_task):
    from spikebert.data import load_split
    from spikebert.distill import distill
    from spikebert.teacher import load_tokenizer
    from tests.test_training import _distill_cfg, _student

    tok = load_tokenizer(tiny_teacher)
    train, dev = (load_split("toy", s, data_dir=tiny_task) for s in ("train", "dev"))
    kw = {"teacher_dir": tiny_teacher, "train": train, "dev": dev, "task": "toy"}
    student, cfg = _student(tok, norm="batch"), _distill_cfg(ema_decay=0.5, ema_bn_batches=2)
    straight = distill(student, cfg, run_dir=tmp_path / "a", **kw)
    with pytest.raises(Interrupted):
        distill(student, cfg, run_dir=tmp_path / "b", stop_after_steps=7, **kw)  # mid-epoch 2
    assert distill(student, cfg, run_dir=tmp_path / "b", **kw) == straight
    a, b = (torch.load(tmp_path / r / "model.pt", weights_only=True)["state_dict"] for r in "ab")
    assert all(torch.equal(a[k], b[k]) for k in a)
    distill(student, _distill_cfg(ema_decay=0.5), run_dir=tmp_path / "c", **kw)  # statistics averaged instead
    c = torch.load(tmp_path / "c" / "model.pt", weights_only=True)["state_dict"]
    assert any(not torch.equal(a[k], c[k]) for k in a if "running_var" in k)


@pytest.mark.slow
def test_distill_saves_the_average_as_the_student(tmp_path, tiny_teacher, tiny_task):
    """Stage 2 with the recipe's options (batch norm, membrane residual, relative positions): ``model.pt`` is the
    average, batch-norm statistics included, not the trained weights."""
    from spikebert.data import load_split
    from spikebert.distill import distill
    from spikebert.teacher import load_tokenizer
    from tests.test_training import _distill_cfg, _student

    tok = load_tokenizer(tiny_teacher)
    train, dev = (load_split("toy", s, data_dir=tiny_task) for s in ("train", "dev"))
    student = _student(tok, norm="batch", residual="membrane", position_encoding="sinusoidal", relative_distance=2)
    distill(student, _distill_cfg(epochs=1, ema_decay=0.5), teacher_dir=tiny_teacher, train=train, dev=dev,
            task="toy", run_dir=tmp_path)
    saved = torch.load(tmp_path / "model.pt", weights_only=True)["state_dict"]
    state = load_checkpoint(tmp_path / STATE_FILE, expected_format=STATE_FORMAT)
    prefix = "module.student."
    average = {k[len(prefix):]: v for k, v in state["ema"].items() if k.startswith(prefix)}
    trained = {k[len("student."):]: v for k, v in state["model"].items() if k.startswith("student.")}
    assert saved.keys() == average.keys()
    assert all(torch.equal(saved[k], average[k]) for k in saved)
    assert any(not torch.equal(saved[k], trained[k]) for k in saved if "running_mean" in k)
    assert any(not torch.equal(saved[k], trained[k]) for k in saved if k.endswith("weight"))
    evals = [json.loads(x)["eval"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines() if "eval" in x]
    assert {"dev_accuracy", "raw_dev_accuracy"} <= set(evals[0])


@pytest.mark.slow
def test_the_post_hoc_script_scores_what_the_run_logged(tmp_path, tiny_teacher, tiny_task, monkeypatch):
    """benchmarks/weight_average_sst2.py on a finished tiny run: its ``raw`` and ``average`` scores are the run's own
    ``raw_dev_accuracy`` and ``dev_accuracy`` of that epoch, so the recomputed-statistics figure beside them is
    measured on the same footing."""
    import importlib.util

    from spikebert.data import load_split
    from spikebert.distill import distill
    from spikebert.teacher import load_tokenizer
    from tests.test_training import _distill_cfg, _student

    root = Path(__file__).resolve().parents[1]
    monkeypatch.syspath_prepend(str(root / "benchmarks"))
    spec = importlib.util.spec_from_file_location("weight_average_sst2", root / "benchmarks" / "weight_average_sst2.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    tok = load_tokenizer(tiny_teacher)
    train, dev = (load_split("toy", s, data_dir=tiny_task) for s in ("train", "dev"))
    run = tmp_path / "run"
    distill(_student(tok, norm="batch"), _distill_cfg(epochs=1, ema_decay=0.5), teacher_dir=tiny_teacher, train=train,
            dev=dev, task="toy", run_dir=run)
    out = tmp_path / "wa.json"
    assert script.main([str(run / "state.pt"), "--run", str(run), "--teacher", tiny_teacher, "--task", "toy",
                        "--data-dir", str(tiny_task), "--bn-batches", "2", "--out", str(out)]) == 0
    row = json.loads(out.read_text())["states"][0]
    logged = [json.loads(x)["eval"] for x in (run / "metrics.jsonl").read_text().splitlines() if "eval" in x][-1]
    assert row["raw"] == pytest.approx(logged["raw_dev_accuracy"]) and row["average"] == pytest.approx(
        logged["dev_accuracy"])
    assert 0 <= row["average_bn_recomputed"] <= 1 and row["bn_batches"] == 2
    no_average = tmp_path / "plain"
    distill(_student(tok, norm="batch"), _distill_cfg(epochs=1), teacher_dir=tiny_teacher, train=train, dev=dev,
            task="toy", run_dir=no_average)
    with pytest.raises(SpikebertError, match="holds no weight average"):
        script.main([str(no_average / "state.pt"), "--run", str(no_average), "--teacher", tiny_teacher, "--task", "toy",
                     "--data-dir", str(tiny_task), "--out", str(tmp_path / "x.json")])
    assert not (tmp_path / "x.json").exists()
