"""What the commands print, in one place: log lines go to stderr, results to stdout."""

import sys


def log(message):
    """One line on stderr, flushed: progress and notes, never a result."""
    print(message, file=sys.stderr, flush=True)
