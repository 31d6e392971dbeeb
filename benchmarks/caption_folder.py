"""Captioning a folder end to end: prints JSON.

    python benchmarks/caption_folder.py [--run runs/shapes-lstm] [--images 1000] [--memory-images 1000 5000]

Figures: images/s of `python -m captioner.caption` (find, read, decode, beam 3,
write JSON Lines) on a folder of Shapes test-split-like images; images/s of the
exported SavedModel (beam 3) on the same files, bytes in, captions out; and
the peak resident memory of captioning folders of different sizes, each in a
fresh process, to show that memory does not grow with the folder.
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile

CAPTION = """
import resource, sys, time
from captioner import caption
start = time.perf_counter()
status = caption.main([sys.argv[1], sys.argv[2], "-o", sys.argv[3], "--beam-size", "3", "--batch-size", "32",
                       "--quiet"])
seconds = time.perf_counter() - start
print("RESULT", seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, status)
"""

SERVE = """
import glob, os, sys, time
import tensorflow as tf
serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
paths = sorted(glob.glob(os.path.join(sys.argv[2], "*.jpg")))
serve(images=tf.constant([open(p, "rb").read() for p in paths[:32]]))  # warm up
start = time.perf_counter()
for first in range(0, len(paths), 32):
    serve(images=tf.constant([open(p, "rb").read() for p in paths[first:first + 32]]))["captions"].numpy()
print("RESULT", time.perf_counter() - start)
"""


def shapes_folder(count, image_size, workdir):
    """A folder of `count` Shapes images (generated with its own seed, so unseen in training)."""
    from captioner.data import shapes

    data = os.path.join(workdir, f"shapes-{count}")
    if not os.path.exists(data):
        shapes.generate(data, shapes.ShapesParams(seed=1234, image_size=image_size, split_sizes=(1, 1, count)),
                        progress=None)
    return os.path.join(data, "images", "test")


def run(code, *args):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    output = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, check=True)
    line = [l for l in output.stdout.splitlines() if l.startswith("RESULT")][-1]
    return [float(v) for v in line.split()[1:]]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", default="runs/shapes-lstm")
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--memory-images", type=int, nargs="+", default=[1000, 5000])
    args = parser.parse_args()

    from captioner import export, runs
    import captioner

    config = runs.load_config(args.run)
    workdir = tempfile.mkdtemp(prefix="caption-bench-")
    try:
        results = {"run": args.run, "images": args.images, "beam_size": 3, "batch_size": 32}
        folder = shapes_folder(args.images, config.image_size, workdir)
        seconds, peak, status = run(CAPTION, args.run, folder, os.path.join(workdir, "out.jsonl"))
        results["caption_command_images_per_s_including_model_load"] = round(args.images / seconds, 1)
        results["caption_command_exit_status"] = int(status)
        saved = os.path.join(workdir, "saved")
        export.export(captioner.load(args.run), saved, beam_size=3)
        (served,) = run(SERVE, saved, folder)
        results["saved_model_images_per_s_after_load"] = round(args.images / served, 1)
        memory = {}
        for count in args.memory_images:
            folder = shapes_folder(count, config.image_size, workdir)
            _, peak, _ = run(CAPTION, args.run, folder, os.path.join(workdir, f"out-{count}.jsonl"))
            memory[str(count)] = round(peak, 1)
        results["peak_rss_mib_by_folder_size"] = memory
        sizes = sorted(memory, key=int)
        results["peak_rss_growth_largest_over_smallest"] = round(memory[sizes[-1]] / memory[sizes[0]] - 1, 4)
        results["benchmark_process_peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
