"""Stages 1 and 2 on tiny configs: strict stage-1 loading, teacher cache, resume, eval, CLI."""

import json

import pytest
import torch

from spikebert.cli import main
from spikebert.config import DistillConfig, PretrainConfig, StudentConfig
from spikebert.data import load_corpus, load_split
from spikebert.distill import DistillModel, distill, embedding_loss, load_init, load_stage1, pretrain
from spikebert.engine import Interrupted, epoch_batches
from spikebert.model import SpikeBERT
from spikebert.teacher import load_teacher, load_tokenizer
from spikebert.tokenize import Batcher

STUDENT = {"dim": 16, "depth": 1, "heads": 2, "max_len": 8, "time_steps": 2}


def _student(tok, **kw) -> StudentConfig:
    return StudentConfig(vocab_size=len(tok), pad_token_id=tok.pad_token_id, **{**STUDENT, **kw})


def _distill_cfg(**kw) -> DistillConfig:
    base = {"epochs": 2, "batch_size": 16, "augment": None, "emb_rows": "batch", "checkpoint_every": 2}
    return DistillConfig(**{**base, **kw})


def test_epoch_batches_are_seeded_and_cover_everything():
    a = epoch_batches(10, batch_size=3, seed=1, epoch=0)
    assert sorted(torch.cat(a).tolist()) == list(range(10))
    assert [b.tolist() for b in a] == [b.tolist() for b in epoch_batches(10, batch_size=3, seed=1, epoch=0)]
    assert [b.tolist() for b in a] != [b.tolist() for b in epoch_batches(10, batch_size=3, seed=1, epoch=1)]
    shards = [epoch_batches(10, batch_size=2, seed=1, epoch=0, rank=r, world=2) for r in range(2)]
    assert len(shards[0]) == len(shards[1])  # equal step counts under DDP


def test_embedding_loss_hand_computed():
    es = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    et = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    assert embedding_loss(es, et, None, None).item() == pytest.approx((4 + 9 + 16) / 4)
    assert embedding_loss(es, et, None, torch.tensor([0])).item() == pytest.approx(4 / 2)
    emb_map = torch.nn.Linear(2, 3, bias=False)
    with torch.no_grad():
        emb_map.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]))
    assert embedding_loss(es, torch.zeros(2, 3), emb_map, None).item() == pytest.approx((1 + 4 + 9 + 16) / 6)


def test_teacher_cache_equals_online_teacher(tmp_path, tiny_teacher):
    from spikebert.targets import OnlineTargets, build_cache

    tok, teacher = load_tokenizer(tiny_teacher), load_teacher(tiny_teacher).eval()
    sentences = ["a fine film", "an awful , dull and boring film indeed", "ok"]
    batcher = Batcher(tok, max_len=8)
    cache = build_cache(tmp_path / "c", teacher=teacher, teacher_dir=tiny_teacher, batcher=batcher,
                        sentences=sentences, layers=[1, 2])
    idx = torch.tensor([2, 0, 1])
    enc = batcher.encode([sentences[i] for i in idx])
    cached, online = cache(idx, enc), OnlineTargets(teacher, [1, 2])(idx, enc)
    (lc, fc), (lo, fo) = (cached.logits, cached.hidden), (online.logits, online.hidden)
    torch.testing.assert_close(lc, lo, atol=1e-5, rtol=0)
    m = enc["attention_mask"].bool()
    for a, b in zip(fc, fo):
        torch.testing.assert_close(a[m], b[m], atol=2e-3, rtol=2e-3)  # float16 storage
        assert a[~m].abs().sum() == 0
    again = build_cache(tmp_path / "c", teacher=teacher, teacher_dir=tiny_teacher, batcher=batcher,
                        sentences=sentences, layers=[1, 2])
    assert again.meta == cache.meta  # reused
    other = build_cache(tmp_path / "c", teacher=teacher, teacher_dir=tiny_teacher, batcher=batcher,
                        sentences=sentences[:2], layers=[1, 2])
    assert len(other) == 2  # a different corpus rebuilds, never reuses


@pytest.mark.parametrize("norm", ["layer", "batch"])
@pytest.mark.slow
def test_interrupted_run_resumes_to_the_same_weights(tmp_path, tiny_teacher, tiny_task, norm):
    tok = load_tokenizer(tiny_teacher)
    train, dev = (load_split("toy", s, data_dir=tiny_task) for s in ("train", "dev"))
    kw = {"teacher_dir": tiny_teacher, "train": train, "dev": dev, "task": "toy"}
    # the batch-norm run anneals its KD temperature: the schedule, which reads the step, resumes exactly too
    cfg = _distill_cfg(**({"kd_temperature": 4.0, "kd_temperature_final": 1.0} if norm == "batch" else {}))
    straight = distill(_student(tok, norm=norm), cfg, run_dir=tmp_path / "a", **kw)
    with pytest.raises(Interrupted):
        distill(_student(tok, norm=norm), cfg, run_dir=tmp_path / "b", stop_after_steps=7, **kw)  # mid-epoch 2
    resumed = distill(_student(tok, norm=norm), cfg, run_dir=tmp_path / "b", **kw)
    assert resumed == straight
    a = torch.load(tmp_path / "a" / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "b" / "model.pt", weights_only=True)["state_dict"]
    for k in a:
        assert torch.equal(a[k], b[k]), k
    logs = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    steps = [r["global_step"] for r in logs if "eval" not in r]
    assert steps == sorted(set(steps))  # no duplicated records after the resume
    with pytest.raises(ValueError, match="different run.*distill"):
        distill(_student(tok, norm=norm), _distill_cfg(lr=1e-3), run_dir=tmp_path / "b", **kw)


@pytest.mark.slow
def test_teacher_fine_tuning_resumes_exactly_with_dropout(tmp_path, tiny_teacher, tiny_task):
    """Dropout draws from the global RNG: the state file restores it, so the weights match exactly."""
    from safetensors.torch import load_file

    from spikebert.config import TeacherConfig
    from spikebert.finetune import finetune_teacher

    train, dev = (load_split("toy", s, data_dir=tiny_task) for s in ("train", "dev"))
    cfg = TeacherConfig(model=tiny_teacher, epochs=2, batch_size=16)
    assert load_teacher(tiny_teacher).config.hidden_dropout_prob > 0
    a = finetune_teacher(cfg, train, dev, tmp_path / "a")
    with pytest.raises(Interrupted):
        finetune_teacher(cfg, train, dev, tmp_path / "b", stop_after_steps=8)
    b = finetune_teacher(cfg, train, dev, tmp_path / "b")
    assert a == b
    wa, wb = (load_file(tmp_path / r / "model" / "model.safetensors") for r in ("a", "b"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.slow
def test_stage1_loads_strictly_into_stage2(tmp_path, tiny_teacher, tiny_task):
    tok = load_tokenizer(tiny_teacher)
    corpus = load_corpus("task", task="toy", data_dir=tiny_task, tokenizer=tok, max_len=8)
    dev = load_split("toy", "dev", data_dir=tiny_task)
    cfg = PretrainConfig(teacher=tiny_teacher, batch_size=16, lr=1e-3)
    best = pretrain(_student(tok), cfg, corpus=corpus, dev_sentences=dev.sentences, run_dir=tmp_path / "s1")
    assert best["dev_feat_mse"] > 0
    payload = torch.load(tmp_path / "s1" / "model.pt", weights_only=True)
    model = DistillModel(SpikeBERT(_student(tok, num_classes=5)), teacher_dim=32, with_emb_map=True)
    load_stage1(tmp_path / "s1" / "model.pt", model, tokenizer=tok)  # another class count is fine
    torch.testing.assert_close(model.student.embed.weight, payload["student"]["embed.weight"])
    torch.testing.assert_close(model.projector.state_dict()["proj.0.0.weight"], payload["projector"]["proj.0.0.weight"])
    deeper = DistillModel(SpikeBERT(_student(tok, depth=2)), teacher_dim=32, with_emb_map=True)
    with pytest.raises(ValueError, match="depth=1"):
        load_stage1(tmp_path / "s1" / "model.pt", deeper, tokenizer=tok)
    wider = DistillModel(SpikeBERT(_student(tok, mlp_ratio=2.0)), teacher_dim=32, with_emb_map=True)
    with pytest.raises(ValueError, match="mlp_ratio"):
        load_stage1(tmp_path / "s1" / "model.pt", wider, tokenizer=tok)


@pytest.mark.slow
def test_stage2_warm_starts_from_a_trained_student(tmp_path, tiny_teacher, tiny_task):
    """--init with a stage-2 student: every weight, classifier included, is the student's; another
    architecture or class count is refused by name; the run's fingerprint names the init."""
    tok = load_tokenizer(tiny_teacher)
    train, dev = (load_split("toy", s, data_dir=tiny_task) for s in ("train", "dev"))
    kw = {"teacher_dir": tiny_teacher, "train": train, "dev": dev, "task": "toy"}
    distill(_student(tok), _distill_cfg(epochs=1), run_dir=tmp_path / "a", **kw)
    first = torch.load(tmp_path / "a" / "model.pt", weights_only=True)["state_dict"]
    model = DistillModel(SpikeBERT(_student(tok, time_steps=3)), teacher_dim=32, with_emb_map=True)
    assert load_init(tmp_path / "a" / "model.pt", model, tokenizer=tok) == SpikeBERT.CHECKPOINT_FORMAT
    for name, tensor in model.student.state_dict().items():
        torch.testing.assert_close(tensor, first[name], msg=name)
    for kw_other, field in (({"residual": "membrane"}, "residual"), ({"num_classes": 5}, "num_classes"),
                            ({"position_encoding": "sinusoidal"}, "positions")):
        other = DistillModel(SpikeBERT(_student(tok, **kw_other)), teacher_dim=32, with_emb_map=True)
        with pytest.raises(ValueError, match=field):
            load_init(tmp_path / "a" / "model.pt", other, tokenizer=tok)
    # a further stage from it trains and selects on dev as any other
    out = distill(_student(tok), _distill_cfg(epochs=1, lr=1e-4), run_dir=tmp_path / "b",
                  init=tmp_path / "a" / "model.pt", **kw)
    assert 0.0 <= out["dev_accuracy"] <= 1.0


def test_wikitext_corpus_is_chunked_between_words(tmp_path):
    tok = load_tokenizer("minilm-offline")
    folder = tmp_path / "wikitext-2-raw"
    folder.mkdir()
    (folder / "wiki.valid.raw").write_text(" = Title = \n\n" + " ".join(["unbelievably"] * 40) + " \n")
    chunks = load_corpus("wikitext-2", task=None, data_dir=tmp_path, tokenizer=tok, max_len=16)
    assert chunks and all(not c.startswith("##") for c in chunks)
    assert all(len(tok(c)["input_ids"]) <= 16 for c in chunks)
    assert " ".join(chunks).split() == ["unbelievably"] * 40
    with pytest.raises(ValueError, match="unknown corpus source"):
        load_corpus("books", task=None, data_dir=tmp_path, tokenizer=tok, max_len=16)


def test_augmented_sentences_take_teacher_labels(tmp_path, tiny_teacher, tiny_task, monkeypatch):
    """Every augmented sentence enters CE with the teacher's argmax label, never a random one."""
    import spikebert.distill as d
    from spikebert.config import AugmentConfig

    seen = []
    real_loss = d.distill_loss

    def spy(cfg, **kw):
        seen.append((kw["labels"].clone(), kw["teacher_logits"].argmax(-1).clone()))
        return real_loss(cfg, **kw)

    monkeypatch.setattr(d, "distill_loss", spy)
    tok = load_tokenizer(tiny_teacher)
    train, dev = (load_split("toy", s, data_dir=tiny_task) for s in ("train", "dev"))
    cfg = _distill_cfg(epochs=1, augment=AugmentConfig(n_samples=3), batch_size=1000)
    out = distill(_student(tok), cfg, teacher_dir=tiny_teacher, train=train, dev=dev, run_dir=tmp_path / "r",
                  task="toy")
    assert out["augmented_sentences"] > 0
    (labels, teacher_argmax), = seen
    n = len(train)
    order = torch.cat(epoch_batches(n + out["augmented_sentences"], batch_size=1000, seed=cfg.seed, epoch=0))
    aug = order >= n
    assert torch.equal(labels[aug], teacher_argmax[aug])
    assert torch.equal(labels[~aug], torch.tensor(train.labels)[order[~aug]])


@pytest.mark.slow
def test_cli_stages_and_eval(tmp_path, tiny_teacher, tiny_task, capsys):
    sset = [a for k, v in STUDENT.items() for a in ("--student-set", f"{k}={v}")]
    common = ["--data", "toy", "--data-dir", str(tiny_task), "--teacher", tiny_teacher]
    assert main(["train", "pretrain", *common, "--out", str(tmp_path / "s1"), "--set", "corpus=task", *sset]) == 0
    assert main(["train", "distill", *common, "--out", str(tmp_path / "s2"), "--init", str(tmp_path / "s1/model.pt"),
                 "--set", "epochs=1", "--set", "augment=null", *sset]) == 0
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "s2/model.pt"), "--data", "toy", "--data-dir", str(tiny_task),
                 "--json", str(tmp_path / "eval.json")]) == 0
    result = json.loads((tmp_path / "eval.json").read_text())
    assert 0.0 <= result["accuracy"] <= 1.0 and result["examples"] == 24
    assert set(result["firing_rates"]) >= {"encoder", "blocks.0.attn.qkv_lif", "blocks.0.mlp.lif2"}
    assert all(0.0 <= r <= 1.0 for r in result["firing_rates"].values())
    # a stage-1 model of another depth is refused with a clear error
    assert main(["train", "distill", *common, "--out", str(tmp_path / "s3"), "--init", str(tmp_path / "s1/model.pt"),
                 "--set", "epochs=1", *sset, "--student-set", "depth=2"]) == 2
    assert main(["train", "distill", *common, "--out", str(tmp_path / "s4"), "--set", "epochs=x"]) == 2


@pytest.mark.slow
def test_two_process_ddp_run_on_cpu(tmp_path, tiny_teacher, tiny_task):
    """`accelerate launch` with two CPU processes (gloo): the epoch's batches are sharded over them."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    accelerate = Path(sys.executable).parent / "accelerate"
    cmd = [str(accelerate), "launch", "--cpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision",
           "no", "--dynamo_backend", "no", "-m", "spikebert.cli", "train", "distill", "--data", "toy", "--data-dir",
           str(tiny_task), "--teacher", tiny_teacher, *[a for k, v in STUDENT.items() for a in ("--student-set",
           f"{k}={v}")], "--set", "epochs=1", "--set", "augment=null", "--out", str(tmp_path / "ddp")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "ddp" / "model.pt").is_file()
    steps = [json.loads(x) for x in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    assert steps[-1]["global_step"] == 3  # 96 sentences / 16 per batch / 2 processes


def test_trainer_removes_temporaries_left_by_a_kill(tmp_path):
    """A kill during an atomic write of state.pt leaves `.state.pt.*.tmp`; the next run removes it (and
    nothing else)."""
    from spikebert.engine import LoopConfig, Trainer

    stale = tmp_path / ".state.pt.k1ll3d.tmp"
    stale.write_bytes(b"")
    other = tmp_path / "notes.tmp"
    other.write_text("mine")
    Trainer(run_dir=tmp_path, model=torch.nn.Linear(2, 2), n_examples=4, desc="t", fingerprint={},
            cfg=LoopConfig(epochs=1, batch_size=2, lr=1e-3, weight_decay=0.0, seed=0))
    assert not stale.exists() and other.read_text() == "mine"


def test_trainer_progress_runs_from_0_to_1_over_every_step_and_survives_a_resume(tmp_path):
    """The KD temperature's schedule reads ``Trainer.progress``: 0 at the first step, 1 at the last, step by
    step across epochs, and a resumed run carries on where it stopped."""
    from spikebert.engine import LoopConfig, Trainer

    cfg = LoopConfig(epochs=2, batch_size=2, lr=1e-3, weight_decay=0.0, seed=0, checkpoint_every=1)

    def run(stop_after_steps=0):
        trainer = Trainer(run_dir=tmp_path, model=torch.nn.Linear(2, 2), n_examples=5, desc="t", fingerprint={},
                          cfg=cfg)
        seen = []

        def step(m, idx):
            seen.append(trainer.progress())
            loss = m(torch.ones(len(idx), 2)).sum()
            return loss, {"loss": loss.item()}

        try:
            trainer.fit(step, lambda m: {"metric": 0.0}, lambda m, metrics: None,
                        stop_after_steps=stop_after_steps)
        except Interrupted:
            pass
        return seen

    first, rest = run(stop_after_steps=4), run()
    assert first + rest == pytest.approx([k / 5 for k in range(6)])  # 3 batches per epoch, 6 steps


def test_teacher_extends_its_vocabulary_for_an_uncovered_script(tmp_path, tiny_teacher):
    """Chinese reviews through the English MiniLM vocabulary: most tokens are [UNK]; the teacher adds the
    characters, resizes its embeddings, and saves the extended tokenizer that the student then uses."""
    from spikebert.config import TeacherConfig
    from spikebert.data import TextDataset
    from spikebert.finetune import finetune_teacher
    from spikebert.teacher import extend_vocabulary, load_teacher, load_tokenizer, unk_share

    good, bad = ["很好吃", "送餐快", "味道不错"], ["太难吃", "送得慢", "不新鲜"]
    rows = [(f"{s}，推荐", 1) for s in good] * 4 + [(f"{s}，差评", 0) for s in bad] * 4
    train = TextDataset([s for s, _ in rows], [y for _, y in rows], "zh")
    tok = load_tokenizer(tiny_teacher)
    before = unk_share(tok, train.sentences)
    assert before > 0.5
    assert extend_vocabulary(load_tokenizer(tiny_teacher), ["good film"] * 3, policy="auto", unk_threshold=0.2,
                             min_count=2) == []  # English text: covered, nothing added
    cfg = TeacherConfig(model=tiny_teacher, epochs=1, batch_size=8, max_len=16, warmup_ratio=0.0)
    finetune_teacher(cfg, train, train, tmp_path / "t")
    extended = load_tokenizer(str(tmp_path / "t" / "model"))
    model = load_teacher(str(tmp_path / "t" / "model"))
    assert len(extended) > len(tok) and model.get_input_embeddings().weight.shape[0] == len(extended)
    assert unk_share(extended, train.sentences) < 0.2 * before
    off = TeacherConfig(model=tiny_teacher, epochs=1, batch_size=8, max_len=16, warmup_ratio=0.0, extend_vocab="off")
    finetune_teacher(off, train, train, tmp_path / "off")
    assert len(load_tokenizer(str(tmp_path / "off" / "model"))) == len(tok)


def test_run_started_before_a_config_field_existed_resumes(tmp_path, tiny_teacher, tiny_task, caplog):
    """A run whose fingerprint lacks a field added to the code since (here StudentConfig.attn_scale) resumes when
    the field holds its default, and is refused when it does not: the default is the behaviour the run had."""
    from spikebert.engine import STATE_FILE, STATE_FORMAT, fingerprint_differences
    from spikebert.io import load_checkpoint, save_checkpoint

    tok = load_tokenizer(tiny_teacher)
    train, dev = (load_split("toy", s, data_dir=tiny_task) for s in ("train", "dev"))
    kw = {"teacher_dir": tiny_teacher, "train": train, "dev": dev, "task": "toy"}
    with pytest.raises(Interrupted):
        distill(_student(tok), _distill_cfg(), run_dir=tmp_path, stop_after_steps=3, **kw)
    state = load_checkpoint(tmp_path / STATE_FILE, expected_format=STATE_FORMAT)
    older = json.loads(state["fingerprint"])
    del older["student"]["attn_scale"]  # as a run started before the field existed recorded it
    save_checkpoint(tmp_path / STATE_FILE, {**state, "fingerprint": json.dumps(older, sort_keys=True)})
    with pytest.raises(ValueError, match="different run.*student"):
        distill(_student(tok, attn_scale="learned-per-head"), _distill_cfg(), run_dir=tmp_path, **kw)
    with caplog.at_level("INFO", logger="spikebert.engine"):
        distill(_student(tok), _distill_cfg(), run_dir=tmp_path, **kw)
    assert "student.attn_scale added since this run started" in caplog.text
    # a field the code no longer has, or a changed value, is another run
    assert fingerprint_differences({"s": {"a": 1, "gone": 0}}, {"s": {"a": 1}}, {"s": {}}) == (["s"], [])
    assert fingerprint_differences({"s": {"a": 1}}, {"s": {"a": 2, "new": 0}}, {"s": {"a": 1, "new": 0}}) == (["s"], [])
    assert StudentConfig.field_defaults()["attn_scale"] == "fixed" and "vocab_size" not in StudentConfig.field_defaults()
