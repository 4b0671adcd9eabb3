import collections
import dataclasses
import json
import sys

import numpy as np
import onnx
import pytest
import torch

from spikebert.cli import export_main
from spikebert.converters.onnx_export import (
    FORBIDDEN_OPS,
    export_student_onnx,
    export_teacher_onnx,
    run_onnx,
    student_check_inputs,
    student_reference,
    teacher_check_inputs,
    verify_onnx,
)
from spikebert.model import SpikeBERT, TokenBatchNorm
from spikebert.neurons import LIF
from spikebert.students import save_student
from spikebert.teacher import load_teacher
from spikebert.testing import make_ids


class _Tok:
    def get_vocab(self):
        return {"[PAD]": 0, "a": 1}


@pytest.fixture(params=[("layer", True), ("layer", False), ("batch", True), ("batch", False)],
                ids=lambda p: f"{p[0]}-mask{p[1]}")
def variant(request, trained_like_model):
    """The firing tiny student under each norm and padding choice, batch norms with non-trivial statistics."""
    norm, mask_padding = request.param
    cfg = dataclasses.replace(trained_like_model.cfg, norm=norm, mask_padding=mask_padding)
    model = SpikeBERT(cfg).double().eval()
    model.load_state_dict(trained_like_model.state_dict(), strict=False)  # batch norms add running statistics
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, TokenBatchNorm):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g, dtype=torch.float64) * 0.3)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g, dtype=torch.float64) + 0.5)
    return model


def test_export_path_gives_the_same_spikes(trained_like_model, monkeypatch):
    """While exporting, neurons run the plain loop instead of the fused autograd functions: bit for bit the same."""
    model = trained_like_model.float()
    ids = make_ids(6, 8, model.cfg.vocab_size)
    with torch.no_grad():
        fused = model(ids)
        monkeypatch.setattr(torch.onnx, "is_in_onnx_export", lambda: True)
        plain = model(ids)
    assert torch.equal(fused.step_logits, plain.step_logits)
    for a, b in zip(fused.hidden, plain.hidden):
        assert torch.equal(a, b)


def test_student_onnx_equals_pytorch(tmp_path, variant):
    path = tmp_path / "student.onnx"
    check = export_student_onnx(variant, path, check_inputs=student_check_inputs(variant, batches=2, batch_size=8))
    assert check.path == path and check.samples == 16
    assert check.agreement == 1.0 and check.close == 1.0
    assert check.max_abs_diff["logits"] < 1e-5 and check.max_abs_diff["step_logits"] < 1e-5
    assert variant.training is False and next(variant.parameters()).dtype == torch.float64  # left as it was

    # fresh inputs, another batch size; length is dynamic where padding is masked
    cfg = variant.cfg
    length = 5 if cfg.mask_padding else cfg.max_len
    ids = student_check_inputs(variant, batches=1, batch_size=5, seed=7)[0]["input_ids"][:, :length].copy()
    ids[-1, 2:] = cfg.pad_token_id
    got = run_onnx(path, {"input_ids": ids})
    want = student_reference(variant.float())({"input_ids": ids})
    assert got["logits"].shape == (5, cfg.num_classes)
    assert got["step_logits"].shape == (cfg.time_steps, 5, cfg.num_classes)
    np.testing.assert_array_equal(got["logits"].argmax(-1), want["logits"].argmax(-1))
    np.testing.assert_allclose(got["step_logits"], want["step_logits"], rtol=0, atol=1e-5)


def test_student_graph_is_unrolled_inference_only(tmp_path, trained_like_model):
    path = tmp_path / "student.onnx"
    export_student_onnx(trained_like_model, path, metadata={"task": "toy"},
                        check_inputs=student_check_inputs(trained_like_model, batches=1))
    proto = onnx.load(str(path))
    ops = collections.Counter(n.op_type for n in proto.graph.node)
    cfg = trained_like_model.cfg
    lifs = sum(isinstance(m, LIF) for m in trained_like_model.modules())
    assert lifs == 5 * cfg.depth
    # one comparison per neuron population and step (T unrolled, no Loop), plus the Heaviside encoder
    assert ops["Greater"] == lifs * cfg.time_steps + 1 and ops["Loop"] == 0
    assert not FORBIDDEN_OPS & set(ops)
    assert [i.name for i in proto.graph.input] == ["input_ids"]
    assert [o.name for o in proto.graph.output] == ["logits", "step_logits"]
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["kind"] == "student" and meta["time_steps"] == str(cfg.time_steps) and meta["task"] == "toy"

    # verify_onnx on its own, against references that disagree
    model = trained_like_model.float()
    feeds = student_check_inputs(model, batches=2, batch_size=4)
    good = student_reference(model)
    check = verify_onnx(path, good, feeds, batch_axes={"step_logits": 1})
    assert check.samples == 8 and check.close == 1.0 and check.agreement == 1.0

    def shifted(feed):
        out = good(feed)
        out["logits"][0] += 1.0  # the first sample of each batch off
        return out

    with pytest.raises(ValueError, match="75.00% of 8 samples"):
        verify_onnx(path, shifted, feeds)
    assert verify_onnx(path, shifted, feeds, min_close=0.7).close == 0.75
    with pytest.raises(ValueError, match="predictions agree"):
        verify_onnx(path, lambda feed: {"logits": -good(feed)["logits"]}, feeds, atol=np.inf)
    with pytest.raises(ValueError, match="takes inputs"):
        verify_onnx(path, good, [{"ids": feeds[0]["input_ids"]}])


def test_failed_check_writes_nothing(tmp_path, trained_like_model):
    path = tmp_path / "student.onnx"
    with pytest.raises(ValueError, match="within atol"):
        export_student_onnx(trained_like_model, path, atol=-1.0,
                            check_inputs=student_check_inputs(trained_like_model, batches=1, batch_size=2))
    assert list(tmp_path.iterdir()) == []


def test_teacher_onnx_equals_pytorch(tmp_path, tiny_teacher):
    path = tmp_path / "teacher.onnx"
    check = export_teacher_onnx(tiny_teacher, path, max_len=12)
    assert check.agreement == 1.0 and check.close == 1.0 and check.max_abs_diff["logits"] < 1e-4
    proto = onnx.load(str(path))
    assert [i.name for i in proto.graph.input] == ["input_ids", "attention_mask", "token_type_ids"]
    assert not FORBIDDEN_OPS & {n.op_type for n in proto.graph.node}

    # longer than anything traced or checked, other batch size: the length axis is dynamic
    teacher = load_teacher(tiny_teacher).eval()
    feed = teacher_check_inputs(teacher, max_len=30, batches=1, batch_size=3, seed=3)[0]
    with torch.no_grad():
        want = teacher(**{k: torch.from_numpy(v) for k, v in feed.items()}).logits.numpy()
    np.testing.assert_allclose(run_onnx(path, feed)["logits"], want, rtol=0, atol=1e-4)


def test_cli_round_trip(tmp_path, trained_like_model, tiny_teacher, capsys):
    ckpt = tmp_path / "model.pt"
    save_student(ckpt, trained_like_model.float(), tokenizer=_Tok(), tokenizer_name="tok", task="toy", metrics={})
    assert export_main(["--to", "onnx", str(ckpt)]) == 0
    path, line = capsys.readouterr().out.splitlines()
    assert path == str(tmp_path / "model.onnx")
    report = json.loads(line)
    assert report["path"] == path and report["samples"] == 64  # the default check inputs
    assert report["agreement"] == 1.0 and report["close"] == 1.0
    meta = {p.key: p.value for p in onnx.load(path).metadata_props}
    assert meta["tokenizer"] == "tok" and meta["task"] == "toy"

    out = tmp_path / "teacher.onnx"
    assert export_main(["--to", "onnx", "--teacher", tiny_teacher, "--max-len", "8", "-o", str(out)]) == 0
    assert capsys.readouterr().out.splitlines()[0] == str(out)
    assert {p.key: p.value for p in onnx.load(str(out)).metadata_props}["kind"] == "teacher"


def test_cli_errors(tmp_path, tiny_cfg, tiny_teacher, caplog, monkeypatch):
    assert export_main(["--to", "onnx", str(tmp_path / "missing.pt")]) == 2
    assert "does not exist" in caplog.text
    torch.save({"format": "something-else"}, tmp_path / "other.pt")
    assert export_main(["--to", "onnx", str(tmp_path / "other.pt")]) == 2
    assert "is not a spikebert-student/1 or spikingbert-student/1 checkpoint" in caplog.text
    assert export_main(["--to", "onnx", tiny_teacher]) == 2
    assert "add --teacher" in caplog.text
    assert export_main(["--teacher", tiny_teacher]) == 2
    assert "add --to onnx" in caplog.text
    assert export_main(["--to", "onnx", "--teacher", str(tmp_path / "no-teacher")]) == 2
    assert "neither a model folder" in caplog.text
    assert not list(tmp_path.glob("*.onnx"))

    ckpt = tmp_path / "model.pt"
    save_student(ckpt, SpikeBERT(tiny_cfg), tokenizer=_Tok(), tokenizer_name="tok", task="toy", metrics={})
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed
    caplog.clear()
    assert export_main(["--to", "onnx", str(ckpt)]) == 2  # one line naming the package, no traceback
    assert "pip install onnxruntime" in caplog.text
