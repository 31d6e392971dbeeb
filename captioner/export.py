"""Export a trained model as a servable SavedModel.

    python -m captioner.export RUN_DIR OUT_DIR [--beam-size 3] [--max-length N] [--alpha 0]

The `serving_default` signature takes `images`, a batch of encoded image bytes
`[B]` string, and returns `captions [B]` string and `scores [B]` float32;
decoding, resizing, normalisation, beam search and detokenisation run inside
the graph (see `captioner.inference.savedmodel` for what is read and how).
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m captioner.export", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("run_dir", help="a run folder of python -m captioner.train")
    parser.add_argument("out_dir", help="folder to write the SavedModel to (must not exist)")
    parser.add_argument("--beam-size", type=int, default=None,
                        help="beam size (default: the model's recorded decoding, chosen on validation data)")
    parser.add_argument("--max-length", type=int, default=None, help="most words (default: the model's)")
    parser.add_argument("--alpha", type=float, default=None,
                        help="length penalty exponent, >= 0 (default: the model's recorded one)")
    args = parser.parse_args(argv)
    if args.beam_size is not None and args.beam_size < 1:
        parser.error("--beam-size must be at least 1")
    if args.alpha is not None and args.alpha < 0:
        parser.error("--alpha must be 0 or more")
    if not os.path.exists(os.path.join(args.run_dir, "model.keras")):
        parser.error(f"{args.run_dir} is not a finished run folder (no model.keras)")
    if os.path.exists(args.out_dir):
        parser.error(f"{args.out_dir} exists already; choose a new folder")

    import captioner
    from captioner.inference import savedmodel
    from captioner.models.captioner import describe_decoding

    model = captioner.load(args.run_dir)
    try:
        beam_size, alpha = model.decoding_settings(args.beam_size, args.alpha)
        savedmodel.export(model, args.out_dir, beam_size, args.max_length, alpha)
    except ValueError as error:  # decoding settings this model cannot honour
        parser.error(str(error))
    source = model.decoding_source(args.beam_size, args.alpha)
    print(f"Decoding: {describe_decoding(beam_size, alpha)} ({source})")
    print(f"SavedModel written to {args.out_dir} (signature serving_default: images [B] bytes -> captions, scores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
