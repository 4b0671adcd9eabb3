import json

import numpy as np
import pytest
import torch

from spikebert import figures
from spikebert.model import SpikeAttention
from spikebert.recording import attention_counts

Q = [[1, 1, 0, 1], [0, 1, 1, 1], [1, 0, 0, 0]]  # 3 tokens x dim 4, two heads of 2 channels
K = [[1, 0, 1, 1], [1, 1, 0, 1], [1, 1, 1, 1]]
V = [[0, 0, 0, 0]] * 3


def _qkv(*steps) -> torch.Tensor:
    """(T, 1, L, 3D) from per-step (Q, K) token rows."""
    return torch.tensor([[[a + b + c for a, b, c in zip(q, k, V)]] for q, k in steps], dtype=torch.float64)


def _assert_written(paths, stem):
    assert [p.name for p in paths] == [f"{stem}.png", f"{stem}.pdf"]
    png, pdf = (p.read_bytes() for p in paths)
    assert png.startswith(b"\x89PNG") and len(png) > 1000
    assert pdf.startswith(b"%PDF") and len(pdf) > 1000
    assert not list(paths[0].parent.glob(".*.tmp"))  # atomic writes leave no temporary file


@pytest.mark.parametrize("mask_padding", [True, False])
def test_attention_counts_hand_computed(mask_padding):
    """A[h, i, j] = channels of head h where query i and key j both spike; the padded key 2 drops out."""
    attn = SpikeAttention(dim=4, heads=2, scale=0.125, mask_padding=mask_padding)
    a, _ = attention_counts(attn, _qkv((Q, K)), torch.tensor([[True, True, False]]))
    head0 = [[1, 2, 2], [0, 1, 1], [1, 1, 1]]  # q0=(1,1) q1=(0,1) q2=(1,0); k0=(1,0) k1=(1,1) k2=(1,1)
    head1 = [[1, 1, 1], [2, 1, 2], [0, 0, 0]]  # q0=(0,1) q1=(1,1) q2=(0,0); k0=(1,1) k1=(0,1) k2=(1,1)
    expected = torch.tensor([[[head0, head1]]], dtype=torch.float64)  # (T, B, H, L, L)
    if mask_padding:
        expected[..., 2] = 0
    torch.testing.assert_close(a, expected)


def test_attention_figure_summed_and_per_step():
    counts = np.arange(2 * 2 * 3 * 3, dtype=float).reshape(2, 2, 3, 3)  # (T, H, L, L)
    tokens = ["[CLS]", "film", "[SEP]"]
    summed = figures.plot_attention(counts, tokens)
    assert len(summed.axes) == 2 + 1  # a panel per head and the colour bar
    np.testing.assert_array_equal(summed.axes[1].images[0].get_array(), counts[:, 1].sum(0))
    fig = figures.plot_attention(counts, tokens, heads=[1], per_step=True, title="t")
    np.testing.assert_array_equal(fig.axes[1].images[0].get_array(), counts[1, 1])  # step 2 of head 1
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == tokens
    wrapped = figures.plot_attention(np.zeros((2, 6, 3, 3)), tokens)  # 6 heads: two rows of 4, 2 spare
    assert len(wrapped.axes) == 8 + 1 and not wrapped.axes[7].axison
    with pytest.raises(ValueError, match="heads 0..1"):
        figures.plot_attention(counts, tokens, heads=[2])
    with pytest.raises(ValueError, match="L = 2 tokens"):
        figures.plot_attention(counts, tokens[:2])


def test_rate_figures_and_saving(tmp_path):
    rng = np.random.default_rng(0)
    by_token = {"b0_qkv_lif": rng.random((12, 3)), "b0_lif1": rng.random((8, 3))}
    fig = figures.plot_token_rates(by_token, ["a", "gripping", "film"])
    np.testing.assert_array_equal(fig.axes[1].images[0].get_array(), by_token["b0_lif1"])
    _assert_written(figures.save_figure(fig, tmp_path, "tok"), "tok")
    by_step = {"spikes": np.full(4, 0.5), "b0_qkv_lif": rng.random(4)}
    grid = figures.plot_step_rates(by_step).axes[0].images[0].get_array()
    np.testing.assert_array_equal(grid, np.stack(list(by_step.values())))
    with pytest.raises(ValueError, match=r"\(neurons, 2 tokens\)"):
        figures.plot_token_rates(by_token, ["a", "b"])


def test_sweep_from_json_and_csv(tmp_path):
    rows = [{"time_steps": t, "depth": d, "accuracy": 0.6 + 0.01 * t + 0.02 * d} for t in (1, 2, 4) for d in (1, 2)]
    js = tmp_path / "r.json"
    js.write_text(json.dumps({"results": rows}))
    csv_path = tmp_path / "r.csv"
    csv_path.write_text("time_steps,accuracy\n4,0.7\n1,0.6\n2,0.65\n")
    assert figures.load_results(js) == rows
    fig = figures.plot_sweep(figures.load_results(js), x="time_steps", y="accuracy", group="depth")
    assert [line.get_label() for line in fig.axes[0].lines] == ["depth=1", "depth=2"]
    line = figures.plot_sweep(figures.load_results(csv_path), x="time_steps", y="accuracy").axes[0].lines[0]
    np.testing.assert_array_equal(line.get_xdata(), [1, 2, 4])  # sorted by x
    np.testing.assert_array_equal(line.get_ydata(), [0.6, 0.65, 0.7])
    with pytest.raises(ValueError, match="row 0 has no 'beta'"):
        figures.plot_sweep(rows, x="beta", y="accuracy")
    with pytest.raises(ValueError, match="list of objects"):
        js.write_text(json.dumps({"accuracy": 0.5}))
        figures.load_results(js)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A tiny student saved with save_student, with the tiny_teacher fixture's tokenizer (module-wide:
    loading it is the slow part)."""
    from spikebert.config import StudentConfig
    from spikebert.model import SpikeBERT
    from spikebert.students import save_student
    from spikebert.teacher import load_tokenizer

    folder = tmp_path_factory.mktemp("ckpt")
    load_tokenizer("minilm-offline").save_pretrained(folder / "tokenizer")
    tok = load_tokenizer(str(folder / "tokenizer"))
    cfg = StudentConfig(vocab_size=len(tok), pad_token_id=tok.pad_token_id, dim=16, depth=2, heads=2, max_len=16)
    torch.manual_seed(0)
    model = SpikeBERT(cfg)
    with torch.no_grad():
        for block in model.blocks:
            block.attn.qkv_norm.bias.fill_(1.5)  # Q and K spike: the maps are not empty
    path = folder / "model.pt"
    save_student(path, model, tokenizer=tok, tokenizer_name=str(folder / "tokenizer"), task="toy", metrics={})
    return path


def test_cli_plot_attention_end_to_end(tmp_path, tiny_checkpoint, capsys):
    from spikebert.cli import main

    out = tmp_path / "figs"
    assert main(["plot", "attention", str(tiny_checkpoint), "--sentence", "a gripping film", "--out", str(out),
                 "--layer", "1", "--head", "0", "--per-step"]) == 0
    paths = [out / "attention_b1_h0.png", out / "attention_b1_h0.pdf"]
    assert capsys.readouterr().out.split() == [str(p) for p in paths]
    _assert_written(paths, "attention_b1_h0")
    assert main(["plot", "attention", str(tiny_checkpoint), "--sentence", "a", "--out", str(out), "--layer", "2"]) == 2


def test_cli_plot_rates_and_sweep(tmp_path, tiny_checkpoint, tiny_task):
    from spikebert.cli import main

    out = tmp_path / "figs"
    assert main(["plot", "rates", str(tiny_checkpoint), "--data", "toy", "--data-dir", str(tiny_task),
                 "--limit", "5", "--out", str(out)]) == 0
    for stem in ("rates_by_step", "rates_by_token_b0", "rates_by_token_b1"):
        _assert_written([out / f"{stem}.png", out / f"{stem}.pdf"], stem)
    results = tmp_path / "sweep.csv"
    results.write_text("time_steps,accuracy\n2,0.7\n1,0.6\n")
    assert main(["plot", "sweep", str(results), "--x", "time_steps", "--out", str(out)]) == 0
    _assert_written([out / "sweep_accuracy_vs_time_steps.png", out / "sweep_accuracy_vs_time_steps.pdf"],
                    "sweep_accuracy_vs_time_steps")
