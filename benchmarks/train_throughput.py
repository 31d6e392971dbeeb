"""Training throughput of the `shapes` preset: prints JSON.

    python benchmarks/train_throughput.py [--steps 40] [--decoders lstm transformer]

Figures: training captions/s and images/s for each decoder (steady state, the
real input pipeline feeding `fit()`); the same LSTM trained the straightforward
way (one caption per example, so the CNN runs once per caption, every caption
padded to the longest) as a reference; the input pipeline's images/s alone,
on its first pass (reading and decoding JPEGs) and once images are cached; and
the peak resident memory of the process.

Issue 5 adds two sections:

- `feature_cache`: a frozen keras.applications encoder at 224 px (`weights=None`
  here: the same shapes and cost as with ImageNet weights) under a preset's
  decoder, on Shapes images: `MobileNetV3Large` and `ResNet50` under the
  `coco-lstm` decoder, and `ResNet50` under the smaller `shapes` one. Epochs
  after the first are timed with images through the frozen backbone against
  regions read from the feature cache; also the cost of building the cache.
  The speed-up is bounded by (backbone + decoder) / decoder.
- `precision`: training throughput of each decoder with the mixed-precision
  policy ("mixed": bfloat16 on CPU, float16 on GPU) and with XLA, on and off.

    python benchmarks/train_throughput.py --sections throughput feature_cache precision
"""

import argparse
import json
import math
import os
import resource
import tempfile
import time

import keras
import tensorflow as tf

from captioner import config as config_lib
from captioner.training import cross_entropy
from captioner.data import datasets
from captioner.data import features
from captioner.data import tokenizer as tokenizer_lib
from captioner.data.pipeline import caption_dataset, pad_length, region_caption_dataset
from captioner.models.captioner import build_captioner


class StepTimer(keras.callbacks.Callback):
    def __init__(self, warmup):
        super().__init__()
        self.warmup = warmup
        self.start = None
        self.steps = 0

    def on_train_batch_end(self, batch, logs=None):
        if batch + 1 == self.warmup:
            self.start = time.perf_counter()
        elif batch + 1 > self.warmup:
            self.steps += 1

    def on_train_end(self, logs=None):
        self.seconds = time.perf_counter() - self.start


def pipeline_rate(dataset, batches, warmup=5):
    iterator = iter(dataset)
    for _ in range(warmup):
        next(iterator)
    start = time.perf_counter()
    images = 0
    for _ in range(batches):
        x, _, _ = next(iterator)
        images += int(x["images"].shape[0])
    return images / (time.perf_counter() - start)


def time_training(model, config, dataset, args, captions_per_step=None):
    cross_entropy.compile_model(model, config, 1000)
    model.fit(dataset, epochs=1, steps_per_epoch=1, verbose=0)  # compile outside the timed steps
    timer = StepTimer(args.warmup)
    model.fit(dataset, epochs=1, steps_per_epoch=args.warmup + args.steps, callbacks=[timer], verbose=0)
    images = timer.steps * config.batch_size
    captions = timer.steps * (captions_per_step or config.batch_size * config.captions_per_image)
    return {
        "images_per_s": round(images / timer.seconds, 1),
        "captions_per_s": round(captions / timer.seconds, 1),
        "seconds_per_step": round(timer.seconds / timer.steps, 4),
        "batch_images": config.batch_size,
    }


def straightforward_reference(config, data, vocabulary, args):
    """The same model fed one caption per image-caption pair, padded to the longest caption."""
    captions = config.batch_size * config.captions_per_image
    flat = [type(e)(e.image_id, e.path, (c,)) for e in data.train.examples for c in e.captions]
    naive = config.replace(batch_size=captions, captions_per_image=1)
    model = build_captioner(naive, vocabulary)
    length = config.max_length + 1
    pad = lambda t: pad_length(t, length)  # noqa: E731
    dataset = caption_dataset(flat, model.tokenizer, naive.image_size, model.normalization, captions, 1,
                              naive.max_length, training=True, cache_images=False, seed=naive.seed)
    dataset = dataset.map(lambda x, y, w: ({"images": x["images"], "tokens": pad(x["tokens"])}, pad(y), pad(w)))
    result = time_training(model, naive, dataset.repeat(), args, captions_per_step=captions)
    result["images_per_s"] = result["captions_per_s"]  # one image read and encoded per caption
    return result


class EpochTimer(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.start)


def feature_cache_section(args, encoder, decoder_preset):
    """Seconds per epoch after the first: images through the frozen backbone against cached regions."""
    shapes_config = config_lib.preset("shapes")
    root = datasets.data_root(shapes_config)
    config = config_lib.preset(decoder_preset, data_root=root, encoder=encoder, encoder_weights=None,
                               train_encoder=False, image_size=224, cache_images=False)
    data = datasets.load_data(config)
    examples = data.train.examples[:args.cache_images]
    vocabulary = tokenizer_lib.build_vocabulary([c for e in examples for c in e.captions])
    steps = len(examples) // config.batch_size
    captions = steps * config.batch_size * config.captions_per_image
    common = dict(batch_size=config.batch_size, captions_per_image=config.captions_per_image,
                  max_length=config.max_length, drop_remainder=True)
    result = {"decoder": f"{decoder_preset} preset's {config.decoder}", "encoder": f"{config.encoder} (frozen, "
              "weights=None)",
              "image_size": config.image_size, "images_per_epoch": steps * config.batch_size,
              "captions_per_epoch": captions, "batch_images": config.batch_size}

    keras.utils.set_random_seed(0)
    model = build_captioner(config, vocabulary)
    images = caption_dataset(examples, model.tokenizer, config.image_size, model.normalization, training=True,
                             cache_images=False, **common)
    cross_entropy.compile_model(model, config, steps)
    timer = EpochTimer()
    model.fit(images, epochs=args.epochs, callbacks=[timer], verbose=0)
    result["images_seconds_per_epoch"] = [round(t, 2) for t in timer.seconds]

    keras.utils.set_random_seed(0)
    model = build_captioner(config, vocabulary)
    with tempfile.TemporaryDirectory() as cache_root:
        started = time.perf_counter()
        cache, _ = features.ensure(model.encoder, examples, cache_root, config.batch_size, progress=None)
        result["cache_build_seconds"] = round(time.perf_counter() - started, 2)
        result["cache_mib"] = round(sum(os.path.getsize(f) for f in cache.files) / 2 ** 20, 1)
        regions = region_caption_dataset(cache.regions(training=True), examples, model.tokenizer, training=True,
                                         **common)
        region_model = model.region_model()
        cross_entropy.compile_model(region_model, config, steps)
        timer = EpochTimer()
        region_model.fit(regions, epochs=args.epochs, callbacks=[timer], verbose=0)
    result["cached_seconds_per_epoch"] = [round(t, 2) for t in timer.seconds]
    later = lambda times: sum(times[1:]) / len(times[1:])  # noqa: E731
    result["images_captions_per_s"] = round(captions / later(result["images_seconds_per_epoch"]), 1)
    result["cached_captions_per_s"] = round(captions / later(result["cached_seconds_per_epoch"]), 1)
    result["cache_speedup_after_first_epoch"] = round(
        later(result["images_seconds_per_epoch"]) / later(result["cached_seconds_per_epoch"]), 2)
    return result


def precision_section(args):
    """Training captions/s with mixed precision and XLA on and off, the shapes preset."""
    results = {"policy_for_mixed": "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16"}
    for decoder in args.decoders:
        config = config_lib.preset(args.preset, decoder=decoder)
        data = datasets.load_data(config)
        vocabulary = tokenizer_lib.build_vocabulary([c for e in data.train.examples for c in e.captions])
        rows = {}
        for precision in ("float32", "mixed"):
            for jit in (False, True):
                variant = config.replace(precision=precision, jit_compile=jit)
                keras.utils.set_random_seed(0)
                with cross_entropy.dtype_policy(precision):
                    model = build_captioner(variant, vocabulary)
                dataset = caption_dataset(
                    data.train.examples, model.tokenizer, config.image_size, model.normalization,
                    config.batch_size, config.captions_per_image, config.max_length, training=True,
                    cache_images=True, seed=config.seed, static_shapes=jit).repeat()
                rows[f"{precision}{'_xla' if jit else ''}"] = time_training(model, variant, dataset, args)
        base = rows["float32"]["captions_per_s"]
        for row in rows.values():
            row["ratio_to_float32"] = round(row["captions_per_s"] / base, 2)
        results[decoder] = rows
    return results


def throughput_section(args, results):
    for decoder in args.decoders:
        config = config_lib.preset(args.preset, decoder=decoder)
        data = datasets.load_data(config)
        vocabulary = tokenizer_lib.build_vocabulary([c for e in data.train.examples for c in e.captions])
        model = build_captioner(config, vocabulary)
        dataset = caption_dataset(data.train.examples, model.tokenizer, config.image_size, model.normalization,
                                  config.batch_size, config.captions_per_image, config.max_length, training=True,
                                  cache_images=config.cache_images, seed=config.seed).repeat()
        if "pipeline_images_per_s" not in results:
            # The first pass reads and decodes every JPEG and fills the cache; later passes read the cache.
            full_pass = math.ceil(len(data.train.examples) / config.batch_size)
            results["pipeline_first_pass_images_per_s"] = round(pipeline_rate(dataset, full_pass, warmup=0), 1)
            results["pipeline_images_per_s"] = round(pipeline_rate(dataset, 200), 1)
        results[decoder] = time_training(model, config, dataset, args)
        if decoder == "lstm" and args.reference:
            results["lstm_straightforward_reference"] = straightforward_reference(config, data, vocabulary, args)
    for decoder in args.decoders:
        results[decoder]["pipeline_speedup_over_training"] = round(
            results["pipeline_images_per_s"] / results[decoder]["images_per_s"], 1)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sections", nargs="+", default=["throughput", "feature_cache", "precision"],
                        choices=["throughput", "feature_cache", "precision"])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--decoders", nargs="+", default=["lstm", "transformer"])
    parser.add_argument("--preset", default="shapes")
    parser.add_argument("--no-reference", dest="reference", action="store_false",
                        help="skip the straightforward-implementation reference")
    parser.add_argument("--cache-images", type=int, default=640, help="training images in the feature-cache runs")
    parser.add_argument("--cache-runs", nargs="+",
                        default=["MobileNetV3Large:coco-lstm", "ResNet50:coco-lstm", "ResNet50:shapes"],
                        help="ENCODER:PRESET pairs of the feature-cache runs: a frozen keras.applications encoder "
                             "at 224 px under the decoder (and batch) of a preset")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of each feature-cache run (the first is "
                        "not counted)")
    args = parser.parse_args()

    results = {"preset": args.preset, "steps_timed": args.steps}
    if "throughput" in args.sections:
        throughput_section(args, results)
    if "feature_cache" in args.sections:
        results["feature_cache"] = {}
        for run in args.cache_runs:
            encoder, decoder_preset = run.split(":")
            results["feature_cache"][run] = feature_cache_section(args, encoder, decoder_preset)
    if "precision" in args.sections:
        results["precision"] = precision_section(args)
    results["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
