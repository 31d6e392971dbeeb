"""Training on two workers with MultiWorkerMirroredStrategy, on localhost CPUs."""

import pytest
import csv
import json
import os
import re
import socket
import subprocess
import sys

import numpy as np

from captioner import runs
from conftest import assert_kept_only_if_better

WORKER = r'''
import sys

import keras
import numpy as np

from captioner import config as config_lib
from captioner.training import cross_entropy

data_root, run_dir, dump = sys.argv[1:4]


class DumpWeights(keras.callbacks.Callback):
    """Every weight (model and optimizer state) of this worker, at the start and end of training."""

    def dump(self, when):
        np.savez(f"{dump}-{when}.npz", *[keras.ops.convert_to_numpy(w) for w in self.model.weights])

    def on_train_begin(self, logs=None):
        self.dump("begin")

    def on_train_end(self, logs=None):
        self.dump("end")


config = config_lib.preset("tiny", data_root=data_root, epochs=2, steps_per_epoch=50, search_images=0)
cross_entropy.train(config, run_dir, verbose=2, distribute="multi-worker", extra_callbacks=[DumpWeights()])
'''


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def load_arrays(path):
    with np.load(path) as arrays:
        return [arrays[k] for k in sorted(arrays.files, key=lambda name: int(name.split("_")[1]))]


@pytest.mark.slow
def test_two_workers_train_the_tiny_preset_in_step_and_only_the_chief_writes(tmp_path, tiny_shapes):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    addresses = [f"localhost:{port}" for port in free_ports(2)]
    # Separate run folders: the worker's must stay absent, which shows it wrote nothing.
    run_dirs = [str(tmp_path / "chief-run"), str(tmp_path / "worker-run")]
    processes = []
    for index in range(2):
        env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2", TF_CONFIG=json.dumps(
            {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}}))
        processes.append(subprocess.Popen(
            [sys.executable, str(script), tiny_shapes, run_dirs[index], str(tmp_path / f"weights-{index}")],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = []
    for process in processes:
        try:
            outputs.append(process.communicate(timeout=600)[0])
        finally:
            process.kill()
    for process, output in zip(processes, outputs):
        assert process.returncode == 0, output[-3000:]

    for output, role in zip(outputs, ("chief", "worker, writing nothing")):
        assert f"2 replicas, global batch 16 images (8 per replica); {role}" in output
    # Validation figures are computed by the chief and shared, so both take the same early-stopping decisions.
    bleu = [re.findall(r"val CIDEr-D ([0-9.]+), nltk BLEU-4 ([0-9.]+)", output) for output in outputs]
    assert len(bleu[0]) == 2 and bleu[0] == bleu[1]

    begin = [load_arrays(tmp_path / f"weights-{i}-begin.npz") for i in range(2)]
    end = [load_arrays(tmp_path / f"weights-{i}-end.npz") for i in range(2)]
    assert len(end[0]) == len(end[1]) > 20
    assert all(np.array_equal(a, b) for a, b in zip(begin[0], begin[1]))
    assert all(np.array_equal(a, b) for a, b in zip(end[0], end[1]))  # identical, bit for bit
    changed = [not np.array_equal(a, b) for a, b in zip(begin[0], end[0]) if a.size > 1]
    assert sum(changed) > 0.9 * len(changed)  # and they did train

    chief = run_dirs[0]
    assert runs.is_finished(chief)
    assert not os.path.exists(run_dirs[1])
    assert sorted(os.listdir(chief)) == sorted(
        ["checkpoints", "config.json", "log.csv", "logs", "metrics.json", "model.keras",
         "predictions_test.json", "vocab.txt"])
    with open(os.path.join(chief, "log.csv")) as handle:
        assert len(handle.read().strip().splitlines()) == 3  # header and two epochs, written once
    metrics = runs.read_json(os.path.join(chief, runs.METRICS))
    assert metrics["nltk_bleu_4"] > 0.05
    model = runs.load(chief)  # a plain float32 model, loadable without the strategy
    with open(os.path.join(chief, runs.VOCAB)) as handle:
        assert model.tokenizer.words == handle.read().split()


# Two logical CPU devices, and a MirroredStrategy over them, before anything else builds a model.
TWO_DEVICES = r'''
import sys

import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
'''

# Cross-entropy training, then a self-critical stage, under one MirroredStrategy in one process.
MIRRORED = TWO_DEVICES + r'''
from captioner import config as config_lib  # noqa: E402
from captioner.training import scst
from captioner.training import cross_entropy

data_root, run_dir, parent, scst_dir = sys.argv[1:5]
config = config_lib.preset("tiny", data_root=data_root, epochs=2, steps_per_epoch=12, search_images=0)
cross_entropy.train(config, run_dir, verbose=2, strategy=strategy)
scst.train(parent, scst_dir, {"epochs": 1, "steps_per_epoch": 8, "search_images": 10}, verbose=2,
           strategy=strategy)
'''


def run_script(tmp_path, source, *args):
    """Runs `source` as a script with `args`; asserts it succeeded and returns the completed process."""
    script = tmp_path / "script.py"
    script.write_text(source)
    result = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=600,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.slow
def test_cross_entropy_and_self_critical_training_under_a_mirrored_strategy(tmp_path, small_shapes, trained_run):
    run_dir, scst_dir = str(tmp_path / "run"), str(tmp_path / "scst")
    result = run_script(tmp_path, MIRRORED, small_shapes, run_dir, trained_run, scst_dir)
    assert "MirroredStrategy, 2 replicas, global batch 16 images (8 per replica); chief" in result.stderr
    assert runs.is_finished(run_dir)
    with open(os.path.join(run_dir, "log.csv")) as handle:
        losses = [float(row["loss"]) for row in csv.DictReader(handle)]
    assert len(losses) == 2 and losses[1] < losses[0]

    assert runs.is_finished(scst_dir)
    with open(os.path.join(scst_dir, "log.csv")) as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 1 and float(rows[0]["reward"]) > 0 and float(rows[0]["val_cider_d"]) > 0
    model = runs.load(scst_dir)  # a plain float32 model, loadable without the strategy
    assert_kept_only_if_better(scst_dir, runs.load(trained_run), model)
