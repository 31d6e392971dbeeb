"""Surviving a crash: SIGKILL mid-epoch, then the same command again."""

import csv
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from captioner import config as config_lib
from captioner import runs
from captioner.training import callbacks as callbacks_lib
from captioner.training import cross_entropy


def read_rows(run_dir):
    with open(os.path.join(run_dir, "log.csv")) as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_sigkill_mid_epoch_then_the_same_command_resumes_and_finishes(tmp_path, tiny_shapes):
    run_dir = str(tmp_path / "run")
    command = [sys.executable, "-m", "captioner.train", "--preset", "tiny", "--data-root", tiny_shapes,
               "--search-images", "0", "--epochs", "3", "--steps-per-epoch", "60", "--backup-steps", "10",
               "--run-dir", run_dir, "--quiet"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    state_path = os.path.join(run_dir, "backup", "state.json")
    first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 300
        state = None
        # Kill once a backup from the middle of the second epoch is committed.
        while time.time() < deadline and first.poll() is None:
            if os.path.exists(state_path):
                state = runs.read_json(state_path)
                if state["epoch"] == 1 and state["batch"] >= 20:
                    break
            time.sleep(0.05)
        assert first.poll() is None, first.communicate()[0][-3000:]
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        first.kill()
    assert first.returncode == -signal.SIGKILL
    assert state is not None and state["epoch"] == 1

    # What the killed process left is valid: the committed backup names a complete weights file.
    state = runs.read_json(state_path)
    assert os.path.exists(os.path.join(run_dir, "backup", state["weights"]))
    assert not runs.is_finished(run_dir)
    assert config_lib.load(os.path.join(run_dir, runs.CONFIG)).epochs == 3
    rows_before = read_rows(run_dir)
    assert [r["epoch"] for r in rows_before] == ["0"]

    second = subprocess.run(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            timeout=600)
    assert second.returncode == 0, second.stdout[-3000:]
    output = second.stdout
    assert "Resuming the unfinished run" in output
    assert f"Restored the backup of epoch 2, batch {state['batch']} (optimizer step {state['step']})" in output
    assert "epoch 1:" not in output and "epoch 2:" in output  # resumed, not restarted
    assert state["step"] >= 60 + 20

    rows = read_rows(run_dir)
    assert [r["epoch"] for r in rows] == ["0", "1", "2"]
    assert rows[0] == rows_before[0]  # the first process's epoch, kept
    # The rest of epoch 2 went on from the backup's weights: from fresh ones its 40 steps would average a loss
    # above the whole first epoch's.
    assert float(rows[1]["loss"]) < 0.8 * float(rows[0]["loss"]), rows
    assert runs.is_finished(run_dir) and not os.path.exists(os.path.join(run_dir, "backup"))
    metrics = runs.read_json(os.path.join(run_dir, runs.METRICS))
    assert metrics["nltk_bleu_4"] > 0.1  # untrained: < 0.05; a run of these 180 steps without a kill: 0.19
    for name in os.listdir(run_dir):
        assert ".partial" not in name and not name.endswith(".tmp")
    model = runs.load(run_dir)
    assert model.generate(keras.random.uniform((2, 64, 64, 3)))["captions"].shape == (2,)


class Boom(Exception):
    pass


@pytest.mark.slow
def test_a_crash_while_writing_a_backup_leaves_the_previous_one(tmp_path, small_shapes, monkeypatch):
    """The weights file is written, then committed by replacing `state.json`: a crash in between is harmless."""
    config = config_lib.preset("tiny", data_root=small_shapes, epochs=2, backup_steps=5, search_images=0)
    run_dir = str(tmp_path / "run")

    backed_up = {}

    class CrashDuringSecondBackup(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 4:  # after the backup callback committed step 5: the weights it saved
                backed_up["weights"] = [v.numpy() for v in self.model.weights]
            if batch == 7:  # the backup at batch 5 is committed; the one at batch 10 will crash
                def half_written(path, overwrite=True):
                    with open(path, "wb") as handle:
                        handle.write(b"\x89HDF\r\n\x1a\n truncated")
                    raise Boom()

                monkeypatch.setattr(self.model, "save_weights", half_written)

    with pytest.raises(Boom):
        cross_entropy.train(config, run_dir, verbose=0, extra_callbacks=[CrashDuringSecondBackup()])
    state = runs.read_json(os.path.join(run_dir, "backup", "state.json"))
    assert state["epoch"] == 0 and state["batch"] == 4 and state["step"] == 5
    assert os.path.getsize(os.path.join(run_dir, "backup", state["weights"])) > 10_000
    monkeypatch.undo()

    started, restored = [], {}

    class Record(keras.callbacks.Callback):  # after the backup callback, which restores in on_train_begin
        def on_train_begin(self, logs=None):
            restored["step"] = int(self.model.optimizer.iterations.numpy())
            restored["weights"] = [v.numpy() for v in self.model.weights]

        def on_epoch_begin(self, epoch, logs=None):
            started.append(epoch)

    metrics = cross_entropy.train(config, run_dir, verbose=0, extra_callbacks=[Record()])
    # The previous backup was restored: its optimizer step and its weights (a fresh start has step 0 and the
    # initial weights, and runs epochs 0 and 1 all the same).
    assert restored["step"] == state["step"] == 5
    assert len(restored["weights"]) == len(backed_up["weights"]) > 0
    for now, then in zip(restored["weights"], backed_up["weights"]):
        np.testing.assert_array_equal(now, then)
    assert started == [0, 1] and "nltk_bleu_4" in metrics
    assert [r["epoch"] for r in read_rows(run_dir)] == ["0", "1"]


def test_a_resumed_run_cuts_log_rows_back_to_the_backup(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("epoch,loss\n0,2.0\n1,1.5\n2,1.2\n3,1.")  # epoch 3's row half-written
    callbacks_lib.truncate_log(str(tmp_path), 2)
    assert path.read_text().splitlines() == ["epoch,loss", "0,2.0", "1,1.5"]
    callbacks_lib.truncate_log(str(tmp_path), 0)
    assert path.read_text().splitlines() == ["epoch,loss"]



def test_early_stopping_state_survives_a_resume(tmp_path):
    """A resumed run stops at the epoch an uninterrupted one stops at: best and wait are backed up."""
    scores = [0.5, 0.6, 0.55, 0.54, 0.53, 0.52, 0.51, 0.50]  # best at epoch 1; patience 2 stops after epoch 3

    class Score(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs["val_score"] = scores[epoch]

    class InterruptAt(keras.callbacks.Callback):
        def __init__(self, epoch):
            super().__init__()
            self.epoch = epoch

        def on_epoch_begin(self, epoch, logs=None):
            if epoch == self.epoch:
                raise KeyboardInterrupt("interrupted")

    def run(backup_dir, *extra):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        model.compile(optimizer="adam", loss="mse")
        stopping = keras.callbacks.EarlyStopping(monitor="val_score", mode="max", patience=2)
        started = []
        record = keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs: started.append(epoch))
        backup = callbacks_lib.RunBackup(str(backup_dir), "epoch", stopping=stopping)
        x = np.ones((8, 2), np.float32)
        model.fit(x, x[:, :1], epochs=len(scores), verbose=0,
                  callbacks=[Score(), stopping, record, *extra, backup])
        return started

    assert run(tmp_path / "whole") == [0, 1, 2, 3]
    # A process killed after the stopping epoch's backup, before training was marked done, is done.
    stopped = runs.read_json(str(tmp_path / "whole" / "state.json"))
    assert stopped["epoch"] == 4 and callbacks_lib.RunBackup.stopped_early(stopped, patience=2)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "cut", InterruptAt(3))
    state = runs.read_json(str(tmp_path / "cut" / "state.json"))
    assert state["epoch"] == 3 and state["early_stopping"] == {"best": 0.6, "wait": 1, "best_epoch": 1}
    assert not callbacks_lib.RunBackup.stopped_early(state, patience=2)
    assert run(tmp_path / "cut") == [3]  # without the stopping state it would run epochs 3, 4 and 5
