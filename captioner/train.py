"""Train a captioner: `python -m captioner.train [--preset shapes] [--decoder lstm] [--FIELD VALUE ...]`.

With no arguments it writes the Shapes dataset (first use only), trains the
attention LSTM on it, and prints the test BLEU. With `--preset coco-lstm
--data-root COCO [--karpathy-json dataset_coco.json]` it trains on MS COCO;
with `--preset flickr8k-lstm --data-root FLICKR8K` on Flickr8k as distributed
(`--dataset flickr30k` for Flickr30k; see data/README.md).
Every config field has a flag; run with `--help` to list them.

`--scst-from RUN_DIR` fine-tunes a finished run with self-critical training
(CIDEr-D reward; see `captioner.training.scst`) into `RUN_DIR-scst`; the model is the
parent's, and only the stage's fields (learning rate, epochs, batch size, ...)
may be given.
"""

import argparse
import os
import sys
import time

from captioner import config as config_lib
from captioner import console
from captioner.console import HelpFormatter


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m captioner.train", description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("--run-dir", default=None,
                        help="run folder (default runs/PRESET-DECODER, or -2, -3... if that one is finished); "
                             "an unfinished one is resumed")
    parser.add_argument("--quiet", action="store_true", help="no progress bars: the epochs' lines only")
    parser.add_argument("--verbose", action="store_true", help="also TensorFlow's own log lines")
    parser.add_argument("--config", default=None, metavar="JSON",
                        help="start from this config file (e.g. a run's config.json) instead of --preset; "
                             "flags given override it")
    parser.add_argument("--distribute", default="none", choices=config_lib.STRATEGIES,
                        help="tf.distribute strategy: mirrored (all local GPUs), multi-worker (workers in "
                             "TF_CONFIG), tpu; --batch-size is the global batch over all replicas")
    stage = parser.add_argument_group("self-critical stage (with --scst-from)")
    stage.add_argument("--scst-from", metavar="RUN_DIR", help="fine-tune this finished run with SCST")
    stage.add_argument("--samples", type=int, default=None, help="captions drawn per image and step (default 5)")
    stage.add_argument("--baseline", default=None, choices=("mean", "greedy"),
                       help="mean (default): the other samples' reward (new self-critical); greedy: the greedy "
                            "caption's (classic SCST)")
    stage.add_argument("--temperature", type=float, default=None, help="sampling temperature (default 1)")
    config_lib.add_arguments(parser)
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    started = time.time()
    if args.scst_from:
        if any(a == "--preset" or a.startswith("--preset=") for a in argv):
            parser.error("--preset does not go with --scst-from: the stage's model and data are its parent's")
        return _self_critical(parser, args, started)
    given = [flag for flag in ("samples", "baseline", "temperature") if getattr(args, flag) is not None]
    if given:
        parser.error(f"{', '.join('--' + f for f in given)} only go with --scst-from (the self-critical stage)")
    try:
        config = config_lib.from_arguments(args, base=config_lib.load(args.config) if args.config else None)
    except FileNotFoundError as error:
        parser.error(f"--config: {error.filename}: no such file")
    except IsADirectoryError:
        parser.error(f"--config {args.config} is a folder; give a config.json (a run folder holds one)")
    except OSError as error:
        parser.error(f"--config {args.config}: {error.strerror}")
    except ValueError as error:  # json.JSONDecodeError included
        parser.error(f"{args.config + ': ' if args.config else ''}{error}")

    # Imported after argument parsing so that --help is instant.
    console.quiet_tensorflow(args.verbose)
    from captioner import runs
    from captioner.training import cross_entropy, run
    from captioner.data.coco import DatasetError

    run_dir = args.run_dir or runs.choose_run_dir(os.path.join("runs", runs.default_name(config)))
    print(f"Run folder: {run_dir}", file=sys.stderr)
    try:
        metrics = cross_entropy.train(config, run_dir, verbose=2 if args.quiet else 1, distribute=args.distribute)
    except (DatasetError, ValueError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if metrics is None:  # a non-chief worker: the chief reports
        return 0
    print(run.format_metrics(metrics))
    print(f"Run folder: {run_dir}")
    print(f"Wall time: {time.time() - started:.1f} s (training {metrics['train_seconds']:.1f} s)")
    return 0


def _self_critical(parser, args, started):
    given = {f: getattr(args, f) for f in config_lib.field_names() if hasattr(args, f)}
    if args.config:
        parser.error("--config does not go with --scst-from: the stage starts from its parent's config")
    console.quiet_tensorflow(args.verbose)
    from captioner import runs
    from captioner.data.coco import DatasetError
    from captioner.training import run, scst

    problem = runs.problem_with(args.scst_from)
    if problem:
        print(f"error: --scst-from: {problem}", file=sys.stderr)
        return 2
    defaults = scst.Settings("")
    args.samples = defaults.samples if args.samples is None else args.samples
    args.baseline = defaults.baseline if args.baseline is None else args.baseline
    args.temperature = defaults.temperature if args.temperature is None else args.temperature
    try:
        scst.Settings(args.scst_from, args.samples, args.baseline, args.temperature).validated()
        scst.check_stage_fields(given)  # refuses model fields before any work
    except ValueError as error:
        parser.error(str(error))
    run_dir = args.run_dir or args.scst_from.rstrip("/\\") + "-scst"
    print(f"Run folder: {run_dir}", file=sys.stderr)
    try:
        metrics = scst.train(args.scst_from, run_dir, given, args.samples, args.baseline, args.temperature,
                             verbose=2 if args.quiet else 1, distribute=args.distribute)
    except (DatasetError, ValueError, FileExistsError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if metrics is None:
        return 0
    print(run.format_metrics(metrics))
    print(f"Run folder: {run_dir}")
    print(f"Wall time: {time.time() - started:.1f} s (training {metrics['train_seconds']:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
