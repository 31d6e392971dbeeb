"""Run folders: everything a trained model needs, readable with nothing but the package.

    RUN_DIR/
      config.json        the resolved `Config`
      vocab.txt          the vocabulary, one token a line, ids in line order
      model.keras        the Captioner (encoder, decoder, tokenizer), best validation weights
      checkpoints/       best weights so far (`best.weights.h5`)
      backup/            BackupAndRestore state while the run is unfinished (`state.json` names the weights)
      logs/              TensorBoard
      log.csv            one row an epoch: losses, accuracy, validation BLEU, learning rate
      metrics.json       final metrics: of the test split, or of val where the data has no test split
                         (`"split": "val", "held_out": false`); greedy, and with the decoding default
      predictions_<split>.json   those (greedy) captions in the COCO results format
      decoding.json      the decoding default (beam size, length penalty) and the validation search that
                         chose it (`captioner.training.decoding_search`); `model.keras` carries the choice
    and, for a self-critical stage (`captioner.training.scst`):
      scst.json          its parent run folder and the stage's settings (samples, baseline)
      cider_df.npz       the reward's document frequencies, counted once over the training references

Every file is written to a temporary name and renamed (JSON, vocabulary,
weights, model, backups; `log.csv` is cut back to the restored epoch on
resume), so a process killed at any moment never leaves a half-written one.
"""

import json
import os

import keras

from captioner import config as config_lib
from captioner import files

# Importing the models registers their classes for deserialisation.
from captioner.models import captioner as _captioner  # noqa: F401

CONFIG = "config.json"
VOCAB = "vocab.txt"
MODEL = "model.keras"
METRICS = "metrics.json"
BEST_WEIGHTS = os.path.join("checkpoints", "best.weights.h5")


def write_json(path, payload):
    """Writes JSON atomically (see `captioner.files.replacing`)."""
    with files.replacing(path) as temporary, open(temporary, "w") as handle:
        json.dump(payload, handle, indent=2)


def save_model(model, path):
    """`model.save(path)` atomically (see `captioner.files.replacing`)."""
    with files.replacing(path) as temporary:
        model.save(temporary)


def read_json(path):
    with open(path) as handle:
        return json.load(handle)


def is_finished(run_dir):
    return os.path.exists(os.path.join(run_dir, METRICS))


def load(run_dir):
    """Rebuilds the trained `Captioner` of a run folder (safe mode: no code from the file)."""
    path = os.path.join(run_dir, MODEL)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{run_dir} has no {MODEL}: not a finished run folder")
    return keras.saving.load_model(path, safe_mode=True)


def load_config(run_dir):
    return config_lib.load(os.path.join(run_dir, CONFIG))


def choose_run_dir(base):
    """`base`, or `base-2`, `base-3`, ... : the first that is new or holds an unfinished run."""
    candidate, number = base, 1
    while is_finished(candidate):
        number += 1
        candidate = f"{base}-{number}"
    return candidate
