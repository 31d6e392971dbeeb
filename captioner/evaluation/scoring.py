"""Captioning a split and scoring it: COCO metrics, nltk BLEU, CHAIR where the split has instance annotations
and, on Shapes, object F1 and attention pointing."""

import json
import os
import sys
import time

from captioner.console import Progress
from captioner.evaluation import chair
from captioner.evaluation import coco_eval
from captioner.evaluation import metrics as metrics_lib
from captioner.data import coco, image_check
from captioner.data.pipeline import image_dataset
from captioner.decoding.settings import GREEDY


def caption_examples(model, examples, batch_size, beam_size=None, alpha=None, with_attention=False, progress=True,
                     max_length=None, cache=None):
    """Captions of `examples` in order under one decoding setting (see `caption_settings`).

    `beam_size` and `alpha` default to the model's recorded decoding (`Captioner.default_decoding`).

    Returns a list of dicts with `image_id`, `caption`, `score` and, with
    `with_attention`, `attention [L, P]` (one row per emitted word).
    """
    setting = model.decoding_settings(beam_size, alpha)
    return caption_settings(model, examples, batch_size, [setting], with_attention, progress, max_length,
                            cache)[setting]


def caption_settings(model, examples, batch_size, settings, with_attention=False, progress=True, max_length=None,
                     cache=None, seconds=None):
    """Captions of `examples` in order under several decoding settings, the encoder run once per batch.

    Args:
        model: a `Captioner`.
        examples: list of `captioner.data.coco.Example`.
        batch_size: int, images per step.
        settings: list of `captioner.decoding.settings.Decoding`.
        with_attention: bool, keep each caption's attention `[L, P]`.
        progress: bool, show progress on stderr.
        max_length: int or None, most words (the model's by default).
        cache: a `captioner.data.features.FeatureCache` whose first records are these examples' backbone
            regions (a frozen encoder's cache), or None to read the images.
        seconds: dict or None; if given, each setting's decoding seconds are added to it.

    Returns:
        dict setting -> list of dicts with `image_id`, `caption`, `score` (the best caption's), `log_prob`,
        with more than one caption an image `captions` (`[{"caption", "score", "log_prob"}]` in rank order),
        and with `with_attention` the best caption's `attention [L, P]`.
    """
    if cache is not None:
        batches = (regions for _, regions in cache.regions().take(len(examples)).batch(batch_size))
        encode = lambda regions: model.encode(regions=regions)  # noqa: E731
    else:
        batches = image_dataset([e.path for e in examples], model.image_size, model.normalization, batch_size)
        encode = lambda images: model.encode(images=images)  # noqa: E731
    bar = Progress(len(examples), "Captioning", enabled=progress)
    outputs, position = {setting: [] for setting in settings}, 0
    with image_check.naming_undecodable([e.path for e in examples] if cache is None else []):
        for batch in batches:
            position = _decode_batch(model, encode(batch), settings, examples, position, outputs, max_length,
                                     with_attention, seconds)
            bar.update(position)
    return outputs


def _decode_batch(model, features, settings, examples, position, outputs, max_length, with_attention, seconds):
    """One batch's captions under each setting, appended to `outputs`; returns the position after the batch."""
    for setting in settings:
        began = time.time()
        result = model.generate_from_features(features, max_length=max_length, decoding=setting)
        captions, scores = result["captions"].numpy(), result["scores"].numpy()
        log_probs = result["log_probs"].numpy()
        if seconds is not None:
            seconds[setting] = seconds.get(setting, 0.0) + time.time() - began
        attention = result["attention"].numpy() if with_attention else None
        nbest = ([result[f"nbest_{key}"].numpy() for key in ("captions", "scores", "log_probs")]
                 if setting.num_captions > 1 else None)
        for row in range(len(captions)):
            entry = {"image_id": examples[position + row].image_id, "caption": captions[row].decode("utf-8"),
                     "score": float(scores[row]), "log_prob": float(log_probs[row])}
            if nbest is not None:
                entry["captions"] = [{"caption": text.decode("utf-8"), "score": float(score), "log_prob": float(lp)}
                                     for text, score, lp in zip(nbest[0][row], nbest[1][row], nbest[2][row])]
            if with_attention:
                entry["attention"] = attention[row]
            outputs[setting].append(entry)
    return position + len(captions)


def references_of(split):
    return {e.image_id: list(e.captions) for e in split.examples}


def score_predictions(references, predictions, use_java=None):
    """COCO metrics and nltk corpus BLEU of `predictions` (image_id -> caption); returns `(metrics, per_image)`."""
    metrics, per_image = coco_eval.score(references, predictions, use_java)
    ids = list(predictions)
    metrics.update(metrics_lib.nltk_corpus_bleu([references[i] for i in ids], [predictions[i] for i in ids]))
    return metrics, per_image


def _without_segmentation(entry):
    entry.pop("segmentation", None)
    return entry


def shapes_instances(root, split_name):
    """Objects of each image from a Shapes `instances_<split>.json`, or None if the root has none.

    An instances file whose annotations have no `color` is MS COCO's kind, not Shapes': None too.
    """
    path = os.path.join(root, "annotations", f"instances_{split_name}.json")
    if not os.path.exists(path):
        return None
    try:
        with open(path) as handle:
            # Segmentations dropped while parsing: an MS COCO instances file here is hundreds of MB of them.
            payload = json.load(handle, object_hook=_without_segmentation)
    except json.JSONDecodeError as error:
        raise coco.DatasetError(f"Malformed JSON in instances file {path}: {error}") from None
    annotations = payload.get("annotations") if isinstance(payload, dict) else None
    if not annotations or not all(isinstance(a, dict) and "color" in a for a in annotations):
        return None
    names = {c["id"]: c["name"] for c in payload["categories"]}
    sizes = {i["id"]: (i["width"], i["height"]) for i in payload["images"]}
    objects = {image_id: [] for image_id in sizes}
    for ann in payload["annotations"]:
        objects[ann["image_id"]].append({"colour": ann["color"], "shape": names[ann["category_id"]],
                                         "bbox": ann["bbox"]})
    return objects, sizes


def shapes_figures(outputs, root, split_name, grid_shape, found=None):
    """Object F1 and attention pointing (Shapes spec) of captioned outputs; {} when not Shapes data.

    Args:
        found: the `shapes_instances` of the split if already read (it is read here otherwise).
    """
    found = shapes_instances(root, split_name) if found is None else found
    if found is None:
        return {}
    objects, sizes = found
    ids = [o["image_id"] for o in outputs]
    captions = [o["caption"] for o in outputs]
    figures = metrics_lib.object_f1(captions, [[(x["colour"], x["shape"]) for x in objects[i]] for i in ids])
    if "attention" in outputs[0]:
        figures.update(metrics_lib.attention_pointing(
            captions, [o["attention"] for o in outputs], [objects[i] for i in ids], grid_shape,
            [sizes[i] for i in ids]))
    return figures


def chair_figures(outputs, split, root, shapes_objects=None, vocabulary=chair.DEFAULT_VOCABULARY):
    """CHAIR (`captioner.evaluation.chair`) of captioned outputs, where the split has instance annotations.

    On Shapes data (`shapes_objects`, from `shapes_instances`) an object is a
    colour and a shape (vocabulary "shapes"); otherwise the MS COCO instance files
    covering the split's images are read (`chair.instance_objects`) and mentions
    are found with `vocabulary`. Each image's ground truth is its annotated
    objects and those its references mention, as in Rohrbach et al. Where CHAIR
    is left out, the reason goes to stderr.

    Args:
        outputs: list of dicts with `image_id` and `caption`.
        split: `captioner.data.coco.Split` that was captioned.
        root: str, the dataset root.
        shapes_objects: image_id -> list of Shapes objects, or None.
        vocabulary: MS COCO vocabulary, "rohrbach2018" (the authors' list and rules, the default) or
            "captioner" (this project's own list); see `chair.VOCABULARIES`.

    Returns:
        `(figures, hallucinated)`: the `chair.chair` figures plus `chair_vocabulary` (the vocabulary's name),
        and image_id -> the hallucinated object keys of its caption; without instance annotations
        `({"chair_left_out": reason}, {})`.
    """
    if shapes_objects is not None:
        instances = {i: {chair.shapes_key(o["colour"], o["shape"]) for o in objects}
                     for i, objects in shapes_objects.items()}
        vocabulary = "shapes"
    else:
        chair.mention_extractor(vocabulary)  # an unknown name fails before the instances are read
        try:
            instances = chair.instance_objects(split, root)
        except coco.DatasetError as error:  # an optional figure: the captions and scores still count
            print(f"CHAIR left out: {error}", file=sys.stderr)
            return {"chair_left_out": str(error)}, {}
        if instances is None:  # say why: no file, or not all of the files, the split's images need
            files = chair.instance_files(split, root)
            absent = sorted(p for p in files or () if not os.path.isfile(p))
            if files is None:
                reason = f"the split's images are not all under {root}, whose annotations/ would describe them"
            elif len(absent) < len(files):
                reason = f"the split's images need {', '.join(absent)}, which do not exist"
            else:
                reason = f"no instance annotations cover the split's images (no {', '.join(absent) or 'images'})"
            print(f"CHAIR left out: {reason}", file=sys.stderr)
            return {"chair_left_out": reason}, {}
    ids = [o["image_id"] for o in outputs]
    references = references_of(split)
    truths = chair.ground_truth([instances.get(i, set()) for i in ids], [references[i] for i in ids], vocabulary)
    figures, hallucinated = chair.chair([o["caption"] for o in outputs], truths, vocabulary)
    figures["chair_vocabulary"] = vocabulary
    return figures, dict(zip(ids, hallucinated))


def evaluate_model(model, split, root, batch_size=64, beam_size=None, alpha=None, use_java=None, progress=True,
                   max_length=None, cache=None):
    """Captions a split and scores it (decoding: the model's default where not given).

    Returns `(metrics, outputs, per_image)`.
    """
    setting = model.decoding_settings(beam_size, alpha)
    outputs = caption_settings(model, split.examples, batch_size, [setting], with_attention=True, progress=progress,
                               max_length=max_length, cache=cache)[setting]
    metrics, per_image = score_outputs(outputs, split, root, model.encoder.grid_shape, use_java)
    metrics.update(decoding_figures(setting))
    return metrics, outputs, per_image


def decoding_figures(decoding):
    """How a split was decoded (a `Decoding`), as `metrics.json` says it."""
    return {"decoding": decoding.describe(), "beam_size": decoding.beam_size, "length_penalty": decoding.alpha,
            "decoding_settings": decoding.to_json()}


def score_outputs(outputs, split, root, grid_shape, use_java=None, chair_vocabulary=chair.DEFAULT_VOCABULARY):
    """Every figure of captioned outputs of `split`: COCO metrics and nltk BLEU, CHAIR where the split has instance
    annotations, Shapes' object F1 and attention pointing on Shapes data. Returns `(metrics, per_image)`."""
    predictions = {o["image_id"]: o["caption"] for o in outputs}
    empty = [i for i, c in predictions.items() if not c.strip()]
    if empty:
        # COCO scorers reject empty hypotheses; a model may still produce one.
        predictions.update({i: coco_eval.EMPTY for i in empty})
    metrics, per_image = score_predictions(references_of(split), predictions, use_java)
    found = shapes_instances(root, split.name)
    metrics.update(shapes_figures(outputs, root, split.name, grid_shape, found))
    figures, hallucinated = chair_figures(outputs, split, root, found[0] if found else None, chair_vocabulary)
    metrics.update(figures)
    for image_id, names in hallucinated.items():
        per_image[image_id]["chair_hallucinated"] = names
    metrics.update({"split": split.name, "images": len(outputs), "empty_captions": len(empty),
                    "scale": coco_eval.SCALE})
    return metrics, per_image


def format_table(metrics):
    """The metrics as a table, labelled with how each was computed."""
    lines = [f"{metrics.get('split', '?')} split, {metrics.get('images', '?')} images, "
             f"{metrics.get('decoding', '?')}; scale: {metrics.get('scale', coco_eval.SCALE)}"]
    lines.append(f"COCO caption evaluation (pycocoevalcap, tokenizer: {metrics.get('tokenizer')})")
    for name in coco_eval.METRICS:
        value = metrics.get(name)
        lines.append(f"  {coco_eval.LABELS[name]:<10} {'n/a (needs Java)' if value is None else f'{value:.4f}'}")
    lines.append("nltk corpus_bleu (not the COCO tokenisation)")
    for n in range(1, 5):
        lines.append(f"  BLEU-{n:<5} {metrics[f'nltk_bleu_{n}']:.4f}")
    if "object_f1" in metrics:
        lines.append("Shapes figures")
        lines.append(f"  object F1          {metrics['object_f1']:.4f} (precision {metrics['object_precision']:.4f}, "
                     f"recall {metrics['object_recall']:.4f})")
    if "attention_pointing" in metrics:
        lines.append(f"  attention pointing {metrics['attention_pointing']:.4f} "
                     f"({metrics['pointing_words']} colour/shape words)")
    if "chair_i" in metrics:
        lines.append("Object hallucination (CHAIR, Rohrbach et al. 2018; 0-1, lower is better)")
        chair_i = "n/a" if metrics["chair_i"] is None else f"{metrics['chair_i']:.4f}"
        lines.append(f"  CHAIR-i    {chair_i} ({metrics['chair_hallucinated_mentions']} of "
                     f"{metrics['chair_mentions']} object mentions hallucinated)")
        lines.append(f"  CHAIR-s    {metrics['chair_s']:.4f} ({metrics['chair_hallucinated_captions']} of "
                     f"{metrics['chair_captions']} captions with one)")
        if "chair_vocabulary" in metrics:
            name = metrics["chair_vocabulary"]
            lines.append(f"  vocabulary: {name} ({chair.VOCABULARIES.get(name, 'see captioner/evaluation/chair.py')})")
    elif "chair_left_out" in metrics:
        lines.append(f"Object hallucination (CHAIR): left out, {metrics['chair_left_out']}")
    if metrics.get("genericness"):
        lines.append("Genericness (shares 0-1 of the captions; vocabulary in distinct words)")
        width = max(34, *(len(label) for label in metrics["genericness"]))
        lines.append(f"  {'decoding':<{width}} {'distinct':>8} {'vocab':>6} {'copied':>7} {'rep. bigram':>11}")
        for label, g in metrics["genericness"].items():
            copied = "n/a" if g["copied_from_train"] is None else f"{g['copied_from_train']:.4f}"
            lines.append(f"  {label:<{width}} {g['distinct_captions']:>8.4f} {g['vocabulary_used']:>6d} {copied:>7} "
                         f"{g['repeated_bigram']:>11.4f}")
        lines.append("  distinct: distinct captions / images; copied: captions equal to a training caption")
    return "\n".join(lines)


def genericness_of(outputs, training_captions=None):
    """`metrics.genericness` of captioned outputs (see there)."""
    return metrics_lib.genericness([o["caption"] for o in outputs], training_captions)


def to_json_outputs(outputs):
    return [{k: v for k, v in o.items() if k != "attention"} for o in outputs]


def score_split(model, split, batch_size, progress=True, cache=None):
    """Greedy captions of a split, their CIDEr-D and nltk corpus BLEU-1..4; returns `(scores, captions)`.

    The figures a run reports every epoch and at its end (`metrics.cider_d`: pycocoevalcap's scorer on
    the caption tokenizer's words, no Java). `cache`: see `caption_settings`.
    """
    # Plain greedy search, whatever the model's recorded default holds (its constraints are not "greedy").
    outputs = caption_settings(model, split.examples, batch_size, [GREEDY], progress=progress, cache=cache)[GREEDY]
    return greedy_figures(split, [o["caption"] for o in outputs]), [o["caption"] for o in outputs]


def greedy_figures(split, captions):
    """CIDEr-D (`cider_d`) and nltk BLEU-1..4 (`nltk_bleu_N`) of one caption per example of `split`."""
    references = [list(e.captions) for e in split.examples]
    scores = {"cider_d": metrics_lib.cider_d(references, [c or coco_eval.EMPTY for c in captions])[0]}
    scores.update(metrics_lib.nltk_corpus_bleu(references, captions))
    return scores
