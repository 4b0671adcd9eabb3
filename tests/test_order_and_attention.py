"""Word order and attention diagnostics: shuffled-token accuracy and per-head attention statistics."""

import dataclasses

import pytest
import torch

from spikebert.evaluation import shuffle_tokens
from spikebert.testing import make_student


def test_shuffle_keeps_cls_sep_and_pads():
    ids = torch.tensor([[101, 5, 6, 7, 8, 102, 0, 0], [101, 9, 102, 0, 0, 0, 0, 0]])
    mask = ids != 0
    out = shuffle_tokens(ids, mask, seed=1)
    assert out[0, 0] == 101 and out[0, 5] == 102 and out[0, 6:].tolist() == [0, 0]
    assert sorted(out[0, 1:5].tolist()) == [5, 6, 7, 8] and out[0, 1:5].tolist() != [5, 6, 7, 8]
    assert torch.equal(out[1], ids[1])  # one real token inside: nothing to shuffle


def test_student_without_positions_is_order_blind_and_with_positions_is_not(tiny_cfg):
    """The issue's measurement as a test: no positions + mean head = permutation invariant."""
    ids = torch.randint(1, tiny_cfg.vocab_size, (6, tiny_cfg.max_len))
    mask = torch.ones_like(ids, dtype=torch.bool)
    shuffled = shuffle_tokens(ids, mask, seed=0)
    blind = make_student(tiny_cfg, seed=4)
    with torch.no_grad():
        torch.testing.assert_close(blind(ids).logits, blind(shuffled).logits, rtol=0, atol=1e-9)
    aware = make_student(dataclasses.replace(tiny_cfg, position_encoding="sinusoidal"), seed=4)
    with torch.no_grad():
        assert not torch.allclose(aware(ids).logits, aware(shuffled).logits)


def test_attention_heads_counts_match_the_energy_recorder(tiny_cfg):
    from spikebert.converters.torch_to_nir import export_student
    from spikebert.recording import attention_heads, record_batches

    model = make_student(tiny_cfg, seed=5, attention_bias=1.0)
    ids = torch.randint(1, tiny_cfg.vocab_size, (4, tiny_cfg.max_len))
    ids[0, 5:] = 0
    graph = export_student(model)
    _, activity = record_batches(model, ids, batch_size=4, graph=graph)
    report = attention_heads(model, [ids], total_acs=1e6)
    for block in ("b0_attn", "b1_attn"):
        heads = report[block]
        assert len(heads) == tiny_cfg.heads
        node = activity.nodes[block]
        assert sum(h["qk_accumulates"] for h in heads) * 4 == pytest.approx(node.qk_accumulates)
        assert sum(h["av_accumulates"] for h in heads) * 4 == pytest.approx(node.av_accumulates)
        assert all(0 <= h[k] <= 1 for h in heads for k in ("q_rate", "k_rate", "v_rate", "out_rate"))
    assert any(h["qk_accumulates"] > 0 for h in report["b1_attn"])


def test_eval_cli_reports_shuffled_accuracy_and_attention(tmp_path, tiny_teacher, tiny_task):
    import json

    from spikebert.cli import main
    from spikebert.config import StudentConfig
    from spikebert.model import SpikeBERT
    from spikebert.students import save_student
    from spikebert.teacher import load_tokenizer

    tok = load_tokenizer(tiny_teacher)
    model = SpikeBERT(StudentConfig(vocab_size=len(tok), pad_token_id=tok.pad_token_id, num_classes=2, max_len=8,
                                    dim=16, depth=1, heads=2, time_steps=2))
    save_student(tmp_path / "m.pt", model, tokenizer=tok, tokenizer_name=tiny_teacher, task="toy", metrics={})
    out = tmp_path / "eval.json"
    assert main(["eval", str(tmp_path / "m.pt"), "--data", "toy", "--data-dir", str(tiny_task), "--limit", "10",
                 "--shuffled", "--attention", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["examples"] == 10 and 0 <= result["shuffled_accuracy"] <= 1
    assert result["shuffle_changed_predictions"] == 0  # no positions: order-blind
    assert [len(h) for h in result["attention"].values()] == [2]


def test_spike_driven_attention_is_linear_masking(tiny_cfg):
    """SDSA: the output is Q's spikes masked per channel by SN(sum_l K*V); pads do not count; it trains."""
    from spikebert.model import SpikeBERT, SpikeDrivenAttention
    from spikebert.neurons import LIF

    lif = LIF(tau=2.0, threshold=0.5, surrogate_alpha=2.0)
    attn = SpikeDrivenAttention(dim=2, lif=lif, mask_padding=True)
    q = torch.tensor([[1.0, 1.0], [0.0, 1.0], [1.0, 1.0]])
    k = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 1.0]])
    v = torch.tensor([[1.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    qkv = torch.cat([q, k, v], dim=-1)[None, None]  # (T=1, B=1, L=3, 6)
    mask = torch.tensor([[True, True, False]])  # the third token is padding
    y = attn(qkv, mask)
    # channel 0: K*V over real tokens = 2 -> LIF 0.5 * 2 = 1 > 0.5 fires; channel 1: 0 -> silent
    assert y[0, 0].tolist() == [[1.0, 0.0], [0.0, 0.0], [1.0, 0.0]]
    model = SpikeBERT(dataclasses.replace(tiny_cfg, attention="sdsa"))
    ids = torch.randint(1, tiny_cfg.vocab_size, (2, tiny_cfg.max_len))
    model(ids).logits.sum().backward()
    assert model.blocks[0].attn.qkv.weight.grad is not None  # its NIR form: tests/test_spike_driven_attention.py
