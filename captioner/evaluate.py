"""Evaluate captions with the COCO caption metrics.

    python -m captioner.evaluate RUN_DIR [--split test] [--data-root ROOT] [--beam-size 3 --alpha 0.6] [--batch-size 64]
    python -m captioner.evaluate --results RESULTS.json|captions.jsonl --annotations captions_val2014.json
    python -m captioner.evaluate --results RESULTS.json --data-root ROOT --dataset flickr8k [--split test]
    python -m captioner.evaluate --results RESULTS.json --dataset imagefolder --data-root DIR [--captions FILE]
        [--splits-file RUN/splits.json]

The first captions a split with a trained model (by default the data it was
trained on; `--data-root` with `--dataset` takes another root) and writes, into
`RUN_DIR/eval-<split>-<decoding>/` (or `--output-dir`), `predictions.json` in
the COCO results format, `per_image.json` and `metrics.json`. The others write
into `NAME.EXT-eval/` beside the results file `NAME.EXT` (or `--output-dir`);
a run folder's own files, or a `metrics.json` this command did not write, are
never written over. Decoding is the
model's recorded default (chosen on validation data when it was trained) unless
`--beam-size` / `--alpha` say otherwise. Beside the metrics it reports how
generic the captions are, for this decoding and for greedy decoding. The other
two score a results file made by any system against a COCO captions file, or
against a split of any dataset root (Flickr has no captions file to name). A
run of an imagefolder dataset is evaluated on the split its `splits.json` lists.
Against a split, and when evaluating a run, CHAIR object hallucination is
reported too where instance annotations cover the split's images.
"""

import argparse
import os
import sys

from captioner import console
from captioner.config import DATASETS
from captioner.console import HelpFormatter
from captioner.decoding import arguments as decoding_arguments

CHAIR_VOCABULARIES = ("rohrbach2018", "captioner")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m captioner.evaluate", description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("run_dir", nargs="?", help="a run folder of python -m captioner.train")
    parser.add_argument("--split", default="test", help="split to caption (train, val or test)")
    parser.add_argument("--data-root", help="dataset root to evaluate on (default: the run's own data)")
    parser.add_argument("--dataset", choices=DATASETS,
                        help="what --data-root holds (default: the run's dataset); shapes and coco are both read "
                             "as COCO layouts")
    parser.add_argument("--karpathy-json", help="path of the Karpathy split file of --data-root (dataset_coco.json, "
                                                "dataset_flickr8k.json, dataset_flickr30k.json)")
    folder = parser.add_argument_group("imagefolder datasets (as python -m captioner.train reads them)")
    folder.add_argument("--captions", help="a CSV, TSV or JSONL of image and caption columns, instead of "
                                           "--data-root's metadata files (implies --dataset imagefolder)")
    folder.add_argument("--image-column", help="the column of image paths (default: the first of file_name, "
                                               "image, image_path, filename, path)")
    folder.add_argument("--caption-column", help="the column of captions (default: the first of text, caption, "
                                                 "captions, sentence)")
    folder.add_argument("--separator", help="the CSV separator, one character or 'tab' (default: ',', a tab for "
                                            ".tsv)")
    folder.add_argument("--splits-file", help="a run's splits.json fixing the split's images (default: a run's "
                                              "own, when evaluating it on its own data)")
    parser.add_argument("--batch-size", type=int, default=64, help="images decoded at once")
    parser.add_argument("--results", help="score this results file instead of running a model: a COCO results "
                                          ".json, or the .jsonl / .csv of python -m captioner.caption")
    parser.add_argument("--annotations", help="COCO captions file that --results is scored against (or give "
                                              "--data-root [--dataset] [--split] [--karpathy-json])")
    parser.add_argument("--output-dir", help="where to write metrics.json, per_image.json and predictions.json "
                                             "(default: RUN_DIR/eval-SPLIT-DECODING, or NAME.EXT-eval/ beside the "
                                             "results file NAME.EXT)")
    parser.add_argument("--no-java", action="store_true",
                        help="do not run Java: the PTB tokenizer and METEOR are skipped, the other metrics "
                             "computed on a Python tokenisation")
    parser.add_argument("--skip-bad-images", action="store_true",
                        help="leave out images that cannot be decoded (named on stderr) instead of stopping")
    parser.add_argument("--chair-vocabulary", choices=CHAIR_VOCABULARIES, default="rohrbach2018",
                        help="objects CHAIR counts on MS COCO: the paper's list and rules, or captioner's own list "
                             "(not comparable with the paper)")
    parser.add_argument("--report", action="store_true",
                        help="also write report.html into the output folder: the run, the metrics and galleries "
                             "of its best, worst and random images (python -m captioner.report)")
    parser.add_argument("--quiet", action="store_true", help="no progress and no notes on stderr")
    parser.add_argument("--verbose", action="store_true", help="also TensorFlow's own log lines")
    decoding_arguments.add_arguments(parser)
    args = parser.parse_args(argv)
    decoding_arguments.check(parser, args)
    folder_flags = [f for f in ("captions", "image_column", "caption_column", "separator", "splits_file")
                    if getattr(args, f) is not None]
    if args.captions and args.dataset is None:
        args.dataset = "imagefolder"
    if folder_flags and args.dataset not in (None, "imagefolder"):
        parser.error(f"{', '.join('--' + f.replace('_', '-') for f in folder_flags)} only go with --dataset "
                     f"imagefolder")
    if args.results and not (args.annotations or args.data_root or args.captions):
        parser.error("--results needs --annotations (a COCO captions file) or --data-root (a split of a dataset; "
                     "--captions for an imagefolder captions file)")
    if args.annotations and not args.results:
        parser.error("--annotations goes with --results")
    if bool(args.run_dir) == bool(args.results):
        parser.error("give either RUN_DIR, or --results with --annotations or --data-root")
    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1")
    if args.report and not args.run_dir:
        parser.error("--report goes with a run folder (a results file has no model to draw attention from)")
    from captioner import runs
    from captioner.evaluation import results_files

    if args.run_dir:
        problem = runs.problem_with(args.run_dir)
        if problem:
            parser.error(problem)
    output_dir = args.output_dir or (results_files.default_output_dir(args.results) if args.results else None)
    try:
        if output_dir:
            results_files.check_output_dir(output_dir)
    except ValueError as error:
        parser.error(str(error))
    if args.no_java:
        console.log("--no-java: the PTB tokenizer and METEOR are skipped as asked; BLEU, ROUGE-L and CIDEr-D are "
                    "computed on a Python tokenisation")
    console.quiet_tensorflow(args.verbose)

    from captioner.data.coco import DatasetError
    from captioner.data.imagefolder import Options
    from captioner.evaluation import run_evaluation, scoring

    use_java = False if args.no_java else None
    options = Options(args.captions, args.image_column, args.caption_column, args.separator, args.splits_file)
    try:
        if args.results:
            metrics, per_image = run_evaluation.score_results_file(
                args.results, args.annotations, args.data_root, args.dataset, args.split, args.karpathy_json, use_java,
                args.chair_vocabulary, options=options)
            predictions = None
        else:
            metrics, per_image, predictions, default_dir = run_evaluation.evaluate_run(
                args.run_dir, args.split, args.data_root, args.dataset, args.karpathy_json, args.batch_size,
                args.beam_size, args.alpha, args.max_length, use_java, args.skip_bad_images, args.chair_vocabulary,
                progress=not args.quiet, options=options, **decoding_arguments.controls(args))
            output_dir = output_dir or default_dir
        results_files.write(output_dir, metrics, per_image, predictions)
        if args.report:
            from captioner.inference import report

            page = report.write_report(args.run_dir, os.path.join(output_dir, "report.html"), args.split,
                                       batch_size=args.batch_size, use_java=use_java, progress=not args.quiet,
                                       evaluation_dir=output_dir)
    except (DatasetError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(scoring.format_table(metrics))
    print(f"Written to {os.path.abspath(output_dir)}" + (f" (report: {page})" if args.report else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
