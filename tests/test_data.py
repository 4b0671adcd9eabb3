import importlib.util
import re

import pytest

from spikebert.data import default_data_dir, load_split, read_tsv


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_read_tsv(tmp_path):
    p = write(tmp_path / "train.tsv", 'sentence\tlabel\na "quoted" film\t1\n\nbad movie\t0\n')
    data = read_tsv(p)
    assert data.sentences == ['a "quoted" film', "bad movie"]
    assert data.labels == [1, 0]
    assert data.num_classes == 2


@pytest.mark.parametrize("text, message", [
    ("text\tlabel\nx\t1\n", "expected header"),
    ("sentence\tlabel\nno tab here\n", "no TAB separator"),
    ("sentence\tlabel\nx\tpositive\n", "not an integer"),
    ("sentence\tlabel\n", "no examples"),
])
def test_read_tsv_errors_name_the_problem(tmp_path, text, message):
    with pytest.raises(ValueError, match=message):
        read_tsv(write(tmp_path / "dev.tsv", text))


def test_missing_file_and_split(tmp_path):
    (tmp_path / "task").mkdir()
    with pytest.raises(FileNotFoundError):
        load_split("task", "train", data_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown split"):
        load_split("task", "valid-ish", data_dir=tmp_path)


def test_a_missing_task_names_the_folders_looked_in(tmp_path):
    """With --data-dir given, the error names that folder (not the default data dir it did not search)."""
    if importlib.util.find_spec("datasets") is not None:
        pytest.skip("with `datasets` installed a missing folder is looked up on the hub")
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "no-such-task"))):
        load_split("no-such-task", "dev", data_dir=tmp_path)


def test_subset_is_seeded(tmp_path):
    p = write(tmp_path / "train.tsv", "sentence\tlabel\n" + "".join(f"s{i}\t{i % 2}\n" for i in range(50)))
    data = read_tsv(p)
    assert data.subset(10, seed=1).sentences == data.subset(10, seed=1).sentences
    assert len(data.subset(0, seed=1)) == 50


@pytest.mark.skipif(default_data_dir() is None or not (default_data_dir() / "sst-2").is_dir(),
                    reason="shared data not present")
def test_shared_sst2_dev_loads():
    dev = load_split("sst-2", "dev")
    assert len(dev) == 872 and set(dev.labels) == {0, 1}


def test_an_installed_package_guesses_no_data_dir(monkeypatch, tmp_path):
    """Outside a checkout (a wheel in site-packages) there is no ../shared/data guess: the error says
    to give --data-dir or $SPIKEBERT_DATA_DIR."""
    import spikebert.data as data

    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    fake = tmp_path / "site-packages" / "spikebert" / "data.py"
    fake.parent.mkdir(parents=True)
    monkeypatch.setattr(data, "__file__", str(fake))
    monkeypatch.chdir(tmp_path)
    assert data.default_data_dir() is None
    monkeypatch.setitem(__import__("sys").modules, "datasets", None)
    with pytest.raises(FileNotFoundError, match="give --data-dir or set \\$SPIKEBERT_DATA_DIR"):
        load_split("sst-2", "dev")
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path / "elsewhere"))
    assert data.default_data_dir() == tmp_path / "elsewhere"


def _tsv(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("sentence\tlabel\n" + "".join(f"{s}\t{y}\n" for s, y in rows), encoding="utf-8")
    return path


def test_labels_outside_the_classes_name_file_and_line(tmp_path):
    from spikebert.contract.errors import SpikebertError
    from spikebert.data import task_classes

    with pytest.raises(SpikebertError, match=r"bad\.tsv:3: label -1 is outside"):
        read_tsv(_tsv(tmp_path / "bad.tsv", [("a", 0), ("b", -1)]))
    # a known task: its class count is fixed (sst-2: 2)
    _tsv(tmp_path / "sst-2" / "dev.tsv", [("a", 0), ("b", 1), ("c", 7)])
    with pytest.raises(SpikebertError, match=r"sst-2/dev\.tsv:4: label 7 is outside this task's classes \(0\.\.1\)"):
        load_split("sst-2", "dev", data_dir=tmp_path)
    # an unknown task: a stray 7 does not make 8 classes
    train = read_tsv(_tsv(tmp_path / "toy" / "train.tsv", [("a", 0), ("b", 1), ("c", 7)]))
    dev = read_tsv(_tsv(tmp_path / "toy" / "dev.tsv", [("a", 0), ("b", 1)]))
    with pytest.raises(SpikebertError, match=r"toy/train\.tsv:4: label 7 implies 8 classes, but \[2, 3, 4, 5, 6\] never"):
        task_classes(train, dev)
    good = read_tsv(_tsv(tmp_path / "toy2" / "train.tsv", [("a", 0), ("b", 1), ("c", 2)]))
    dev3 = read_tsv(_tsv(tmp_path / "toy2" / "dev.tsv", [("a", 0), ("b", 3)]))
    with pytest.raises(SpikebertError, match=r"toy2/dev\.tsv:3: label 3 is outside the 3 classes"):
        task_classes(good, dev3)
    assert task_classes(good, read_tsv(_tsv(tmp_path / "toy2" / "dev2.tsv", [("a", 2)]))) == 3


def test_non_utf8_tsv_names_file_and_line(tmp_path):
    from spikebert.contract.errors import SpikebertError

    path = tmp_path / "latin1.tsv"
    path.write_bytes("sentence\tlabel\nok\t0\ncaf\xe9\t1\n".encode("latin-1"))
    with pytest.raises(SpikebertError, match=r"latin1\.tsv:3: not UTF-8"):
        read_tsv(path)


def test_eval_refuses_labels_outside_the_model(tmp_path, tiny_teacher):
    """`spikebert eval` on rows labelled 7 used to exit 0 and count them as wrong."""
    from spikebert.cli import main
    from spikebert.config import StudentConfig
    from spikebert.model import SpikeBERT
    from spikebert.students import save_student
    from spikebert.teacher import load_tokenizer

    tok = load_tokenizer(tiny_teacher)
    model = SpikeBERT(StudentConfig(vocab_size=len(tok), pad_token_id=tok.pad_token_id, num_classes=2, max_len=8,
                                    dim=16, depth=1, heads=2, time_steps=2))
    save_student(tmp_path / "m.pt", model, tokenizer=tok, tokenizer_name=tiny_teacher, task="toy", metrics={})
    _tsv(tmp_path / "data" / "toy" / "dev.tsv", [("a good film", 0), ("bad", 7)])
    assert main(["eval", str(tmp_path / "m.pt"), "--data", "toy", "--data-dir", str(tmp_path / "data")]) == 2
