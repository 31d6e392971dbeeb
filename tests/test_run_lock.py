"""One process per run folder: a second one is refused, naming the first; a killed one never blocks."""

import json
import os
import socket
import subprocess
import sys

from captioner import config as config_lib
from captioner import files, runs, train
from captioner.data import datasets
from conftest import exit_status

HOLDER = """
import sys, time
from captioner import files
with files.exclusive(sys.argv[1]):
    print("held", flush=True)
    time.sleep(300)
"""


def snapshot(folder):
    return sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir() if p.name != runs.LOCK)


def test_a_second_training_is_refused_and_a_killed_holder_never_blocks(tmp_path, small_shapes, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    config = datasets.with_absolute_paths(config_lib.preset("tiny", data_root=small_shapes))
    runs.write_json(str(run_dir / runs.CONFIG), config.to_json())
    (run_dir / "log.csv").write_text("epoch,loss\n0,2.5\n")  # an unfinished run another process resumes
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(run_dir / runs.LOCK)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = snapshot(run_dir)
        status = exit_status(train.main, ["--preset", "tiny", "--data-root", small_shapes, "--run-dir", str(run_dir)])
        error = capsys.readouterr().err
        assert status == 2 and "is in use" in error, error
        assert f"process {holder.pid} on {socket.gethostname()} (started " in error
        assert snapshot(run_dir) == before
    finally:
        holder.kill()
        holder.wait()
    # The killed holder's lock died with it; its file is taken over, and goes when the folder is let go.
    with runs.locked(str(run_dir)):
        assert json.load(open(run_dir / runs.LOCK))["pid"] == os.getpid()
    assert not (run_dir / runs.LOCK).exists() and snapshot(run_dir) == before


def test_the_self_critical_stage_takes_the_same_lock(tmp_path, quick_run, capsys):
    run_dir = tmp_path / "stage"
    with runs.locked(str(run_dir)):  # another holder (this process, through another open file)
        status = exit_status(train.main, ["--scst-from", quick_run, "--run-dir", str(run_dir)])
    assert status == 2 and "is in use" in capsys.readouterr().err
    assert not run_dir.exists()  # created for the lock only, and removed with it


def test_a_lock_file_deleted_while_a_process_waits_is_not_held_twice(tmp_path):
    path = str(tmp_path / "x.lock")
    with files.exclusive(path) as first:
        assert json.load(open(path))["pid"] == os.getpid()
        try:
            with files.exclusive(path):
                raise AssertionError("held twice")
        except files.LockedError as error:
            assert error.holder["pid"] == os.getpid() and error.who.startswith(f"process {os.getpid()} on ")
        assert not first.closed
    assert not os.path.exists(path)
