"""Text-classification data: the shared TSV folders, any GLUE-style TSV folder, or HF datasets.

A local task folder holds ``train.tsv`` / ``dev.tsv`` (and, for final reporting only, a ``test.tsv``
in the separate holdout tree), UTF-8, header ``sentence<TAB>label``, no quoting.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import re
from pathlib import Path

from spikebert.contract.errors import MissingFileError, SpikebertError

log = logging.getLogger(__name__)

DATA_DIR_ENV = "SPIKEBERT_DATA_DIR"
TASK_CLASSES = {"sst-2": 2, "sst-2-sentence": 2, "sst-5": 5, "mr": 2, "subj": 2, "chnsenti": 2, "waimai": 2}
"""The six tasks' class counts (../shared/data/README.md): a label outside them is an error at read time."""
TASKS = tuple(TASK_CLASSES)
_LABEL = re.compile(r"\s*([+-]?)[0-9]+\s*", re.ASCII)  # a label: an integer in ASCII digits
SPLIT_FILES = {"train": "train.tsv", "dev": "dev.tsv", "validation": "dev.tsv", "test": "test.tsv"}


@dataclasses.dataclass(frozen=True)
class TextDataset:
    """Sentences and integer labels 0..C-1. ``label_lines``: for data read from a file, the first line of
    each label value (``path:line``), so that a label error can name where it is."""

    sentences: list[str]
    labels: list[int]
    name: str
    label_lines: dict[int, str] = dataclasses.field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.sentences) != len(self.labels):
            raise SpikebertError(f"{self.name}: {len(self.sentences)} sentences but {len(self.labels)} labels")

    def where(self, label: int) -> str:
        return self.label_lines.get(label, self.name)

    def check_labels(self, num_classes: int, *, what: str) -> None:
        """Every label in 0..num_classes-1, else an error naming the file and line (``what`` names whose
        classes they are: a model's, a task's)."""
        bad = sorted({y for y in self.labels if not 0 <= y < num_classes})
        if bad:
            raise SpikebertError(f"{self.where(bad[0])}: label {bad[0]} is outside the {num_classes} classes of "
                                 f"{what} (0..{num_classes - 1}){f'; also {bad[1:]}' if len(bad) > 1 else ''}")

    def check_contiguous(self) -> int:
        """The class count of a training split whose classes are not known in advance: labels must be
        0..C-1 with every class present (a stray label would otherwise add classes). Returns C."""
        present = set(self.labels)
        count = max(present) + 1
        missing = sorted(set(range(count)) - present)
        if missing:
            raise SpikebertError(f"{self.where(count - 1)}: label {count - 1} implies {count} classes, but "
                                 f"{missing} never occur in {self.name}; labels must be 0..C-1 (a stray label?)")
        return count

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
        return TextDataset([self.sentences[i] for i in idx], [self.labels[i] for i in idx], f"{self.name}[{n}]",
                           self.label_lines)


def default_data_dir() -> Path | None:
    """``$SPIKEBERT_DATA_DIR``, else ``../shared/data`` beside the project checkout when this package runs
    from a checkout (its ``pyproject.toml`` beside the package folder), else None: an installed wheel
    takes ``--data-dir`` or the environment variable, never a path guessed from site-packages."""
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env)
    checkout = Path(__file__).resolve().parents[1]
    if (checkout / "pyproject.toml").is_file() and (checkout / "spikebert" / "__init__.py").is_file():
        return checkout.parent / "shared" / "data"
    return None


def read_tsv(path: Path, *, num_classes: int | None = None) -> TextDataset:
    """Read ``sentence<TAB>label`` with a header line; every error names the file and line. Labels are
    integers >= 0, and below ``num_classes`` when given."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"dataset file {path} does not exist")
    sentences, labels, label_lines = [], [], {}
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as err:
                raise SpikebertError(f"{path}:{lineno}: not UTF-8 text ({err.reason} at byte {err.start}); "
                                     "dataset files are UTF-8") from None
            if lineno == 1:
                header = line.split("\t")
                if header[:2] != ["sentence", "label"]:
                    raise SpikebertError(f"{path}: expected header 'sentence<TAB>label', got {header!r}")
                continue
            if not line:
                continue
            text, sep, label = line.rpartition("\t")
            if not sep:
                raise SpikebertError(f"{path}:{lineno}: no TAB separator in {line[:60]!r}")
            match = _LABEL.fullmatch(label) if len(label) <= 32 else None  # ASCII digits: int() would also
            if match is None:  # read '1_0', '\uff11' or '\u0661' (and refuse 5,000-digit strings)
                raise SpikebertError(f"{path}:{lineno}: label {label[:40]!r} is not an integer") from None
            y = int(label)
            if match.group(1) == "-" or (num_classes is not None and y >= num_classes):
                classes = f"0..{num_classes - 1}" if num_classes is not None else "0, 1, ..."
                raise SpikebertError(f"{path}:{lineno}: label {y} is outside this task's classes ({classes})")
            label_lines.setdefault(y, f"{path}:{lineno}")
            labels.append(y)
            sentences.append(text)
    if not sentences:
        raise SpikebertError(f"{path}: no examples")
    return TextDataset(sentences, labels, path.parent.name + "/" + path.stem, label_lines)


def task_classes(train: TextDataset, dev: TextDataset) -> int:
    """The class count of a task from its training split (labels 0..C-1, each present), with the dev
    labels checked against it: a stray label in either is an error naming its file and line."""
    count = train.check_contiguous()
    dev.check_labels(count, what=f"the training split {train.name}")
    return count


def load_split(task: str, split: str, *, data_dir: str | Path | None = None) -> TextDataset:
    """Load ``split`` of ``task``: a folder under the data dir, a folder path, or an HF dataset name."""
    if split not in SPLIT_FILES:
        raise SpikebertError(f"unknown split {split!r}; use one of {sorted(SPLIT_FILES)}")
    candidates = [Path(task)]
    base = Path(data_dir) if data_dir is not None else default_data_dir()
    if base is not None and (data_dir is not None or not Path(task).is_dir()):
        if split == "test":
            base = base.parent / "holdout"  # test splits live apart, for final reporting only
        candidates.insert(0, base / task)
    for folder in candidates:
        if folder.is_dir():
            return read_tsv(folder / SPLIT_FILES[split], num_classes=TASK_CLASSES.get(folder.name))
    return _load_hf(task, split, looked=candidates)


def _load_hf(name: str, split: str, *, looked: list[Path]) -> TextDataset:
    try:
        import datasets
    except ImportError:
        raise MissingFileError(
            f"no local dataset folder {name!r} (looked for {', '.join(map(str, looked))}: give --data-dir "
            f"or set ${DATA_DIR_ENV}); HF dataset names need `pip install datasets`"
        ) from None
    hf_split = "validation" if split == "dev" else split
    log.info("loading HF dataset %s split %s", name, hf_split)
    ds = datasets.load_dataset(name, split=hf_split)
    text_col = next((c for c in ("sentence", "text") if c in ds.column_names), None)
    if text_col is None or "label" not in ds.column_names:
        raise SpikebertError(f"HF dataset {name} has columns {ds.column_names}; need sentence/text and label")
    return TextDataset(list(ds[text_col]), [int(x) for x in ds["label"]], f"{name}/{split}")


WIKITEXT_DIR = "wikitext-2-raw"
WIKITEXT_FILES = ("wiki.train.raw", "wiki.valid.raw", "wiki.test.raw")  # those present are used


def wikitext_chunks(folder: Path, *, tokenizer, max_len: int) -> list[str]:
    """Raw WikiText paragraphs cut into windows of ``max_len - 2`` word pieces (room for [CLS]/[SEP]).

    Headings (`` = Title = ``) and blank lines are skipped; each window is decoded back to text so
    the training code tokenises it like any other sentence.
    """
    files = [folder / f for f in WIKITEXT_FILES if (folder / f).is_file()]
    if not files:
        raise MissingFileError(f"no WikiText files ({', '.join(WIKITEXT_FILES)}) in {folder}")
    window = max_len - 2
    chunks = []
    for path in files:
        paragraphs = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
        paragraphs = [p for p in paragraphs if p and not (p.startswith("=") and p.endswith("="))]
        for ids in tokenizer(paragraphs, add_special_tokens=False)["input_ids"]:
            pieces = tokenizer.convert_ids_to_tokens(ids)
            start = 0
            while start < len(ids):
                end = min(start + window, len(ids))
                while end < len(ids) and end > start + window // 2 and pieces[end].startswith("##"):
                    end -= 1  # cut between words, not inside one
                chunks.append(tokenizer.decode(ids[start:end]))
                start = end
    return chunks


def load_corpus(spec: str, *, task: str | None, data_dir: str | Path | None, tokenizer, max_len: int) -> list[str]:
    """Unlabelled text for stage-1 distillation from "+"-joined sources (see ``PretrainConfig.corpus``)."""
    texts: list[str] = []
    for source in filter(None, spec.split("+")):
        if source == "wikitext-2":
            base = Path(data_dir) if data_dir is not None else default_data_dir()
            if base is None:
                raise MissingFileError(f"corpus source 'wikitext-2' needs the data dir: give --data-dir or set "
                                       f"${DATA_DIR_ENV}")
            part = wikitext_chunks(base / WIKITEXT_DIR, tokenizer=tokenizer, max_len=max_len)
        elif source == "task":
            if not task:
                raise SpikebertError("corpus source 'task' needs a task (--data)")
            part = load_split(task, "train", data_dir=data_dir).sentences
        elif source.startswith("hf:"):
            part = _load_hf_text(source[3:])
        else:
            raise SpikebertError(f"unknown corpus source {source!r}; use wikitext-2, task or hf:<name>[:<config>]")
        log.info("corpus source %s: %d texts", source, len(part))
        texts += part
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise SpikebertError(f"corpus {spec!r} is empty")
    return texts


def _load_hf_text(name: str) -> list[str]:
    try:
        import datasets
    except ImportError:
        raise MissingFileError(f"corpus hf:{name} needs `pip install datasets` and network access") from None
    path, _, config = name.partition(":")
    ds = datasets.load_dataset(path, config or None, split="train")
    if "text" not in ds.column_names:
        raise SpikebertError(f"HF dataset {name} has no 'text' column (columns: {ds.column_names})")
    return list(ds["text"])
