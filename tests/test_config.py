import json

import pytest

from spikebert.config import DistillConfig, StudentConfig


def test_roundtrip_json(tmp_path, tiny_cfg):
    path = tmp_path / "c.json"
    tiny_cfg.to_json(path)
    assert StudentConfig.from_json(path) == tiny_cfg


def test_unknown_key_is_rejected():
    with pytest.raises(ValueError, match="unknown key.*'dimm'"):
        StudentConfig.from_dict({"vocab_size": 10, "dimm": 3})


def test_wrong_type_is_rejected():
    with pytest.raises(TypeError, match="StudentConfig.depth: expected int"):
        StudentConfig.from_dict({"vocab_size": 10, "depth": "2"})
    with pytest.raises(ValueError, match="embedding_init"):
        DistillConfig.from_dict({"embedding_init": "zeros"})


def test_invalid_values_are_rejected():
    with pytest.raises(ValueError, match="not divisible by heads"):
        StudentConfig(vocab_size=10, dim=10, heads=3)
    with pytest.raises(ValueError, match="tau must be >= 1"):
        StudentConfig(vocab_size=10, tau=0.5)


def test_bad_json_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        StudentConfig.from_json(bad)
    with pytest.raises(FileNotFoundError):
        StudentConfig.from_json(tmp_path / "missing.json")
    bad.write_text(json.dumps([1, 2]))
    with pytest.raises(TypeError, match="expected a JSON object"):
        StudentConfig.from_json(bad)
