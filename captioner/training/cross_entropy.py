"""Cross-entropy training (teacher forcing) with stock `fit()`: data, vocabulary, model, optimizer, callbacks.

    python -m captioner.train [--preset shapes] ...   is `train(config, run_dir)`
"""

import contextlib
import dataclasses
import math
import os
import time

import keras
import tensorflow as tf

from captioner import runs
from captioner.console import log
from captioner.data import features, imagefolder
from captioner.data.datasets import load_data, with_absolute_paths
from captioner.data.pipeline import caption_dataset, region_caption_dataset
from captioner.models import encoders
from captioner.models.captioner import build_captioner
from captioner.training.callbacks import callbacks
from captioner.training.distribute import is_chief, make_strategy
from captioner.training.run import build_vocabulary, check_run_dir, finish, fit_resumably


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
    """`(train, val, steps_per_epoch, val_cache)`: datasets from images, or from the feature cache (whose
    validation cache, else None, also serves the validation captions and the decoding search)."""
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
    val_cache = None
    if config.feature_cache:
        root = config.feature_cache_dir or features.default_root()
        train_cache = features.ensure_split(captioner.encoder, data.train.name, data.train.examples, root,
                                            config.eval_batch_size)
        val_cache = features.ensure_split(captioner.encoder, val_split.name, val_split.examples, root,
                                          config.eval_batch_size)
        train = region_caption_dataset(train_cache.regions(training=True, seed=config.seed), data.train.examples,
                                       captioner.tokenizer, training=True, seed=config.seed, **common)
        val = region_caption_dataset(val_cache.regions(), val_split.examples, captioner.tokenizer, training=False,
                                     **common)
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
    return train, val, steps, val_cache


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
    # What config.json stores: the same data and cache from any folder (imagefolder: the split, RUN/splits.json).
    config = with_absolute_paths(config, run_dir)
    if strategy is None:
        strategy = make_strategy(distribute)
    chief = is_chief(strategy)
    # The chief holds the folder from before its first write to after its last: one process per run.
    with runs.locked(run_dir) if chief else contextlib.nullcontext():
        return _train(config, run_dir, verbose, extra_callbacks, strategy, chief, started)


def _train(config, run_dir, verbose, extra_callbacks, strategy, chief, started):
    # Before any work (data generation or reading can take minutes); only the chief may clean or rewrite the
    # folder, which the workers of a multi-worker run share.
    resuming = check_run_dir(run_dir, config) if chief else os.path.exists(os.path.join(run_dir, runs.CONFIG))
    keras.utils.set_random_seed(config.seed)
    data = load_data(config, run_dir)
    log(f"Data: {data.root}: {len(data.train.examples)} train / {len(data.val.examples)} val / "
        f"{len(data.test.examples)} test images, read in {time.time() - started:.1f} s")
    # Pretrained weights before the run folder is written: a failed download must not leave a folder
    # that the suggested `--encoder-weights none` would then refuse as "another config".
    encoders.check_weights(config.encoder, config.image_size, config.encoder_weights)
    if resuming:
        log(f"Resuming the unfinished run in {run_dir}")
    elif chief:  # written once the data is known to be usable
        runs.write_json(os.path.join(run_dir, runs.CONFIG), config.to_json())
    if chief:  # imagefolder: the split trained on, once, for evaluation and the self-critical stage to read
        imagefolder.write_run_splits(config, run_dir, data)
    counted = time.time()
    vocabulary = build_vocabulary(config, data, run_dir, write=chief)
    log(f"Vocabulary: {len(vocabulary)} tokens ({time.time() - counted:.1f} s)")
    if strategy is not None:
        log(f"Distribution: {type(strategy).__name__}, {strategy.num_replicas_in_sync} replicas, global batch "
            f"{config.batch_size} images ({config.batch_size // strategy.num_replicas_in_sync} per replica); "
            f"{'chief' if chief else 'worker, writing nothing'}")

    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        captioner, model = build_models(config, vocabulary)
        train_data, val_data, steps, val_cache = _training_datasets(config, data, captioner, strategy)
        compile_model(model, config, steps)

    all_callbacks = callbacks(config, run_dir, data, captioner, strategy, cache=val_cache)
    train_seconds = fit_resumably(model, train_data, val_data, steps, config, run_dir, strategy,
                                  all_callbacks + list(extra_callbacks), verbose,
                                  paths=[e.path for e in data.train.examples + data.val.examples])
    return finish(config, run_dir, data, captioner, model, vocabulary, strategy, started, train_seconds,
                  val_cache=val_cache)
