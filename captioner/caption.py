"""Caption a folder of images with a trained model, or with an export of one.

    python -m captioner.caption RUN_DIR|EXPORT FOLDER_OR_IMAGE [-o captions.jsonl|.csv|.json|-] [--beam-size 3]
                                [--recursive] [--attention-plots DIR] [--overwrite] [--quiet]

Finds JPEG, PNG, GIF (first frame), BMP and WebP files, honours EXIF
orientation, converts greyscale, alpha, CMYK and 16-bit images, and writes each
result as soon as it has it: JSON Lines (`.jsonl`), CSV (`.csv`) or a COCO
results file (`.json`). Files that cannot be read are reported in the output
with their reason. Running again onto the same output skips images already
captioned, and refuses an output made by another model or other decoding
settings (`OUTPUT.source.json` records them). `-o -` writes JSON lines to
standard output. Exit status: 0 all captioned, 1 some failed or no image
found, 2 bad arguments.

EXPORT, an export of `python -m captioner.export` (its folder, or the
`.tflite` or `.onnx` file in it, `vocab.txt` beside), captions with that file
and its runtime in place of the run, with the decoding inside it: the same
images, outputs and resuming, to check an export against its run.
"""

import argparse
import os
import sys

from captioner import console
from captioner.console import HelpFormatter
from captioner.decoding import arguments as decoding_arguments

FAILURES_SHOWN = 10


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m captioner.caption", description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("run_dir", help="a run folder of python -m captioner.train, or an export of python -m "
                                        "captioner.export (its folder, or the .tflite or .onnx file in it)")
    parser.add_argument("folder", help="a folder of images, or one image file")
    parser.add_argument("-o", "--output", default="captions.jsonl",
                        help=".jsonl, .csv, .json (COCO results), or - for JSON lines on standard output")
    decoding_arguments.add_arguments(parser)
    parser.add_argument("--batch-size", type=int, default=32, help="images decoded at once")
    parser.add_argument("--recursive", action="store_true", help="also caption images in subfolders")
    parser.add_argument("--attention-plots", metavar="DIR", help="write a word-by-word attention figure per image")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing output instead of resuming it")
    parser.add_argument("--memory-budget-mb", type=int, default=1024,
                        help="decoded pixels in flight at once, in MiB (one larger image still goes, alone)")
    parser.add_argument("--quiet", action="store_true", help="no progress and no notes on stderr")
    parser.add_argument("--verbose", action="store_true", help="also TensorFlow's own log lines")
    args = parser.parse_args(argv)
    decoding_arguments.check(parser, args)
    if args.batch_size < 1 or args.memory_budget_mb < 1:
        parser.error("--batch-size and --memory-budget-mb must be at least 1")
    from captioner import runs
    from captioner.inference import exported

    is_export = exported.is_export(args.run_dir)
    problem = exported.problem_with(args.run_dir, args) if is_export else runs.problem_with(args.run_dir)
    if problem:
        if not is_export and os.path.exists(args.run_dir):
            problem += ("; or an export of python -m captioner.export (its folder, or its model.tflite / "
                        "model.onnx file)")
        parser.error(problem)
    if args.output == "-" and args.overwrite:
        parser.error("--overwrite has no output file to replace with -o -")
    console.quiet_tensorflow(args.verbose)

    import captioner
    from captioner.inference import captioning, results_file

    try:
        if args.output != "-":
            results_file.output_format(args.output)
        if args.attention_plots:
            captioning.check_attention_dir(args.attention_plots, args.folder, args.recursive)
        paths = captioning.find_inputs(args.folder, args.recursive)
    except FileNotFoundError as error:
        parser.error(str(error))
    except captioning.NoImagesError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except ValueError as error:
        parser.error(str(error))
    if is_export:
        try:
            model = exported.load_exported(args.run_dir)
        except exported.ExportError as error:
            parser.error(str(error))
        decoding, source = model.decoding, f"inside the {model.describe()}"
    else:
        model = captioner.load(args.run_dir, quiet=args.quiet)
        decoding, source = decoding_arguments.settings(parser, model, args)
    note = (lambda line: None) if args.quiet else console.log
    if is_export and not model.decoding_recorded:
        note(f"Decoding: not recorded (no {exported.INFO} beside {model.path}): as it was exported")
    else:
        note(f"Decoding: {decoding.describe()} ({source})")
    note(f"Captioning {len(paths)} image{'s' if len(paths) != 1 else ''} from {args.folder}")
    try:
        counts = captioning.caption_folder(
            model, args.folder, args.output, batch_size=args.batch_size, recursive=args.recursive,
            attention_dir=args.attention_plots, progress=not args.quiet, overwrite=args.overwrite,
            max_length=args.max_length, memory_budget=args.memory_budget_mb << 20, decoding=decoding)
    except (results_file.ResultsMismatchError, results_file.ResultsInUseError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    failures = counts["failures"]
    if failures:
        print(f"Could not caption {len(failures)} file{'s' if len(failures) != 1 else ''}:", file=sys.stderr)
        for path, reason in failures[:FAILURES_SHOWN]:
            print(f"  {path}: {reason}", file=sys.stderr)
        if len(failures) > FAILURES_SHOWN:
            print(f"  ... and {len(failures) - FAILURES_SHOWN} more (every reason is in {args.output})",
                  file=sys.stderr)
    where = "standard output" if args.output == "-" else args.output
    summary = f"{counts['captioned']} captioned, {counts['failed']} failed, {counts['skipped']} already in {where}"
    print(summary, file=sys.stderr if args.output == "-" else sys.stdout)
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
