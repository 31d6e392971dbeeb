"""Evaluate captions with the COCO caption metrics.

    python -m captioner.evaluate RUN_DIR [--split test] [--data-root ROOT] [--beam-size 3 --alpha 0.6] [--batch-size 64]
    python -m captioner.evaluate --results RESULTS.json --annotations captions_val2014.json
    python -m captioner.evaluate --results RESULTS.json --data-root ROOT --dataset flickr8k [--split test]

The first captions a split with a trained model (by default the data it was
trained on; `--data-root` with `--dataset` takes another root) and writes, into
`RUN_DIR/eval-<split>-<decoding>/` (or `--output-dir`), `predictions.json` in
the COCO results format, `per_image.json` and `metrics.json`. Decoding is the
model's recorded default (chosen on validation data when it was trained) unless
`--beam-size` / `--alpha` say otherwise. Beside the metrics it reports how
generic the captions are, for this decoding and for greedy decoding. The other
two score a results file made by any system against a COCO captions file, or
against a split of any dataset root (Flickr has no captions file to name).
"""

import argparse
import os
import sys

from captioner.config import DATASETS

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m captioner.evaluate", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("run_dir", nargs="?", help="a run folder of python -m captioner.train")
    parser.add_argument("--split", default="test", help="split to caption")
    parser.add_argument("--data-root", help="dataset root to evaluate on (default: the run's own data)")
    parser.add_argument("--dataset", choices=DATASETS,
                        help="what --data-root holds (default: the run's dataset); shapes and coco are both read "
                             "as COCO layouts")
    parser.add_argument("--karpathy-json", help="path of the Karpathy split file of --data-root (dataset_coco.json, "
                                                "dataset_flickr8k.json, dataset_flickr30k.json)")
    parser.add_argument("--beam-size", type=int, default=None,
                        help="beam size (default: the model's recorded decoding, chosen on validation data)")
    parser.add_argument("--alpha", type=float, default=None,
                        help="length penalty exponent for beam search, >= 0 (default: the model's recorded one)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--results", help="score this COCO results file instead of running a model")
    parser.add_argument("--annotations", help="COCO captions file that --results is scored against (or give "
                                              "--data-root [--dataset] [--split] [--karpathy-json])")
    parser.add_argument("--output-dir", help="where to write predictions, per-image scores and metrics")
    parser.add_argument("--no-java", action="store_true", help="skip the Java-based PTB tokenizer and METEOR")
    args = parser.parse_args(argv)
    if args.results and not (args.annotations or args.data_root):
        parser.error("--results needs --annotations (a COCO captions file) or --data-root (a split of a dataset)")
    if args.annotations and not args.results:
        parser.error("--annotations goes with --results")
    if bool(args.run_dir) == bool(args.results):
        parser.error("give either RUN_DIR, or --results with --annotations or --data-root")
    if (args.beam_size is not None and args.beam_size < 1) or args.batch_size < 1:
        parser.error("--beam-size and --batch-size must be at least 1")
    if args.alpha is not None and args.alpha < 0:
        parser.error("--alpha must be 0 or more")

    from captioner import runs
    from captioner.data.coco import DatasetError
    from captioner.evaluation import scoring

    use_java = False if args.no_java else None
    try:
        if args.results:
            metrics, per_image, predictions = score_results_file(args, use_java)
            output_dir = args.output_dir or os.path.dirname(os.path.abspath(args.results))
        else:
            metrics, per_image, predictions, output_dir = evaluate_run(args, use_java)
    except (DatasetError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    os.makedirs(output_dir, exist_ok=True)
    if predictions is not None:
        runs.write_json(os.path.join(output_dir, "predictions.json"), predictions)
    runs.write_json(os.path.join(output_dir, "per_image.json"),
                    [{"image_id": i, **scores} for i, scores in per_image.items()])
    runs.write_json(os.path.join(output_dir, "metrics.json"), metrics)
    print(scoring.format_table(metrics))
    print(f"Written to {output_dir}")
    return 0


def score_results_file(args, use_java):
    from captioner.data import coco, datasets
    from captioner.evaluation import coco_eval, scoring

    if args.annotations:
        annotations = coco.load_json(args.annotations, "captions file")
        index = coco.coco_index(annotations, args.annotations)
        references = {i: [a["caption"] for a in index.imgToAnns.get(i, [])] for i in index.imgs}
        references = {i: caps for i, caps in references.items() if caps}
        against = args.annotations
    else:
        split = datasets.read_split(args.dataset or "coco", args.data_root, args.split, args.karpathy_json)
        references = scoring.references_of(split)
        against = f"{args.data_root} ({args.dataset or 'coco'}, {args.split} split)"
    predictions = coco_eval.check_results(coco.load_json(args.results, "results file"), references, args.results)
    metrics, per_image = scoring.score_predictions({i: references[i] for i in predictions}, predictions,
                                                      use_java)
    metrics.update({"results": args.results, "annotations": against, "images": len(predictions),
                    "empty_captions": sum(c == coco_eval.EMPTY for c in predictions.values()),
                    "split": os.path.basename(args.annotations) if args.annotations else args.split,
                    "decoding": "given",
                    "scale": coco_eval.SCALE})
    return metrics, per_image, None


def evaluate_run(args, use_java):
    import captioner
    from captioner import runs
    from captioner.data import datasets
    from captioner.evaluation import scoring
    from captioner.data.coco import DatasetError
    from captioner.models.captioner import describe_decoding

    config = runs.load_config(args.run_dir)
    # Evaluating writes nothing outside the output folder: the run's data must exist (a run folder
    # from elsewhere names its own data root and Shapes sizes, which are never generated here).
    root = args.data_root or datasets.existing_data_root(config)
    karpathy = args.karpathy_json or (config.karpathy_json if not args.data_root else None)
    dataset = args.dataset or config.dataset
    own_data = not args.data_root and dataset == config.dataset
    splits = {}
    if own_data and args.split != "train":
        # The training captions (for the copied-caption share) from the same reading, where the train split reads.
        try:
            splits = datasets.read_splits(dataset, root, (args.split, "train"), karpathy, config.skip_missing_images)
        except DatasetError:
            splits = {}
    if not splits:
        splits = datasets.read_splits(dataset, root, (args.split,), karpathy, config.skip_missing_images)
    split = splits[args.split]
    model = captioner.load(args.run_dir)
    beam_size, alpha = model.decoding_settings(args.beam_size, args.alpha)
    source = model.decoding_source(args.beam_size, args.alpha)
    print(f"Decoding: {describe_decoding(beam_size, alpha)} ({source})", file=sys.stderr)
    metrics, outputs, per_image = scoring.evaluate_model(model, split, root, args.batch_size, beam_size, alpha,
                                                            use_java)
    metrics["data_root"] = root
    metrics["decoding_source"] = source
    training_captions = ([c for e in splits["train"].examples for c in e.captions] if "train" in splits
                         else _training_captions(config))
    label = metrics["decoding"]
    metrics["genericness"] = {label: scoring.genericness_of(outputs, training_captions)}
    if beam_size > 1:
        greedy = scoring.caption_examples(model, split.examples, args.batch_size, 1, 0.0, progress=False)
        metrics["genericness"]["greedy"] = scoring.genericness_of(greedy, training_captions)
    decoding = "greedy" if beam_size == 1 else f"beam{beam_size}" + (f"-alpha{alpha:g}" if alpha else "")
    output_dir = args.output_dir or os.path.join(args.run_dir, f"eval-{args.split}-{decoding}")
    captions = {o["image_id"]: o["caption"] for o in outputs}
    for image_id, scores in per_image.items():
        scores["caption"] = captions[image_id]
    return metrics, per_image, scoring.to_json_outputs(outputs), output_dir


def _training_captions(config):
    """The run's training references (for the copied-caption share), or None where its data is not here."""
    from captioner.data import coco, datasets

    try:
        root = datasets.existing_data_root(config)
        return [c for e in datasets.read_split(config.dataset, root, "train", config.karpathy_json,
                                               config.skip_missing_images).examples for c in e.captions]
    except (coco.DatasetError, FileNotFoundError) as error:
        print(f"The run's training captions are not readable ({error}); the copied-caption share is left out",
              file=sys.stderr)
        return None


if __name__ == "__main__":
    sys.exit(main())
