"""Is Lava here? One check, one message: Lava is the optional ``[lava]`` extra.

lava-nc 0.10 imports on Python 3.10 only (and needs numpy < 2); lava-dl 0.6 (netx) is installed
beside it with ``pip install --no-deps`` (its pins clash with transformers 5). Every hardware entry
point that needs them calls :func:`require_lava` / :func:`require_lava_dl` first, so that a missing
extra is a :class:`~spikebert.contract.errors.SpikebertError` (one line, exit code 2 on the command
line) that says how to install it, not an ImportError deep inside a run.

Nothing here imports more than ``lava.magma`` (a namespace package: no side effects); in particular
not Lava's runtime, which fixes the multiprocessing start method (see ``lava_runner.prepare_lava``).
"""

from __future__ import annotations

import importlib
import importlib.util
import platform
import sys

from spikebert.contract.errors import SpikebertError

LAVA_PYTHON = (3, 10)
INSTALL_LAVA = "pip install 'spikebert[lava]' in a Python 3.10 environment"
INSTALL_LAVA_DL = ("pip install 'spikebert[lava-dl]' and then pip install --no-deps lava-dl==0.6.0, "
                   "in a Python 3.10 environment")


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}".rstrip(": ")


def lava_problem() -> str | None:
    """Why Lava (lava-nc) cannot run here, in a few words, or None when it can."""
    if sys.version_info[:2] != LAVA_PYTHON:
        return f"this is Python {platform.python_version()}"
    try:
        importlib.import_module("lava.magma")
    except Exception as err:  # ImportError, or a broken install failing on import
        return f"import lava.magma failed: {_first_line(err)}"
    return None


def lava_dl_problem() -> str | None:
    """Why lava-dl's netx cannot run here, or None when it can (does not import netx: it loads torch)."""
    problem = lava_problem()
    if problem is not None:
        return problem
    try:
        found = importlib.util.find_spec("lava.lib.dl.netx") is not None
    except Exception as err:
        return f"looking up lava.lib.dl.netx failed: {_first_line(err)}"
    return None if found else "lava.lib.dl.netx is not installed"


def lava_available() -> bool:
    return lava_problem() is None


def require_lava(feature: str) -> None:
    """Raise SpikebertError, saying how to install Lava, unless lava-nc can run here."""
    problem = lava_problem()
    if problem is not None:
        raise SpikebertError(f"{feature} needs Lava (lava-nc 0.10), which runs on Python 3.10 only: "
                             f"{INSTALL_LAVA} ({problem})")


def require_lava_dl(feature: str) -> None:
    """Raise SpikebertError, saying how to install lava-dl (netx) and Lava, unless both can run here."""
    problem = lava_dl_problem()
    if problem is not None:
        raise SpikebertError(f"{feature} needs lava-dl 0.6 (netx) and Lava (lava-nc 0.10), which run on Python 3.10 "
                             f"only: {INSTALL_LAVA_DL} ({problem})")


class LavaLogging:
    """Leave the logging configuration as lava-nc found it.

    lava-nc 0.10 adds a ``StreamHandler`` with its own format to the *root* logger for every
    Process it builds (``AbstractProcess.__init__``; a ``log_config`` only changes its level and
    format, it cannot stop it), and one to ``lava.magma.compiler.compiler``'s logger on every
    compile. After a build, every ERROR line would then print once more per Process in Lava's
    format, and the root's new handlers would stop ``logging.basicConfig`` and Python's last-resort
    handler from showing warnings. Used as a context manager, this removes the handlers added
    inside the block (and restores the loggers' levels) on exit; :meth:`restore` does it earlier,
    e.g. right after a build, before the run.
    """

    LOGGERS = ("", "lava.magma.compiler.compiler")

    def __init__(self) -> None:
        import logging

        self._saved = [(logging.getLogger(name), None) for name in self.LOGGERS]

    def __enter__(self) -> LavaLogging:
        self._saved = [(logger, (list(logger.handlers), logger.level)) for logger, _ in self._saved]
        return self

    def restore(self) -> None:
        for logger, (handlers, level) in self._saved:
            for handler in [h for h in logger.handlers if h not in handlers]:
                logger.removeHandler(handler)
            logger.setLevel(level)

    def __exit__(self, *exc) -> None:
        self.restore()
