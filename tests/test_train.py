"""Training the `tiny` preset end to end: a real learning signal and a self-describing run folder."""

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import types

import keras
import pytest

from captioner import config as config_lib
from captioner import train
from conftest import exit_status
from captioner import runs
from captioner.training import callbacks as callbacks_lib
from captioner.training import cross_entropy
from captioner.data import datasets
from captioner.training import run as run_lib
from captioner.evaluation import scoring
from captioner.data import tokenizer as tk
from captioner.models.captioner import build_captioner

RESCORE = """
import json, sys
import captioner
from captioner import runs
from captioner.training import callbacks as callbacks_lib
from captioner.training import cross_entropy
from captioner.data import datasets
from captioner.training import run as run_lib
from captioner.evaluation import scoring
run_dir = sys.argv[1]
model = captioner.load(run_dir)
config = runs.load_config(run_dir)
data = datasets.load_data(config)
scores, captions = scoring.score_split(model, data.test, config.eval_batch_size, progress=False)
print(json.dumps({"scores": scores, "captions": captions}))
"""


@pytest.mark.slow
def test_tiny_preset_learns(tiny_run):
    config, run_dir, metrics = tiny_run
    with open(os.path.join(run_dir, "log.csv")) as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == config.epochs
    losses = [float(r["loss"]) for r in rows]
    assert losses[-1] < 0.7 * losses[0], losses
    # An untrained model of the same config scores (almost) nothing.
    keras.utils.set_random_seed(1)
    untrained = build_captioner(config, tk.load_vocabulary(os.path.join(run_dir, runs.VOCAB)))
    data = datasets.load_data(config)
    baseline, _ = scoring.score_split(untrained, data.test, config.eval_batch_size, progress=False)
    assert baseline["nltk_bleu_4"] < 0.05
    assert metrics["nltk_bleu_4"] > baseline["nltk_bleu_4"] + 0.2, (metrics, baseline)
    assert metrics["nltk_bleu_1"] > 0.5
    # It looks at the images: the 100 test images do not all get the same few captions.
    predictions = runs.read_json(os.path.join(run_dir, "predictions_test.json"))
    assert len({p["caption"] for p in predictions}) >= 30


@pytest.mark.slow
def test_run_folder_is_complete(tiny_run):
    config, run_dir, metrics = tiny_run
    for name in ("config.json", "vocab.txt", "model.keras", "metrics.json", "log.csv", "predictions_test.json",
                 "decoding.json", runs.BEST_WEIGHTS):
        assert os.path.isfile(os.path.join(run_dir, name)), name
    assert os.path.isdir(os.path.join(run_dir, "logs"))
    assert runs.load_config(run_dir) == datasets.with_absolute_paths(config)
    assert os.path.isabs(runs.load_config(run_dir).data_root) and os.path.isabs(runs.load_config(run_dir).feature_cache_dir)
    saved = runs.read_json(os.path.join(run_dir, "metrics.json"))
    assert saved["scale"].startswith("0-1") and saved["decoding"] == "greedy" and saved["images"] == 100
    assert saved["cider_d"] > 0 and set(saved["default_decoding"]) >= {"beam_size", "alpha", "cider_d"}
    predictions = runs.read_json(os.path.join(run_dir, "predictions_test.json"))
    assert len(predictions) == 100 and set(predictions[0]) == {"image_id", "caption"}


@pytest.mark.slow
def test_run_folder_reloads_in_a_fresh_process_and_reproduces_bleu(tiny_run):
    _, run_dir, metrics = tiny_run
    output = subprocess.run([sys.executable, "-c", RESCORE, run_dir], capture_output=True, text=True, check=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    rescored = json.loads(output.stdout.strip().splitlines()[-1])
    assert rescored["scores"]["nltk_bleu_4"] == metrics["nltk_bleu_4"]
    predictions = runs.read_json(os.path.join(run_dir, "predictions_test.json"))
    assert rescored["captions"] == [p["caption"] for p in predictions]


@pytest.mark.slow
def test_resuming_with_another_config_is_refused(tiny_run, tmp_path):
    config, run_dir, _ = tiny_run
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    runs.write_json(str(unfinished / runs.CONFIG), config.to_json())
    (unfinished / "log.csv").write_text("epoch,loss\n0,2.5\n")  # it trained: refused, not started again
    with pytest.raises(ValueError, match="another config"):
        run_lib.check_run_dir(str(unfinished), config.replace(hidden_dim=32))
    assert run_lib.check_run_dir(str(unfinished), config) is True
    assert runs.choose_run_dir(run_dir) == run_dir + "-2"


@pytest.mark.slow
def test_transformer_trains_on_tiny(tmp_path, tiny_shapes):
    # Two of the preset's four epochs: enough to show learning (a run gave BLEU-1 0.57, BLEU-4 0.27).
    config = config_lib.preset("tiny", decoder="transformer", data_root=tiny_shapes, learning_rate=1e-3,
                               search_images=0, epochs=2)
    metrics = cross_entropy.train(config, str(tmp_path / "run"), verbose=0)
    # An untrained model scores BLEU-4 < 0.05 (test_tiny_preset_learns).
    assert metrics["nltk_bleu_1"] > 0.4 and metrics["nltk_bleu_4"] > 0.15, metrics
    with open(tmp_path / "run" / "log.csv") as handle:
        losses = [float(r["loss"]) for r in csv.DictReader(handle)]
    assert losses[-1] < 0.8 * losses[0], losses


def test_config_rejects_unknown_keys_and_wrong_types():
    payload = config_lib.preset("tiny").to_json()
    with pytest.raises(ValueError, match="Unknown config keys: colour"):
        config_lib.Config.from_json({**payload, "colour": "red"})
    with pytest.raises(ValueError, match="batch_size must be of type int"):
        config_lib.Config.from_json({**payload, "batch_size": "32"})
    with pytest.raises(ValueError, match="decoder must be one of"):
        config_lib.preset("tiny", decoder="gru")
    assert config_lib.Config.from_json(payload) == config_lib.preset("tiny")


def test_command_line_errors_exit_2(tmp_path, capsys):
    assert exit_status(train.main, ["--epochs", "0"]) == 2
    assert "epochs must be at least 1" in capsys.readouterr().err
    assert exit_status(train.main, ["--preset", "coco-lstm", "--data-root", str(tmp_path / "no-coco"),
                                    "--run-dir", str(tmp_path / "run")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "run")


class Interrupt(keras.callbacks.Callback):
    """Stops the process-like run after `epochs` epochs, as a kill between epochs would."""

    def __init__(self, epochs):
        super().__init__()
        self.epochs = epochs

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epochs:
            raise KeyboardInterrupt("interrupted")


@pytest.mark.slow
def test_an_interrupted_run_resumes_where_it_stopped(tmp_path, small_shapes):
    config = config_lib.preset("tiny", data_root=small_shapes, epochs=3, search_images=0)
    run_dir = str(tmp_path / "run")
    with pytest.raises(KeyboardInterrupt):
        cross_entropy.train(config, run_dir, verbose=0, extra_callbacks=[Interrupt(1)])
    assert not runs.is_finished(run_dir) and os.path.isdir(os.path.join(run_dir, "backup"))
    first_best = callbacks_lib.best_logged(run_dir, "val_cider_d")
    assert first_best is not None

    started = []
    record = keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs: started.append(epoch))
    metrics = cross_entropy.train(config, run_dir, verbose=0, extra_callbacks=[record])
    assert started == [1, 2]  # resumed after epoch 0, not restarted
    with open(os.path.join(run_dir, "log.csv")) as handle:
        assert [int(r["epoch"]) for r in csv.DictReader(handle)] == [0, 1, 2]
    assert runs.is_finished(run_dir) and not os.path.exists(os.path.join(run_dir, "backup"))
    assert callbacks_lib.best_logged(run_dir, "val_cider_d") >= first_best and "nltk_bleu_4" in metrics


def test_bad_training_input_fails_before_any_work(tmp_path, small_shapes, capsys, monkeypatch):
    """Bad config files, an incompatible resume and an empty split: exit 2 with a clear message, nothing written."""
    monkeypatch.setenv("CAPTIONER_DATA", str(tmp_path / "data"))
    def run_train(*flags):
        status = exit_status(train.main, flags)
        return types.SimpleNamespace(returncode=status, stderr=capsys.readouterr().err)

    payload = config_lib.preset("tiny").to_json()
    for change, message in (({"colour": "red"}, "Unknown config keys: colour"),
                            ({"batch_size": "16"}, "batch_size must be of type int"),
                            ({"precision": "float8"}, "precision must be one of")):
        path = tmp_path / "bad.json"
        path.write_text(json.dumps({**payload, **change}))
        result = run_train("--config", str(path), "--run-dir", str(tmp_path / "run"))
        assert result.returncode == 2 and message in result.stderr, result.stderr
    path.write_text("{not json")
    result = run_train("--config", str(path))
    assert result.returncode == 2 and "bad.json" in result.stderr

    # An unfinished run that trained (its log holds an epoch) is never run over with other settings.
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    runs.write_json(str(unfinished / runs.CONFIG), config_lib.preset("tiny", data_root=small_shapes).to_json())
    (unfinished / "log.csv").write_text("epoch,loss\n0,2.5\n")
    before = sorted((p.name, p.stat().st_mtime_ns) for p in unfinished.iterdir())
    result = run_train("--preset", "tiny", "--data-root", small_shapes, "--hidden-dim", "32", "--run-dir",
                       str(unfinished))
    assert result.returncode == 2 and "another config" in result.stderr and "hidden_dim" in result.stderr
    assert sorted((p.name, p.stat().st_mtime_ns) for p in unfinished.iterdir()) == before

    empty = tmp_path / "empty-val"
    shutil.copytree(small_shapes, empty)
    captions = json.loads((empty / "annotations" / "captions_val.json").read_text())
    (empty / "annotations" / "captions_val.json").write_text(json.dumps({**captions, "annotations": []}))
    result = run_train("--preset", "tiny", "--data-root", str(empty), "--run-dir", str(tmp_path / "run"))
    assert result.returncode == 2 and "captions_val.json: the split has no captioned images" in result.stderr
    assert not os.path.exists(tmp_path / "run") and not os.path.exists(tmp_path / "data")


def test_a_run_keeps_its_checkpoint_on_validation_cider_d_and_stores_absolute_paths(quick_run):
    metrics = runs.read_json(os.path.join(quick_run, runs.METRICS))
    assert metrics["checkpoint_metric"] == "val_cider_d (greedy)" and "cider_d" in metrics
    with open(os.path.join(quick_run, "log.csv")) as handle:
        row = next(csv.DictReader(handle))
    assert float(row["val_cider_d"]) >= 0 and "val_nltk_bleu_4" in row
    config = runs.load_config(quick_run)
    assert config.checkpoint_metric == "cider_d"
    assert all(os.path.isabs(getattr(config, name)) for name in ("data_root", "feature_cache_dir"))


def test_a_folder_whose_run_never_trained_starts_again_with_new_settings(tmp_path, small_shapes, capsys):
    """A typo in a flag, a run stopped while reading its data: nothing to resume, so the new settings win."""
    folder = tmp_path / "typo"
    folder.mkdir()
    old = datasets.with_absolute_paths(config_lib.preset("tiny", data_root=small_shapes, encoder="small_cnn"))
    runs.write_json(str(folder / runs.CONFIG), old.to_json())
    (folder / runs.VOCAB).write_text("<pad>\n<unk>\n<start>\n<end>\nred\n")
    new = old.replace(hidden_dim=32)
    assert run_lib.check_run_dir(str(folder), new) is False  # a fresh start, not a resume
    assert os.listdir(folder) == [] and "never finished a training step" in capsys.readouterr().err
    # The same settings with the data elsewhere: a resume, and config.json learns the new place.
    runs.write_json(str(folder / runs.CONFIG), old.to_json())
    (folder / "log.csv").write_text("epoch,loss\n0,2.5\n")
    moved = old.replace(data_root=str(tmp_path / "moved"))
    assert run_lib.check_run_dir(str(folder), moved) is True
    assert runs.load_config(str(folder)).data_root == str(tmp_path / "moved")
    assert "data or cache moved" in capsys.readouterr().err


def test_float16_training_from_the_feature_cache_scales_the_loss():
    config = config_lib.preset("tiny", data_root="unused", train_encoder=False, feature_cache=True,
                               precision="mixed_float16")
    captioner, model = cross_entropy.build_models(config, ["a", "red", "circle"])
    cross_entropy.compile_model(model, config, steps_per_epoch=10)
    assert model is not captioner and model.dtype_policy.name == "mixed_float16"
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    # The image model gets the same treatment, as it did before.
    cross_entropy.compile_model(captioner, config, steps_per_epoch=10)
    assert isinstance(captioner.optimizer, keras.optimizers.LossScaleOptimizer)


@pytest.mark.slow
def test_without_a_test_split_the_final_metrics_are_labelled_val(tmp_path, small_shapes, capsys):
    root = tmp_path / "no-test"
    shutil.copytree(small_shapes, root)
    os.remove(root / "annotations" / "captions_test.json")
    config = config_lib.preset("tiny", data_root=str(root), epochs=1, steps_per_epoch=3, search_images=0,
                               val_images=10)
    run_dir = str(tmp_path / "run")
    metrics = cross_entropy.train(config, run_dir, verbose=0)
    assert metrics["split"] == "val" and metrics["held_out"] is False and metrics["images"] == 30
    assert runs.read_json(os.path.join(run_dir, runs.METRICS))["split"] == "val"
    assert os.path.exists(os.path.join(run_dir, "predictions_val.json"))
    assert not os.path.exists(os.path.join(run_dir, "predictions_test.json"))
    printed = run_lib.format_metrics(metrics)
    assert printed.startswith("Final metrics on the val split, not a held-out test split") and "Test" not in printed
    err = capsys.readouterr().err
    assert "labelled val" in err
    # Validation is bounded by --val-images (the final metrics still cover the whole split), and each
    # epoch says where its time went.
    assert "(greedy, 0-1, 10 images;" in err and metrics["images"] == 30
    assert re.search(r"epoch 1: 3 training steps in [\d.]+ s \([\d.]+ steps/s\); validation loss [\d.]+ s, "
                     r"validation captions [\d.]+ s", err)
