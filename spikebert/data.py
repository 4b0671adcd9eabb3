"""Text-classification data: the shared TSV folders, any GLUE-style TSV folder, or HF datasets.

A local task folder holds ``train.tsv`` / ``dev.tsv`` (and, for final reporting only, a ``test.tsv``
in the separate holdout tree), UTF-8, header ``sentence<TAB>label``, no quoting.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
from pathlib import Path

log = logging.getLogger(__name__)

DATA_DIR_ENV = "SPIKEBERT_DATA_DIR"
TASKS = ("sst-2", "sst-2-sentence", "sst-5", "mr", "subj", "chnsenti", "waimai")
SPLIT_FILES = {"train": "train.tsv", "dev": "dev.tsv", "validation": "dev.tsv", "test": "test.tsv"}


@dataclasses.dataclass(frozen=True)
class TextDataset:
    sentences: list[str]
    labels: list[int]
    name: str

    def __post_init__(self) -> None:
        if len(self.sentences) != len(self.labels):
            raise ValueError(f"{self.name}: {len(self.sentences)} sentences but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.sentences)

    @property
    def num_classes(self) -> int:
        return max(self.labels) + 1

    def subset(self, n: int, *, seed: int) -> TextDataset:
        """A seeded random subset of ``n`` examples (all of them when n <= 0 or n >= len)."""
        if n <= 0 or n >= len(self):
            return self
        idx = sorted(random.Random(seed).sample(range(len(self)), n))
        return TextDataset([self.sentences[i] for i in idx], [self.labels[i] for i in idx], f"{self.name}[{n}]")


def default_data_dir() -> Path:
    """``$SPIKEBERT_DATA_DIR``, else ``../shared/data`` beside the project checkout."""
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "shared" / "data"


def read_tsv(path: Path) -> TextDataset:
    """Read ``sentence<TAB>label`` with a header line; every error names the file and line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"dataset file {path} does not exist")
    sentences, labels = [], []
    with path.open(encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        if header[:2] != ["sentence", "label"]:
            raise ValueError(f"{path}: expected header 'sentence<TAB>label', got {header!r}")
        for lineno, line in enumerate(f, start=2):
            line = line.rstrip("\n")
            if not line:
                continue
            text, sep, label = line.rpartition("\t")
            if not sep:
                raise ValueError(f"{path}:{lineno}: no TAB separator in {line[:60]!r}")
            try:
                labels.append(int(label))
            except ValueError:
                raise ValueError(f"{path}:{lineno}: label {label!r} is not an integer") from None
            sentences.append(text)
    if not sentences:
        raise ValueError(f"{path}: no examples")
    return TextDataset(sentences, labels, path.parent.name + "/" + path.stem)


def load_split(task: str, split: str, *, data_dir: str | Path | None = None) -> TextDataset:
    """Load ``split`` of ``task``: a folder under the data dir, a folder path, or an HF dataset name."""
    if split not in SPLIT_FILES:
        raise ValueError(f"unknown split {split!r}; use one of {sorted(SPLIT_FILES)}")
    candidates = [Path(task)]
    if data_dir is not None or not Path(task).is_dir():
        base = Path(data_dir) if data_dir is not None else default_data_dir()
        if split == "test":
            base = base.parent / "holdout"  # test splits live apart, for final reporting only
        candidates.insert(0, base / task)
    for folder in candidates:
        if folder.is_dir():
            return read_tsv(folder / SPLIT_FILES[split])
    return _load_hf(task, split)


def _load_hf(name: str, split: str) -> TextDataset:
    try:
        import datasets
    except ImportError:
        raise FileNotFoundError(
            f"no local dataset folder {name!r} (looked under {default_data_dir()}, set --data-dir or "
            f"${DATA_DIR_ENV}); HF dataset names need `pip install datasets`"
        ) from None
    hf_split = "validation" if split == "dev" else split
    log.info("loading HF dataset %s split %s", name, hf_split)
    ds = datasets.load_dataset(name, split=hf_split)
    text_col = next((c for c in ("sentence", "text") if c in ds.column_names), None)
    if text_col is None or "label" not in ds.column_names:
        raise ValueError(f"HF dataset {name} has columns {ds.column_names}; need sentence/text and label")
    return TextDataset(list(ds[text_col]), [int(x) for x in ds["label"]], f"{name}/{split}")
