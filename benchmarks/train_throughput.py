"""Training throughput of the `shapes` preset: prints JSON.

    python benchmarks/train_throughput.py [--steps 40] [--decoders lstm transformer]

Figures: training captions/s and images/s for each decoder (steady state, the
real input pipeline feeding `fit()`); the same LSTM trained the straightforward
way (one caption per example, so the CNN runs once per caption, every caption
padded to the longest) as a reference; the input pipeline's images/s alone,
on its first pass (reading and decoding JPEGs) and once images are cached; and
the peak resident memory of the process.
"""

import argparse
import json
import math
import resource
import time

import keras
import tensorflow as tf

from captioner import config as config_lib
from captioner import training
from captioner.data import tokenizer as tokenizer_lib
from captioner.data.pipeline import caption_dataset
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
    training.compile_model(model, config, 1000)
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
    pad = lambda t: tf.pad(t, [[0, 0], [0, 0], [0, length - tf.shape(t)[-1]]])  # noqa: E731
    dataset = caption_dataset(flat, model.tokenizer, naive.image_size, model.normalization, captions, 1,
                              naive.max_length, training=True, cache_images=False, seed=naive.seed)
    dataset = dataset.map(lambda x, y, w: ({"images": x["images"], "tokens": pad(x["tokens"])}, pad(y), pad(w)))
    result = time_training(model, naive, dataset.repeat(), args, captions_per_step=captions)
    result["images_per_s"] = result["captions_per_s"]  # one image read and encoded per caption
    return result


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--decoders", nargs="+", default=["lstm", "transformer"])
    parser.add_argument("--preset", default="shapes")
    parser.add_argument("--no-reference", dest="reference", action="store_false",
                        help="skip the straightforward-implementation reference")
    args = parser.parse_args()

    results = {"preset": args.preset, "steps_timed": args.steps}
    for decoder in args.decoders:
        config = config_lib.preset(args.preset, decoder=decoder)
        data = training.load_data(config)
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
    results["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    for decoder in args.decoders:
        results[decoder]["pipeline_speedup_over_training"] = round(
            results["pipeline_images_per_s"] / results[decoder]["images_per_s"], 1)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
