"""The callbacks every training run uses: validation figures, epoch times, the best checkpoint, backups.

`callbacks()` assembles them in the order they depend on each other; the
cross-entropy and self-critical stages both train with it.
"""

import csv
import dataclasses
import os
import time

import keras

from captioner import files, runs
from captioner.console import Progress, log
from captioner.evaluation.scoring import score_split
from captioner.training.distribute import is_chief, is_multi_worker, share_from_chief

BACKUP = "backup"


class ValidationScores(keras.callbacks.Callback):
    """Adds the greedy captions' validation CIDEr-D and nltk BLEU-1..4 to the epoch logs (`val_cider_d`, ...).

    The checkpoint and early stopping read `monitor` (`val_cider_d` by default:
    the figure self-critical training then optimises, as self-critical.pytorch
    and Up-Down select; `val_nltk_bleu_4` on request). Must come before the
    callbacks that read it. Under multi-worker training only the chief decodes;
    every worker receives its figures, so all take the same early-stopping decision.

    Args:
        captioner: the `Captioner` to decode with (the trained model may be its region model).
        split: `coco.Split`, the validation split.
        batch_size: int, images per decoding step.
        max_images: int or None, score at most this many images (the first ones); None scores all.
        strategy: the `tf.distribute` strategy, or None.
        monitor: str, the log entry that picks the checkpoint ("val_cider_d" or "val_nltk_bleu_4").
        cache: a `captioner.data.features.FeatureCache` of these images' regions, or None (read the images).
    """

    NAMES = ("cider_d", "nltk_bleu_1", "nltk_bleu_2", "nltk_bleu_3", "nltk_bleu_4")

    def __init__(self, captioner, split, batch_size, max_images=None, strategy=None, monitor="val_cider_d",
                 cache=None):
        super().__init__()
        if monitor not in {f"val_{name}" for name in self.NAMES}:
            raise ValueError(f"unknown validation figure {monitor!r}")
        self.captioner = captioner
        self.split = dataclasses.replace(split, examples=split.examples[:max_images])
        self.batch_size = batch_size
        self.strategy = strategy
        self.monitor = monitor
        self.cache = cache

    def score(self):
        """The validation figures (dict of floats, names without `val_`)."""
        return score_split(self.captioner, self.split, self.batch_size, progress=False, cache=self.cache)[0]

    def describe(self, scores):
        return (f"val CIDEr-D {scores['cider_d']:.4f}, nltk BLEU-4 {scores['nltk_bleu_4']:.4f} (greedy, 0-1, "
                f"{len(self.split.examples)} images; {self.monitor} picks the checkpoint)")

    def on_epoch_end(self, epoch, logs=None):
        if is_chief(self.strategy):
            scores = self.score()
        else:
            scores = {name: 0.0 for name in self.NAMES}
        if is_multi_worker(self.strategy):
            scores = share_from_chief(self.strategy, scores)
        if logs is not None:
            logs.update({f"val_{k}": v for k, v in scores.items()})
        log(f"epoch {epoch + 1}: {self.describe(scores)}")


class ProgressLog(keras.callbacks.Callback):
    """Training progress on stderr (`fit()` itself runs silent): on a terminal a line rewritten as steps go,
    in a log a plain line every minute, never escape codes or a flood (`captioner.console.Progress`)."""

    def __init__(self, epochs, steps):
        super().__init__()
        self.epochs, self.steps = epochs, steps
        self.bar = None

    def on_epoch_begin(self, epoch, logs=None):
        self.bar = Progress(self.steps or 0, f"epoch {epoch + 1}/{self.epochs}", unit="steps")

    def on_train_batch_end(self, batch, logs=None):
        if self.bar is not None and self.steps:
            loss = (logs or {}).get("loss")
            self.bar.update(batch + 1, f"loss {float(loss):.4f}" if loss is not None else "")


class EpochTimes(keras.callbacks.Callback):
    """Logs where each epoch's time went: training steps, the validation loss pass, the validation captions.

    Placed right after the validation callback, whose captions are decoded in its `on_epoch_end`.
    """

    def on_epoch_begin(self, epoch, logs=None):
        self.began = self.trained = time.time()
        self.steps, self.validation = 0, (0.0, 0.0)

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1
        self.trained = time.time()

    def on_test_begin(self, logs=None):
        self.validation = (time.time(), time.time())

    def on_test_end(self, logs=None):
        self.validation = (self.validation[0], time.time())

    def on_epoch_end(self, epoch, logs=None):
        trained = self.trained - self.began
        loss = self.validation[1] - self.validation[0]
        captions = time.time() - max(self.trained, self.validation[1])
        log(f"epoch {epoch + 1}: {self.steps} training steps in {trained:.1f} s "
            f"({self.steps / max(trained, 1e-9):.2f} steps/s); validation loss {loss:.1f} s, "
            f"validation captions {captions:.1f} s")


class BestCheckpoint(keras.callbacks.ModelCheckpoint):
    """`ModelCheckpoint` of the best weights that never leaves a half-written file.

    Keras writes the weights under `captioner.files.partial_name(filepath)`; once
    complete, the file is committed over `filepath`.
    """

    def __init__(self, filepath, **kwargs):
        self.final_path = filepath
        super().__init__(files.partial_name(filepath), save_weights_only=True, save_best_only=True, **kwargs)

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        if os.path.exists(self.filepath):
            files.commit(self.filepath, self.final_path)


class RunBackup(keras.callbacks.BackupAndRestore):
    """`BackupAndRestore` whose backups are atomic, every `save_freq` steps and at every epoch end.

    A backup is a weights file (model and optimizer) named after its step,
    written completely, then committed by atomically replacing `state.json`,
    which names it; older weights files are deleted after. A process killed at
    any moment therefore leaves the last committed backup readable. Restoring
    loads its weights and resumes at its epoch (the interrupted epoch restarts
    from its first batch with the backed-up weights and optimizer state).

    The early-stopping state (best value, epochs without gain) is backed up
    with the weights, so a resumed run stops when an uninterrupted one would.
    It must come after the `EarlyStopping` in the callback list: that one
    resets its state when training begins, and this one then restores it.

    Args:
        backup_dir: str, the folder (used by nothing else).
        save_freq: int steps, or "epoch" (epoch ends only).
        write: bool, False on non-chief workers: they restore but never write.
        stopping: the run's `keras.callbacks.EarlyStopping`, or None.
    """

    STATE = "state.json"
    STOPPING_FIELDS = ("best", "wait", "best_epoch")

    def __init__(self, backup_dir, save_freq="epoch", write=True, stopping=None):
        super().__init__(backup_dir, save_freq=save_freq, delete_checkpoint=False)
        self.write = write
        self.stopping = stopping

    @classmethod
    def read_state(cls, backup_dir):
        """The last committed backup's state (dict), or None."""
        path = os.path.join(backup_dir, cls.STATE)
        return runs.read_json(path) if os.path.exists(path) else None

    @classmethod
    def stopped_early(cls, state, patience):
        """Whether the backed-up early-stopping state had already stopped training (killed before `done`)."""
        stopping = state.get("early_stopping")
        return bool(stopping) and state["epoch"] > 1 and stopping["wait"] >= patience

    def on_train_begin(self, logs=None):
        state = self.read_state(self.backup_dir)
        if state is None:
            return
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        self.model.load_weights(os.path.join(self.backup_dir, state["weights"]))
        self.model._initial_epoch = state["epoch"]  # as BackupAndRestore itself restores the epoch
        self._current_epoch = state["epoch"]
        if self.stopping is not None and "early_stopping" in state:
            for name in self.STOPPING_FIELDS:
                setattr(self.stopping, name, state["early_stopping"][name])
        log(f"Restored the backup of epoch {state['epoch'] + 1}, batch {state['batch']} (optimizer step "
            f"{state['step']}); epoch {state['epoch'] + 1} restarts from its first batch")

    def on_epoch_begin(self, epoch, logs=None):
        self._current_epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        self._current_epoch = epoch + 1
        self._last_batch_seen = 0
        self._batches_seen_since_last_saving = 0
        self._save_model()

    def _save_model(self):
        if not self.write:
            return
        os.makedirs(self.backup_dir, exist_ok=True)
        step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        name = f"step-{step:09d}-epoch-{self._current_epoch:04d}.weights.h5"
        with files.replacing(os.path.join(self.backup_dir, name)) as temporary:
            self.model.save_weights(temporary, overwrite=True)
        state = {"epoch": self._current_epoch, "batch": self._last_batch_seen, "step": step, "weights": name}
        if self.stopping is not None:
            state["early_stopping"] = {
                "best": None if self.stopping.best is None else float(self.stopping.best),
                "wait": int(self.stopping.wait), "best_epoch": int(self.stopping.best_epoch)}
        runs.write_json(os.path.join(self.backup_dir, self.STATE), state)
        for other in os.listdir(self.backup_dir):
            if other.endswith(".weights.h5") and other.startswith("step-") and other != name:
                os.remove(os.path.join(self.backup_dir, other))

    def mark_done(self):
        """Records that `fit()` returned, so a rerun goes straight to saving and testing."""
        state = self.read_state(self.backup_dir)
        if self.write and state is not None:
            runs.write_json(os.path.join(self.backup_dir, self.STATE), {**state, "done": True})


def best_logged(run_dir, monitor):
    """The best `monitor` value in the run's `log.csv` (None if none): what a resumed run must beat."""
    path = os.path.join(run_dir, "log.csv")
    if not os.path.exists(path):
        return None
    with open(path) as handle:
        values = [float(row[monitor]) for row in csv.DictReader(handle) if row.get(monitor)]
    return max(values) if values else None


def truncate_log(run_dir, epochs):
    """Keeps the first `epochs` complete rows of `log.csv`: those the restored backup includes.

    Rows of epochs that will run again and a half-written last line (a crash during the write) go.
    """
    path = os.path.join(run_dir, "log.csv")
    if not os.path.exists(path):
        return
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows:
        return
    header, kept = rows[0], []
    for row in rows[1:]:
        if len(row) == len(header) and row[0].isdigit() and int(row[0]) < epochs:
            kept.append(row)
    with files.replacing(path) as temporary, open(temporary, "w", newline="") as handle:
        csv.writer(handle).writerows([header] + kept)


def callbacks(config, run_dir, data, captioner, strategy=None, initial_best=None, cache=None):
    """The standard callbacks; non-chief workers get only those that keep them in step.

    The validation callback first (`ValidationScores` on `config.val_images`
    images, monitoring `val_` + `config.checkpoint_metric`): the callbacks after
    it read the figure it adds to the logs. The backup comes last, so that a
    committed backup includes its epoch's log row. The best checkpoint is
    written only for an epoch that beats the run's best logged figure and
    `initial_best` (a fine-tuning stage's parent's). `cache`: the validation
    images' feature cache, or None.
    """
    validation = ValidationScores(captioner, data.val, config.eval_batch_size, config.val_images, strategy=strategy,
                                  monitor=f"val_{config.checkpoint_metric}", cache=cache)
    monitor = validation.monitor
    stopping = keras.callbacks.EarlyStopping(monitor=monitor, mode="max", patience=config.patience)
    backup = RunBackup(os.path.join(run_dir, BACKUP), config.backup_steps or "epoch", write=is_chief(strategy),
                       stopping=stopping)
    if not is_chief(strategy):
        return [validation, stopping, backup]
    return [
        validation,
        EpochTimes(),
        BestCheckpoint(os.path.join(run_dir, runs.BEST_WEIGHTS), monitor=monitor, mode="max",
                       initial_value_threshold=max([v for v in (best_logged(run_dir, monitor), initial_best)
                                                    if v is not None], default=None)),
        stopping,
        keras.callbacks.CSVLogger(os.path.join(run_dir, "log.csv"), append=True),
        keras.callbacks.TensorBoard(os.path.join(run_dir, "logs")),
        backup,
    ]
