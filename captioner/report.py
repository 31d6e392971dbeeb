"""Write a run's report: one self-contained HTML page to look at, offline.

    python -m captioner.report RUN_DIR [-o RUN_DIR/report.html] [--split test] [--examples 12]

The run, its learning curves, the metrics table labelled with scale, tokenizer
and split, the decoding-default search, genericness and CHAIR, and galleries of
the best, worst and random images with their captions, references, per-image
scores and attention maps (see `captioner.inference.report`). It uses the
split's evaluation under the model's decoding default
(`RUN_DIR/eval-SPLIT-DECODING/`), and runs it first when there is none.
"""

import argparse
import os
import sys

from captioner import console
from captioner.console import HelpFormatter


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m captioner.report", description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("run_dir", help="a run folder of python -m captioner.train")
    parser.add_argument("-o", "--output", help="the HTML file to write (default: RUN_DIR/report.html)")
    parser.add_argument("--split", default="test", help="split to report on (train, val or test)")
    parser.add_argument("--examples", type=int, default=12,
                        help="images in the galleries: a third best, a third worst, a third random")
    parser.add_argument("--batch-size", type=int, default=64, help="images decoded at once")
    parser.add_argument("--no-java", action="store_true", help="evaluate without Java (no PTB tokenizer, METEOR)")
    parser.add_argument("--quiet", action="store_true", help="no progress and no notes on stderr")
    parser.add_argument("--verbose", action="store_true", help="also TensorFlow's own log lines")
    args = parser.parse_args(argv)
    if args.examples < 3 or args.batch_size < 1:
        parser.error("--examples must be at least 3 and --batch-size at least 1")
    from captioner import runs

    problem = runs.problem_with(args.run_dir)
    if problem:
        parser.error(problem)
    console.quiet_tensorflow(args.verbose)
    from captioner.data.coco import DatasetError
    from captioner.inference import report

    try:
        path = report.write_report(args.run_dir, args.output, args.split, args.examples, args.batch_size,
                                   False if args.no_java else None, progress=not args.quiet)
    except (DatasetError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"Report written to {os.path.abspath(path)} ({os.path.getsize(path) / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
