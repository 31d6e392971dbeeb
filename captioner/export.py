"""Export a trained model as a servable SavedModel.

    python -m captioner.export RUN_DIR OUT_DIR [--beam-size 3] [--max-length N] [--alpha 0]

The `serving_default` signature takes `images`, a batch of encoded image
bytes (JPEG, PNG, GIF, BMP) `[B]` string, and returns `captions [B]` string and
`scores [B]` float32 (the caption's log-probability, length-normalised when
`--alpha` > 0). Decoding, resizing, normalisation, beam search and
detokenisation all run inside the graph, so the SavedModel needs only
TensorFlow to load and serve (TensorFlow Serving included):

    import tensorflow as tf
    serve = tf.saved_model.load(OUT_DIR).signatures["serving_default"]
    serve(images=tf.constant([open("photo.jpg", "rb").read()]))["captions"]
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def export(model, out_dir, beam_size=3, max_length=None, alpha=0.0):
    """Writes `model` with an image-bytes-to-captions serving signature to `out_dir`."""
    import keras
    import tensorflow as tf

    from captioner.data.pipeline import preprocess_image

    size, mode = model.image_size, model.normalization

    def serve(images):
        pixels = tf.map_fn(lambda data: preprocess_image(data, size, mode), images,
                           fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32))
        result = model.decode(pixels, beam_size=beam_size, max_length=max_length, alpha=alpha)
        return {"captions": result["captions"], "scores": result["scores"]}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(name="serving_default", fn=serve,
                         input_signature=[tf.TensorSpec([None], tf.string, name="images")])
    archive.write_out(out_dir, verbose=False)
    return out_dir


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m captioner.export", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("run_dir", help="a run folder of python -m captioner.train")
    parser.add_argument("out_dir", help="folder to write the SavedModel to (must not exist)")
    parser.add_argument("--beam-size", type=int, default=3)
    parser.add_argument("--max-length", type=int, default=None, help="most words (default: the model's)")
    parser.add_argument("--alpha", type=float, default=0.0, help="length penalty exponent")
    args = parser.parse_args(argv)
    if args.beam_size < 1:
        parser.error("--beam-size must be at least 1")
    if not os.path.exists(os.path.join(args.run_dir, "model.keras")):
        parser.error(f"{args.run_dir} is not a finished run folder (no model.keras)")
    if os.path.exists(args.out_dir):
        parser.error(f"{args.out_dir} exists already; choose a new folder")

    import captioner

    export(captioner.load(args.run_dir), args.out_dir, args.beam_size, args.max_length, args.alpha)
    print(f"SavedModel written to {args.out_dir} (signature serving_default: images [B] bytes -> captions, scores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
