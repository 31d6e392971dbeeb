"""Export a trained model as a servable SavedModel, LiteRT file or ONNX file.

    python -m captioner.export RUN_DIR OUT_DIR [--format savedmodel|litert|onnx] [--quantize float16|dynamic-int8]
                               [--beam-size 3] [--max-length N] [--alpha 0]

SavedModel (the default): the `serving_default` signature takes `images`, a
batch of encoded image bytes `[B]` string, and returns `captions [B]` string
and `scores [B]` float32; decoding, resizing, normalisation, beam search and
detokenisation run inside the graph (see `captioner.inference.savedmodel`).
LiteRT and ONNX: one file (`OUT_DIR/model.tflite` or `model.onnx`) that takes
uint8 pixels `[B, S, S, 3]` already resized to the model's image size and
returns token ids and scores, the search inside; the vocabulary is written
beside it (`vocab.txt`). Every export folder holds `export.json`, and
`python -m captioner.caption OUT_DIR FOLDER` captions with any of them (see
`captioner.inference.exported`, docs/serving.md).
"""

import argparse
import os
import shutil
import sys

from captioner import console
from captioner.console import HelpFormatter
from captioner.decoding import arguments as decoding_arguments


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m captioner.export", description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("run_dir", help="a run folder of python -m captioner.train")
    parser.add_argument("out_dir", help="folder to write the export to (must not exist)")
    parser.add_argument("--format", default="savedmodel", choices=("savedmodel", "litert", "onnx"),
                        help="savedmodel: image bytes in, captions out; litert (.tflite) and onnx: uint8 pixels at "
                             "the model's image size in, token ids and scores out, vocab.txt beside")
    parser.add_argument("--quantize", choices=("float16", "dynamic-int8"),
                        help="LiteRT weights stored as float16, or as int8 with int8 matrix products "
                             "(default: float32)")
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
    if args.quantize and args.format != "litert":
        parser.error(f"--quantize is for --format litert; a {args.format} export keeps float32 weights")
    console.quiet_tensorflow(args.verbose)

    import captioner
    from captioner.inference import exported, savedmodel

    model = captioner.load(args.run_dir, quiet=args.quiet)
    decoding, source = decoding_arguments.settings(parser, model, args)
    problem = exported.unsupported(args.format, decoding, args.quantize)
    if problem:
        parser.error(problem)
    if not args.quiet:
        console.log(f"Decoding: {decoding.describe()} ({source})")
    if args.format != "savedmodel":
        from captioner.inference import litert, onnx_export

        write = litert.export if args.format == "litert" else onnx_export.export
        options = {"quantize": args.quantize} if args.format == "litert" else {}
        try:
            write(model, args.out_dir, decoding, max_length=args.max_length, **options)
        except exported.ExportError as error:
            parser.error(str(error))
        outputs = "tokens [B, L], scores [B]" + (", nbest_tokens [B, N, L], nbest_scores, nbest_log_probs [B, N]"
                                                 if decoding.num_captions > 1 else "")
        size = model.image_size
        print(f"{exported.NAMES[args.format]} export written to {args.out_dir} ({exported.MODEL_FILES[args.format]}: "
              f"pixels uint8 [B, {size}, {size}, 3] -> {outputs}; {exported.VOCABULARY} beside it)")
        return 0
    partial = exported.make_partial_folder(args.out_dir)  # renamed when complete: a killed export leaves no folder
    try:
        savedmodel.export(model, partial, max_length=args.max_length, decoding=decoding)
        exported.write_info(partial, model, "savedmodel", decoding, args.max_length)
        os.rename(partial, args.out_dir)
    except BaseException as error:
        shutil.rmtree(partial, ignore_errors=True)
        if isinstance(error, ValueError):  # settings the model cannot decode with
            parser.error(str(error))
        raise
    outputs = "captions, scores" + (", nbest_captions, nbest_scores, nbest_log_probs [B, N]"
                                    if decoding.num_captions > 1 else "")
    print(f"SavedModel written to {args.out_dir} (signature serving_default: images [B] bytes -> {outputs})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
