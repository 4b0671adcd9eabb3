import math

import pytest
import torch

from spikebert.config import DistillConfig
from spikebert.contract.errors import SpikebertError
from spikebert.distill import distill_loss, kd_temperature, teacher_layer_map
from spikebert.io import load_checkpoint
from spikebert.model import SpikeBERT
from spikebert.students import load_student, save_student


class _Tok:
    def get_vocab(self):
        return {"[PAD]": 0, "a": 1}


def test_layer_map_follows_official_rule():
    assert teacher_layer_map(6, 12) == [1, 3, 5, 7, 9, 11]
    assert teacher_layer_map(2, 6) == [1, 4]
    with pytest.raises(ValueError, match="exceeds"):
        teacher_layer_map(8, 6)


def test_loss_terms_hand_computed():
    cfg = DistillConfig(w_ce=0.1, w_kd=1.0, w_feat=0.1)
    s = torch.tensor([[0.0, 0.0]])
    t = torch.tensor([[math.log(3.0), 0.0]])  # teacher softmax = (0.75, 0.25)
    feats_s, feats_t = [torch.ones(1, 2, 2)], [torch.zeros(1, 2, 2)]
    mask = torch.tensor([[True, False]])  # the padded token is left out of the feature MSE
    feats_s[0][0, 1] = 100.0
    total, parts = distill_loss(cfg, student_logits=s, teacher_logits=t, labels=torch.tensor([0]),
                                student_feats=feats_s, teacher_feats=feats_t, mask=mask)
    ce = math.log(2.0)
    kl = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    assert parts["ce"] == pytest.approx(ce)
    assert parts["kd"] == pytest.approx(kl)
    assert parts["feat"] == pytest.approx(1.0)
    assert total.item() == pytest.approx(0.1 * ce + kl + 0.1 * 1.0)


def test_temperature_scales_kd():
    cfg = DistillConfig(kd_temperature=2.0, w_ce=0.0, w_feat=0.0)
    s, t = torch.tensor([[1.0, -1.0]]), torch.tensor([[-1.0, 1.0]])
    _, parts = distill_loss(cfg, student_logits=s, teacher_logits=t, labels=torch.tensor([0]),
                            student_feats=[], teacher_feats=[], mask=torch.ones(1, 1, dtype=torch.bool))
    p, q = torch.softmax(t / 2, -1), torch.softmax(s / 2, -1)
    assert parts["kd"] == pytest.approx(4 * (p * (p / q).log()).sum().item(), rel=1e-6)


def test_kd_temperature_anneals_linearly_from_first_to_last_step():
    constant, annealed = DistillConfig(kd_temperature=4.0), DistillConfig(kd_temperature=4.0, kd_temperature_final=1.0)
    assert [kd_temperature(constant, p) for p in (0.0, 0.5, 1.0)] == [4.0, 4.0, 4.0]
    assert [kd_temperature(annealed, p) for p in (0.0, 0.5, 1.0)] == [4.0, 2.5, 1.0]
    with pytest.raises(SpikebertError, match="progress"):
        kd_temperature(annealed, 1.5)
    with pytest.raises(SpikebertError, match="kd_temperature_final"):
        DistillConfig.from_dict({"kd_temperature_final": -1.0})
    # the loss uses the scheduled temperature: at the end of an annealed run, the temperature-1 loss
    s, t = torch.tensor([[1.0, -1.0]]), torch.tensor([[-1.0, 1.0]])
    common = dict(student_logits=s, teacher_logits=t, labels=torch.tensor([0]), student_feats=[], teacher_feats=[],
                  mask=torch.ones(1, 1, dtype=torch.bool))
    _, end = distill_loss(annealed, progress=1.0, **common)
    _, plain = distill_loss(DistillConfig(), **common)
    assert end["kd"] == pytest.approx(plain["kd"]) and end["kd_temperature"] == 1.0


def test_checkpoint_roundtrip_is_weights_only(tmp_path, tiny_cfg):
    model = SpikeBERT(tiny_cfg)
    path = tmp_path / "model.pt"
    save_student(path, model, tokenizer=_Tok(), tokenizer_name="tok", task="t", metrics={"dev_accuracy": 0.5})
    loaded, payload = load_student(path)
    assert payload["tokenizer"] == "tok" and payload["metrics"]["dev_accuracy"] == 0.5
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k


def test_checkpoint_refuses_code_and_wrong_kinds(tmp_path, tiny_cfg):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    evil = tmp_path / "evil.pt"
    torch.save({"format": "spikebert-student/1", "x": Evil()}, evil)
    with pytest.raises(ValueError, match="is not a safe checkpoint") as refused:
        load_checkpoint(evil, expected_format="spikebert-student/1")
    assert "weights_only=False" not in str(refused.value) and "\n" not in str(refused.value)  # one line, no bad advice
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(ValueError, match="not a spikebert-student/1 checkpoint"):
        load_checkpoint(other, expected_format="spikebert-student/1")
    truncated = tmp_path / "trunc.pt"
    save_student(truncated, SpikeBERT(tiny_cfg), tokenizer=_Tok(), tokenizer_name="t", task="t", metrics={})
    truncated.write_bytes(truncated.read_bytes()[:100])
    with pytest.raises(ValueError, match="truncated, corrupt"):
        load_checkpoint(truncated, expected_format="spikebert-student/1")
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "none.pt", expected_format="spikebert-student/1")


def test_mismatched_weights_are_rejected(tmp_path, tiny_cfg):
    from dataclasses import replace

    path = tmp_path / "m.pt"
    save_student(path, SpikeBERT(tiny_cfg), tokenizer=_Tok(), tokenizer_name="t", task="t", metrics={})
    payload = torch.load(path, weights_only=True)
    payload["config"] = replace(tiny_cfg, depth=3).to_dict()
    torch.save(payload, path)
    with pytest.raises(ValueError, match="weights do not match"):
        load_student(path)


@pytest.mark.parametrize("dim", [16, 32, 48])
def test_embedding_init_takes_any_teacher_width(tiny_teacher, dim):
    """A 32-wide teacher initialises 16-, 32- and 48-wide students (the wider one used to stop in
    torch.pca_lowrank: q must not exceed min(V, H))."""
    from spikebert.config import StudentConfig
    from spikebert.distill import init_embedding_from_teacher
    from spikebert.model import SpikeBERT
    from spikebert.teacher import load_teacher

    teacher = load_teacher(tiny_teacher)
    w = teacher.get_input_embeddings().weight.detach()
    student = SpikeBERT(StudentConfig(vocab_size=w.shape[0], dim=dim, depth=1, heads=2, max_len=8))
    init_embedding_from_teacher(student, teacher)
    e = student.embed.weight.detach()
    assert e.shape == (w.shape[0], dim) and torch.isfinite(e).all()
    if dim == 32:
        torch.testing.assert_close(e, w)  # equal widths: the teacher's own table
    else:  # the principal subspace of the teacher's table, in its first min(dim, 32) columns
        q = min(dim, 32)
        assert e[:, :q].std() == pytest.approx(1.0, rel=1e-4)
        if dim > 32:
            assert e[:, 32:].std() < 0.05
