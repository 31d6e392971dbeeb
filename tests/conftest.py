"""Test tiers and hygiene, and the data and runs the tests share.

Tiers (as keras-hub does with `large`): tests marked `slow` (training to a
useful model, killing and resuming runs, several workers, notebooks) are
skipped unless `--run-slow` is given. `python -m pytest -q` runs the fast
tier while you work; `python -m pytest -q --run-slow` runs everything, as CI does.

Hygiene: every test runs in its own temporary folder (so `./runs` and `./data`
land there), and generated data, feature caches, Keras' and Matplotlib's homes
live in one temporary folder per session, removed at its end. Subprocesses
import the package from this checkout.
"""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

# Before anything imports Keras or Matplotlib, which read their homes once.
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
SESSION_HOME = tempfile.mkdtemp(prefix="captioner-tests-")
os.environ["CAPTIONER_DATA"] = os.path.join(SESSION_HOME, "data")
os.environ["KERAS_HOME"] = os.path.join(SESSION_HOME, "keras")
os.environ["MPLCONFIGDIR"] = os.path.join(SESSION_HOME, "matplotlib")
os.environ["XDG_CACHE_HOME"] = os.path.join(SESSION_HOME, "cache")  # the image check's answers
os.environ["PYTHONPATH"] = ROOT + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else "")
# Keep TensorFlow's C++ logging out of test output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from captioner.data.synthetic import shapes  # noqa: E402


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", default=False,
                     help="also run the tests marked slow (the whole suite, as CI runs it)")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: trains to a useful model or runs processes for long; "
                                       "skipped unless --run-slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow tier: run with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def pytest_unconfigure(config):
    shutil.rmtree(SESSION_HOME, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def session_folder():
    """Session fixtures (shared runs) are built in a folder of their own, not in the checkout."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tempfile.mkdtemp(prefix="session-", dir=SESSION_HOME))
        yield


@pytest.fixture(autouse=True)
def test_folder(tmp_path, monkeypatch):
    """Each test runs in its own temporary folder: `./runs`, `./data` and outputs land there."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def small_shapes(tmp_path_factory):
    """A small Shapes dataset at 64 px (200 / 30 / 30 images), written once per session."""
    root = tmp_path_factory.mktemp("data") / "shapes-small"
    return shapes.generate(str(root), shapes.ShapesParams(seed=11, image_size=64, split_sizes=(200, 30, 30)),
                           progress=None)


@pytest.fixture(scope="session")
def quick_run(tmp_path_factory, small_shapes):
    """A finished run folder trained for 12 steps (the tiny preset on `small_shapes`): it loads, captions,
    evaluates and exports like any run, but has learned little. For tests of commands, not of quality."""
    from captioner import config as config_lib
    from captioner.training import cross_entropy

    config = config_lib.preset("tiny", data_root=small_shapes, epochs=1, steps_per_epoch=12, search_images=8,
                               val_images=30)
    run_dir = str(tmp_path_factory.mktemp("quick") / "tiny-lstm")
    cross_entropy.train(config, run_dir, verbose=0)
    return run_dir


@pytest.fixture(scope="session")
def tiny_shapes(tmp_path_factory):
    """The tiny preset's Shapes data (2000 / 100 / 100 images at 64 px)."""
    from captioner import config as config_lib
    from captioner.data import datasets

    root = str(tmp_path_factory.mktemp("tiny") / "shapes")
    datasets.load_data(config_lib.preset("tiny", data_root=root))
    return root


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_shapes):
    """`(config, run_dir, metrics)` of the tiny preset trained as `python -m captioner.train --preset tiny`."""
    from captioner import config as config_lib
    from captioner.training import cross_entropy

    config = config_lib.preset("tiny", data_root=tiny_shapes)
    run_dir = str(tmp_path_factory.mktemp("run") / "tiny-lstm")
    return config, run_dir, cross_entropy.train(config, run_dir, verbose=0)


@pytest.fixture(scope="session")
def trained_run(tiny_run):
    return tiny_run[1]


@pytest.fixture
def needs_java(request):
    """For tests of pycocoevalcap's Java parts (the PTB tokenizer, METEOR): they need `java` on PATH.

    Without it they are skipped in the fast tier, but fail under `--run-slow` (what CI runs): a CI image
    without Java must not pass the parity tests by skipping them. Use `@pytest.mark.usefixtures("needs_java")`.
    """
    if shutil.which("java") is None:
        skip_or_fail(request, "the PTB tokenizer and METEOR of pycocoevalcap need Java, and `java` is not on PATH; "
                              "install a JRE")


def skip_or_fail(request, reason):
    """A test whose dependency is missing: skipped in the fast tier, failed under `--run-slow` (the whole suite,
    as CI runs it), so that a machine without it cannot pass by skipping."""
    if request.config.getoption("--run-slow"):
        pytest.fail(f"{reason} (--run-slow runs the whole suite, as CI does, and needs it)", pytrace=False)
    pytest.skip(reason)


def exit_status(main, argv):
    """A command's exit status run in this process: its return value, or the code of the SystemExit it raised."""
    try:
        return main(list(argv))
    except SystemExit as error:
        return error.code


STAGE_STEPS, STAGE_BACKUP_STEPS = 20, 4


def run_stage(parent, run_dir, *extra):
    """`python -m captioner.train --scst-from PARENT` with a short stage (1 epoch of 20 steps, a backup every 4),
    as a process."""
    return subprocess.Popen(
        [sys.executable, "-m", "captioner.train", "--scst-from", parent, "--run-dir", run_dir, "--epochs", "1",
         "--steps-per-epoch", str(STAGE_STEPS), "--backup-steps", str(STAGE_BACKUP_STEPS), "--search-images", "20",
         "--quiet", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))


@pytest.fixture(scope="session")
def scst_run(tmp_path_factory, trained_run):
    """A self-critical stage from `trained_run`, SIGKILLed after a backup mid-epoch and resumed by the same command.

    The kill lands mid-epoch: at the first backup seen from inside the epoch (step 4 or 8 of 20; the state file is
    polled every 20 ms, and the epoch's end is at least 12 steps and a validation pass away). The tests check it
    (`killed_at` is `epoch 0, batch > 0`): a kill after the epoch's own backup would resume nothing.

    Returns `{"run_dir", "parent", "killed_at" (the backup state when killed), "output" (of the resumed run),
    "returncode", "finished_when_killed"}`; tests check the run and the resume.
    """
    run_dir = str(tmp_path_factory.mktemp("scst") / "tiny-lstm-scst")
    process = run_stage(trained_run, run_dir)
    state = os.path.join(run_dir, "backup", "state.json")
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        if os.path.exists(state):
            seen = json.load(open(state))  # replaced atomically: always whole
            if seen["epoch"] > 0 or 0 < seen["batch"]:  # mid-epoch: kill now (past it: kill too, tests say so)
                break
        time.sleep(0.02)
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
