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
