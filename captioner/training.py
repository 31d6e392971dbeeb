"""Training a Captioner: data, vocabulary, model, `fit()` with standard callbacks, test metrics."""

import csv
import dataclasses
import math
import os
import sys
import time

import keras

from captioner import evaluation
from captioner import metrics as metrics_lib
from captioner import runs
from captioner.data import coco, shapes
from captioner.data import tokenizer as tokenizer_lib
from captioner.data.pipeline import caption_dataset
from captioner.models.captioner import build_captioner


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


def data_root(config):
    """The dataset root of `config`; for Shapes, written first if it is not there yet."""
    root = config.data_root
    if config.dataset == "shapes":
        params = shapes.ShapesParams(config.shapes_seed, config.image_size, tuple(config.shapes_splits))
        if root is None:
            root = shapes.ensure(shapes.default_root(params), params)
        elif not os.path.exists(root):
            root = shapes.generate(root, params)
    return root


def load_data(config):
    """Reads train/val/test for `config`, writing Shapes first if it is not there yet."""
    root = data_root(config)
    read = lambda split: coco.read_split(root, split, config.karpathy_json, config.skip_missing_images)  # noqa: E731
    train, val = read("train"), read("val")
    try:
        test = read("test")
    except coco.DatasetError as error:
        log(f"No test split ({error}); reporting test metrics on the val split")
        test = val
    for split in (train, val, test):
        if split.skipped:
            log(f"Skipped {split.skipped} {split.name} images whose files are missing")
    return Data(root, train, val, test)


def score_split(model, split, batch_size, progress=True):
    """Greedy captions of a split and their nltk corpus BLEU; returns `(scores, captions)`."""
    outputs = evaluation.caption_examples(model, split.examples, batch_size, progress=progress)
    captions = [o["caption"] for o in outputs]
    references = list(evaluation.references_of(split).values())
    return metrics_lib.nltk_corpus_bleu(references, captions), captions


class ValidationBleu(keras.callbacks.Callback):
    """Adds greedy `val_nltk_bleu_4` (0-1) to the epoch logs, for early stopping and checkpoints.

    Must come before the callbacks that read it.

    Args:
        split: `coco.Split`, the validation split.
        batch_size: int, images per decoding step.
        max_images: int, score at most this many images (the first ones).
    """

    def __init__(self, split, batch_size, max_images=1000):
        super().__init__()
        self.split = dataclasses.replace(split, examples=split.examples[:max_images])
        self.batch_size = batch_size

    def on_epoch_end(self, epoch, logs=None):
        scores, _ = score_split(self.model, self.split, self.batch_size, progress=False)
        if logs is not None:
            logs.update({f"val_{k}": v for k, v in scores.items()})
        log(f"epoch {epoch + 1}: val nltk BLEU-4 {scores['nltk_bleu_4']:.4f} (greedy, 0-1)")


def learning_rate_schedule(config, steps_per_epoch):
    total = max(1, config.epochs * steps_per_epoch)
    warmup = min(config.warmup_steps, total // 2)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0, warmup_target=config.learning_rate, warmup_steps=warmup,
        decay_steps=max(1, total - warmup), alpha=0.05)


def compile_model(model, config, steps_per_epoch):
    optimizer = keras.optimizers.Adam(learning_rate_schedule(config, steps_per_epoch), clipnorm=config.clipnorm)
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="mean_with_sample_weight"),
        weighted_metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        jit_compile=config.jit_compile)


def prepare_run_dir(run_dir, config):
    """Creates the run folder, or checks that an unfinished one was made with the same config."""
    config_path = os.path.join(run_dir, runs.CONFIG)
    if os.path.exists(config_path):
        saved = runs.load_config(run_dir)
        if saved != config:
            differences = {k: (v, getattr(config, k)) for k, v in dataclasses.asdict(saved).items()
                           if getattr(config, k) != v}
            raise ValueError(
                f"{run_dir} holds an unfinished run with another config (saved, requested): {differences}; "
                "rerun with its settings to resume, or choose another --run-dir")
        log(f"Resuming the unfinished run in {run_dir}")
        return True
    os.makedirs(run_dir, exist_ok=True)
    runs.write_json(config_path, config.to_json())
    return False


def build_vocabulary(config, data, run_dir):
    path = os.path.join(run_dir, runs.VOCAB)
    if os.path.exists(path):
        return tokenizer_lib.load_vocabulary(path)
    captions = [c for e in data.train.examples for c in e.captions]
    words = tokenizer_lib.build_vocabulary(captions, config.min_count)
    tokenizer_lib.save_vocabulary(tokenizer_lib.CaptionTokenizer(words), path)
    return tokenizer_lib.load_vocabulary(path)


MONITOR = "val_nltk_bleu_4"


def best_logged(run_dir, monitor=MONITOR):
    """The best `monitor` value in the run's `log.csv` (None if none): what a resumed run must beat."""
    path = os.path.join(run_dir, "log.csv")
    if not os.path.exists(path):
        return None
    with open(path) as handle:
        values = [float(row[monitor]) for row in csv.DictReader(handle) if row.get(monitor)]
    return max(values) if values else None


def callbacks(config, run_dir, data):
    """ValidationBleu first: the callbacks after it read the figure it adds to the logs."""
    return [
        ValidationBleu(data.val, config.eval_batch_size),
        keras.callbacks.BackupAndRestore(os.path.join(run_dir, "backup")),
        keras.callbacks.ModelCheckpoint(os.path.join(run_dir, runs.BEST_WEIGHTS), monitor=MONITOR, mode="max",
                                        save_best_only=True, save_weights_only=True,
                                        initial_value_threshold=best_logged(run_dir)),
        keras.callbacks.EarlyStopping(monitor=MONITOR, mode="max", patience=config.patience),
        keras.callbacks.CSVLogger(os.path.join(run_dir, "log.csv"), append=True),
        keras.callbacks.TensorBoard(os.path.join(run_dir, "logs")),
    ]


def train(config, run_dir, verbose="auto", extra_callbacks=()):
    """Trains `config` into `run_dir` (resuming it if unfinished) and returns the test metrics.

    `extra_callbacks` run after the standard ones (validation BLEU, backup,
    best checkpoint, early stopping, CSV log, TensorBoard).
    """
    started = time.time()
    keras.utils.set_random_seed(config.seed)
    data = load_data(config)
    prepare_run_dir(run_dir, config)
    vocabulary = build_vocabulary(config, data, run_dir)
    log(f"Data: {data.root}: {len(data.train.examples)} train / {len(data.val.examples)} val / "
        f"{len(data.test.examples)} test images; vocabulary {len(vocabulary)} tokens")

    model = build_captioner(config, vocabulary)
    train_data = caption_dataset(
        data.train.examples, model.tokenizer, config.image_size, model.normalization, config.batch_size,
        config.captions_per_image, config.max_length, training=True, cache_images=config.cache_images,
        seed=config.seed)
    val_data = caption_dataset(
        data.val.examples, model.tokenizer, config.image_size, model.normalization, config.batch_size,
        config.captions_per_image, config.max_length, training=False, cache_images=config.cache_images)
    steps = config.steps_per_epoch or math.ceil(len(data.train.examples) / config.batch_size)
    compile_model(model, config, steps)
    train_started = time.time()
    model.fit(train_data.repeat() if config.steps_per_epoch else train_data, epochs=config.epochs,
              steps_per_epoch=config.steps_per_epoch, validation_data=val_data, shuffle=False,
              callbacks=callbacks(config, run_dir, data) + list(extra_callbacks), verbose=verbose)
    train_seconds = time.time() - train_started

    best = os.path.join(run_dir, runs.BEST_WEIGHTS)
    if os.path.exists(best):
        model.load_weights(best)
    model.save(os.path.join(run_dir, runs.MODEL))
    log("Captioning the test split (greedy) ...")
    scores, captions = score_split(model, data.test, config.eval_batch_size)
    predictions = [{"image_id": e.image_id, "caption": c} for e, c in zip(data.test.examples, captions)]
    runs.write_json(os.path.join(run_dir, "predictions_test.json"), predictions)
    metrics = {
        "split": data.test.name,
        "images": len(data.test.examples),
        "decoding": "greedy",
        "scale": "0-1",
        **scores,
        "train_seconds": round(train_seconds, 1),
        "wall_seconds": round(time.time() - started, 1),
    }
    runs.write_json(os.path.join(run_dir, runs.METRICS), metrics)
    return metrics


def format_metrics(metrics):
    lines = [f"Test metrics ({metrics['split']} split, {metrics['images']} images, {metrics['decoding']} "
             f"decoding, scale {metrics['scale']}):"]
    for n in range(1, 5):
        lines.append(f"  BLEU-{n} (nltk corpus_bleu)  {metrics[f'nltk_bleu_{n}']:.4f}")
    return "\n".join(lines)

