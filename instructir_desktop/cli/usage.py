"""Exit codes and the one error the command line reports as a usage mistake."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1  # some inputs failed; the others were written
EXIT_USAGE = 2  # nothing was attempted: bad arguments, no weights, nothing restorable asked
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """A mistake in the command line; printed as one line, exit code 2."""
