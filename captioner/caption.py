"""Caption a folder of images with a trained model.

    python -m captioner.caption RUN_DIR FOLDER [-o captions.jsonl] [--beam-size 3] [--batch-size 32]
                                [--recursive] [--attention-plots DIR] [--overwrite]

Finds JPEG, PNG, GIF (first frame), BMP and WebP files, honours EXIF
orientation, converts greyscale, alpha, CMYK and 16-bit images, and writes each
result as soon as it has it: JSON Lines (`.jsonl`), CSV (`.csv`) or a COCO
results file (`.json`). Files that cannot be read are reported in the output
with their reason. Running again onto the same output skips images already
captioned, and refuses an output made by another model or other decoding
settings (`OUTPUT.source.json` records them). Exit status: 0 all captioned,
1 some failed, 2 bad arguments.
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m captioner.caption", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("run_dir", help="a run folder of python -m captioner.train")
    parser.add_argument("folder", help="folder of images")
    parser.add_argument("-o", "--output", default="captions.jsonl", help=".jsonl, .csv or .json (COCO results)")
    parser.add_argument("--beam-size", type=int, default=None,
                        help="beam size (default: the model's recorded decoding, chosen on validation data)")
    parser.add_argument("--alpha", type=float, default=None,
                        help="length penalty exponent for beam search, >= 0 (default: the model's recorded one)")
    parser.add_argument("--max-length", type=int, default=None, help="most words a caption (default: the model's)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--recursive", action="store_true", help="also caption images in subfolders")
    parser.add_argument("--attention-plots", metavar="DIR", help="write a word-by-word attention figure per image")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing output instead of resuming it")
    parser.add_argument("--memory-budget-mb", type=int, default=1024,
                        help="decoded pixels in flight at once, in MiB (one larger image still goes, alone)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if (args.beam_size is not None and args.beam_size < 1) or args.batch_size < 1 or args.memory_budget_mb < 1:
        parser.error("--beam-size, --batch-size and --memory-budget-mb must be at least 1")
    if args.alpha is not None and args.alpha < 0:
        parser.error("--alpha must be 0 or more")
    if not os.path.isdir(args.folder):
        parser.error(f"{args.folder} is not a folder")
    if not os.path.exists(os.path.join(args.run_dir, "model.keras")):
        parser.error(f"{args.run_dir} is not a finished run folder (no model.keras)")

    import captioner
    from captioner.inference import captioning
    from captioner.models.captioner import check_decoding, describe_decoding

    try:
        captioning.output_format(args.output)
        if args.attention_plots:
            captioning.check_attention_dir(args.attention_plots, args.folder, args.recursive)
    except ValueError as error:
        parser.error(str(error))
    model = captioner.load(args.run_dir)
    try:
        beam_size, alpha = model.decoding_settings(args.beam_size, args.alpha)
        check_decoding(model.decoder, model.decoder.max_length if args.max_length is None else args.max_length,
                       alpha)
    except ValueError as error:
        parser.error(str(error))
    source = model.decoding_source(args.beam_size, args.alpha)
    print(f"Decoding: {describe_decoding(beam_size, alpha)} ({source})", file=sys.stderr)
    try:
        counts = captioning.caption_folder(
            model, args.folder, args.output, beam_size, args.batch_size, args.recursive, alpha,
            args.attention_plots, progress=not args.quiet, overwrite=args.overwrite, max_length=args.max_length,
            memory_budget=args.memory_budget_mb << 20)
    except (captioning.ResultsMismatchError, captioning.ResultsInUseError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{counts['captioned']} captioned, {counts['failed']} failed, {counts['skipped']} already in "
          f"{args.output}")
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
