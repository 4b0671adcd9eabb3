"""How a benchmark result was made: the exact command, the machine (PyTorch build included), the date, the load.

Every script under ``benchmarks/`` records these the same way, so results from different machines can be
compared (a training run's figures move with the PyTorch build and the CPU):

    from provenance import load_average, provenance
    result = {**provenance(), ...}             # command, date, machine, load_average_at_start
    result["load_average_at_end"] = load_average()

Imported from the scripts' own folder (``python benchmarks/x.py`` puts it first on ``sys.path``).
"""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import sys
from pathlib import Path


def command(argv: list[str] | None = None) -> str:
    """The exact command line, quoted so that it can be pasted back into a shell."""
    return shlex.join([sys.executable, *(sys.argv if argv is None else argv)])


def now() -> str:
    """The local date and time with its UTC offset, to the second."""
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def load_average() -> list[float]:
    """The 1, 5 and 15-minute load averages (the machine's other work; 2.0 is both cores busy)."""
    return [round(x, 2) for x in os.getloadavg()]


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def machine() -> dict:
    """Host, OS, CPU, Python, and the PyTorch build and thread count when PyTorch is installed."""
    info = {"host": platform.node(), "platform": platform.platform(), "cpu": cpu_model(), "cpus": os.cpu_count(),
            "python": platform.python_version(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}
    try:
        import torch
    except ImportError:
        return info
    return {**info, "torch": torch.__version__, "torch_threads": torch.get_num_threads()}


def provenance(argv: list[str] | None = None) -> dict:
    """``command``, ``date``, ``machine`` and ``load_average_at_start``, taken now."""
    return {"command": command(argv), "date": now(), "machine": machine(), "load_average_at_start": load_average()}
