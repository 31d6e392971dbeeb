"""Export formats side by side on this CPU: prints JSON.

    python benchmarks/export_formats.py --run RUN [--repeats 30] [--batch-size 32] [--threads 2] [--keep DIR]

For one run and its recorded decoding (or `--beam-size`), exports a SavedModel,
LiteRT files in float32, float16 and dynamic-int8, and an ONNX file (as
`python -m captioner.export` does), then measures each, and the run itself
(Keras, `Captioner.generate`) for reference, in a fresh process of its own:

- `size_bytes`: the model file (the SavedModel: its folder);
- `export_seconds`: writing it (tracing and converting);
- `latency_ms_batch1`: the median of `--repeats` single-image calls after a warm-up;
- `images_per_s`: the run's test split in batches of `--batch-size`;
- `cider_d`: CIDEr-D of its captions of the test split (`captioner.evaluation.metrics.cider_d`, against the
  split's references), and `same_captions_as_run`, the share of images captioned as the run captions them.

Every format gets the same uint8 pixels, resized once here as `python -m captioner.caption` resizes them
(the run gets them normalised); the SavedModel takes them as PNG bytes, so its figures include encoding and
decoding a PNG per image. Runtimes use `--threads` threads (LiteRT's interpreter, ONNX Runtime's intra-op
pool, TensorFlow's intra-op pool).
"""

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

MEASURE = """
import json, statistics, sys, time
import numpy as np
target, pixels_path, repeats, batch_size, threads, beam_size = sys.argv[1:3] + [int(v) for v in sys.argv[3:7]]
pixels = np.load(pixels_path)
if target.startswith("run:"):
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    import captioner
    from captioner.data.pipeline import normalize_image
    model = captioner.load(target[4:], quiet=True)
    def caption(batch):
        images = normalize_image(batch.astype(np.float32), model.normalization)
        return [c.decode() for c in model.generate(images, beam_size=beam_size or None)["captions"].numpy()]
else:
    if "savedmodel" in target:
        import tensorflow as tf
        tf.config.threading.set_intra_op_parallelism_threads(threads)
    from captioner.inference.exported import load_exported
    exported = load_exported(target, num_threads=threads)
    caption = lambda batch: exported.caption_batch(batch)[0]
caption(pixels[:1]); caption(pixels[:batch_size])  # warm-up: tracing, allocation, each batch shape
times = []
for k in range(repeats):
    image = pixels[k % len(pixels):k % len(pixels) + 1]
    start = time.perf_counter(); caption(image); times.append(time.perf_counter() - start)
start = time.perf_counter()
captions = [c for first in range(0, len(pixels), batch_size) for c in caption(pixels[first:first + batch_size])]
seconds = time.perf_counter() - start
print("RESULT " + json.dumps({"latency_ms_batch1": 1000 * statistics.median(times),
                              "images_per_s": len(pixels) / seconds, "captions": captions}))
"""

FORMATS = {  # name -> export flags
    "savedmodel": ["--format", "savedmodel"],
    "litert_float32": ["--format", "litert"],
    "litert_float16": ["--format", "litert", "--quantize", "float16"],
    "litert_dynamic_int8": ["--format", "litert", "--quantize", "dynamic-int8"],
    "onnx": ["--format", "onnx"],
}


def measure(target, pixels_path, args):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    output = subprocess.run([sys.executable, "-c", MEASURE, target, pixels_path, str(args.repeats),
                             str(args.batch_size), str(args.threads), str(args.beam_size or 0)],
                            capture_output=True, text=True, env=env)
    if output.returncode:
        raise RuntimeError(f"measuring {target} failed ({output.returncode}): {output.stderr[-3000:]}")
    line = [line for line in output.stdout.splitlines() if line.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def size_of(path):
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(folder, name)) for folder, _, names in os.walk(path) for name in names)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="a finished run folder (its test split is captioned)")
    parser.add_argument("--repeats", type=int, default=30, help="single-image calls timed for the latency")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--beam-size", type=int, help="export with this beam size (default: the run's decoding)")
    parser.add_argument("--formats", nargs="+", default=list(FORMATS), choices=list(FORMATS))
    parser.add_argument("--keep", metavar="DIR", help="write the exports here (a new folder) and keep them")
    args = parser.parse_args()
    if args.keep and os.path.exists(args.keep):
        parser.error(f"--keep {args.keep}: it exists already; give a new folder")

    from captioner import console

    console.quiet_tensorflow()
    import numpy as np

    import captioner
    from captioner import export, runs
    from captioner.data import datasets
    from captioner.data.images import read_image
    from captioner.data.pipeline import resize_image
    from captioner.evaluation.metrics import cider_d
    from captioner.inference.exported import pixels_for_export

    config = runs.load_config(args.run)
    split = datasets.read_split(config.dataset, datasets.existing_data_root(config), "test", config.karpathy_json)
    examples = split.examples
    references = [list(example.captions) for example in examples]
    model = captioner.load(args.run, quiet=True)
    decoding = model.decoding_settings(args.beam_size)
    pixels = np.stack([pixels_for_export(resize_image(read_image(e.path)[0], model.image_size)) for e in examples])
    workdir = args.keep or tempfile.mkdtemp(prefix="export-bench-")
    os.makedirs(workdir, exist_ok=args.keep is None)
    pixels_path = os.path.join(workdir, "pixels.npy")
    np.save(pixels_path, pixels)
    results = {"run": args.run, "decoder": type(model.decoder).__name__, "decoding": decoding.describe(),
               "image_size": model.image_size, "test_images": len(examples), "threads": args.threads,
               "batch_size": args.batch_size, "formats": {}}
    try:
        reference = measure(f"run:{os.path.abspath(args.run)}", pixels_path, args)
        run_captions = reference.pop("captions")
        results["formats"]["run_keras"] = {"size_bytes": size_of(os.path.join(args.run, runs.MODEL)),
                                           **_rounded(reference),
                                           "cider_d": round(cider_d(references, run_captions)[0], 4)}
        print("run_keras", results["formats"]["run_keras"], file=sys.stderr, flush=True)
        for name in args.formats:
            out = os.path.join(workdir, name)
            flags = FORMATS[name] + (["--beam-size", str(args.beam_size)] if args.beam_size else [])
            start = time.perf_counter()
            try:
                with contextlib.redirect_stdout(sys.stderr):  # standard output is the JSON alone
                    status = export.main([args.run, out, *flags, "--quiet"])
            except SystemExit as refused:  # a usage error (a decoding the format cannot carry): said on stderr
                status = refused.code
            seconds = time.perf_counter() - start
            if status:
                results["formats"][name] = {"error": f"export exited {status}"}
                continue
            target = out if name == "savedmodel" else os.path.join(out, "model.onnx" if name == "onnx"
                                                                      else "model.tflite")
            measured = measure(target, pixels_path, args)
            captions = measured.pop("captions")
            results["formats"][name] = {
                "size_bytes": size_of(target), "export_seconds": round(seconds, 1), **_rounded(measured),
                "cider_d": round(cider_d(references, captions)[0], 4),
                "same_captions_as_run": round(float(np.mean([a == b for a, b in zip(captions, run_captions)])), 4)}
            print(name, results["formats"][name], file=sys.stderr, flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(results, indent=2))


def _rounded(measured):
    return {"latency_ms_batch1": round(measured["latency_ms_batch1"], 2),
            "images_per_s": round(measured["images_per_s"], 1)}


if __name__ == "__main__":
    main()
