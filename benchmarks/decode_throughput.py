"""Caption decoding throughput: prints JSON.

    python benchmarks/decode_throughput.py [--runs runs/shapes-lstm runs/shapes-transformer]

For each trained run: images/s for greedy, beam 3 and beam 5 at batch 64
(batched, in graph); a per-image beam search loop written here as the
reference (one image at a time, beams expanded in Python, as the classic
tutorials do); for the Transformer, greedy decoding forced to the full
maximum length of 30 words with the key/value cache against re-running the
whole prefix at every step; and each decoding control (n-best, minimum
length, no repeated n-grams, repetition penalty, banned words, diverse
groups) against plain beam 3, and sampling against greedy, all through the
model's own compiled decoding (`Captioner.generate_from_features`), as a time
ratio (1.0: no extra cost). Decoding starts from encoded images, so the
figures are the samplers' and decoders' own cost.
"""

import argparse
import json
import time

import numpy as np
import tensorflow as tf

import captioner
from captioner import decoding, runs
from captioner.data import datasets
from captioner.data import tokenizer as tk
from captioner.data.pipeline import image_dataset
from captioner.decoding.settings import Decoding

CONTROLS = {  # at beam 3, against plain beam 3
    "num_captions_3": dict(num_captions=3),
    "min_length_8": dict(min_length=8),
    "no_repeat_ngram_3": dict(no_repeat_ngram_size=3),
    "repetition_penalty_1.2": dict(repetition_penalty=1.2),
    "ban_words": dict(ban_words=("a",)),
    "diverse_3_groups": dict(beam_groups=3, diversity_strength=0.5),
}
SAMPLING = {"sample_top_p_0.9": dict(sample=True, top_p=0.9, seed=0),  # against greedy
            "sample_top_k_5": dict(sample=True, top_k=5, seed=0)}


def timed(fn, repeats):
    fn()  # compile
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def per_image_beam_search(model, features, beam_size, max_length):
    """The reference: one image at a time, every beam a separate decoder call, bookkeeping in Python."""
    memory = model.decoder.prepare(features)
    beams = [([tk.START_ID], 0.0, model.decoder.initial_state(memory))]
    finished = []
    for _ in range(max_length):
        candidates = []
        for tokens, score, state in beams:
            logits, new_state, _ = model.decoder.next_token(tf.constant([tokens[-1]]), state, memory)
            log_probs = tf.nn.log_softmax(logits[0]).numpy()
            for word in np.argsort(log_probs)[-beam_size:]:
                candidates.append((tokens + [int(word)], score + float(log_probs[word]), new_state))
        candidates.sort(key=lambda c: -c[1])
        beams = []
        for candidate in candidates[:beam_size]:
            (finished if candidate[0][-1] == tk.END_ID else beams).append(candidate)
        if not beams:
            break
    return max(finished or beams, key=lambda c: c[1])[0]


def uncached_next_fn(decoder, length):
    """Transformer next-token callback that re-runs the whole (padded) prefix at every step."""
    def next_fn(tokens, state, memory):
        index = state["index"][0]
        prefix = tf.where(tf.range(length)[None, :] == index, tokens[:, None], state["prefix"])
        logits, attention = decoder.decode_sequence(prefix, memory)
        return logits[:, index], {"prefix": prefix, "index": state["index"] + 1}, attention[:, index]

    return next_fn


def measure(run_dir, args):
    """Decoding figures of one trained run."""
    model = captioner.load(run_dir)
    config = runs.load_config(run_dir)
    data = datasets.load_data(config)
    paths = [e.path for e in data.test.examples[:args.batch_size]]
    images = next(iter(image_dataset(paths, model.image_size, model.normalization, args.batch_size)))
    features = model.encoder(images, training=False)
    decoder = model.decoder
    max_length = decoder.max_length + 1
    figures = {}

    for beam_size in (1, 3, 5):
        @tf.function(reduce_retracing=True)
        def decode(features, beam_size=beam_size):
            memory = decoder.prepare(features)
            state = decoder.initial_state(memory)
            if beam_size == 1:
                return decoding.greedy_search(decoder.next_token, memory, state, args.batch_size, max_length,
                                              tk.START_ID, tk.END_ID)["tokens"]
            return decoding.beam_search(decoder.next_token, memory, state, args.batch_size, beam_size,
                                        max_length, tk.START_ID, tk.END_ID)["tokens"]

        seconds = timed(lambda: decode(features).numpy(), args.repeats)
        figures["greedy" if beam_size == 1 else f"beam_{beam_size}"] = round(args.batch_size / seconds, 1)

    count = args.reference_images
    start = time.perf_counter()
    for row in range(count):
        per_image_beam_search(model, features[row:row + 1], 3, max_length)
    figures["per_image_beam_3_loop"] = round(count / (time.perf_counter() - start), 2)
    figures["batched_beam_3_speedup_over_loop"] = round(figures["beam_3"] / figures["per_image_beam_3_loop"], 1)
    figures["beam_3_cost_over_greedy"] = round(figures["greedy"] / figures["beam_3"], 2)

    def through_model(decoding):
        return timed(lambda: model.generate_from_features(features, decoding=decoding)["captions"].numpy(),
                     args.repeats)

    plain = {1: through_model(Decoding()), 3: through_model(Decoding(3))}
    controls = {"plain_beam_3_images_per_s": round(args.batch_size / plain[3], 1),
                "greedy_images_per_s": round(args.batch_size / plain[1], 1)}
    for name, settings in CONTROLS.items():
        controls[f"{name}_over_plain_beam_3"] = round(through_model(Decoding(3, **settings)) / plain[3], 3)
    for name, settings in SAMPLING.items():
        controls[f"{name}_over_greedy"] = round(through_model(Decoding(**settings)) / plain[1], 3)
    figures["controls_time_ratios"] = controls

    if config.decoder == "transformer":
        length = 31  # 30 words and the end token; nothing ends early (end id -1)

        def full_length(next_fn, initial):
            @tf.function
            def run(features):
                memory = decoder.prepare(features)
                return decoding.greedy_search(next_fn, memory, initial(memory), args.batch_size, length,
                                              tk.START_ID, -1)["tokens"]
            return lambda: run(features).numpy()

        batch = args.batch_size
        cached = timed(full_length(decoder.next_token, decoder.initial_state), args.repeats)
        uncached = timed(full_length(
            uncached_next_fn(decoder, length),
            lambda memory: {"prefix": tf.zeros([batch, length], tf.int32),
                            "index": tf.zeros([batch], tf.int32)}), args.repeats)
        figures["greedy_length_30_cached"] = round(batch / cached, 1)
        figures["greedy_length_30_uncached"] = round(batch / uncached, 1)
        figures["cache_speedup"] = round(uncached / cached, 2)
    return config.decoder, {"images_per_s": figures, "run": run_dir}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", nargs="+", default=["runs/shapes-lstm", "runs/shapes-transformer"])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--reference-images", type=int, default=8)
    args = parser.parse_args()

    results = {"batch_size": args.batch_size}
    for run_dir in args.runs:
        decoder, figures = measure(run_dir, args)
        results[decoder] = figures
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
