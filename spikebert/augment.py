"""Stage-2 data augmentation after Tang et al. 2019, as the official sister repo does it.

Reference: ``Lvchangze/snn: data_preprocess/distill_augmentation.py`` (SpikeBERT's ``train_augment.txt``).
Per augmented copy of a sentence of words ``w_1..w_L``:

    for each i: u ~ U(0, 1);  w_i <- [MASK]          if u < p_mask
                              w_i <- substitute(w_i)  elif u < p_mask + p_replace
    with probability p_ngram: n ~ U{1..max_ngram}; if n < L keep a random contiguous n-gram

``n_samples`` copies per sentence; duplicates and copies equal to an original sentence are dropped;
the originals themselves are not returned (the caller keeps the labelled set).

This module produces sentences only. The official script writes ``random.choice([0, 1])`` as the
label of every augmented sentence; here labelling is left to the caller (the teacher's soft outputs).

Substitutes (``AugmentConfig.replacement``):

* ``"neighbours"`` (default): one of the ``k`` nearest whole-word vocabulary entries, by cosine in the
  teacher's input word-embedding space (TinyBERT's choice for single-piece words). Words that are not a
  single whole-word piece (numbers, punctuation, ``[UNK]``, words split into ``##`` pieces) are only
  masked, never substituted. Candidates share the query's script (Latin, CJK, other), so an English
  word is never replaced by a CJK or Devanagari character.
* ``"pos"``: the official choice, a random corpus word with the same NLTK POS tag (the tag the word
  has in its own sentence). Needs ``nltk`` and its ``averaged_perceptron_tagger_eng`` data, which only
  ``nltk.download`` provides (no registry package ships it), so it does not work offline.

Words come from the teacher tokenizer's own normaliser and pre-tokeniser (the BERT one lowercases for
uncased vocabularies, keeps punctuation as words and makes every CJK character a word), and are joined
with spaces, so the teacher re-tokenises an augmented sentence into exactly these words.

Departures from the official script, each a field: ``dedupe="corpus"`` also drops duplicates across
sentences and copies equal to any original (official: within one sentence only), so trivial outputs
such as ``[MASK]`` or ``the`` are kept once; and the output is in source order, not shuffled (the
training loader shuffles).
"""

from __future__ import annotations

import logging
import random
import unicodedata
from collections.abc import Callable, Iterable, Sequence

import torch
from tqdm.auto import tqdm

from spikebert.config import AugmentConfig
from spikebert.contract.errors import SpikebertError, UnsupportedError

log = logging.getLogger(__name__)

# BERT's own definition of a CJK character (BasicTokenizer._is_chinese_char): the pre-tokeniser makes
# each of these a separate word.
_CJK_RANGES = (
    (0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F),
)

PosTagger = Callable[[list[str]], list[str]]


def split_words(text: str, tokenizer) -> list[str]:
    """The words of ``text`` as the teacher tokenizer's normaliser and pre-tokeniser see them."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or backend.pre_tokenizer is None:
        raise UnsupportedError(
            f"split_words needs a fast tokenizer with a pre-tokenizer, got {type(tokenizer).__name__}; "
            "load it with AutoTokenizer.from_pretrained(path) (fast is the default)"
        )
    if backend.normalizer is not None:
        text = backend.normalizer.normalize_str(text)
    return [word for word, _ in backend.pre_tokenizer.pre_tokenize_str(text)]


def _is_cjk(ch: str) -> bool:
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in _CJK_RANGES)


def _script(word: str) -> str:
    if all(_is_cjk(ch) for ch in word):
        return "cjk"
    if all(unicodedata.name(ch, "").startswith("LATIN") for ch in word):
        return "latin"
    return "other"


def whole_word_vocab(tokenizer) -> dict[str, int]:
    """Vocabulary entries that can stand for a whole word: alphabetic (CJK counts), not a ``##``
    continuation piece, not a special or ``[unused*]`` token."""
    special = set(tokenizer.all_special_tokens)
    return {
        tok: idx for tok, idx in tokenizer.get_vocab().items()
        if tok.isalpha() and tok not in special  # "##x", "[unused1]" and "[PAD]" are not alphabetic
    }


@torch.no_grad()
def neighbour_table(
    words: Iterable[str],
    *,
    tokenizer,
    embeddings: torch.Tensor,
    k: int,
    chunk_size: int = 512,
) -> dict[str, tuple[str, ...]]:
    """The ``k`` nearest whole-word vocabulary entries (cosine, input embeddings) of each of ``words``
    that is itself a whole-word entry, nearest first and never the word itself.

    Only the queried words are compared with the vocabulary, in chunks of ``chunk_size`` rows, so the
    cost is ``len(words) x V`` rather than ``V x V``. ``embeddings`` is the teacher's word-embedding
    matrix, shape ``(V, H)``, rows indexed by token id.
    """
    if embeddings.dim() != 2:
        raise SpikebertError(f"neighbour_table: embeddings must be (vocab, hidden), got shape {tuple(embeddings.shape)}")
    vocab = whole_word_vocab(tokenizer)
    too_big = max(vocab.values(), default=-1)
    if too_big >= embeddings.shape[0]:
        raise SpikebertError(
            f"neighbour_table: token id {too_big} is outside the embedding matrix of {embeddings.shape[0]} rows; "
            "pass the word embeddings of the teacher that owns this tokenizer"
        )
    unit = torch.nn.functional.normalize(embeddings.detach().float(), dim=1)  # (V, H)
    queries = sorted({w for w in words if w in vocab})
    table: dict[str, tuple[str, ...]] = {}
    for script in ("latin", "cjk", "other"):
        cand = sorted(tok for tok in vocab if _script(tok) == script)
        group = [w for w in queries if _script(w) == script]
        if not group or len(cand) < 2:
            continue
        cand_ids = torch.tensor([vocab[t] for t in cand], device=unit.device)
        cand_unit = unit[cand_ids]  # (C, H)
        pos_in_cand = {t: i for i, t in enumerate(cand)}
        top = min(k, len(cand) - 1)
        for start in range(0, len(group), chunk_size):
            chunk = group[start:start + chunk_size]
            rows = torch.tensor([pos_in_cand[w] for w in chunk], device=unit.device)
            sims = cand_unit[rows] @ cand_unit.T  # (chunk, C)
            sims[torch.arange(len(chunk), device=unit.device), rows] = -float("inf")  # never the word itself
            best = sims.topk(top, dim=1).indices.tolist()
            for word, idx in zip(chunk, best):
                table[word] = tuple(cand[i] for i in idx)
    return table


def nltk_pos_tagger() -> PosTagger:
    """NLTK's averaged-perceptron tagger (the official script's), as ``words -> tags``."""
    try:
        import nltk
    except ImportError:
        raise ImportError(
            "AugmentConfig.replacement='pos' needs nltk (pip install nltk) and its tagger data "
            "(python -m nltk.downloader averaged_perceptron_tagger_eng, which needs internet); "
            "offline, use replacement='neighbours'"
        ) from None
    try:
        nltk.pos_tag(["probe"])
    except LookupError:
        raise LookupError(
            "AugmentConfig.replacement='pos': nltk is installed but its tagger data is not; no registry "
            "package ships it. Run `python -m nltk.downloader averaged_perceptron_tagger_eng` on a machine "
            "with internet (or copy an nltk_data folder and set NLTK_DATA), or use replacement='neighbours'"
        ) from None
    return lambda words: [tag for _, tag in nltk.pos_tag(words)]


def pos_substitutes(word_lists: Sequence[list[str]], tagger: PosTagger) -> list[list[tuple[str, ...]]]:
    """Per sentence and word, the corpus words that share its POS tag (official ``pos_dict``: every
    distinct word seen with that tag anywhere in the corpus, the word itself included)."""
    tags = [tagger(words) if words else [] for words in word_lists]
    by_tag: dict[str, dict[str, None]] = {}  # dict as an ordered set, so draws are reproducible
    for words, sent_tags in zip(word_lists, tags):
        if len(sent_tags) != len(words):
            raise SpikebertError(f"pos tagger returned {len(sent_tags)} tags for {len(words)} words: {words}")
        for word, tag in zip(words, sent_tags):
            by_tag.setdefault(tag, {})[word] = None
    frozen = {tag: tuple(ws) for tag, ws in by_tag.items()}
    return [[frozen[tag] for tag in sent_tags] for sent_tags in tags]


def augment_words(
    words: Sequence[str],
    substitutes: Sequence[tuple[str, ...]],
    *,
    cfg: AugmentConfig,
    rng: random.Random,
    mask_token: str,
) -> list[str]:
    """One augmented copy of ``words``; ``substitutes[i]`` are the candidates for word ``i`` (empty:
    the word is kept when the replace draw hits it)."""
    out = list(words)
    for i, choices in enumerate(substitutes):
        u = rng.random()
        if u < cfg.p_mask:
            out[i] = mask_token
        elif u < cfg.p_mask + cfg.p_replace and choices:
            out[i] = rng.choice(choices)
    if rng.random() < cfg.p_ngram:
        n = rng.randint(1, cfg.max_ngram)
        if n < len(out):
            start = rng.randrange(len(out) - n + 1)
            out = out[start:start + n]
    return out


def augment_corpus(
    sentences: Sequence[str],
    *,
    tokenizer,
    embeddings: torch.Tensor | None,
    cfg: AugmentConfig,
    progress: bool = True,
    pos_tagger: PosTagger | None = None,
) -> list[str]:
    """Augmented, unlabelled sentences for ``sentences`` (originals excluded), in source order.

    ``embeddings``: the teacher's input word embeddings ``(V, H)``, needed for
    ``replacement="neighbours"`` when ``p_replace > 0``. ``pos_tagger``: ``words -> tags`` for
    ``replacement="pos"`` (default: NLTK's, see :func:`nltk_pos_tagger`). Deterministic for ``cfg.seed``.
    """
    mask_token = tokenizer.mask_token
    if mask_token is None:
        raise SpikebertError(f"augment_corpus: tokenizer {type(tokenizer).__name__} has no mask token")
    word_lists = [split_words(s, tokenizer) for s in sentences]
    substitutes = _substitutes(word_lists, tokenizer=tokenizer, embeddings=embeddings, cfg=cfg, pos_tagger=pos_tagger)

    rng = random.Random(cfg.seed)
    originals = {" ".join(words) for words in word_lists}
    seen_corpus: set[str] = set()
    out: list[str] = []
    n_empty = n_dup = n_orig = 0
    for words, subs in zip(tqdm(word_lists, desc="augment", disable=not progress), substitutes):
        if not words:
            n_empty += 1
            continue
        own = " ".join(words)
        seen = seen_corpus if cfg.dedupe == "corpus" else set()
        for _ in range(cfg.n_samples):
            text = " ".join(augment_words(words, subs, cfg=cfg, rng=rng, mask_token=mask_token))
            if text == own or (cfg.dedupe == "corpus" and text in originals):
                n_orig += 1
            elif text in seen:
                n_dup += 1
            else:
                seen.add(text)
                out.append(text)
    n_words = sum(len(subs) for subs in substitutes)
    n_subst = sum(bool(c) for subs in substitutes for c in subs)
    log.info(
        "augmentation: %d sentences (%d empty, skipped) -> %d new sentences; dropped %d duplicates (%s-wide) "
        "and %d copies equal to an original; %.1f%% of %d words have a %s substitute",
        len(sentences), n_empty, len(out), n_dup, cfg.dedupe, n_orig,
        100.0 * n_subst / max(n_words, 1), n_words, cfg.replacement,
    )
    return out


def _substitutes(
    word_lists: Sequence[list[str]],
    *,
    tokenizer,
    embeddings: torch.Tensor | None,
    cfg: AugmentConfig,
    pos_tagger: PosTagger | None,
) -> list[list[tuple[str, ...]]]:
    """Per sentence and word, the substitute candidates of ``cfg.replacement`` (none when p_replace = 0)."""
    if cfg.p_replace == 0.0:
        return [[()] * len(words) for words in word_lists]
    if cfg.replacement == "pos":
        return pos_substitutes(word_lists, pos_tagger if pos_tagger is not None else nltk_pos_tagger())
    if embeddings is None:
        raise SpikebertError(
            "augment_corpus: replacement='neighbours' needs the teacher's word embeddings, e.g. "
            "embeddings=teacher.get_input_embeddings().weight (or set p_replace=0)"
        )
    table = neighbour_table(
        (w for words in word_lists for w in words), tokenizer=tokenizer, embeddings=embeddings, k=cfg.neighbours
    )
    return [[table.get(w, ()) for w in words] for words in word_lists]
