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
