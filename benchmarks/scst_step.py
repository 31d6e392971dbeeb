"""Self-critical steps against cross-entropy steps, and where an SCST step's time goes: prints JSON.

    python benchmarks/scst_step.py [--run runs/shapes-lstm] [--steps 20] [--batch-size 32] [--samples 5]

On real batches of the run's training data (Shapes by default), in one
process, one after the other, so the figures compare as ratios (this machine's
speed varies by a third between runs):

- `fit()` steps of cross-entropy training (the run's own step: 5 captions an
  image, teacher forcing) and of self-critical training (5 samples an image,
  CIDEr-D reward, new-self-critical baseline), both on the same batches;
- the parts of an SCST step, each a compiled function timed alone: drawing
  the samples (the in-graph sampler), the CIDEr-D reward of every sample, and
  the policy-gradient pass (teacher forcing over the samples, backward, update)
  as the rest. The reward's share of the step is the figure the issue asks for.

Without `--run` a model of the Shapes preset is built with random weights
(its captions then run to the maximum length: the slowest case for sampling).
"""

import argparse
import json
import os
import time

import keras
import tensorflow as tf

from captioner import runs
from captioner.evaluation import cider
from captioner.training import scst
from captioner.training import cross_entropy
from captioner.data import datasets
from captioner.training import run as run_lib
from captioner import config as config_lib
from captioner.data import tokenizer as tokenizer_lib
from captioner.data.pipeline import caption_dataset


def timed(fn, repeats):
    fn()  # trace
    started = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - started) / repeats


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", help="a finished run folder (default: the Shapes preset, random weights)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--samples", type=int, default=5)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    if args.run:
        config = runs.load_config(args.run)
        captioner = runs.load(args.run)
    else:
        config = config_lib.preset("shapes")
        captioner = None
    config = config.replace(batch_size=args.batch_size)
    data = datasets.load_data(config)
    if captioner is None:
        vocabulary = run_lib.build_vocabulary(config, data, "/nonexistent", write=False)
        captioner = cross_entropy.build_models(config, vocabulary)[0]
    keras.utils.set_random_seed(0)
    examples = data.train.examples[:args.batch_size * 8]
    common = dict(image_size=config.image_size, normalization=captioner.normalization, batch_size=args.batch_size,
                  max_length=config.max_length, training=True, cache_images=True)
    xe_data = caption_dataset(examples, captioner.tokenizer, captions_per_image=config.captions_per_image,
                              **common).cache().repeat()
    references = scst.most_references(examples)
    rl_data = caption_dataset(examples, captioner.tokenizer, captions_per_image=references, **common).cache().repeat()

    # Cross-entropy: the run's own step.
    cross_entropy.compile_model(captioner, config, 1000)
    captioner.fit(xe_data, steps_per_epoch=2, verbose=0)
    started = time.perf_counter()
    captioner.fit(xe_data, steps_per_epoch=args.steps, verbose=0)
    xe_step = (time.perf_counter() - started) / args.steps

    # Self-critical steps.
    frequencies = cider.DocumentFrequencies.from_references(
        cider.reference_ids(captioner.tokenizer, data.train.examples, config.max_length, tokenizer_lib.END_ID),
        captioner.tokenizer.vocabulary_size)
    reward = cider.CiderD(frequencies)
    trainer = scst.SelfCriticalTrainer(captioner, reward, samples=args.samples)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-5))
    trainer.fit(rl_data, steps_per_epoch=2, verbose=0)
    started = time.perf_counter()
    history = trainer.fit(rl_data, steps_per_epoch=args.steps, verbose=0)
    rl_step = (time.perf_counter() - started) / args.steps

    # The parts, on one batch.
    x, refs, _ = next(iter(rl_data))
    images = x["images"]
    draw = tf.function(lambda images: trainer.draw(trainer.encode(images))[0])
    tokens = draw(images)
    score = tf.function(lambda tokens, refs: trainer.advantages(tokens, refs)[0])
    sample_seconds = timed(lambda: draw(images).numpy(), args.steps)
    reward_seconds = timed(lambda: score(tokens, refs).numpy(), args.steps)

    print(json.dumps({
        "model": args.run or "shapes preset, random weights",
        "decoder": config.decoder, "batch_images": args.batch_size, "samples_per_image": args.samples,
        "references_per_image": references, "mean_sample_words": round(history.history["sample_words"][-1], 2),
        "xe_seconds_per_step": round(xe_step, 4), "scst_seconds_per_step": round(rl_step, 4),
        "xe_steps_per_second": round(1 / xe_step, 2), "scst_steps_per_second": round(1 / rl_step, 2),
        "scst_over_xe_step_time": round(rl_step / xe_step, 2),
        "sampling_seconds": round(sample_seconds, 4), "reward_seconds": round(reward_seconds, 4),
        "reward_share_of_scst_step": round(reward_seconds / rl_step, 3),
        "sampling_share_of_scst_step": round(sample_seconds / rl_step, 3),
        "note": "one process, measured one after the other; compare as ratios",
    }, indent=2))


if __name__ == "__main__":
    main()
