"""The project's one user-error class.

A :class:`SpikebertError` is a problem with what the user gave: a missing, corrupt or mismatched file,
an unsupported NIR node, a bad config value. The command line prints its message as one line and exits
with code 2. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class SpikebertError(ValueError):
    """A user error: the message names the offending file, node or value and the fix.

    A ``ValueError`` subclass so library callers that catch ``ValueError`` keep working.
    """


class MissingFileError(SpikebertError, FileNotFoundError):
    """A file or folder the user named does not exist."""


class UnsupportedError(SpikebertError, TypeError):
    """A model, node or value of a kind this operation does not take (a NIR node without a mapping,
    a module without an exporter, a config field of the wrong type)."""
