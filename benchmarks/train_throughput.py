"""Training throughput of the `shapes` preset: prints JSON.

    python benchmarks/train_throughput.py [--steps 40] [--decoders lstm transformer]

Figures: training captions/s and images/s for each decoder (steady state, the
real input pipeline feeding `fit()`), the input pipeline's images/s alone, and
the peak resident memory of the process.
"""

import argparse
import json
import math
import resource
import time

import keras

from captioner import config as config_lib
from captioner import training
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


def pipeline_rate(dataset, batches):
    iterator = iter(dataset)
    for _ in range(5):
        next(iterator)
    start = time.perf_counter()
    images = 0
    for _ in range(batches):
        x, _, _ = next(iterator)
        images += int(x["images"].shape[0])
    return images / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--decoders", nargs="+", default=["lstm", "transformer"])
    parser.add_argument("--preset", default="shapes")
    args = parser.parse_args()

    results = {"preset": args.preset, "steps_timed": args.steps}
    for decoder in args.decoders:
        config = config_lib.preset(args.preset, decoder=decoder)
        data = training.load_data(config)
        from captioner.data import tokenizer as tokenizer_lib
        vocabulary = tokenizer_lib.build_vocabulary([c for e in data.train.examples for c in e.captions])
        model = build_captioner(config, vocabulary)
        dataset = caption_dataset(data.train.examples, model.tokenizer, config.image_size, model.normalization,
                                  config.batch_size, config.captions_per_image, config.max_length, training=True,
                                  cache_images=config.cache_images, seed=config.seed).repeat()
        if "pipeline_images_per_s" not in results:
            # Fill the in-memory image cache once, then time the pipeline alone.
            full_pass = math.ceil(len(data.train.examples) / config.batch_size)
            pipeline_rate(dataset, full_pass)
            results["pipeline_images_per_s"] = round(pipeline_rate(dataset, 200) , 1)
        training.compile_model(model, config, 1000)
        timer = StepTimer(args.warmup)
        model.fit(dataset, epochs=1, steps_per_epoch=args.warmup + args.steps, callbacks=[timer], verbose=0)
        images = timer.steps * config.batch_size
        results[decoder] = {
            "images_per_s": round(images / timer.seconds, 1),
            "captions_per_s": round(images * config.captions_per_image / timer.seconds, 1),
            "seconds_per_step": round(timer.seconds / timer.steps, 4),
            "batch_images": config.batch_size,
        }
    results["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    for decoder in args.decoders:
        results[decoder]["pipeline_speedup_over_training"] = round(
            results["pipeline_images_per_s"] / results[decoder]["images_per_s"], 1)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
