"""Where a training step's time goes with a frozen encoder: prints JSON.

    python benchmarks/step_cost.py [--preset coco-lstm] [--encoder MobileNetV3Large] [--length 14]

Times `fit()` steps on one fixed batch (random pixels and tokens, so no input
pipeline and no retracing) of the full model from images and of its region
model from precomputed backbone regions. The difference is the frozen
backbone's forward pass: what the feature cache saves, and so the bound on its
speed-up, (from images) / (from regions).
"""

import argparse
import json
import time

import keras
import tensorflow as tf

from captioner import config as config_lib
from captioner.training import cross_entropy
from captioner.models.captioner import build_captioner


def seconds_per_step(model, config, inputs, targets, steps):
    cross_entropy.compile_model(model, config, 100)
    weights = tf.ones_like(targets, tf.float32)
    dataset = tf.data.Dataset.from_tensors((inputs, targets, weights)).repeat()
    model.fit(dataset, steps_per_epoch=2, verbose=0)  # trace and compile
    started = time.perf_counter()
    model.fit(dataset, steps_per_epoch=steps, verbose=0)
    return (time.perf_counter() - started) / steps


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="coco-lstm")
    parser.add_argument("--encoder", default="MobileNetV3Large")
    parser.add_argument("--length", type=int, default=14, help="caption tokens T")
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()

    config = config_lib.preset(args.preset, data_root="unused", encoder=args.encoder, encoder_weights=None,
                               train_encoder=False, image_size=224)
    keras.utils.set_random_seed(0)
    model = build_captioner(config, [f"word{i}" for i in range(40)])
    shape = [config.batch_size, config.captions_per_image, args.length]
    images = tf.random.uniform([config.batch_size, 224, 224, 3], 0, 255)
    tokens = tf.random.uniform(shape, 4, 44, tf.int32)
    targets = tf.random.uniform(shape, 4, 44, tf.int32)
    from_images = seconds_per_step(model, config, {"images": images, "tokens": tokens}, targets, args.steps)
    regions = model.encoder.regions(images)
    from_regions = seconds_per_step(model.region_model(), config, {"regions": regions, "tokens": tokens}, targets,
                                    args.steps)
    print(json.dumps({
        "preset": args.preset, "encoder": f"{args.encoder} (frozen, weights=None)", "batch_images": config.batch_size,
        "captions_per_image": config.captions_per_image, "tokens": args.length,
        "seconds_per_step_from_images": round(from_images, 3),
        "seconds_per_step_from_regions": round(from_regions, 3),
        "backbone_seconds_per_step": round(from_images - from_regions, 3),
        "cache_speedup_bound": round(from_images / from_regions, 2),
    }, indent=2))


if __name__ == "__main__":
    main()
