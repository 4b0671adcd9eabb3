"""benchmarks/ablation_sst2.py's results file: concurrent runs writing one OUT keep each other's rows."""

from __future__ import annotations

import importlib.util
import json
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))  # the script imports run_summary from beside it
_spec = importlib.util.spec_from_file_location("ablation_sst2", ROOT / "benchmarks" / "ablation_sst2.py")
ablation = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ablation)


def test_a_second_run_keeps_the_first_runs_rows(tmp_path):
    # What happened on main: a seeds run read the file, a variant list wrote a row, the seeds run wrote last.
    path = tmp_path / "ablation.json"
    ablation.record(path, "a", {"dev_accuracy": 0.5}, {"command": "first"})
    ablation.record(path, "b", {"dev_accuracy": 0.6}, {"command": "second"})
    data = json.loads(path.read_text())
    assert data["variants"] == {"a": {"dev_accuracy": 0.5}, "b": {"dev_accuracy": 0.6}}
    assert data["command"] == "second"  # the header is the latest writer's


def test_a_row_written_again_is_replaced_not_duplicated(tmp_path):
    path = tmp_path / "ablation.json"
    ablation.record(path, "a", {"dev_accuracy": 0.5}, {})
    ablation.record(path, "a", {"dev_accuracy": 0.7}, {})
    assert ablation.rows(path) == {"a": {"dev_accuracy": 0.7}}


def test_writers_in_parallel_lose_no_row(tmp_path):
    path = tmp_path / "ablation.json"
    threads = [threading.Thread(target=lambda i=i: [ablation.record(path, f"v{i}-{k}", {"k": k}, {"writer": i})
                                                    for k in range(10)]) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(ablation.rows(path)) == {f"v{i}-{k}" for i in range(4) for k in range(10)}


def test_no_file_yet_means_no_rows(tmp_path):
    assert ablation.rows(tmp_path / "ablation.json") == {}
