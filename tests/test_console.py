"""What commands print: progress lines, help texts."""

import argparse
import io
import os
import re
import subprocess
import sys

import pytest

from captioner import console


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_in_a_log_is_plain_lines_with_rate_and_time_left():
    stream = io.StringIO()
    progress = console.Progress(100, "Feature cache", interval=0.0, stream=stream)
    for done in (50, 100):
        progress.update(done)
    lines = stream.getvalue().split("\n")
    assert lines[0].startswith("Feature cache: 50/100 images, ") and " images/s, " in lines[0]
    assert lines[0].endswith(" left") and "\r" not in stream.getvalue() and "\033" not in stream.getvalue()
    assert lines[1].startswith("Feature cache: 100/100 images, ") and lines[2] == ""
    # A resumed job's rate counts from where it resumed; disabled, nothing is printed.
    resumed = io.StringIO()
    console.Progress(10, "x", interval=0.0, stream=resumed, initial=8).update(10)
    assert resumed.getvalue().startswith("x: 10/10 images, ")
    quiet = io.StringIO()
    console.Progress(10, "x", interval=0.0, stream=quiet, enabled=False).update(10)
    assert quiet.getvalue() == ""


def test_progress_on_a_terminal_rewrites_one_line():
    stream = Terminal()
    progress = console.Progress(3, "Captioning", interval=0.0, stream=stream)
    progress.update(1)
    progress.update(3)
    text = stream.getvalue()
    assert text.count("\r\033[K") == 2 and text.endswith("\n") and text.count("\n") == 1


def test_help_prints_each_default_once():
    parser = argparse.ArgumentParser(formatter_class=console.HelpFormatter)
    parser.add_argument("--batch-size", type=int, default=32, help="images per step")
    parser.add_argument("--beam-size", type=int, default=None, help="beam size (default: the model's)")
    parser.add_argument("--output", default="captions.jsonl", help="where (default: captions.jsonl)")
    text = parser.format_help()
    assert "images per step (default: 32)" in text
    assert "(default: None)" not in text and text.count("default: captions.jsonl") == 1


@pytest.mark.slow
def test_a_command_in_a_log_prints_no_tensorflow_lines_and_no_escape_codes(quick_run, small_shapes, tmp_path):
    """`python -m captioner.caption` as a user runs it, its output redirected to files, TensorFlow's log level
    not set by anyone: stderr holds the command's own lines (no C++ log line of TensorFlow or XLA), stdout
    the summary without terminal escape codes."""
    images = os.path.join(small_shapes, "images", "val")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    with open(tmp_path / "out.txt", "w") as out, open(tmp_path / "err.txt", "w") as err:
        status = subprocess.run([sys.executable, "-m", "captioner.caption", quick_run, images, "-o",
                                 str(tmp_path / "captions.jsonl")], stdout=out, stderr=err, env=env,
                                cwd=tmp_path, timeout=300).returncode
    stdout, stderr = (tmp_path / "out.txt").read_text(), (tmp_path / "err.txt").read_text()
    assert status == 0, stderr
    assert "\x1b" not in stdout and "\x1b" not in stderr
    assert stdout.strip().endswith("captioned, 0 failed, 0 already in " + str(tmp_path / "captions.jsonl"))
    noise = [line for line in stderr.splitlines()
             if re.match(r"[IWEF]\d{4} ", line) or "absl::InitializeLog" in line or "cpu_feature_guard" in line
             or "oneDNN" in line or "rebuild TensorFlow" in line]
    assert not noise, noise
    assert "Captioning 30 images" in stderr and "Decoding:" in stderr
