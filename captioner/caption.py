"""Caption a folder of images with a trained model.

    python -m captioner.caption RUN_DIR FOLDER [-o captions.jsonl] [--beam-size 3] [--batch-size 32]
                                [--recursive] [--attention-plots DIR]

Finds JPEG, PNG, GIF (first frame), BMP and WebP files, honours EXIF
orientation, converts greyscale, alpha, CMYK and 16-bit images, and writes each
result as soon as it has it: JSON Lines (`.jsonl`), CSV (`.csv`) or a COCO
results file (`.json`). Files that cannot be read are reported in the output
with their reason. Running again onto the same output skips images already
captioned. Exit status: 0 all captioned, 1 some failed, 2 bad arguments.
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
    parser.add_argument("--beam-size", type=int, default=3)
    parser.add_argument("--alpha", type=float, default=0.0, help="length penalty exponent for beam search")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--recursive", action="store_true", help="also caption images in subfolders")
    parser.add_argument("--attention-plots", metavar="DIR", help="write a word-by-word attention figure per image")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.beam_size < 1 or args.batch_size < 1:
        parser.error("--beam-size and --batch-size must be at least 1")
    if not os.path.isdir(args.folder):
        parser.error(f"{args.folder} is not a folder")
    if not os.path.exists(os.path.join(args.run_dir, "model.keras")):
        parser.error(f"{args.run_dir} is not a finished run folder (no model.keras)")

    import captioner
    from captioner import captioning

    try:
        captioning.output_format(args.output)
    except ValueError as error:
        parser.error(str(error))
    model = captioner.load(args.run_dir)
    counts = captioning.caption_folder(model, args.folder, args.output, args.beam_size, args.batch_size,
                                       args.recursive, args.alpha, args.attention_plots, progress=not args.quiet)
    print(f"{counts['captioned']} captioned, {counts['failed']} failed, {counts['skipped']} already in "
          f"{args.output}")
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
