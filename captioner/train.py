"""Train a captioner: `python -m captioner.train [--preset shapes] [--decoder lstm] [--FIELD VALUE ...]`.

With no arguments it writes the Shapes dataset (first use only), trains the
attention LSTM on it, and prints the test BLEU. With `--preset coco-lstm
--data-root COCO [--karpathy-json dataset_coco.json]` it trains on MS COCO.
Every config field has a flag; run with `--help` to list them.
"""

import argparse
import os
import sys
import time

# TensorFlow's C++ start-up chatter (CUDA probing, oneDNN notes) is not for users.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from captioner import config as config_lib  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m captioner.train", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--run-dir", default=None,
                        help="run folder (default runs/PRESET-DECODER, or -2, -3... if that one is finished); "
                             "an unfinished one is resumed")
    parser.add_argument("--quiet", action="store_true", help="one line per epoch instead of progress bars")
    parser.add_argument("--config", default=None, metavar="JSON",
                        help="start from this config file (e.g. a run's config.json) instead of --preset; "
                             "flags given override it")
    parser.add_argument("--distribute", default="none", choices=config_lib.STRATEGIES,
                        help="tf.distribute strategy: mirrored (all local GPUs), multi-worker (workers in "
                             "TF_CONFIG), tpu; --batch-size is the global batch over all replicas")
    config_lib.add_arguments(parser)
    args = parser.parse_args(argv)
    started = time.time()
    try:
        config = config_lib.from_arguments(args, base=config_lib.load(args.config) if args.config else None)
    except FileNotFoundError as error:
        parser.error(f"--config: {error.filename}: no such file")
    except ValueError as error:  # json.JSONDecodeError included
        parser.error(f"{args.config + ': ' if args.config else ''}{error}")

    # Imported after argument parsing so that --help is instant.
    from captioner import runs, training
    from captioner.data.coco import DatasetError

    run_dir = args.run_dir or runs.choose_run_dir(os.path.join("runs", f"{config.preset}-{config.decoder}"))
    print(f"Run folder: {run_dir}", file=sys.stderr)
    try:
        metrics = training.train(config, run_dir, verbose=2 if args.quiet else "auto", distribute=args.distribute)
    except (DatasetError, ValueError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if metrics is None:  # a non-chief worker: the chief reports
        return 0
    print(training.format_metrics(metrics))
    print(f"Run folder: {run_dir}")
    print(f"Wall time: {time.time() - started:.1f} s (training {metrics['train_seconds']:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
