"""Evaluating a run folder on a split, or scoring a results file: what `python -m captioner.evaluate` does.

    evaluate_run(run_dir, ...)        caption a split with the run's model, score it, report genericness
    score_results_file(path, ...)     score captions made by any system against a captions file or a split
"""

import dataclasses
import hashlib
import json
import os

from captioner import runs
from captioner.console import log
from captioner.data import coco, datasets, features, image_check, imagefolder
from captioner.decoding.settings import GREEDY
from captioner.evaluation import chair, coco_eval, results_files, scoring


def evaluate_run(run_dir, split_name="test", data_root=None, dataset=None, karpathy_json=None, batch_size=64,
                 beam_size=None, alpha=None, max_length=None, use_java=None, skip_bad_images=False,
                 chair_vocabulary=chair.DEFAULT_VOCABULARY, progress=True, options=None, **controls):
    """Captions a split with a run's model and scores it.

    `options`: `imagefolder.Options` given (flags); on the run's own imagefolder data they fill in from its
    config, and its `RUN/splits.json` fixes the split's images.

    Decoding is the model's recorded default unless `beam_size`, `alpha` or
    `controls` (fields of `captioner.decoding.settings.Decoding`) say otherwise; greedy captions are
    decoded in the same pass over the images for the genericness figures; a frozen encoder's feature
    cache of the split, where the run made one, stands in for the images. Writes nothing. The default
    output folder is `RUN/eval-SPLIT-DECODING`, with the dataset and a tag of its root between when the
    data is not the run's own.

    Returns:
        `(metrics, per_image, predictions, default_output_dir)`.
    """
    import captioner

    config = runs.load_config(run_dir)
    # Evaluating writes nothing outside the output folder: the run's data must exist (a run folder
    # from elsewhere names its own data root and Shapes sizes, which are never generated here).
    root = data_root or datasets.existing_data_root(config)
    karpathy = karpathy_json or (config.karpathy_json if not data_root else None)
    dataset = dataset or config.dataset
    flags_given = dataclasses.astuple(options) if options is not None else ()
    options = _folder_options(config, run_dir, data_root, dataset, options)
    splits = {}
    if not data_root and dataset == config.dataset and split_name != "train":
        # The training captions (for the copied-caption share) from the same reading, where the train split reads.
        try:
            splits = datasets.read_splits(dataset, root, (split_name, "train"), karpathy, config.skip_missing_images,
                                          options=options)
        except coco.DatasetError:
            splits = {}
    if not splits:
        splits = datasets.read_splits(dataset, root, (split_name,), karpathy, config.skip_missing_images,
                                      options=options)
    split = image_check.checked_split(splits[split_name], skip_bad_images or config.skip_bad_images)
    model = captioner.load(run_dir, quiet=not progress)
    source = model.decoding_source(beam_size, alpha, **controls)
    decoding = model.decoding_settings(beam_size, alpha, **controls)
    log(f"Decoding: {decoding.describe()} ({source})")
    settings = [decoding] + ([GREEDY] if decoding != GREEDY else [])
    cache = features.find(model.encoder, split.examples, config.feature_cache_dir) if config.feature_cache else None
    if cache is not None:
        log(f"Regions from the feature cache {cache.directory}")
    decoded = scoring.caption_settings(model, split.examples, batch_size, settings, with_attention=True,
                                       max_length=max_length, cache=cache, progress=progress)
    outputs = decoded[settings[0]]
    metrics, per_image = scoring.score_outputs(outputs, split, root, model.encoder.grid_shape, use_java,
                                               chair_vocabulary=chair_vocabulary)
    metrics.update(scoring.decoding_figures(decoding))
    # How the split was read and decoded, so that the report draws its galleries from the same images and captions.
    metrics["data_root"] = root
    metrics["dataset"] = dataset
    if karpathy:
        metrics["karpathy_json"] = karpathy
    if dataset == "imagefolder":
        metrics["imagefolder_options"] = dataclasses.asdict(options)
    if max_length:
        metrics["max_length"] = max_length
    metrics["decoding_source"] = source
    if split.bad_images:
        metrics["bad_images_left_out"] = split.bad_images
    training_captions = ([c for e in splits["train"].examples for c in e.captions] if "train" in splits
                         else _training_captions(config, options))
    metrics["genericness"] = {setting.describe():
                              scoring.genericness_of(decoded[setting], training_captions) for setting in settings}
    captions = {o["image_id"]: o["caption"] for o in outputs}
    for image_id, scores in per_image.items():
        scores["caption"] = captions[image_id]
    # Another dataset, root, split file or splits.json than the run's own gets a folder of its own.
    own = (dataset == config.dataset and karpathy == config.karpathy_json and not any(flags_given)
           and _is_run_root(config, data_root))
    data_tag = "" if own else "-" + dataset + "-" + hashlib.sha1(json.dumps(
        [os.path.abspath(root), karpathy, dataclasses.asdict(options)], sort_keys=True).encode()).hexdigest()[:6]
    return (metrics, per_image, scoring.to_json_outputs(outputs),
            os.path.join(run_dir, f"eval-{split_name}{data_tag}-{decoding.label()}"
                         + (f"-max{max_length}" if max_length and max_length != model.decoder.max_length else "")))


def _is_run_root(config, data_root):
    """Whether `data_root` (None: not given) is the run's own data root."""
    return not data_root or bool(config.data_root and os.path.abspath(data_root) == os.path.abspath(config.data_root))


def _folder_options(config, run_dir, data_root, dataset, given):
    """The `imagefolder.Options` an evaluation reads with: the flags `given`, and on the run's own imagefolder data
    (no other `data_root`) the run's config for the rest and its `splits.json` (`imagefolder.Options.of`)."""
    given = given or imagefolder.Options()
    if dataset != "imagefolder":
        if any(dataclasses.astuple(given)):
            raise ValueError(f"--captions, --image-column, --caption-column, --separator and --splits-file go with "
                             f"an imagefolder dataset, not {dataset!r}")
        return given
    if config.dataset != "imagefolder" or not _is_run_root(config, data_root):
        return given
    own = imagefolder.Options.of(config, run_dir)
    return imagefolder.Options(*(g if g is not None else o
                                 for g, o in zip(dataclasses.astuple(given), dataclasses.astuple(own))))


def _training_captions(config, options=None):
    """The run's training references (for the copied-caption share), or None where its data is not here."""
    try:
        root = datasets.existing_data_root(config)
        return [c for e in datasets.read_split(config.dataset, root, "train", config.karpathy_json,
                                               config.skip_missing_images, options=options).examples
                for c in e.captions]
    except (coco.DatasetError, FileNotFoundError) as error:
        log(f"The run's training captions are not readable ({error}); the copied-caption share is left out")
        return None


def score_results_file(results, annotations=None, data_root=None, dataset=None, split_name="test",
                       karpathy_json=None, use_java=None, chair_vocabulary=chair.DEFAULT_VOCABULARY, options=None):
    """Scores a results file (any of `results_files.read_results`' forms) against a COCO captions file
    (`annotations`) or a split of a dataset root; CHAIR too where the split has instance annotations.
    `options`: `imagefolder.Options` of an imagefolder dataset (its captions file, columns, a run's splits.json).

    Returns:
        `(metrics, per_image)`.
    """
    if annotations:
        payload = coco.load_json(annotations, "captions file")
        index = coco.coco_index(payload, annotations)
        references = {i: [a["caption"] for a in index.imgToAnns.get(i, [])] for i in index.imgs}
        references = {i: caps for i, caps in references.items() if caps}
        against = annotations
    else:
        if data_root is None and options is not None and options.captions:  # imagefolder: the captions' folder
            data_root = imagefolder.root_of(options.captions)
        split = datasets.read_split(dataset or "coco", data_root, split_name, karpathy_json, options=options)
        references = scoring.references_of(split)
        against = f"{data_root} ({dataset or 'coco'}, {split_name} split)"
    entries, failed = results_files.read_results(results)
    if failed:
        log(f"{results}: {failed} records of files that could not be captioned are left out")
    # The caption command's records name their files: the split's (or the annotations') ids are found by path.
    if annotations:
        images = [(image.get("file_name") or "", image_id) for image_id, image in index.imgs.items()]
    else:
        images = results_files.split_images(split.examples, data_root)
    entries, outside = results_files.match_paths(entries, images, references)
    if outside:
        log(f"{results}: {outside} captioned files are not images of "
            f"{os.path.basename(annotations) if annotations else f'the {split_name} split'}: left out")
    predictions = results_files.check_ids(entries, references, results)
    if len(predictions) < len(references):
        log(f"{results} captions {len(predictions)} of the {len(references)} images of {against}: the metrics are "
            f"over those {len(predictions)}, as the COCO evaluation computes them")
    metrics, per_image = scoring.score_predictions({i: references[i] for i in predictions}, predictions, use_java)
    if not annotations:  # CHAIR, as a run's evaluation gives it, where the split has instance annotations
        found = scoring.shapes_instances(data_root, split.name)
        figures, hallucinated = scoring.chair_figures(
            [{"image_id": i, "caption": c} for i, c in predictions.items()], split, data_root,
            found[0] if found else None, vocabulary=chair_vocabulary)
        metrics.update(figures)
        for image_id, names in hallucinated.items():
            per_image[image_id]["chair_hallucinated"] = names
    metrics.update({"results": os.path.abspath(results), "annotations": against, "images": len(predictions),
                    "empty_captions": sum(c == coco_eval.EMPTY for c in predictions.values()),
                    "left_out_records": failed, "left_out_outside_split": outside,
                    "split": os.path.basename(annotations) if annotations else split_name,
                    "decoding": "given", "scale": coco_eval.SCALE})
    return metrics, per_image
