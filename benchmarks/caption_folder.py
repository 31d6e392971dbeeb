"""Captioning a folder end to end: prints JSON.

    python benchmarks/caption_folder.py [--run runs/shapes-lstm] [--images 1000] [--memory-images 1000 5000]
    python benchmarks/caption_folder.py --sections large [--large-images 40] [--megapixels 24]
                                        [--compare-code OLD_CHECKOUT]

Figures: images/s of `python -m captioner.caption` (find, read, decode, beam 3,
write JSON Lines) on a folder of Shapes test-split-like images; images/s of the
exported SavedModel (beam 3) on the same files, bytes in, captions out; and
the peak resident memory of captioning folders of different sizes, each in a
fresh process, to show that memory does not grow with the folder.

The `large` section captions a folder of large photos (`--megapixels` each,
JPEG) and reports the peak resident memory of `python -m captioner.caption`,
with and without attention figures, each in a fresh process; with
`--compare-code`, the same commands run on another checkout of the package
(PYTHONPATH), so the two are compared in one run on one machine.
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
                       "--quiet", *sys.argv[4:]])
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
    from captioner.data.synthetic import shapes

    data = os.path.join(workdir, f"shapes-{count}")
    if not os.path.exists(data):
        shapes.generate(data, shapes.ShapesParams(seed=1234, image_size=image_size, split_sizes=(1, 1, count)),
                        progress=None)
    return os.path.join(data, "images", "test")


def run(code, *args, pythonpath=None):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    output = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env,
                            cwd=pythonpath or None)
    if output.returncode:
        raise RuntimeError(f"{code.strip().splitlines()[-2]} failed ({output.returncode}): {output.stderr[-2000:]}")
    line = [l for l in output.stdout.splitlines() if l.startswith("RESULT")][-1]
    return [float(v) for v in line.split()[1:]]


def large_photos_folder(count, megapixels, workdir):
    """`count` photo-like JPEGs of about `megapixels` each (3:2, smooth gradients and blobs, quality 90)."""
    import numpy as np
    from PIL import Image, ImageDraw

    folder = os.path.join(workdir, f"large-{count}-{megapixels}mp")
    os.makedirs(folder, exist_ok=True)
    width = int((megapixels * 1e6 * 1.5) ** 0.5)
    height = int(width / 1.5)
    rng = np.random.default_rng(0)
    for k in range(count):
        x = np.linspace(0, 1, width, dtype=np.float32)[None, :, None]
        y = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
        colours = rng.uniform(0, 255, (2, 3)).astype(np.float32)
        pixels = (colours[0] * x + colours[1] * y) / 2 + 64
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(image)
        for _ in range(6):
            cx, cy, r = rng.integers(0, width), rng.integers(0, height), rng.integers(height // 20, height // 5)
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
        image.save(os.path.join(folder, f"photo_{k:03d}.jpg"), quality=90)
    return folder, width, height


def large_section(args, workdir):
    folder, width, height = large_photos_folder(args.large_images, args.megapixels, workdir)
    results = {"photos": args.large_images, "photo_size": f"{width} x {height}",
               "decoded_mib_per_photo": round(width * height * 3 / 2 ** 20, 1)}
    codes = {"this_code": None, **({"compared_code": os.path.abspath(args.compare_code)} if args.compare_code else {})}
    for name, pythonpath in codes.items():
        for figures in (False, True) if name == "this_code" or args.compare_figures else (False,):
            extra = ["--attention-plots", os.path.join(workdir, f"figures-{name}")] if figures else []
            out = os.path.join(workdir, f"large-{name}-{figures}.jsonl")
            seconds, peak, status = run(CAPTION, os.path.abspath(args.run), folder, out, *extra,
                                        pythonpath=pythonpath)
            key = f"{name}{'_with_attention_plots' if figures else ''}"
            results[key] = {"peak_rss_mib": round(peak, 1), "seconds": round(seconds, 1), "exit_status": int(status)}
            print(key, results[key], file=sys.stderr, flush=True)
    return results


def speed_section(args, workdir):
    from captioner import runs
    from captioner.inference import savedmodel
    import captioner

    config = runs.load_config(args.run)
    results = {"images": args.images, "beam_size": 3, "batch_size": 32}
    folder = shapes_folder(args.images, config.image_size, workdir)
    seconds, _, status = run(CAPTION, args.run, folder, os.path.join(workdir, "out.jsonl"))
    results["caption_command_images_per_s_including_model_load"] = round(args.images / seconds, 1)
    results["caption_command_exit_status"] = int(status)
    saved = os.path.join(workdir, "saved")
    savedmodel.export(captioner.load(args.run), saved, beam_size=3)
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
    return results


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", default="runs/shapes-lstm")
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--memory-images", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--sections", nargs="+", default=["speed"], choices=["speed", "large"])
    parser.add_argument("--large-images", type=int, default=40)
    parser.add_argument("--megapixels", type=float, default=24)
    parser.add_argument("--compare-code", help="another checkout of the repository to run the large section on")
    parser.add_argument("--compare-figures", action="store_true",
                        help="also run the other checkout with attention figures (slow where it plots full-size images)")
    args = parser.parse_args()

    workdir = tempfile.mkdtemp(prefix="caption-bench-")
    try:
        results = {"run": args.run}
        if "speed" in args.sections:
            results["speed"] = speed_section(args, workdir)
        if "large" in args.sections:
            results["large_photos"] = large_section(args, workdir)
        results["benchmark_process_peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
