"""What the commands print, in one place: log lines go to stderr, results to stdout, library chatter nowhere.

    quiet_tensorflow()    before TensorFlow is imported: no C++ log lines unless asked (`--verbose`)
    silenced_stderr()     a block whose C and Java children's stderr is dropped (pycocoevalcap's Java scorers)
    log(), Progress       a line on stderr; progress of long work, rewritten on a terminal, periodic in a log
    HelpFormatter         `--help` with each default printed once
"""

import argparse
import contextlib
import os
import sys
import time


def quiet_tensorflow(verbose=False):
    """Keeps TensorFlow's C++ start-up lines (CUDA probing on a CPU machine, oneDNN notes) off the terminal.

    Call before TensorFlow is imported. TensorFlow logs some of those lines
    before it reads `TF_CPP_MIN_LOG_LEVEL`, so the import itself runs with the
    process's stderr pointed at /dev/null (a Python error still shows: it is
    raised after stderr is back). `verbose` shows everything.
    """
    if verbose:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" not in sys.modules:
        with silenced_stderr():
            import tensorflow  # noqa: F401
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")  # retracing and deprecation notes are for developers, not users


@contextlib.contextmanager
def silenced_stderr():
    """Points file descriptor 2 at /dev/null for the block: what C libraries and child processes (a JVM)
    write to stderr is dropped. Python's own `sys.stderr` is flushed first and restored after."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no real stderr (some notebook kernels): nothing to silence
        yield
        return
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def log(message):
    """One line on stderr, flushed: progress and notes, never a result."""
    print(message, file=sys.stderr, flush=True)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """`--help` that prints each default once: a help text that already says its default, or an
    option whose default is None or absent, gets no "(default: ...)" added."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default in (None, argparse.SUPPRESS, False) or not action.option_strings:
            return text
        return super()._get_help_string(action)


class Progress:
    """Progress of long work on stderr: `label: done/total unit, rate/s, time left`.

    On a terminal the line is rewritten in place every `interval` seconds (2 by
    default); into a file or a job's log it is a plain line every 60 s, and the
    last one when the work is done, so a log holds no control characters and
    does not fill up. Disabled, it prints nothing.

    Args:
        total: int, units of work.
        label: str, what is being done.
        unit: str, what is counted.
        interval: float or None, seconds between lines.
        stream: file, default stderr.
        enabled: bool.
        initial: int, units done before this process started (a resumed job); the rate counts from there.
    """

    def __init__(self, total, label, unit="images", interval=None, stream=None, enabled=True, initial=0):
        self.total, self.label, self.unit, self.enabled = total, label, unit, enabled
        self.stream = stream or sys.stderr
        self.terminal = self.stream.isatty()
        self.interval = interval if interval is not None else (2.0 if self.terminal else 60.0)
        self.done = self.first = initial  # a resumed job starts above 0; its rate counts from there
        self.finished = False
        self.started = self.last = time.monotonic()

    def update(self, done, note=""):
        """Sets the units done so far; `note` (e.g. "loss 1.234") is shown after the rate."""
        self.done = done
        now = time.monotonic()
        if not self.enabled or (done < self.total and now - self.last < self.interval) or self.finished:
            return
        self.finished = done >= self.total  # the last line once
        self.last = now
        rate = (done - self.first) / max(now - self.started, 1e-9)
        left = (self.total - done) / rate if rate > 0 else float("inf")
        eta = f", {left // 60:.0f} min {left % 60:02.0f} s left" if left != float("inf") and done < self.total else ""
        line = f"{self.label}: {done}/{self.total} {self.unit}, {rate:.1f} {self.unit}/s{eta}" + (f", {note}" if note else "")
        end = "\n" if done >= self.total or not self.terminal else ""
        print(("\r\033[K" if self.terminal else "") + line, end=end, file=self.stream, flush=True)

    def add(self, count):
        self.update(self.done + count)
