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

from captioner import console
from captioner.console import HelpFormatter
from captioner.decoding import arguments as decoding_arguments


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m captioner.export", description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("run_dir", help="a run folder of python -m captioner.train")
    parser.add_argument("out_dir", help="folder to write the SavedModel to (must not exist)")
    decoding_arguments.add_arguments(parser)
    parser.add_argument("--quiet", action="store_true", help="no notes on stderr")
    parser.add_argument("--verbose", action="store_true", help="also TensorFlow's own log lines")
    args = parser.parse_args(argv)
    decoding_arguments.check(parser, args)
    from captioner import runs

    problem = runs.problem_with(args.run_dir)
    if problem:
        parser.error(problem)
    if os.path.exists(args.out_dir):
        parser.error(f"{args.out_dir} exists already; choose a new folder")
    console.quiet_tensorflow(args.verbose)

    import captioner
    from captioner.inference import savedmodel

    model = captioner.load(args.run_dir, quiet=args.quiet)
    decoding, source = decoding_arguments.settings(parser, model, args)
    if not args.quiet:
        console.log(f"Decoding: {decoding.describe()} ({source})")
    savedmodel.export(model, args.out_dir, max_length=args.max_length, decoding=decoding)
    outputs = "captions, scores" + (", nbest_captions, nbest_scores, nbest_log_probs [B, N]"
                                    if decoding.num_captions > 1 else "")
    print(f"SavedModel written to {args.out_dir} (signature serving_default: images [B] bytes -> {outputs})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
