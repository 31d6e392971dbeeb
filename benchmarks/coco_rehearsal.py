"""The MS COCO path rehearsed at full size: wall time and peak memory of every stage, printed as JSON.

    python benchmarks/coco_rehearsal.py --work /tmp/rehearsal [--preset coco-lstm --preset coco-transformer]
        [--cache-images 2048] [--small-scale 0.05] [--steps 100] [--encoders MobileNetV3Large ConvNeXtTiny ...]

MS COCO cannot be downloaded here, so `python -m captioner.data.synthetic.rehearsal`
writes a tree of MS COCO 2014's layout and formats at full size (123,287
images as hard links to a few hundred COCO-sized JPEGs, 5-7 captions each,
instances, Karpathy's `dataset_coco.json`). On it the real commands run, as a
user would type them, with `--encoder-weights none` (no ImageNet download
here; the cost is the same):

1. `python -m captioner.train --preset P --data-root FULL --karpathy-json ...` on the full tree:
   reading the splits, the vocabulary over every training caption, and the
   feature-cache build, stopped after `--cache-images` images (the rate is
   measured, the full build extrapolated; each benchmark run starts the cache
   afresh, where a user's rerun of the command would resume it).
2. The same command on a tree of `--small-scale` the size, the full run's
   vocabulary copied in (so the softmax is full size), for two epochs of
   `--steps` steps (the second is reported, the first traces): its own
   feature cache, training steps/s from the cache, the
   validation pass (loss and greedy captions), the decoding-default search and
   the test captions; per-image costs are extrapolated to full size (1,000
   validation images by default, `--val-images`; 500 search images; 5,000 test).
3. `python -m captioner.evaluate RUN --data-root FULL --karpathy-json ... --split test --beam-size 3`:
   the 5,000 test images of the full tree, decoded and scored with the COCO
   scorers (Java PTB tokenizer and METEOR when Java is installed), measured in full.
   A model trained for minutes ends its captions at once, so decoding is also
   timed at full caption length (random weights, `max_length` words: an upper
   bound) on 192 images, and the validation, search and test captioning
   extrapolated from it.
4. Feature-cache cost of each encoder in `--encoders` on this CPU (images/s at
   the preset's image size, bytes/image, disk for the 114,287 cached images).

Stages inside one command are told apart by the lines the commands log
("Data: ...", "Vocabulary: ...", "Feature cache: ...", "epoch N: ...",
"Choosing the decoding default ...", "Captioning the test split ..."); peak
memory is the largest resident set of the command's process tree, sampled
every 0.2 s while the stage ran. Wall times on this shared 2-core machine vary
by a third between runs: compare them as ratios within one output.
"""

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

FULL = {"train": 113287, "val_images": 1000, "search_images": 500, "test": 5000, "cached": 113287 + 1000}
PAGE = os.sysconf("SC_PAGE_SIZE")


def process_tree_rss(root_pid):
    """Resident bytes of `root_pid` and all its descendants (from /proc)."""
    children, rss = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry))
            rss[int(entry)] = int(fields[21]) * PAGE
        except (OSError, IndexError, ValueError):
            continue
    total, stack = 0, [root_pid]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total


class Command:
    """Runs a command, timestamps each line of its output, and samples its process tree's memory.

    `stage(name)` starts a named stage; `stages` then holds each stage's wall seconds and peak bytes.
    """

    def __init__(self, argv, log_path, env=None):
        argv = [str(a) for a in argv]
        self.argv, self.lines, self.stages, self.current = argv, [], [], None
        self.log = open(log_path, "w")
        self.log.write("$ " + " ".join(argv) + "\n")
        self.started = time.time()
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        env=env, start_new_session=True, bufsize=1)
        self.peak_total = 0
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def stage(self, name):
        now = time.time()
        if self.current is not None:
            self.current["seconds"] = round(now - self.current["began"], 1)
        self.current = {"stage": name, "began": now, "peak_rss_bytes": 0}
        self.stages.append(self.current)

    def _sample(self):
        while self.process.poll() is None:
            rss = process_tree_rss(self.process.pid)
            self.peak_total = max(self.peak_total, rss)
            if self.current is not None:
                self.current["peak_rss_bytes"] = max(self.current["peak_rss_bytes"], rss)
            time.sleep(0.2)

    def lines_until_exit(self):
        """Yields `(seconds since start, line)` as the command writes them (progress `\\r` lines too)."""
        for raw in self.process.stdout:
            for line in raw.rstrip("\n").split("\r"):
                if line.strip():
                    self.log.write(f"[{time.time() - self.started:8.1f}] {line}\n")
                    self.log.flush()
                    self.lines.append(line)
                    yield time.time() - self.started, line

    def stop(self):
        """Ends the command's whole process group (SIGINT first, as Ctrl-C would)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def finish(self):
        status = self.process.wait()
        self.stage(None)
        self.stages.pop()
        self.log.close()
        for stage in self.stages:
            stage.pop("began")
            stage["peak_rss_gib"] = round(stage.pop("peak_rss_bytes") / 2 ** 30, 2)
        return status


def python_m(module, *args):
    return [sys.executable, "-m", module, *map(str, args)]


def ensure_tree(path, scale, work):
    """Writes the rehearsal tree at `path` (a no-op if complete); returns its build record."""
    command = Command(python_m("captioner.data.synthetic.rehearsal", path, "--scale", scale), os.path.join(work, f"tree-{scale}.log"))
    command.stage(f"rehearsal tree, scale {scale}")
    for _ in command.lines_until_exit():
        pass
    if command.finish():
        raise SystemExit(f"building the rehearsal tree failed: see {command.log.name}")
    return command.stages[0]


CACHE_LINE = re.compile(r"Feature cache: (\d+)/(\d+) images, ([\d.]+) images/s")
EPOCH_LINE = re.compile(r"epoch 2: (\d+) training steps in ([\d.]+) s .*validation loss ([\d.]+) s, "
                        r"validation captions ([\d.]+) s")


def full_tree_stages(preset, tree, work, cache_images, encoder_args):
    """Reading, vocabulary and a measured fraction of the feature-cache build on the full tree."""
    run_dir = os.path.join(work, f"{preset}-full")
    shutil.rmtree(run_dir, ignore_errors=True)
    cache_dir = os.path.join(work, f"cache-{preset}-full")
    shutil.rmtree(cache_dir, ignore_errors=True)
    command = Command(python_m("captioner.train", "--preset", preset, "--data-root", tree, "--karpathy-json",
                               os.path.join(tree, "dataset_coco.json"), "--run-dir", run_dir,
                               "--feature-cache-dir", cache_dir, *encoder_args),
                      os.path.join(work, f"{preset}-full.log"))
    command.stage("reading the splits (train, val, test)")
    rate_points = []
    for seconds, line in command.lines_until_exit():
        if line.startswith("Data: "):
            command.stage("vocabulary over the training captions")
        elif line.startswith("Vocabulary: "):
            command.stage("model build, then the train split's feature cache")
        match = CACHE_LINE.search(line)
        if match:
            rate_points.append((seconds, int(match.group(1)), int(match.group(2)), float(match.group(3))))
            if int(match.group(1)) >= min(cache_images, int(match.group(2))):
                command.stop()
    command.finish()
    if not rate_points:
        raise SystemExit(f"no feature-cache progress seen: see {command.log.name}")
    if len(rate_points) >= 3:  # from the first report on: the first batch's tracing left out
        (t0, done0, total, _), (t1, done1, _, _) = rate_points[0], rate_points[-1]
        rate = (done1 - done0) / (t1 - t0)
    else:  # the build's own figure, first batch included
        _, done1, total, rate = rate_points[-1]
        done0 = 0
    # The stopped build's folder (or, on a small tree, the finished train cache): complete shards only.
    folder = os.path.join(cache_dir, sorted(d for d in os.listdir(cache_dir) if not d.endswith(".lock"))[0])
    shards = [os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".tfrecord")]
    records = min(len(shards) * 1024, done1)  # features.RECORDS_PER_SHARD
    bytes_per_image = sum(os.path.getsize(f) for f in shards) / records if records else None
    vocabulary = os.path.join(run_dir, "vocab.txt")
    cache = {"images_measured": done1 - done0, "images_per_s": round(rate, 2), "train_images": total,
             "bytes_per_image": round(bytes_per_image) if bytes_per_image else None,
             "full_cache_gib": round(bytes_per_image * FULL["cached"] / 2 ** 30, 2) if bytes_per_image else None,
             "full_build_hours_extrapolated": round(FULL["cached"] / rate / 3600, 2)}
    with open(vocabulary) as handle:
        words = sum(1 for line in handle if line.strip())
    return command.stages, cache, vocabulary, words, run_dir


def small_tree_stages(preset, tree, work, vocabulary, steps, encoder_args):
    """Two epochs of `steps` on the small tree with the full vocabulary: per-step and per-image costs.

    The second epoch's figures are reported: the first includes tracing the step and the decoder.
    """
    run_dir = os.path.join(work, f"{preset}-small")
    shutil.rmtree(run_dir, ignore_errors=True)
    os.makedirs(run_dir)
    shutil.copy(vocabulary, os.path.join(run_dir, "vocab.txt"))  # a run reuses the vocab.txt it holds
    cache_dir = os.path.join(work, "cache-small")  # the presets share their encoder: the second one reuses it
    command = Command(python_m("captioner.train", "--preset", preset, "--data-root", tree, "--karpathy-json",
                               os.path.join(tree, "dataset_coco.json"), "--run-dir", run_dir, "--epochs", 2,
                               "--steps-per-epoch", steps, "--feature-cache-dir", cache_dir, *encoder_args),
                      os.path.join(work, f"{preset}-small.log"))
    command.stage("reading, vocabulary (copied in), feature caches")
    figures, counts = {}, {}
    for _, line in command.lines_until_exit():
        match = re.search(r"Data: .*: (\d+) train / (\d+) val / (\d+) test images", line)
        if match:
            counts = dict(zip(("train", "val", "test"), map(int, match.groups())))
        if line.startswith("Feature cache of val"):
            command.stage("2 training epochs (steps, validation loss, validation captions)")
        match = EPOCH_LINE.search(line)
        if match:
            figures.update(steps=int(match.group(1)), train_seconds=float(match.group(2)),
                           val_loss_seconds=float(match.group(3)), val_caption_seconds=float(match.group(4)))
        if line.startswith("Choosing the decoding default"):
            command.stage("decoding-default search (6 settings)")
            figures["search_images"] = int(re.search(r"on (\d+)", line).group(1))
        if line.startswith("Captioning the test split"):
            command.stage("test captions and scores (end of training)")
    if command.finish():
        raise SystemExit(f"the small-tree run failed: see {command.log.name}")
    val_images = min(counts["val"], 1000)
    search = next(s for s in command.stages if s["stage"].startswith("decoding-default"))
    figures.update(counts=counts, steps_per_s=round(figures["steps"] / figures["train_seconds"], 3))
    extrapolated = {
        "epoch_hours": round(FULL["train"] / 64 / figures["steps_per_s"] / 3600, 2),
        "validation_pass_s": round((figures["val_loss_seconds"] + figures["val_caption_seconds"])
                                   / val_images * FULL["val_images"], 1),
        # An upper bound: the stage also traces the six decoders and saves the model, once.
        "decoding_search_s_upper_bound": round(search["seconds"] / figures["search_images"]
                                               * FULL["search_images"], 1),
    }
    return command.stages, figures, extrapolated, run_dir


def test_evaluation(run_dir, tree, work, name):
    """`python -m captioner.evaluate` on the full tree's 5,000 test images, beam 3, measured in full."""
    out = os.path.join(work, f"{name}-eval")
    command = Command(python_m("captioner.evaluate", run_dir, "--data-root", tree, "--karpathy-json",
                               os.path.join(tree, "dataset_coco.json"), "--split", "test", "--beam-size", 3,
                               "--output-dir", out), os.path.join(work, f"{name}-eval.log"))
    command.stage("test evaluation: beam-3 captions, greedy captions (genericness), COCO scorers")
    for _ in command.lines_until_exit():
        pass
    if command.finish():
        raise SystemExit(f"the evaluation failed: see {command.log.name}")
    with open(os.path.join(out, "metrics.json")) as handle:
        metrics = json.load(handle)
    return command.stages, {k: metrics.get(k) for k in ("images", "tokenizer", "coco_cider_d", "coco_bleu_4",
                                                        "chair_i", "chair_s")}


ENCODER_PROBE = """
import json, sys, tempfile, time
from captioner.data import coco, features
from captioner.models.encoders import ImageEncoder
examples = coco.read_split(sys.argv[1], "val").examples[:int(sys.argv[3])]
encoder = ImageEncoder(sys.argv[2], int(sys.argv[4]), 8, weights=None, trainable_backbone=False)
with tempfile.TemporaryDirectory() as root:
    features.build(encoder, examples[:64], root + "/warm", 32, progress=None)  # traces, warms the file cache
    began = time.time()
    cache = features.build(encoder, examples, root + "/cache", 32, progress=None)
    seconds = time.time() - began
    size = sum(__import__("os").path.getsize(f) for f in cache.files)
print(json.dumps({"encoder": sys.argv[2], "images_per_s": round(len(examples) / seconds, 2),
                  "grid": f"{encoder.grid_shape[0]}x{encoder.grid_shape[1]}x{encoder.region_channels}",
                  "bytes_per_image": round(size / len(examples))}))
"""


PIPELINE_PROBE = """
import json, sys, time
from captioner.data import coco
from captioner.data.pipeline import image_dataset
paths = [e.path for e in coco.read_split(sys.argv[1], "val").examples[:int(sys.argv[2])]]
for _ in image_dataset(paths[:64], 224, "raw", 64):
    pass
began = time.time()
for _ in image_dataset(paths, 224, "raw", 64):
    pass
print(json.dumps({"images_per_s": round(len(paths) / (time.time() - began), 1)}))
"""


def pipeline_rate(tree, work, images):
    """Images/s of the input pipeline alone (read, decode, resize to 224 px) on this machine's cores."""
    command = Command([sys.executable, "-c", PIPELINE_PROBE, tree, images], os.path.join(work, "pipeline.log"))
    command.stage("input pipeline alone")
    output = [line for _, line in command.lines_until_exit()]
    if command.finish():
        return {"error": output[-1] if output else "failed"}
    return {**json.loads(output[-1]), "images": images, "cores": os.cpu_count(),
            "peak_rss_gib": command.stages[0]["peak_rss_gib"]}


DECODE_PROBE = """
import json, sys, time
import keras
from captioner import config as config_lib
from captioner.data import coco, tokenizer
from captioner.data.pipeline import image_dataset
from captioner.models.captioner import build_captioner
tree, preset, vocabulary = sys.argv[1:4]
config = config_lib.preset(preset, data_root=tree, encoder_weights=None)
keras.utils.set_random_seed(0)
model = build_captioner(config, tokenizer.load_vocabulary(vocabulary))
paths = [e.path for e in coco.read_split(tree, "val").examples[:192]]
batches = list(image_dataset(paths, config.image_size, model.normalization, config.eval_batch_size))
figures = {}
for name, beam in (("greedy", 1), ("beam3", 3), ("beam5", 5)):
    model.generate(batches[0], beam_size=beam, alpha=0.0)  # traces
    began, words = time.time(), 0
    for images in batches:
        words += int(sum(model.generate(images, beam_size=beam, alpha=0.0)["lengths"].numpy()))
    seconds = time.time() - began
    figures[name] = {"images_per_s": round(len(paths) / seconds, 2), "mean_words": round(words / len(paths), 1)}
print(json.dumps(figures))
"""


def decode_costs(preset, tree, work, vocabulary):
    """Decoding at full caption length (random weights: no early end), images through the encoder included.

    The rehearsal's briefly trained models end most captions at once, which would make decoding look free;
    this is the cost of captions of `max_length` words, an upper bound for real ones (COCO's mean ~10).
    """
    command = Command([sys.executable, "-c", DECODE_PROBE, tree, preset, vocabulary],
                      os.path.join(work, f"{preset}-decode.log"))
    command.stage(f"{preset} decoding probe")
    output = [line for _, line in command.lines_until_exit()]
    if command.finish():
        return {"error": output[-1] if output else "failed"}
    rates = json.loads(output[-1])
    seconds = {name: 1 / rates[name]["images_per_s"] for name in rates}
    extrapolated = {
        "val_captions_s (greedy, 1,000 images)": round(FULL["val_images"] * seconds["greedy"]),
        "decoding_search_s (500 images: greedy, 3 x beam 3, 2 x beam 5)":
            round(FULL["search_images"] * (seconds["greedy"] + 3 * seconds["beam3"] + 2 * seconds["beam5"])),
        "test_captions_s (5,000 images: beam 3, then greedy for genericness)":
            round(FULL["test"] * (seconds["beam3"] + seconds["greedy"])),
    }
    return {"rates": rates, "extrapolated_at_full_length": extrapolated,
            "peak_rss_gib": command.stages[0]["peak_rss_gib"]}


def encoder_costs(tree, work, encoders, images, image_size):
    rows = []
    for name in encoders:
        command = Command([sys.executable, "-c", ENCODER_PROBE, tree, name, images, image_size],
                          os.path.join(work, f"encoder-{name}.log"))
        command.stage(name)
        output = [line for _, line in command.lines_until_exit()]
        if command.finish():
            rows.append({"encoder": name, "error": output[-1] if output else "failed"})
            continue
        row = json.loads(output[-1])
        row["full_cache_gib"] = round(row["bytes_per_image"] * FULL["cached"] / 2 ** 30, 1)
        row["full_build_hours"] = round(FULL["cached"] / row["images_per_s"] / 3600, 1)
        row["peak_rss_gib"] = command.stages[0]["peak_rss_gib"]
        rows.append(row)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", required=True, help="folder for the trees, runs, caches and logs")
    parser.add_argument("--tree", help="the full-size tree (default WORK/coco-full)")
    parser.add_argument("--preset", action="append", choices=["coco-lstm", "coco-transformer"])
    parser.add_argument("--cache-images", type=int, default=2048, help="full-tree cache images to time")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="size of the 'full' tree (1.0: MS COCO's; smaller only to try the script out)")
    parser.add_argument("--small-scale", type=float, default=0.01)
    parser.add_argument("--steps", type=int, default=30, help="training steps an epoch on the small tree")
    parser.add_argument("--skip-evaluation", action="store_true")
    parser.add_argument("--skip-training", action="store_true", help="only the trees, the pipeline and encoders")
    parser.add_argument("--decode-vocabulary", help="a vocab.txt: time decoding at full caption length with it")
    parser.add_argument("--encoders", nargs="*", default=["MobileNetV3Large", "EfficientNetV2B0", "ConvNeXtTiny",
                                                           "ResNet152V2", "EfficientNetV2S"])
    parser.add_argument("--encoder-images", type=int, default=256)
    args = parser.parse_args()
    os.makedirs(args.work, exist_ok=True)
    full_tree = args.tree or os.path.join(args.work, "coco-full")
    small_tree = os.path.join(args.work, f"coco-{args.small_scale:g}")
    report = {"machine": f"{os.cpu_count()} CPU cores, no GPU", "trees": [ensure_tree(full_tree, args.scale, args.work),
                                                                         ensure_tree(small_tree, args.small_scale,
                                                                                     args.work)]}
    encoder_args = ["--encoder-weights", "none"]
    report["input_pipeline"] = pipeline_rate(full_tree, args.work, 1024)
    if args.decode_vocabulary:
        report["decoding"] = {preset: decode_costs(preset, full_tree, args.work, args.decode_vocabulary)
                              for preset in args.preset or ["coco-lstm", "coco-transformer"]}
    for preset in [] if args.skip_training else args.preset or ["coco-lstm", "coco-transformer"]:
        stages, cache, vocabulary, words, _ = full_tree_stages(preset, full_tree, args.work, args.cache_images,
                                                               encoder_args)
        small_stages, figures, extrapolated, run_dir = small_tree_stages(preset, small_tree, args.work, vocabulary,
                                                                         args.steps, encoder_args)
        entry = {"full_tree": stages, "vocabulary_tokens": words, "feature_cache": cache,
                 "small_tree": small_stages, "small_tree_figures": figures, "extrapolated_to_full": extrapolated}
        entry["decoding_at_full_length"] = decode_costs(preset, full_tree, args.work, vocabulary)
        if not args.skip_evaluation:
            entry["test_evaluation"], entry["test_metrics"] = test_evaluation(run_dir, full_tree, args.work, preset)
        report[preset] = entry
        print(json.dumps({preset: entry}, indent=1), file=sys.stderr, flush=True)
    if args.encoders:
        report["encoders"] = encoder_costs(full_tree, args.work, args.encoders, args.encoder_images, 224)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
