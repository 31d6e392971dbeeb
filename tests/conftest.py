import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from captioner.data import shapes

# Keep TensorFlow's C++ logging out of test output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def small_shapes(tmp_path_factory):
    """A small Shapes dataset at 64 px (200 / 30 / 30 images), written once per session."""
    root = tmp_path_factory.mktemp("data") / "shapes-small"
    return shapes.generate(str(root), shapes.ShapesParams(seed=11, image_size=64, split_sizes=(200, 30, 30)),
                           progress=None)


@pytest.fixture(scope="session")
def tiny_shapes(tmp_path_factory):
    """The tiny preset's Shapes data (2000 / 100 / 100 images at 64 px)."""
    from captioner import config as config_lib
    from captioner import training

    root = str(tmp_path_factory.mktemp("tiny") / "shapes")
    training.load_data(config_lib.preset("tiny", data_root=root))
    return root


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_shapes):
    """`(config, run_dir, metrics)` of the tiny preset trained as `python -m captioner.train --preset tiny`."""
    from captioner import config as config_lib
    from captioner import training

    config = config_lib.preset("tiny", data_root=tiny_shapes)
    run_dir = str(tmp_path_factory.mktemp("run") / "tiny-lstm")
    return config, run_dir, training.train(config, run_dir, verbose=0)


@pytest.fixture(scope="session")
def trained_run(tiny_run):
    return tiny_run[1]


def run_stage(parent, run_dir, *extra):
    """`python -m captioner.train --scst-from PARENT` with a short stage (1 epoch of 12 steps), as a process."""
    return subprocess.Popen(
        [sys.executable, "-m", "captioner.train", "--scst-from", parent, "--run-dir", run_dir, "--epochs", "1",
         "--steps-per-epoch", "12", "--backup-steps", "4", "--search-images", "20", "--quiet", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))


@pytest.fixture(scope="session")
def scst_run(tmp_path_factory, trained_run):
    """A self-critical stage from `trained_run`, SIGKILLed after a backup mid-epoch and resumed by the same command.

    Returns `{"run_dir", "parent", "killed_at" (the backup state when killed), "output" (of the resumed run),
    "returncode"}`; tests check the run and the resume.
    """
    run_dir = str(tmp_path_factory.mktemp("scst") / "tiny-lstm-scst")
    process = run_stage(trained_run, run_dir)
    state = os.path.join(run_dir, "backup", "state.json")
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        if os.path.exists(state) and json.load(open(state))["step"] >= 8:  # mid-way through epoch 1
            break
        time.sleep(0.2)
    if process.poll() is not None:
        raise RuntimeError("the stage ended before it could be killed: " + process.stdout.read()[-3000:])
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = json.load(open(state))
    finished_when_killed = os.path.exists(os.path.join(run_dir, "metrics.json"))
    resumed = run_stage(trained_run, run_dir)
    output = resumed.communicate(timeout=600)[0]
    return {"run_dir": run_dir, "parent": trained_run, "killed_at": killed_at, "output": output,
            "returncode": resumed.returncode, "finished_when_killed": finished_when_killed}


def assert_kept_only_if_better(run_dir, parent, child):
    """A stage's weights are its best epoch's if one beat the parent's val CIDEr-D, else the parent's."""
    with open(os.path.join(run_dir, "log.csv")) as handle:
        best = max(float(r["val_cider_d"]) for r in csv.DictReader(handle))
    beat = best > json.load(open(os.path.join(run_dir, "metrics.json")))["parent_val_cider_d"]
    moved = max(np.abs(a.numpy() - b.numpy()).max() for a, b in zip(parent.decoder.weights, child.decoder.weights))
    assert (moved > 0) == beat and os.path.exists(os.path.join(run_dir, "checkpoints", "best.weights.h5")) == beat
