"""Captioning a split and scoring it: COCO metrics, nltk BLEU, CHAIR where the split has instance annotations
and, on Shapes, object F1 and attention pointing."""

import json
import os
import sys

import keras

from captioner.evaluation import chair
from captioner.evaluation import coco_eval
from captioner.evaluation import metrics as metrics_lib
from captioner.data import coco
from captioner.data.pipeline import image_dataset


def caption_examples(model, examples, batch_size, beam_size=None, alpha=None, with_attention=False, progress=True):
    """Captions of `examples` in order, decoded in batches in graph.

    `beam_size` and `alpha` default to the model's recorded decoding (`Captioner.default_decoding`).

    Returns a list of dicts with `image_id`, `caption`, `score` and, with
    `with_attention`, `attention [L, P]` (one row per emitted word).
    """
    dataset = image_dataset([e.path for e in examples], model.image_size, model.normalization, batch_size)
    bar = keras.utils.Progbar(len(examples), unit_name="image") if progress else None
    outputs, position = [], 0
    for images in dataset:
        result = model.generate(images, beam_size=beam_size, alpha=alpha)
        captions = result["captions"].numpy()
        scores = result["scores"].numpy()
        attention = result["attention"].numpy() if with_attention else None
        for row in range(len(captions)):
            entry = {"image_id": examples[position].image_id, "caption": captions[row].decode("utf-8"),
                     "score": float(scores[row])}
            if with_attention:
                entry["attention"] = attention[row]
            outputs.append(entry)
            position += 1
        if bar:
            bar.add(len(captions))
    return outputs


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


def chair_figures(outputs, split, root, shapes_objects=None):
    """CHAIR (`captioner.evaluation.chair`) of captioned outputs, where the split has instance annotations.

    On Shapes data (`shapes_objects`, from `shapes_instances`) an object is a
    colour and a shape; otherwise the MS COCO instance files covering the split's
    images are read (`chair.instance_objects`). Each image's ground truth is its
    annotated objects and those its references mention, as in Rohrbach et al.

    Args:
        outputs: list of dicts with `image_id` and `caption`.
        split: `captioner.data.coco.Split` that was captioned.
        root: str, the dataset root.
        shapes_objects: image_id -> list of Shapes objects, or None.

    Returns:
        `(figures, hallucinated)`: the `chair.chair` figures plus `chair_vocabulary`, and image_id -> the
        hallucinated object keys of its caption; `({}, {})` without instance annotations.
    """
    if shapes_objects is not None:
        instances = {i: {chair.shapes_key(o["colour"], o["shape"]) for o in objects}
                     for i, objects in shapes_objects.items()}
        extract, vocabulary = chair.shapes_mentions, "Shapes colour-shape objects"
    else:
        try:
            instances = chair.instance_objects(split, root)
        except coco.DatasetError as error:  # an optional figure: the captions and scores still count
            print(f"CHAIR left out: {error}", file=sys.stderr)
            return {}, {}
        extract, vocabulary = chair.coco_mentions, "MS COCO categories, synonyms and plurals (captioner/evaluation/chair.py)"
        if instances is None:
            files = chair.instance_files(split, root) or {}
            absent = [p for p in sorted(files) if not os.path.isfile(p)]
            if len(absent) < len(files):  # some of the split's instance files are here, not all
                print(f"CHAIR left out: the split's images need {', '.join(absent)}, which do not exist",
                      file=sys.stderr)
            return {}, {}
    ids = [o["image_id"] for o in outputs]
    references = references_of(split)
    truths = chair.ground_truth([instances.get(i, set()) for i in ids], [references[i] for i in ids], extract)
    figures, hallucinated = chair.chair([o["caption"] for o in outputs], truths, extract)
    figures["chair_vocabulary"] = vocabulary
    return figures, dict(zip(ids, hallucinated))


def evaluate_model(model, split, root, batch_size=64, beam_size=None, alpha=None, use_java=None, progress=True):
    """Captions a split and scores it (decoding: the model's default where not given).

    Returns `(metrics, outputs, per_image)`.
    """
    beam_size, alpha = model.decoding_settings(beam_size, alpha)
    outputs = caption_examples(model, split.examples, batch_size, beam_size, alpha, with_attention=True,
                               progress=progress)
    predictions = {o["image_id"]: o["caption"] for o in outputs}
    empty = [i for i, c in predictions.items() if not c.strip()]
    if empty:
        # COCO scorers reject empty hypotheses; a model may still produce one.
        predictions.update({i: coco_eval.EMPTY for i in empty})
    metrics, per_image = score_predictions(references_of(split), predictions, use_java)
    found = shapes_instances(root, split.name)
    metrics.update(shapes_figures(outputs, root, split.name, model.encoder.grid_shape, found))
    figures, hallucinated = chair_figures(outputs, split, root, found[0] if found else None)
    metrics.update(figures)
    for image_id, names in hallucinated.items():
        per_image[image_id]["chair_hallucinated"] = names
    metrics.update({"split": split.name, "images": len(outputs), "empty_captions": len(empty),
                    "decoding": "greedy" if beam_size == 1 else f"beam {beam_size}, alpha {alpha:g}",
                    "beam_size": beam_size, "length_penalty": alpha,
                    "scale": coco_eval.SCALE})
    return metrics, outputs, per_image


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
        lines.append(f"  CHAIR-i    {metrics['chair_i']:.4f} ({metrics['chair_hallucinated_mentions']} of "
                     f"{metrics['chair_mentions']} object mentions hallucinated)")
        lines.append(f"  CHAIR-s    {metrics['chair_s']:.4f} ({metrics['chair_hallucinated_captions']} of "
                     f"{metrics['chair_captions']} captions with one)")
        if "chair_vocabulary" in metrics:
            lines.append(f"  objects: {metrics['chair_vocabulary']}")
    if metrics.get("genericness"):
        lines.append("Genericness (shares 0-1 of the captions; vocabulary in distinct words)")
        lines.append(f"  {'decoding':<34} {'distinct':>8} {'vocab':>6} {'copied':>7} {'rep. bigram':>11}")
        for label, g in metrics["genericness"].items():
            copied = "n/a" if g["copied_from_train"] is None else f"{g['copied_from_train']:.4f}"
            lines.append(f"  {label:<34} {g['distinct_captions']:>8.4f} {g['vocabulary_used']:>6d} {copied:>7} "
                         f"{g['repeated_bigram']:>11.4f}")
        lines.append("  distinct: distinct captions / images; copied: captions equal to a training caption")
    return "\n".join(lines)


def genericness_of(outputs, training_captions=None):
    """`metrics.genericness` of captioned outputs (see there)."""
    return metrics_lib.genericness([o["caption"] for o in outputs], training_captions)


def to_json_outputs(outputs):
    return [{k: v for k, v in o.items() if k != "attention"} for o in outputs]


def score_split(model, split, batch_size, progress=True):
    """Greedy captions of a split and their nltk corpus BLEU; returns `(scores, captions)`."""
    outputs = caption_examples(model, split.examples, batch_size, 1, 0.0, progress=progress)
    captions = [o["caption"] for o in outputs]
    references = list(references_of(split).values())
    return metrics_lib.nltk_corpus_bleu(references, captions), captions
