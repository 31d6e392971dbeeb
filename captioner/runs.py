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

import contextlib
import difflib
import json
import os

from captioner import config as config_lib
from captioner import files

CONFIG = "config.json"
LOCK = ".lock"
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


class RunInUseError(ValueError):
    """Another process is training into the run folder."""


@contextlib.contextmanager
def locked(run_dir):
    """Holds the run folder for this process from before its first write to after its last.

    A second process (a requeued cluster job while the first still runs, the
    same command typed twice) is refused with `RunInUseError` naming the holder,
    and the folder is left as it was. The lock is the operating system's, so one
    left by a killed process never blocks. `RUN_DIR/.lock` exists while the folder
    is held; a folder this process created and wrote nothing into is removed again.
    """
    created, folder = [], os.path.abspath(run_dir)
    while not os.path.exists(folder):  # the folders this process makes (runs/ as well on a first run)
        created.append(folder)
        folder = os.path.dirname(folder)
    os.makedirs(run_dir, exist_ok=True)
    try:
        with files.exclusive(os.path.join(run_dir, LOCK)):
            yield
    except files.LockedError as error:
        raise RunInUseError(
            f"{run_dir} is in use: {error.who} is training into it. Wait for it to finish or stop it "
            "(a process that was killed does not hold the folder), or choose another --run-dir") from None
    finally:
        for folder in created:  # innermost first: what this process made and left empty goes
            if os.path.isdir(folder) and not os.listdir(folder):
                os.rmdir(folder)


def problem_with(run_dir):
    """Why `run_dir` is not a finished run folder a command can use (str), or None if it is one.

    Says what was given instead and what to do: a misspelt folder gets the
    nearest names beside it, the model file the folder that holds it, an
    unfinished run the command that finishes it. Reads no model: fast, for
    checking arguments before any work.
    """
    if os.path.isfile(run_dir):
        if os.path.basename(run_dir) == MODEL:
            return (f"{run_dir} is the model file; give the run folder that holds it: "
                    f"{os.path.dirname(run_dir) or '.'}")
        return f"{run_dir} is a file; give a run folder of python -m captioner.train (it holds {MODEL})"
    if not os.path.isdir(run_dir):
        parent = os.path.dirname(os.path.normpath(run_dir)) or "."
        names = sorted(os.listdir(parent)) if os.path.isdir(parent) else []
        close = difflib.get_close_matches(os.path.basename(os.path.normpath(run_dir)), names, n=3)
        hint = f"; did you mean {' or '.join(os.path.join(parent, c) for c in close)}?" if close else ""
        return f"no run folder at {run_dir}{hint}"
    if not os.path.exists(os.path.join(run_dir, MODEL)):
        if os.path.exists(os.path.join(run_dir, CONFIG)):
            return (f"{run_dir} holds a run whose training has not finished (no {MODEL} yet): run the same "
                    f"python -m captioner.train command again with --run-dir {run_dir} to finish it")
        return f"{run_dir} is not a run folder of python -m captioner.train (it has no {MODEL})"
    return None


def load(run_dir):
    """Rebuilds the trained `Captioner` of a run folder (safe mode: no code from the file)."""
    import keras

    # Importing the models registers their classes for deserialisation.
    from captioner.models import captioner as _captioner  # noqa: F401

    problem = problem_with(run_dir)
    if problem:
        raise FileNotFoundError(problem)
    return keras.saving.load_model(os.path.join(run_dir, MODEL), safe_mode=True)


def load_config(run_dir):
    return config_lib.load(os.path.join(run_dir, CONFIG))


def default_name(config):
    """`<preset>-<decoder>` ("shapes-lstm", "tiny-transformer"), or the preset alone where it names its decoder
    ("coco-lstm", not "coco-lstm-lstm")."""
    return config.preset if config.preset.endswith(f"-{config.decoder}") else f"{config.preset}-{config.decoder}"


def choose_run_dir(base):
    """`base`, or `base-2`, `base-3`, ... : the first that is new or holds an unfinished run."""
    candidate, number = base, 1
    while is_finished(candidate):
        number += 1
        candidate = f"{base}-{number}"
    return candidate
