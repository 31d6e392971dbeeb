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

Two vocabularies share the one computation (`chair`), through a mention
extractor (captions -> the object keys each names, one per mention):

- **MS COCO** (`coco_mentions`): the 80 instance categories under their names
  in `instances_*.json`, with synonyms and plurals (`COCO_SYNONYMS`, written for
  this project). Captions are split into words by the caption tokenizer
  (`captioner.evaluation.metrics.words_of`), hyphenated words into their parts
  ("motor-bike" is "motor bike"), and the longest phrase wins, so "hot dog" is a
  hot dog and not a dog, "teddy bear" no bear, "motor bike" a motorcycle and
  "microwave oven" no oven.
- **Shapes** (`shapes_mentions`): an object is a colour and a shape
  ("red circle"), named by a `COLOUR SHAPE` phrase as
  `captioner.evaluation.metrics.named_objects` finds it; "two red circles" is one mention.

Instance annotations are read by `instance_objects` (COCO) or
`captioner.evaluation.scoring.shapes_instances` (Shapes, whose annotations carry a
`color`).
"""

import functools
import json
import os
import types

from captioner.data.coco import DatasetError

# Words and phrases naming each MS COCO category, singular; `plural` makes the plurals. Category names are
# those of instances_{train,val}{2014,2017}.json. Left out on purpose, because they name something else too
# often in captions: "pitcher" (a jug as often as a baseball player), "glass" (windows), "glove" (worn;
# "baseball glove" and "mitt" count), "seat" (of a bike,
# a toilet, a car), "board", "ski" ("ski slope", "ski lift"; "skis" counts), "bag", "computer", "desk",
# "monitor", "screen", "couple" ("a couple of"), "cook", "police" and the sports that share a ball's
# name ("playing baseball").
COCO_SYNONYMS = types.MappingProxyType({
    "person": ("person", "man", "woman", "boy", "girl", "child", "kid", "baby", "toddler", "infant", "adult",
               "teenager", "teen", "youngster", "guy", "lady", "gentleman", "human", "someone", "somebody",
               "mother", "father", "mom", "dad", "son", "daughter", "brother", "sister", "husband", "wife",
               "bride", "groom", "friend", "player", "skier", "snowboarder", "surfer", "skateboarder", "skater",
               "rider", "biker", "cyclist", "bicyclist", "batter", "catcher", "umpire", "athlete", "driver",
               "passenger", "pedestrian", "tourist", "spectator", "crowd", "officer", "policeman",
               "policewoman", "cop", "soldier", "worker", "chef", "doctor", "nurse", "student", "teacher",
               "businessman", "businesswoman", "fireman", "firefighter", "cowboy"),
    "bicycle": ("bicycle", "bike"),
    "car": ("car", "automobile", "sedan", "taxi", "cab", "suv", "jeep", "van", "minivan"),
    "motorcycle": ("motorcycle", "motorbike", "motor bike", "motor cycle", "dirt bike", "scooter", "moped"),
    "airplane": ("airplane", "aeroplane", "air plane", "plane", "jet", "airliner", "jetliner", "aircraft"),
    "bus": ("bus", "double decker", "double decker bus"),
    "train": ("train", "locomotive", "tram", "train car"),
    "truck": ("truck", "pickup truck", "lorry", "fire engine"),
    "boat": ("boat", "ship", "sailboat", "sail boat", "canoe", "kayak", "yacht", "ferry", "tugboat",
             "speedboat", "rowboat"),
    "traffic light": ("traffic light", "traffic signal", "stop light", "stoplight"),
    "fire hydrant": ("fire hydrant", "hydrant"),
    "stop sign": ("stop sign",),
    "parking meter": ("parking meter",),
    "bench": ("bench",),
    "bird": ("bird", "pigeon", "seagull", "gull", "duck", "goose", "swan", "parrot", "crow", "sparrow", "owl",
             "eagle", "hawk", "rooster"),
    "cat": ("cat", "kitten", "kitty"),
    "dog": ("dog", "puppy", "pup", "bulldog", "bull dog"),
    "horse": ("horse", "pony", "foal", "stallion", "mare", "colt"),
    "sheep": ("sheep", "lamb", "ram", "ewe"),
    "cow": ("cow", "cattle", "bull", "calf", "ox", "heifer"),
    "elephant": ("elephant",),
    "bear": ("bear",),
    "zebra": ("zebra",),
    "giraffe": ("giraffe",),
    "backpack": ("backpack", "back pack", "knapsack", "rucksack"),
    "umbrella": ("umbrella", "parasol"),
    "handbag": ("handbag", "hand bag", "purse"),
    "tie": ("tie", "necktie", "bow tie"),
    "suitcase": ("suitcase", "suit case", "luggage"),
    "frisbee": ("frisbee",),
    "skis": ("skis",),
    "snowboard": ("snowboard", "snow board"),
    "sports ball": ("sports ball", "ball"),
    "kite": ("kite",),
    "baseball bat": ("baseball bat", "bat"),
    "baseball glove": ("baseball glove", "mitt", "baseball mitt", "catcher 's mitt"),
    "skateboard": ("skateboard", "skate board"),
    "surfboard": ("surfboard", "surf board"),
    "tennis racket": ("tennis racket", "racket", "tennis racquet", "racquet"),
    "bottle": ("bottle",),
    "wine glass": ("wine glass", "champagne glass", "goblet"),
    "cup": ("cup", "mug", "teacup"),
    "fork": ("fork",),
    "knife": ("knife",),
    "spoon": ("spoon",),
    "bowl": ("bowl",),
    "banana": ("banana",),
    "apple": ("apple",),
    "sandwich": ("sandwich", "burger", "hamburger", "cheeseburger"),
    "orange": ("orange",),
    "broccoli": ("broccoli",),
    "carrot": ("carrot",),
    "hot dog": ("hot dog", "hotdog"),
    "pizza": ("pizza",),
    "donut": ("donut", "doughnut"),
    "cake": ("cake", "cupcake", "cheesecake"),
    "chair": ("chair", "armchair", "stool"),
    "couch": ("couch", "sofa", "loveseat", "love seat"),
    "potted plant": ("potted plant", "plant", "houseplant", "house plant"),
    "bed": ("bed",),
    "dining table": ("dining table", "table"),
    "toilet": ("toilet", "toilet seat", "toilet bowl", "urinal"),
    "tv": ("tv", "television", "tv set", "television set"),
    "laptop": ("laptop", "laptop computer"),
    "mouse": ("mouse", "computer mouse"),
    "remote": ("remote", "remote control", "controller"),
    "keyboard": ("keyboard",),
    "cell phone": ("cell phone", "cellphone", "phone", "smartphone", "smart phone", "mobile phone"),
    "microwave": ("microwave", "microwave oven"),
    "oven": ("oven", "stove", "stove top", "stovetop"),
    "toaster": ("toaster", "toaster oven"),
    "sink": ("sink",),
    "refrigerator": ("refrigerator", "fridge"),
    "book": ("book",),
    "clock": ("clock",),
    "vase": ("vase",),
    "scissors": ("scissors", "scissor"),
    "teddy bear": ("teddy bear", "teddy", "stuffed animal", "stuffed bear"),
    "hair drier": ("hair drier", "hair dryer", "hairdryer", "blow dryer"),
    "toothbrush": ("toothbrush", "tooth brush"),
})

# Phrases whose words would otherwise name an object they do not show: a train track may have no train, a
# "baby animal" is no baby. Longest match makes them win over their parts; they count as no mention.
NON_OBJECT_PHRASES = ("train track", "train station", "train platform", "bus stop", "bus station",
                      "bike lane", "bike path", "toilet paper", "mouse pad", "jet ski", "baby animal",
                      "adult animal", "cd player", "dvd player", "record player", "mp3 player", "video player",
                      "music player")

# "baby elephant", "adult giraffe", "mother bear": the animal, not a person (as the authors' code rules).
ANIMAL_QUALIFIERS = ("baby", "adult", "mother")
ANIMALS = ("bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe")
# "passenger train", "passenger jet": the vehicle, and no passenger seen.
VEHICLES = ("bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat")

_IRREGULAR_PLURALS = types.MappingProxyType({
    "person": "people", "child": "children", "mouse": "mice", "knife": "knives", "wife": "wives",
    "calf": "calves", "goose": "geese", "ox": "oxen", "sheep": "sheep", "aircraft": "aircraft",
    "cattle": "cattle", "broccoli": "broccoli", "luggage": "luggage", "skis": "skis", "scissors": "scissors",
    "scissor": "scissors", "human": "humans",
})

# "orange" is a colour more often than a fruit in captions ("a man in an orange shirt"). It is the fruit
# only where no noun follows it: at the end of a caption, or before one of these words (and "and"/"or" not
# followed by a colour: "orange and white cat" is a colour), unless a linking verb or "COLOUR and" comes
# before it ("the cat is orange", "black and orange"). "oranges" is always the fruit.
_AFTER_ORANGE_FRUIT = frozenset(
    "and or on in with next near by beside sitting lying laying is are was of at to that from for inside into "
    "under over above below behind between among slice slices wedge wedges half halves peel peels segment "
    "segments".split())
_BEFORE_ORANGE_COLOUR = frozenset("is are was were painted colored coloured".split())
_COLOURS = frozenset("white black red blue green yellow brown gray grey pink purple silver gold tan beige orange"
                     .split())


def plural(phrase):
    """The plural of a noun phrase, made on its last word (irregular table, then English spelling rules).

    Args:
        phrase: str, one or more words, singular ("hot dog", "wine glass", "policeman").
    """
    *head, word = phrase.split(" ")
    if word in _IRREGULAR_PLURALS:
        word = _IRREGULAR_PLURALS[word]
    elif word.endswith("man"):
        word = word[:-3] + "men"  # man, woman, policeman
    elif word.endswith(("s", "x", "z", "ch", "sh")):
        word += "es"
    elif word.endswith("y") and word[-2:-1] not in ("a", "e", "i", "o", "u"):
        word = word[:-1] + "ies"
    else:
        word += "s"
    return " ".join(head + [word])


@functools.cache
def coco_vocabulary():
    """Phrase (tuple of words) -> COCO category name, or None for a phrase that names no object.

    Built from `COCO_SYNONYMS` (each phrase and its plural), `NON_OBJECT_PHRASES`
    and the animal and vehicle qualifiers; read-only.
    """
    vocabulary = {}
    for name, phrases in COCO_SYNONYMS.items():
        for phrase in phrases:
            for form in (phrase, plural(phrase)):
                vocabulary[tuple(form.split(" "))] = name
    for qualifiers, categories in ((ANIMAL_QUALIFIERS, ANIMALS), (("passenger",), VEHICLES)):
        for name in categories:
            for phrase in COCO_SYNONYMS[name]:
                for form in (phrase, plural(phrase)):
                    for qualifier in qualifiers:
                        vocabulary[(qualifier, *form.split(" "))] = name
    for phrase in NON_OBJECT_PHRASES:
        for form in (phrase, plural(phrase)):
            vocabulary[tuple(form.split(" "))] = None
    return types.MappingProxyType(vocabulary)


def _orange_is_a_colour(words, index):
    """Whether the word "orange" at `index` is a colour rather than the fruit (see `_AFTER_ORANGE_FRUIT`)."""
    previous = words[index - 1] if index else None
    if previous in _BEFORE_ORANGE_COLOUR or (previous in ("and", "or") and index > 1 and words[index - 2] in _COLOURS):
        return True
    following = words[index + 1:index + 3]
    if not following:
        return False
    if following[0] in ("and", "or"):
        return len(following) > 1 and following[1] in _COLOURS
    return following[0] not in _AFTER_ORANGE_FRUIT


def mentions_in(words, vocabulary, longest=None):
    """Objects named by a caption's words, one per mention, in caption order; longest phrase first.

    Args:
        words: list of str, the caption's words (lower case).
        vocabulary: mapping of tuple of words -> object name, or None for a phrase that names nothing.
        longest: int, the most words of a phrase in `vocabulary` (computed when not given).

    Returns:
        list of object names.
    """
    longest = max(map(len, vocabulary), default=0) if longest is None else longest
    found, index = [], 0
    while index < len(words):
        for length in range(min(longest, len(words) - index), 0, -1):
            phrase = tuple(words[index:index + length])
            if phrase in vocabulary:
                break
        else:
            index += 1
            continue
        name = vocabulary[phrase]
        if name is not None and not (phrase == ("orange",) and _orange_is_a_colour(words, index)):
            found.append(name)
        index += length
    return found


def coco_mentions(captions, vocabulary=None):
    """COCO categories that each caption mentions, one entry per mention (see the module docstring).

    Args:
        captions: list of str.
        vocabulary: phrase -> category mapping, `coco_vocabulary()` by default.

    Returns:
        list (one per caption) of lists of category names.
    """
    from captioner.evaluation import metrics

    vocabulary = coco_vocabulary() if vocabulary is None else vocabulary
    longest = max(map(len, vocabulary), default=0)
    # The tokenizer keeps hyphens inside words ("t-shirt"); "motor-bike" and "hot-dog" are phrases here.
    return [mentions_in([part for word in words for part in word.split("-") if part], vocabulary, longest)
            for words in metrics.words_of(captions)]


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


def ground_truth(instances, references, extract):
    """Each image's objects: its instance annotations and what its reference captions mention.

    Args:
        instances: list (one per image) of sets of object keys from the instance annotations.
        references: list (one per image) of lists of reference captions.
        extract: mention extractor, e.g. `coco_mentions` (list of captions -> lists of object keys).

    Returns:
        list of sets of object keys.
    """
    flat = [caption for group in references for caption in group]
    mentioned = iter(extract(flat))
    return [set(objects).union(*[next(mentioned) for _ in group]) for objects, group in zip(instances, references)]


def chair(captions, truths, extract=coco_mentions):
    """CHAIR-i and CHAIR-s of captions against each image's objects.

    Args:
        captions: list of str, one generated caption per image.
        truths: list of sets of object keys, each image's objects (see `ground_truth`).
        extract: mention extractor (list of captions -> lists of object keys, one per mention):
            `coco_mentions`, `shapes_mentions` or any such function.

    Returns:
        `(figures, hallucinated)`: figures is a dict with `chair_i` (hallucinated mentions / mentions,
        0 when there are no mentions), `chair_s` (captions with a hallucinated mention / captions) and the
        counts `chair_mentions`, `chair_hallucinated_mentions`, `chair_captions`,
        `chair_hallucinated_captions`; hallucinated is a list (one per caption) of the hallucinated
        object keys, one per hallucinated mention.
    """
    if len(captions) != len(truths):
        raise ValueError(f"{len(captions)} captions but {len(truths)} ground-truth object sets")
    if not captions:
        raise ValueError("CHAIR needs at least one caption")
    mentions = extract(list(captions))
    hallucinated = [[name for name in named if name not in truth] for named, truth in zip(mentions, truths)]
    total = sum(map(len, mentions))
    wrong = sum(map(len, hallucinated))
    wrong_captions = sum(1 for names in hallucinated if names)
    figures = {"chair_i": wrong / total if total else 0.0, "chair_s": wrong_captions / len(captions),
               "chair_mentions": total, "chair_hallucinated_mentions": wrong,
               "chair_captions": len(captions), "chair_hallucinated_captions": wrong_captions}
    return figures, hallucinated


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
