"""Self-critical sequence training (SCST): fine-tuning a cross-entropy run for CIDEr-D.

    python -m captioner.train --scst-from RUN_DIR [--run-dir OUT] [--samples 5] [--baseline mean|greedy] ...

Rennie et al. 2017 ("Self-critical sequence training for image captioning"),
with the "new self-critical" baseline of Luo 2020 (the default) as
self-critical.pytorch implements them. Each step, for a batch of images:

1. `samples` captions an image are drawn from the model (`decoding.sample`,
   batched and in graph through the decoders' shared next-token interface);
2. each is rewarded with its CIDEr-D against the image's references
   (`captioner.evaluation.cider.CiderD`, document frequencies of the training references
   stored in the run; the end token counts as a word);
3. the advantage is the reward minus a baseline: the mean reward of the image's
   other samples (`baseline="mean"`, so an image's advantages sum to zero), or
   the reward of the greedy caption (`baseline="greedy"`, classic SCST);
4. the loss is `-sum(advantage * log p(word)) / words`, the samples'
   log-probabilities recomputed with teacher forcing, the same forward pass
   cross-entropy training uses.

The model runs in inference mode throughout (no dropout, frozen batch-norm
statistics), so the gradient is that of the distribution the captions were
drawn from.

The stage is a run of its own (`RUN_DIR-scst` by default) with the contract of
every run folder (`captioner.runs`), plus `scst.json` (its parent and
settings) and `cider_df.npz` (the reward's document frequencies). It trains
with `fit()` and the standard callbacks; the validation figure is greedy
CIDEr-D (`val_cider_d`), which picks the checkpoint and stops training. Its
end is that of any run: decoding default chosen on validation images,
`model.keras`, test metrics.
"""

import contextlib
import dataclasses
import os
import shutil
import time

import keras
import tensorflow as tf

from captioner import decoding, files, runs
from captioner.console import log
from captioner.data import features
from captioner.data import tokenizer as tokenizer_lib
from captioner.data.datasets import load_data, with_absolute_paths
from captioner.data.pipeline import caption_dataset, region_caption_dataset
from captioner.evaluation import cider
from captioner.models.captioner import DistributedFitMixin
from captioner.models.decoder_base import _repeat_rows
from captioner.training.callbacks import ValidationScores, callbacks
from captioner.training.cross_entropy import build_models, dtype_policy
from captioner.training.distribute import is_chief, make_strategy
from captioner.training.run import check_run_dir, copy_weights, finish, fit_resumably

SETTINGS = "scst.json"
BASELINES = ("mean", "greedy")


@dataclasses.dataclass
class Settings:
    """The self-critical stage's own settings (the rest of the run's config is its parent's).

    Args:
        parent: str, the cross-entropy run folder it starts from.
        samples: int, captions drawn per image and step.
        baseline: str, "mean" (the other samples' mean reward) or "greedy" (the greedy caption's).
        temperature: float, sampling temperature (1: the model's distribution).
    """

    parent: str
    samples: int = 5
    baseline: str = "mean"
    temperature: float = 1.0

    def validated(self):
        if self.baseline not in BASELINES:
            raise ValueError(f"baseline must be one of {BASELINES}, got {self.baseline!r}")
        if self.samples < 1:
            raise ValueError(f"samples must be at least 1 an image, got {self.samples}")
        if self.baseline == "mean" and self.samples < 2:
            raise ValueError(f"the mean baseline needs at least 2 samples an image, got {self.samples}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")
        return self


# The stage's defaults per parent preset: the config fields it changes. Shapes: measured here (README,
# "Self-critical training"); COCO: self-critical.pytorch's SCST recipes (a constant learning rate of 5e-5
# for LSTM models, 1e-5 or lower for the Transformer, 5 samples an image), with this project's sizes.
STAGE_DEFAULTS = {
    "shapes": dict(learning_rate=1e-4, epochs=3, steps_per_epoch=125, patience=2, batch_size=32),
    "tiny": dict(learning_rate=3e-4, epochs=2, steps_per_epoch=40, patience=2, batch_size=16),
    "coco-lstm": dict(learning_rate=5e-5, epochs=30, steps_per_epoch=None, patience=5, batch_size=50,
                      search_images=5000),
    "coco-transformer": dict(learning_rate=1e-5, epochs=15, steps_per_epoch=None, patience=5, batch_size=50,
                             search_images=5000),
}
GENERIC_DEFAULTS = dict(learning_rate=5e-5, epochs=10, steps_per_epoch=None, patience=3)
# Config fields the stage may change (flags of `python -m captioner.train --scst-from`); the model's are fixed.
STAGE_FIELDS = ("learning_rate", "epochs", "steps_per_epoch", "patience", "batch_size", "clipnorm", "seed",
                "backup_steps", "eval_batch_size", "val_images", "search_images", "data_root", "karpathy_json",
                "skip_missing_images", "skip_bad_images", "feature_cache", "feature_cache_dir", "train_encoder", "precision")


def check_stage_fields(overrides):
    """Refuses config fields the stage does not take (ValueError): the model's are its parent's."""
    refused = sorted(set(overrides) - set(STAGE_FIELDS))
    if refused:
        flags = lambda names: ", ".join("--" + n.replace("_", "-") for n in names)  # noqa: E731
        raise ValueError(f"{flags(refused)}: not a setting of the self-critical stage (the model is its "
                         f"parent's); it takes {flags(STAGE_FIELDS)}")


def stage_config(parent_config, overrides):
    """The stage's `Config`: the parent's, with the stage's defaults and `overrides` (stage fields only)."""
    check_stage_fields(overrides)
    defaults = STAGE_DEFAULTS.get(parent_config.preset, GENERIC_DEFAULTS)
    # Selected on validation CIDEr-D whatever the parent chose: it is the reward the stage optimises.
    return parent_config.replace(**{**defaults, "warmup_steps": 0, "jit_compile": False,
                                    "checkpoint_metric": "cider_d", **overrides})


# ---------------------------------------------------------------- the model fit() trains


class SelfCriticalTrainer(DistributedFitMixin, keras.Model):
    """Wraps a Captioner's parts for `fit()`: each train step samples, rewards and takes a policy-gradient step.

    Fed the batches of `caption_dataset` / `region_caption_dataset` with every
    reference of an image (`captions_per_image` = the most an image has): `x`
    holds the images (or regions), `y` the references' token ids with the end
    token, which is all a reward needs. A training wrapper: `fit()` trains it,
    checkpoints save its weights (the Captioner's own variables), and the run
    saves the Captioner, never this.

    Args:
        captioner: the `Captioner` whose weights are trained.
        reward: `captioner.evaluation.cider.CiderD`.
        inputs: "images" or "regions" (from a feature cache: the encoder's head only).
        samples: int, captions drawn per image.
        baseline: "mean" or "greedy".
        temperature: float, sampling temperature.
    """

    def __init__(self, captioner, reward, inputs="images", samples=5, baseline="mean", temperature=1.0,
                 **kwargs):
        super().__init__(**kwargs)
        self.encoder = captioner.encoder
        self.decoder = captioner.decoder
        self.inputs_key = inputs
        self.reward = reward
        self.samples = samples
        self.baseline = baseline
        self.temperature = temperature
        self.length = captioner.decoder.max_length + 1  # words and the end token
        # The mean baseline's average is the samples' own; the greedy baseline's is worth logging.
        names = ("loss", "reward", "sample_words") + (("greedy_reward",) if baseline == "greedy" else ())
        self.trackers = {name: keras.metrics.Mean(name=name) for name in names}
        self.built = True  # every part is the built Captioner's

    def encode(self, inputs):
        """Region features of images, or of cached backbone regions (the encoder's head only)."""
        if self.inputs_key == "images":
            return self.encoder(inputs, training=False)
        return self.encoder.head(inputs)

    @property
    def metrics(self):
        return list(self.trackers.values())

    def call(self, inputs, training=False):
        """Teacher-forced logits, as the Captioner's: `{inputs, "tokens": [B, K, T]}` -> `[B, K, T, V]`."""
        return self.decoder(inputs["tokens"], self.encode(inputs[self.inputs_key]), training=False)

    def draw(self, features):
        """`samples` captions per image (`[B, K, L]`), and the greedy captions `[B, L]` for that baseline."""
        ids = dict(start_id=tokenizer_lib.START_ID, end_id=tokenizer_lib.END_ID,
                   banned_ids=(tokenizer_lib.PAD_ID, tokenizer_lib.START_ID))
        memory = self.decoder.prepare(features)
        batch = tf.shape(features)[0]
        tiled = tf.nest.map_structure(lambda m: _repeat_rows(m, self.samples), memory)
        drawn = decoding.sample(self.decoder.next_token, tiled, self.decoder.initial_state(tiled),
                                batch * self.samples, self.length, temperature=self.temperature, **ids)
        tokens = tf.reshape(drawn["tokens"], [batch, self.samples, self.length])
        greedy = None
        if self.baseline == "greedy":
            greedy = decoding.greedy_search(self.decoder.next_token, memory, self.decoder.initial_state(memory),
                                            batch, self.length, **ids)["tokens"]
        return tokens, greedy

    def advantages(self, tokens, references, greedy=None):
        """Rewards `[B, K]` of the samples, the baselines `[B, K]`, and the advantages (float32)."""
        batch, samples = tf.shape(tokens)[0], tf.shape(tokens)[1]
        flat = tf.reshape(tokens, [batch * samples, -1])
        rewards = tf.reshape(self.reward(flat, _repeat_rows(references, samples)), [batch, samples])
        if self.baseline == "mean":
            baseline = mean_baseline(rewards)
        else:
            baseline = tf.tile(self.reward(greedy, references)[:, None], [1, samples])
        return rewards, baseline, tf.cast(rewards - baseline, tf.float32)

    def train_step(self, data):
        x, references = data[0], data[1]
        with tf.GradientTape() as tape:
            features = self.encode(x[self.inputs_key])
            with tape.stop_recording():
                tokens, greedy = self.draw(tf.stop_gradient(features))
                rewards, baseline, advantage = self.advantages(tokens, references, greedy)
            loss, words = policy_loss(self.decoder, features, tokens, advantage, self.temperature)
            scaled = loss / tf.cast(tf.distribute.get_strategy().num_replicas_in_sync, loss.dtype)
            if self.optimizer is not None:
                scaled = self.optimizer.scale_loss(scaled)
        gradients = tape.gradient(scaled, self.trainable_variables)
        self.optimizer.apply_gradients(zip(gradients, self.trainable_variables))
        self.trackers["loss"].update_state(loss)
        self.trackers["reward"].update_state(tf.reduce_mean(rewards))
        if "greedy_reward" in self.trackers:
            self.trackers["greedy_reward"].update_state(tf.reduce_mean(baseline))
        self.trackers["sample_words"].update_state(words)
        # Under multi-worker training Keras averages the logs over workers: `_reducible_logs` lets it.
        return self._reducible_logs({name: tracker.result() for name, tracker in self.trackers.items()})


def mean_baseline(rewards):
    """Each sample's baseline: the mean reward of the other samples of its image (`[B, K]` -> `[B, K]`)."""
    samples = tf.cast(tf.shape(rewards)[1], rewards.dtype)
    return (tf.reduce_sum(rewards, axis=1, keepdims=True) - rewards) / (samples - 1.0)


def policy_loss(decoder, features, tokens, advantage, temperature=1.0):
    """`-sum(advantage * log p(word)) / words` over sampled `tokens [B, K, L]` (teacher forcing), and mean words.

    A sample's words are its drawn ids up to and including the end token; the
    log-probabilities are those of the distribution the sampler drew from
    (padding and the start token banned and renormalised, logits divided by
    `temperature`), so the gradient is that distribution's.
    """
    inputs = tf.concat([tf.fill(tf.concat([tf.shape(tokens)[:2], [1]], 0), tokenizer_lib.START_ID),
                        tokens[..., :-1]], axis=-1)
    logits = decoder(inputs, features, training=False)  # [B, K, L, V]
    logits = tf.reshape(logits, [-1, tf.shape(logits)[-1]])
    if temperature != 1.0:
        logits = tf.cast(logits, tf.float32) / temperature
    log_probs = decoding.log_probabilities(logits, (tokenizer_lib.PAD_ID, tokenizer_lib.START_ID))
    chosen = tf.gather(log_probs, tf.reshape(tokens, [-1]), batch_dims=1)
    mask = tf.cast(tf.reshape(tokens, [-1]) != tokenizer_lib.PAD_ID, tf.float32)
    weights = tf.reshape(tf.repeat(advantage, tf.shape(tokens)[2], axis=-1), [-1])
    words = tf.reduce_sum(mask)
    loss = -tf.reduce_sum(weights * chosen * mask) / tf.maximum(words, 1.0)
    per_sample = words / tf.cast(tf.shape(tokens)[0] * tf.shape(tokens)[1], tf.float32)
    return loss, per_sample


# ---------------------------------------------------------------- the stage


def most_references(examples):
    return max(len(e.captions) for e in examples)


def _datasets(config, data, captioner, strategy):
    """`(train, steps, val_cache)`: batches with every reference of an image, from images or the feature cache,
    the steps of an epoch, and the validation images' cache (None without a feature cache)."""
    replicas = strategy.num_replicas_in_sync if strategy is not None else 1
    if config.batch_size % replicas:
        raise ValueError(f"batch_size {config.batch_size} is the global batch: it must divide evenly over "
                         f"{replicas} replicas")
    distributed = strategy is not None
    common = dict(batch_size=config.batch_size, captions_per_image=most_references(data.train.examples),
                  max_length=config.max_length, drop_remainder=distributed, training=True, seed=config.seed)
    val_cache = None
    if config.feature_cache:
        root = config.feature_cache_dir or features.default_root()
        cache = features.ensure_split(captioner.encoder, data.train.name, data.train.examples, root,
                                      config.eval_batch_size)
        val_cache = features.ensure_split(captioner.encoder, data.val.name, data.val.examples[:config.val_images],
                                          root, config.eval_batch_size)
        train = region_caption_dataset(cache.regions(training=True, seed=config.seed), data.train.examples,
                                       captioner.tokenizer, **common)
    else:
        train = caption_dataset(data.train.examples, captioner.tokenizer, image_size=config.image_size,
                                normalization=captioner.normalization, cache_images=config.cache_images, **common)
    full = len(data.train.examples) // config.batch_size
    steps = config.steps_per_epoch or (full if distributed else -(-len(data.train.examples) // config.batch_size))
    if distributed or config.steps_per_epoch:
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        train = train.repeat().with_options(options)
    return train, steps, val_cache


def check_parent(parent):
    if not os.path.isdir(parent):
        raise FileNotFoundError(f"--scst-from {parent}: no such run folder")
    if not runs.is_finished(parent) or not os.path.exists(os.path.join(parent, runs.MODEL)):
        raise ValueError(f"--scst-from {parent}: not a finished run (it needs {runs.MODEL} and {runs.METRICS}); "
                         "finish its cross-entropy training first")


def check_stage_dir(run_dir, config, settings):
    """`captioner.training.run.check_run_dir`, and the same stage settings for an unfinished stage run (to resume)."""
    resuming = check_run_dir(run_dir, config)
    path = os.path.join(run_dir, SETTINGS)
    if resuming and os.path.exists(path):
        saved = runs.read_json(path)
        if {k: saved.get(k) for k in dataclasses.asdict(settings)} != dataclasses.asdict(settings):
            raise ValueError(f"{run_dir} holds an unfinished self-critical run with other settings ({saved}); "
                             "rerun with its settings to resume, or choose another --run-dir")
    return resuming


def train(parent, run_dir, overrides=None, samples=5, baseline="mean", temperature=1.0, verbose="auto",
          extra_callbacks=(), distribute="none", strategy=None):
    """Fine-tunes the finished run `parent` with SCST into `run_dir`; returns the test metrics.

    Args:
        parent: str, a finished cross-entropy (or self-critical) run folder.
        run_dir: str, the stage's run folder (resumed if unfinished).
        overrides: dict of config fields among `STAGE_FIELDS`.
        samples, baseline, temperature: see `Settings`.
        verbose, extra_callbacks, distribute, strategy: as `captioner.training.cross_entropy.train`.

    Returns:
        The test metrics (dict); None on a non-chief worker.
    """
    started = time.time()
    check_parent(parent)
    settings = Settings(os.path.abspath(parent), samples, baseline, temperature).validated()
    parent_config = runs.load_config(parent)
    config = with_absolute_paths(stage_config(parent_config, dict(overrides or {})))
    if strategy is None:
        strategy = make_strategy(distribute)
    if isinstance(strategy, tf.distribute.TPUStrategy):
        raise ValueError("the self-critical stage does not run on TPUs: its reward uses a hash table of "
                         "n-gram frequencies and float64, which TPUs lack; use GPUs (--distribute mirrored "
                         "or multi-worker)")
    chief = is_chief(strategy)
    # The chief holds the folder from before its first write to after its last: one process per run.
    with runs.locked(run_dir) if chief else contextlib.nullcontext():
        return _train(parent, run_dir, config, settings, verbose, extra_callbacks, strategy, chief, started)


def _train(parent, run_dir, config, settings, verbose, extra_callbacks, strategy, chief, started):
    samples, baseline, temperature = settings.samples, settings.baseline, settings.temperature
    # Only the chief may clean or rewrite the folder, which the workers of a multi-worker run share.
    resuming = (check_stage_dir(run_dir, config, settings) if chief
                else os.path.exists(os.path.join(run_dir, runs.CONFIG)))
    keras.utils.set_random_seed(config.seed)
    data = load_data(config)
    if resuming:
        log(f"Resuming the unfinished self-critical run in {run_dir}")
    elif chief:  # the settings first: a folder with a config.json is one to resume, and must have them
        runs.write_json(os.path.join(run_dir, SETTINGS), dataclasses.asdict(settings))
        runs.write_json(os.path.join(run_dir, runs.CONFIG), config.to_json())
    vocabulary = tokenizer_lib.load_vocabulary(os.path.join(parent, runs.VOCAB))
    if chief and not os.path.exists(os.path.join(run_dir, runs.VOCAB)):
        with files.replacing(os.path.join(run_dir, runs.VOCAB)) as temporary:
            shutil.copyfile(os.path.join(parent, runs.VOCAB), temporary)
    parent_model = runs.load(parent)
    log(f"Self-critical training from {parent}: {samples} samples an image, {baseline} baseline, "
        f"lr {config.learning_rate:g}, {config.epochs} epochs of {config.steps_per_epoch or 'all'} steps, "
        f"batch {config.batch_size} images")

    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        # No pretrained weights are fetched: every weight is the parent's.
        captioner, _ = build_models(config.replace(feature_cache=False, encoder_weights=None), vocabulary)
        copy_weights(parent_model, captioner)
        if chief:
            frequencies = cider.ensure_frequencies(run_dir, captioner.tokenizer, data.train.examples,
                                                   config.max_length, tokenizer_lib.END_ID)
        else:
            frequencies = cider.DocumentFrequencies.from_references(
                cider.reference_ids(captioner.tokenizer, data.train.examples, config.max_length,
                                    tokenizer_lib.END_ID), captioner.tokenizer.vocabulary_size)
        with dtype_policy(config.precision):  # compile() reads it: loss scaling under float16
            trainer = SelfCriticalTrainer(captioner, cider.CiderD(frequencies),
                                          "regions" if config.feature_cache else "images", samples, baseline,
                                          temperature, name="self_critical")
        train_data, steps, val_cache = _datasets(config, data, captioner, strategy)
        trainer.compile(optimizer=keras.optimizers.Adam(config.learning_rate, clipnorm=config.clipnorm),
                        jit_compile=False)
    parent_score = None
    if chief:  # what an epoch must beat to be kept: the stage never ships a model worse than its parent
        parent_score = ValidationScores(parent_model, data.val, config.eval_batch_size, config.val_images,
                                        cache=val_cache).score()["cider_d"]
        log(f"Parent's val CIDEr-D {parent_score:.4f} (greedy): an epoch is kept only if it beats it")
    all_callbacks = callbacks(config, run_dir, data, captioner, strategy, initial_best=parent_score, cache=val_cache)
    train_seconds = fit_resumably(trainer, train_data, None, steps, config, run_dir, strategy,
                                  all_callbacks + list(extra_callbacks), verbose,
                                  paths=[e.path for e in data.train.examples + data.val.examples])
    if chief and not os.path.exists(os.path.join(run_dir, runs.BEST_WEIGHTS)):
        log("No epoch beat the parent's validation CIDEr-D: the stage keeps the parent's weights "
            "(try a lower --learning-rate)")
        copy_weights(parent_model, captioner)
    extra = {"stage": "self-critical", "parent": settings.parent, "samples": samples, "baseline": baseline,
             "temperature": temperature, "parent_val_cider_d": parent_score}
    return finish(config, run_dir, data, captioner, trainer, vocabulary, strategy, started, val_cache=val_cache,
                  train_seconds=train_seconds, extra=extra)
