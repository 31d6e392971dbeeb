"""CHAIR: object hallucination in captions (Rohrbach et al. 2018, "Object Hallucination in Image Captioning").

    CHAIR-i = hallucinated object mentions / all object mentions
    CHAIR-s = captions with at least one hallucinated mention / all captions

An object mention is a word or phrase of a caption that names an object; it is
hallucinated when the image holds no such object. Both rates are fractions
(0-1, lower is better).

Counting follows the authors' code (github.com/LisaAnne/Hallucination,
`utils/chair.py`, the version behind the paper's tables): every mention counts,
so "a dog chasing another dog" makes two mentions of "dog", and one hallucinated
object named twice is two hallucinated mentions. (Their earlier top-level
`chair.py` took a set of the caption's words to decide which were hallucinated
but still counted mentions per word; neither version counts each object once
per caption.) Ground truth, also as in their code, is the objects of the
instance annotations together with the objects that the image's reference
captions mention, read with the same vocabulary: a "table" that the references
mention is there even where the annotators drew no "dining table" box.

Three vocabularies share the one computation (`chair`), each a mention
extractor (captions -> the object keys each names, one per mention), named in
`VOCABULARIES` and in `metrics.json` as `chair_vocabulary`:

- **"rohrbach2018"** (`rohrbach2018_mentions`, the default for MS COCO): the
  authors' own. Their synonym list (`ROHRBACH2018_SYNONYMS`, their
  `data/synonyms.txt`: 80 lines, one per category, the category's name first,
  416 entries) and their rules, applied in their order: the caption is lower
  cased and split by `nltk.word_tokenize`, every word is singularised by
  `pattern.en.singularize` ("buses" -> "bus", "people" -> "person"), then, left
  to right, two words that form one of their "double words" become one
  (`ROHRBACH2018_DOUBLE_WORDS`: "hot dog", "teddy bear", "motor cycle", "home
  plate", "train track", ...; "baby"/"adult" before an animal word and
  "passenger" before "jet" or "train" become the animal or the vehicle, so a
  "baby elephant" is an elephant and no person; "bow tie" becomes "tie",
  "toilet seat" "toilet"), "seat" is dropped from a caption that also says
  "toilet", and every remaining word that is an entry of the list is a mention
  of its line's category. A man sitting at a desk with a computer monitor is
  four mentions: person, dining table, laptop, tv.

  Their list and rules are kept with their quirks, since those are what the
  paper's figures count: "orange" is always the fruit, "ball" a sports ball,
  "bow" a tie, "seat" a chair, "ski" skis (a "ski slope" too); pattern
  singularises "bus" to "bu", so a singular "bus" is no mention (only "buses"
  are), and "ties" to "ty"; a double space in their list makes "motor bike" and
  "cheesecake" no entry (their "motor bike" merges into one word that then
  names nothing); "stove top oven" has three words and never merges, so it is
  two mentions of an oven; "iPhone" is never matched by lower-cased words;
  hyphenated words stay whole ("hot-dog" is no mention); "train tracks" merge
  into a word that names nothing, so their train is no mention, while a
  "mother giraffe" or a "passenger plane" holds a person. The tokenisation is nltk's
  (`word_tokenize`: Punkt sentences, then nltk's Treebank-style words) and the
  singularisation a rule-for-rule port of pattern's (`singularize`).
- **"captioner"** (`captioner_mentions`): this project's own list
  (`COCO_SYNONYMS`), which the paper does not use, so its figures are not
  comparable with the paper's. The 80 instance categories under their names in
  `instances_*.json`, with synonyms and plurals, matched on the caption
  tokenizer's words (`captioner.evaluation.metrics.words_of`), hyphenated words
  split into their parts ("motor-bike" is "motor bike"), the longest phrase
  first, so "hot dog" is a hot dog and not a dog, "teddy bear" no bear,
  "motor bike" a motorcycle and "microwave oven" no oven; words that often name
  something else ("desk", "seat", "monitor", "computer") are left out and
  "orange" before a noun is a colour.
- **"shapes"** (`shapes_mentions`, Shapes data): an object is a colour and a
  shape ("red circle"), named by a `COLOUR SHAPE` phrase as
  `captioner.evaluation.metrics.named_objects` finds it; "two red circles" is one mention.

Instance annotations are read by `instance_objects` (COCO) or
`captioner.evaluation.scoring.shapes_instances` (Shapes, whose annotations carry a
`color`).
"""

import json
import os
import types

from captioner.data.coco import DatasetError
from captioner.evaluation.chair_captioner import captioner_mentions
from captioner.evaluation.chair_rohrbach2018 import rohrbach2018_mentions

DEFAULT_VOCABULARY = "rohrbach2018"

# Vocabulary name (`chair_vocabulary` in metrics.json) -> what it counts, as the evaluation table says it.
VOCABULARIES = types.MappingProxyType({
    "rohrbach2018": "MS COCO objects as Rohrbach et al. 2018 count them: the authors' synonym list and rules",
    "captioner": "MS COCO objects by captioner's own synonym list, not the paper's: not comparable with its figures",
    "shapes": "Shapes colour-shape objects",
})


# ------------------------------------------------------------------------------------------------- shapes

def shapes_key(colour, shape):
    """The object key of a Shapes object: "red circle"."""
    return f"{colour} {shape}"


def shapes_mentions(captions):
    """Shapes objects ("red circle") that each caption mentions, one per `COLOUR SHAPE` phrase.

    Phrases are those `captioner.evaluation.metrics.named_objects` finds; a plural phrase
    ("two red circles") is one mention, as "two dogs" is one in COCO captions.

    Args:
        captions: list of str.

    Returns:
        list (one per caption) of lists of "colour shape" keys.
    """
    from captioner.evaluation import metrics

    mentions = []
    for caption in captions:
        # named_objects lists a plural phrase twice (it names two objects); one phrase is one mention.
        phrases = {colour_index: pair for pair, colour_index, _ in metrics.named_objects(caption)}
        mentions.append([shapes_key(*phrases[i]) for i in sorted(phrases)])
    return mentions


def mention_extractor(vocabulary=DEFAULT_VOCABULARY):
    """The mention extractor of a vocabulary named in `VOCABULARIES` (a function is returned as it is).

    Returns:
        function: list of captions -> list (one per caption) of lists of object keys, one per mention.
    """
    if callable(vocabulary):
        return vocabulary
    extractors = {"rohrbach2018": rohrbach2018_mentions, "captioner": captioner_mentions,
                  "shapes": shapes_mentions}
    if vocabulary not in extractors:
        raise ValueError(f"unknown CHAIR vocabulary {vocabulary!r}: one of {', '.join(extractors)}")
    return extractors[vocabulary]


def coco_mentions(captions, vocabulary=DEFAULT_VOCABULARY):
    """COCO categories that each caption mentions, one per mention, by the named vocabulary.

    Args:
        captions: list of str.
        vocabulary: "rohrbach2018" (the authors' list and rules) or "captioner" (this project's list).

    Returns:
        list (one per caption) of lists of category names.
    """
    return mention_extractor(vocabulary)(captions)


def ground_truth(instances, references, vocabulary=DEFAULT_VOCABULARY):
    """Each image's objects: its instance annotations and what its reference captions mention.

    Args:
        instances: list (one per image) of sets of object keys from the instance annotations.
        references: list (one per image) of lists of reference captions.
        vocabulary: a name of `VOCABULARIES` or a mention extractor (list of captions -> lists of object keys).

    Returns:
        list of sets of object keys.
    """
    extract = mention_extractor(vocabulary)
    flat = [caption for group in references for caption in group]
    mentioned = iter(extract(flat))
    return [set(objects).union(*[next(mentioned) for _ in group]) for objects, group in zip(instances, references)]


def chair(captions, truths, vocabulary=DEFAULT_VOCABULARY):
    """CHAIR-i and CHAIR-s of captions against each image's objects.

    Args:
        captions: list of str, one generated caption per image.
        truths: list of sets of object keys, each image's objects (see `ground_truth`, with the same vocabulary).
        vocabulary: a name of `VOCABULARIES` ("rohrbach2018", "captioner", "shapes") or a mention extractor
            (list of captions -> lists of object keys, one per mention).

    Returns:
        `(figures, hallucinated)`: figures is a dict with `chair_i` (hallucinated mentions / mentions;
        None when no caption mentions an object: undefined, not a perfect score), `chair_s` (captions
        with a hallucinated mention / captions) and the counts `chair_mentions`, `chair_hallucinated_mentions`, `chair_captions`,
        `chair_hallucinated_captions`; hallucinated is a list (one per caption) of the hallucinated
        object keys, one per hallucinated mention.
    """
    if len(captions) != len(truths):
        raise ValueError(f"{len(captions)} captions but {len(truths)} ground-truth object sets")
    if not captions:
        raise ValueError("CHAIR needs at least one caption")
    mentions = mention_extractor(vocabulary)(list(captions))
    hallucinated = [[name for name in named if name not in truth] for named, truth in zip(mentions, truths)]
    total = sum(map(len, mentions))
    wrong = sum(map(len, hallucinated))
    wrong_captions = sum(1 for names in hallucinated if names)
    figures = {"chair_i": wrong / total if total else None, "chair_s": wrong_captions / len(captions),
               "chair_mentions": total, "chair_hallucinated_mentions": wrong,
               "chair_captions": len(captions), "chair_hallucinated_captions": wrong_captions}
    return figures, hallucinated


# ---------------------------------------------------------------------------------------------- instances

def instance_files(split, root):
    """The instance annotation files that cover a split's images, from where the images are.

    An image `ROOT/images/NAME/...` (a COCO-format root, as Shapes writes it) is
    in `annotations/instances_NAME.json`; an image `ROOT/FOLDER/...` (MS COCO:
    train2014, val2014, train2017, val2017; also through the Karpathy split) in
    `annotations/instances_FOLDER.json`. A Karpathy test split, all of val2014,
    needs instances_val2014.json only.

    Args:
        split: `captioner.data.coco.Split`.
        root: str, the dataset root.

    Returns:
        dict path -> set of the split's image ids in it, or None if an image lies outside the root.
    """
    files = {}
    for example in split.examples:
        parts = os.path.relpath(example.path, root).split(os.sep)
        if len(parts) < 2 or parts[0] == os.pardir:
            return None
        folder = parts[1] if parts[0] == "images" and len(parts) > 2 else parts[0]
        path = os.path.join(root, "annotations", f"instances_{folder}.json")
        files.setdefault(path, set()).add(example.image_id)
    return files


def instance_objects(split, root):
    """COCO category names of each of a split's images, from the instance annotations that cover it.

    Only the files the split's images are in are read (`instance_files`), each
    once, keeping nothing but the category ids of the split's images.

    Args:
        split: `captioner.data.coco.Split`.
        root: str, the dataset root.

    Returns:
        dict image_id -> set of category names (empty for an image without annotations), or None when
        a file the split needs does not exist (CHAIR is then left out).
    """
    files = instance_files(split, root)
    if not files or not all(os.path.isfile(path) for path in files):
        return None
    objects = {}
    for path, image_ids in sorted(files.items()):
        objects.update(read_instances(path, image_ids))
    return objects


def read_instances(path, image_ids):
    """Category names of `image_ids` in one COCO instances file, read in one pass.

    Annotations are cut down to (image id, category id) while the JSON is parsed,
    so the segmentations of a 450 MB instances_train2014.json never stay in memory.

    Args:
        path: str, an `instances_*.json`.
        image_ids: set of int, the images wanted; each must be in the file's `images`.

    Returns:
        dict image_id -> set of category names.
    """
    def keep(entry):
        if "category_id" in entry and "image_id" in entry:  # an annotation
            return (entry["image_id"], entry["category_id"]) if entry["image_id"] in image_ids else None
        if "counts" in entry and "size" in entry:  # a run-length-encoded segmentation
            return None
        return entry

    try:
        with open(path) as handle:
            payload = json.load(handle, object_hook=keep)
    except json.JSONDecodeError as error:
        raise DatasetError(f"Malformed JSON in instances file {path}: {error}") from None
    if not isinstance(payload, dict) or not all(isinstance(payload.get(k), list)
                                                for k in ("images", "annotations", "categories")):
        raise DatasetError(f"{path} is not a COCO instances file: it needs 'images', 'annotations' and "
                           f"'categories' lists")
    try:
        names = {c["id"]: c["name"] for c in payload["categories"]}
        known = {image["id"] for image in payload["images"]}
    except (KeyError, TypeError) as error:
        raise DatasetError(f"{path}: a category or image entry lacks {error}") from None
    missing = sorted(image_ids - known)
    if missing:
        raise DatasetError(f"{path}: {len(missing)} of the split's images are not in its 'images', "
                           f"first: {missing[:5]}")
    objects = {image_id: set() for image_id in image_ids}
    for annotation in payload["annotations"]:
        if annotation is None:
            continue
        if not isinstance(annotation, tuple):  # `keep` cut every annotation with an image and a category
            raise DatasetError(f"{path} is not a COCO instances file: an annotation lacks 'image_id' or "
                               f"'category_id'")
        image_id, category_id = annotation
        if category_id not in names:
            raise DatasetError(f"{path}: an annotation of image {image_id} has unknown category {category_id}")
        objects[image_id].add(names[category_id])
    return objects
