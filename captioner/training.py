"""Training a Captioner: data, vocabulary, model, `fit()` with standard callbacks, test metrics."""

import contextlib
import csv
import dataclasses
import math
import os
import shutil
import sys
import time

import keras
import tensorflow as tf

from captioner import decoding_choice, evaluation, files
from captioner.distribute import is_chief, is_multi_worker, make_strategy, share_from_chief
from captioner import metrics as metrics_lib
from captioner import runs
from captioner.data import coco, datasets, features, shapes
from captioner.data import tokenizer as tokenizer_lib
from captioner.data.pipeline import caption_dataset, region_caption_dataset
from captioner.models import encoders
from captioner.models.captioner import build_captioner, describe_decoding


def log(message):
    print(message, file=sys.stderr, flush=True)


@dataclasses.dataclass
class Data:
    """The three splits of a run.

    Args:
        root: str, the dataset root.
        train, val, test: `captioner.data.coco.Split`.
    """

    root: str
    train: coco.Split
    val: coco.Split
    test: coco.Split


def _shapes_params(config):
    return shapes.ShapesParams(config.shapes_seed, config.image_size, tuple(config.shapes_splits))


def data_root(config):
    """The dataset root of `config`; for Shapes, written first if it is not there yet (training only)."""
    root = config.data_root
    if config.dataset == "shapes":
        params = _shapes_params(config)
        if root is None:
            root = shapes.ensure(shapes.default_root(params), params)
        elif not os.path.exists(root):
            root = shapes.generate(root, params)
    return root


def existing_data_root(config):
    """The dataset root of `config` if it exists; never writes (evaluating someone's run folder must not).

    Raises `coco.DatasetError` naming the command that would write missing Shapes data.
    """
    root = config.data_root
    if config.dataset == "shapes" and root is None:
        root = shapes.default_root(_shapes_params(config))
    if root is None or not os.path.isdir(root):
        fix = "pass --data-root"
        if config.dataset == "shapes":
            params = _shapes_params(config)
            fix = (f"write it with `python -m captioner.data.shapes {root} --seed {params.seed} --image-size "
                   f"{params.image_size} --splits {' '.join(map(str, params.split_sizes))}`, or pass --data-root")
        raise coco.DatasetError(f"The run's data is not at {root}: {fix}")
    return root


def load_data(config):
    """Reads train/val/test for `config`, writing Shapes first if it is not there yet."""
    root = data_root(config)
    splits = datasets.read_splits(config.dataset, root, ("train", "val", "test"), config.karpathy_json,
                                  config.skip_missing_images, optional=("test",))
    train, val = splits["train"], splits["val"]
    test = splits.get("test")
    if test is None:
        log(f"No test split (no captions file for it in {root}); the final metrics are computed on the val split, "
            "labelled val (the split that also chose the checkpoint, so they are optimistic)")
        test = val
    for split in (train, val, test):
        if split.skipped:
            log(f"Skipped {split.skipped} {split.name} images whose files are missing")
    return Data(root, train, val, test)


def score_split(model, split, batch_size, progress=True):
    """Greedy captions of a split and their nltk corpus BLEU; returns `(scores, captions)`."""
    outputs = evaluation.caption_examples(model, split.examples, batch_size, 1, 0.0, progress=progress)
    captions = [o["caption"] for o in outputs]
    references = list(evaluation.references_of(split).values())
    return metrics_lib.nltk_corpus_bleu(references, captions), captions


@contextlib.contextmanager
def dtype_policy(precision):
    """Builds layers under `precision` ("float32", "mixed", "mixed_float16", "mixed_bfloat16")."""
    if precision == "mixed":
        precision = "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16"
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        yield precision
    finally:
        keras.config.set_dtype_policy(previous)


# ---------------------------------------------------------------- callbacks


class ValidationBleu(keras.callbacks.Callback):
    """Adds greedy `val_nltk_bleu_4` (0-1) to the epoch logs, for early stopping and checkpoints.

    Must come before the callbacks that read it. Under multi-worker training
    only the chief decodes; every worker receives its figures, so all of them
    take the same early-stopping decision. Subclasses change the figure by
    overriding `monitor`, `score` and `describe` (see `captioner.scst.ValidationCider`).

    Args:
        captioner: the `Captioner` to decode with (the trained model may be its region model).
        split: `coco.Split`, the validation split.
        batch_size: int, images per decoding step.
        max_images: int or None, score at most this many images (the first ones); None scores all.
        strategy: the `tf.distribute` strategy, or None.
    """

    monitor = MONITOR = "val_nltk_bleu_4"

    def __init__(self, captioner, split, batch_size, max_images=None, strategy=None):
        super().__init__()
        self.captioner = captioner
        self.split = dataclasses.replace(split, examples=split.examples[:max_images])
        self.batch_size = batch_size
        self.strategy = strategy

    def score(self):
        """The validation figures (dict of floats, names without `val_`)."""
        return score_split(self.captioner, self.split, self.batch_size, progress=False)[0]

    def describe(self, scores):
        return f"val nltk BLEU-4 {scores['nltk_bleu_4']:.4f} (greedy, 0-1, {len(self.split.examples)} images)"

    def on_epoch_end(self, epoch, logs=None):
        if is_chief(self.strategy):
            scores = self.score()
        else:
            scores = {name: 0.0 for name in self.score_names()}
        if is_multi_worker(self.strategy):
            scores = share_from_chief(self.strategy, scores)
        if logs is not None:
            logs.update({f"val_{k}": v for k, v in scores.items()})
        log(f"epoch {epoch + 1}: {self.describe(scores)}")

    def score_names(self):
        return [f"nltk_bleu_{n}" for n in range(1, 5)]


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


MONITOR = ValidationBleu.MONITOR


def best_logged(run_dir, monitor=MONITOR):
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


def callbacks(config, run_dir, data, captioner, strategy=None, validation=None, initial_best=None):
    """The standard callbacks; non-chief workers get only those that keep them in step.

    The validation callback first (default `ValidationBleu`): the callbacks
    after it read the figure it adds to the logs (its `monitor`). The backup
    comes last, so that a committed backup includes its epoch's log row. The
    best checkpoint is written only for an epoch that beats the run's best
    logged figure and `initial_best` (a fine-tuning stage's parent's).
    """
    if validation is None:
        validation = ValidationBleu(captioner, data.val, config.eval_batch_size, config.val_images,
                                    strategy=strategy)
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


# ---------------------------------------------------------------- the run


BACKUP = "backup"


def learning_rate_schedule(config, steps_per_epoch):
    total = max(1, config.epochs * steps_per_epoch)
    warmup = min(config.warmup_steps, total // 2)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0, warmup_target=config.learning_rate, warmup_steps=warmup,
        decay_steps=max(1, total - warmup), alpha=0.05)


def compile_model(model, config, steps_per_epoch):
    """Adam with warm-up and cosine decay, masked cross-entropy on logits.

    Under the "mixed_float16" policy Keras wraps the optimizer in a
    `LossScaleOptimizer` (dynamic loss scaling); bfloat16 needs none.
    """
    optimizer = keras.optimizers.Adam(learning_rate_schedule(config, steps_per_epoch), clipnorm=config.clipnorm)
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="mean_with_sample_weight"),
        weighted_metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        jit_compile=config.jit_compile)


def check_run_dir(run_dir, config):
    """Refuses a finished run folder, or an unfinished one made with another config.

    Returns True if the folder holds an unfinished run of this config (to resume).
    """
    if runs.is_finished(run_dir):
        raise FileExistsError(f"{run_dir} already holds a finished run; choose another --run-dir")
    config_path = os.path.join(run_dir, runs.CONFIG)
    if os.path.exists(config_path):
        try:
            saved = runs.load_config(run_dir)
        except (ValueError, TypeError) as error:  # includes malformed JSON
            raise ValueError(f"{config_path} is not a valid config ({error}); choose another --run-dir") from None
        if saved != config:
            differences = {k: (v, getattr(config, k)) for k, v in dataclasses.asdict(saved).items()
                           if getattr(config, k) != v}
            raise ValueError(
                f"{run_dir} holds an unfinished run with another config (saved, requested): {differences}; "
                "rerun with its settings to resume, or choose another --run-dir")
        return True
    return False


def build_vocabulary(config, data, run_dir, write=True):
    path = os.path.join(run_dir, runs.VOCAB)
    if os.path.exists(path):
        return tokenizer_lib.load_vocabulary(path)
    captions = [c for e in data.train.examples for c in e.captions]
    words = tokenizer_lib.build_vocabulary(captions, config.min_count)
    if not write:
        return tokenizer_lib.CaptionTokenizer(words).words  # as the chief's file reads back
    tokenizer_lib.save_vocabulary(tokenizer_lib.CaptionTokenizer(words), path)
    return tokenizer_lib.load_vocabulary(path)


def build_models(config, vocabulary):
    """`(captioner, model)`: the Captioner, and the model `fit()` trains (its region model with a feature cache).

    Both are built under the precision policy: `compile()` reads the trained
    model's policy to wrap the optimizer in a `LossScaleOptimizer` under float16.
    """
    with dtype_policy(config.precision) as policy:
        captioner = build_captioner(config, vocabulary)
        model = captioner.region_model() if config.feature_cache else captioner
    if policy != "float32":
        log(f"Mixed precision: {policy} (variables and logits in float32)")
    if not config.train_encoder and config.encoder_weights is None:
        log(f"Warning: the {config.encoder} encoder is frozen and randomly initialised (--encoder-weights none): "
            "its regions are a fixed random function of the image, and a deep backbone's carry almost nothing "
            "(a random MobileNetV3's are about 1e-11), so expect scores near a language model's. For real use "
            "pass --encoder-weights imagenet or a weights file, or --train-encoder.")
    return captioner, model


def _training_datasets(config, data, captioner, strategy):
    """`(train, val, steps_per_epoch)` datasets from images, or from the feature cache."""
    distributed = strategy is not None
    replicas = strategy.num_replicas_in_sync if distributed else 1
    if config.batch_size % replicas:
        raise ValueError(f"batch_size {config.batch_size} is the global batch: it must divide evenly over "
                         f"{replicas} replicas")
    # XLA (and so a TPU) compiles once per input shape: fixed shapes make it compile once.
    static = config.jit_compile or isinstance(strategy, tf.distribute.TPUStrategy)
    common = dict(batch_size=config.batch_size, captions_per_image=config.captions_per_image,
                  max_length=config.max_length, drop_remainder=distributed, static_shapes=static)
    val_split = dataclasses.replace(data.val, examples=data.val.examples[:config.val_images])
    if config.feature_cache:
        root = config.feature_cache_dir or features.default_root()
        caches = {}
        for split in (data.train, val_split):
            caches[split.name], built = features.ensure(captioner.encoder, split.examples, root,
                                                        config.eval_batch_size)
            log(f"Feature cache of {split.name}: {caches[split.name].directory} "
                f"({'built now' if built else 'reused'})")
        train = region_caption_dataset(caches[data.train.name].regions(training=True, seed=config.seed),
                                       data.train.examples, captioner.tokenizer, training=True, seed=config.seed,
                                       **common)
        val = region_caption_dataset(caches[val_split.name].regions(), val_split.examples, captioner.tokenizer,
                                     training=False, **common)
    else:
        images = dict(image_size=config.image_size, normalization=captioner.normalization,
                      cache_images=config.cache_images)
        train = caption_dataset(data.train.examples, captioner.tokenizer, training=True, seed=config.seed,
                                **images, **common)
        val = caption_dataset(val_split.examples, captioner.tokenizer, training=False, **images, **common)
    full_batches = len(data.train.examples) // config.batch_size
    if distributed and full_batches == 0:
        raise ValueError(f"The train split has {len(data.train.examples)} images, fewer than one global batch "
                         f"({config.batch_size})")
    steps = config.steps_per_epoch or (full_batches if distributed else
                                       math.ceil(len(data.train.examples) / config.batch_size))
    if distributed:
        # Every worker reads the whole pipeline and keeps its share of each global batch;
        # a repeated dataset with a fixed step count keeps the workers in step.
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        train, val = train.repeat().with_options(options), val.with_options(options)
    elif config.steps_per_epoch:
        train = train.repeat()
    return train, val, steps


def _copy_weights(source, target):
    if len(source.weights) != len(target.weights):
        raise RuntimeError("The rebuilt model does not match the trained one")
    for a, b in zip(source.weights, target.weights):
        if a.shape != b.shape:
            raise RuntimeError(f"Weight {a.path} {a.shape} does not match {b.path} {b.shape}")
        b.assign(keras.ops.convert_to_numpy(a))


def train(config, run_dir, verbose="auto", extra_callbacks=(), distribute="none", strategy=None):
    """Trains `config` into `run_dir` (resuming it if unfinished) and returns the test metrics.

    Args:
        config: `Config`.
        run_dir: str, the run folder.
        verbose: `fit()` verbosity.
        extra_callbacks: callbacks run after the standard ones (validation BLEU,
            best checkpoint, early stopping, CSV log, TensorBoard, backup).
        distribute: str, one of `captioner.config.STRATEGIES`; ignored if `strategy` is given.
        strategy: a `tf.distribute.Strategy`, or None.

    Returns:
        The test metrics (dict); None on a non-chief worker, which writes nothing.
    """
    started = time.time()
    if strategy is None:
        strategy = make_strategy(distribute)
    chief = is_chief(strategy)
    resuming = check_run_dir(run_dir, config)  # before any work: data generation or reading can take minutes
    keras.utils.set_random_seed(config.seed)
    data = load_data(config)
    log(f"Data: {data.root}: {len(data.train.examples)} train / {len(data.val.examples)} val / "
        f"{len(data.test.examples)} test images, read in {time.time() - started:.1f} s")
    # Pretrained weights before the run folder is written: a failed download must not leave a folder
    # that the suggested `--encoder-weights none` would then refuse as "another config".
    encoders.check_weights(config.encoder, config.image_size, config.encoder_weights)
    if resuming:
        log(f"Resuming the unfinished run in {run_dir}")
    elif chief:  # written once the data is known to be usable
        os.makedirs(run_dir, exist_ok=True)
        runs.write_json(os.path.join(run_dir, runs.CONFIG), config.to_json())
    counted = time.time()
    vocabulary = build_vocabulary(config, data, run_dir, write=chief)
    log(f"Vocabulary: {len(vocabulary)} tokens ({time.time() - counted:.1f} s)")
    if strategy is not None:
        log(f"Distribution: {type(strategy).__name__}, {strategy.num_replicas_in_sync} replicas, global batch "
            f"{config.batch_size} images ({config.batch_size // strategy.num_replicas_in_sync} per replica); "
            f"{'chief' if chief else 'worker, writing nothing'}")

    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        captioner, model = build_models(config, vocabulary)
        train_data, val_data, steps = _training_datasets(config, data, captioner, strategy)
        compile_model(model, config, steps)

    all_callbacks = callbacks(config, run_dir, data, captioner, strategy)
    train_seconds = fit_resumably(model, train_data, val_data, steps, config, run_dir, strategy,
                                  all_callbacks + list(extra_callbacks), verbose)
    return finish(config, run_dir, data, captioner, model, vocabulary, strategy, started, train_seconds)


def fit_resumably(model, train_data, val_data, steps, config, run_dir, strategy, all_callbacks, verbose):
    """`model.fit()` that resumes from the run's backup; returns the seconds spent.

    `all_callbacks` are `callbacks()`'s (their `RunBackup` among them) and any
    extra ones. A run whose backup says it had finished, or had already met
    early stopping's condition, is not fitted again: its last weights are loaded.
    """
    backup_dir = os.path.join(run_dir, BACKUP)
    state = RunBackup.read_state(backup_dir)
    if state is not None and is_chief(strategy):
        truncate_log(run_dir, state["epoch"])
    started = time.time()
    if state is not None and (state.get("done") or RunBackup.stopped_early(state, config.patience)):
        log("Training had finished before the interruption; saving and testing")
        model.load_weights(os.path.join(backup_dir, state["weights"]))
    else:
        fixed_steps = strategy is not None or config.steps_per_epoch
        model.fit(train_data, epochs=config.epochs, steps_per_epoch=steps if fixed_steps else None,
                  validation_data=val_data, shuffle=False, callbacks=all_callbacks, verbose=verbose)
        next(c for c in all_callbacks if isinstance(c, RunBackup)).mark_done()
    return time.time() - started


def finish(config, run_dir, data, captioner, model, vocabulary, strategy, started, train_seconds, extra=None):
    """After `fit()`: best weights, the decoding default, `model.keras`, test metrics; returns the metrics.

    The saved model is rebuilt in float32 outside any strategy, so it loads and
    decodes anywhere. Its decoding default is chosen on validation images
    (`captioner.decoding_choice`, `config.search_images`; 0 keeps greedy). The
    test split is captioned greedily (nltk BLEU, as every run reports) and, when
    the default is another setting, with it too. `extra` is added to the metrics.
    Non-chief workers write nothing and return None.
    """
    chief = is_chief(strategy)
    if not chief:
        log("Worker finished training; waiting while the chief saves and tests the model")
        share_from_chief(strategy, {"finished": 0.0})  # returns when the chief is done
        return None
    best = os.path.join(run_dir, runs.BEST_WEIGHTS)
    if os.path.exists(best):
        model.load_weights(best)
    final = build_captioner(config.replace(encoder_weights=None), vocabulary)
    _copy_weights(captioner, final)
    choice_path = os.path.join(run_dir, decoding_choice.FILE_NAME)
    if os.path.exists(choice_path):  # a rerun after a crash between the search and the metrics
        choice = runs.read_json(choice_path)
    elif config.search_images:
        log(f"Choosing the decoding default on {min(config.search_images, len(data.val.examples))} "
            f"{data.val.name} images ...")
        choice = decoding_choice.choose(final, data.val, config.eval_batch_size, config.search_images)
        decoding_choice.record(run_dir, choice)
    else:
        choice = {"beam_size": 1, "alpha": 0.0, "images": 0, "table": [], "note": "no search (search_images 0)"}
    final.default_decoding = decoding_choice.setting(choice)
    log(f"Decoding default: {describe_decoding(choice['beam_size'], choice['alpha'])}")
    runs.save_model(final, os.path.join(run_dir, runs.MODEL))
    log("Captioning the test split (greedy) ...")
    scores, captions = score_split(final, data.test, config.eval_batch_size)
    references = list(evaluation.references_of(data.test).values())
    scores["cider_d"] = metrics_lib.cider_d(references, [c or "<empty>" for c in captions])[0]
    predictions = [{"image_id": e.image_id, "caption": c} for e, c in zip(data.test.examples, captions)]
    runs.write_json(os.path.join(run_dir, f"predictions_{data.test.name}.json"), predictions)
    default = {**final.default_decoding, "chosen_on": (f"{choice['images']} {data.val.name} images"
                                                       if choice["images"] else "no search (--search-images 0)")}
    if final.default_decoding["beam_size"] > 1:
        log("Captioning the test split with the decoding default ...")
        outputs = evaluation.caption_examples(final, data.test.examples, config.eval_batch_size,
                                              final.default_decoding["beam_size"], final.default_decoding["alpha"])
        best_captions = [o["caption"] or "<empty>" for o in outputs]
        default.update(metrics_lib.nltk_corpus_bleu(references, best_captions))
        default["cider_d"] = metrics_lib.cider_d(references, best_captions)[0]
    else:
        default.update({k: v for k, v in scores.items()})
    metrics = {
        "split": data.test.name,
        # False when there is no test split: the val split chose the checkpoint and stopped training.
        "held_out": data.test is not data.val,
        "images": len(data.test.examples),
        "decoding": "greedy",
        "scale": "0-1 (CIDEr-D unbounded, 1.0 = '100' in papers)",
        **scores,
        "default_decoding": default,
        **(extra or {}),
        "train_seconds": round(train_seconds, 1),
        "wall_seconds": round(time.time() - started, 1),
    }
    runs.write_json(os.path.join(run_dir, runs.METRICS), metrics)
    shutil.rmtree(os.path.join(run_dir, BACKUP), ignore_errors=True)
    if is_multi_worker(strategy):
        share_from_chief(strategy, {"finished": 1.0})  # releases the waiting workers
    return metrics


def format_metrics(metrics):
    """The metrics a finished run prints: greedy nltk BLEU and CIDEr-D, then the decoding default's."""
    if metrics.get("held_out", True):
        title = f"Test metrics ({metrics['split']} split"
    else:
        title = (f"Final metrics on the {metrics['split']} split, not a held-out test split: it also chose the "
                 f"checkpoint and early stopping, so they are optimistic ({metrics['split']} split")
    lines = [f"{title}, {metrics['images']} images, {metrics['decoding']} decoding, scale {metrics['scale']}):"]
    for n in range(1, 5):
        lines.append(f"  BLEU-{n} (nltk corpus_bleu)  {metrics[f'nltk_bleu_{n}']:.4f}")
    if "cider_d" in metrics:
        lines.append(f"  CIDEr-D (pycocoevalcap, caption tokenizer words)  {metrics['cider_d']:.4f}")
    default = metrics.get("default_decoding")
    if default:
        how = (f"chosen on {default['chosen_on']} by CIDEr-D" if not default["chosen_on"].startswith("no search")
               else default["chosen_on"])
        lines.append(f"Decoding default ({how}): {describe_decoding(default['beam_size'], default['alpha'])}")
        if default["beam_size"] > 1:
            lines.append(f"  with it: BLEU-4 (nltk) {default['nltk_bleu_4']:.4f}, CIDEr-D {default['cider_d']:.4f}")
    return "\n".join(lines)

