"""CHAIR's MS COCO vocabulary "captioner": this project's own synonym list, not the paper's.

Its figures are not comparable with the paper's; see `captioner.evaluation.chair`.
"""

import functools
import types

# vocabulary="captioner": this project's own list, not the paper's.
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

# "baby elephant", "adult giraffe", "mother bear": the animal, not a person (the authors' rule, widened).
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
def captioner_vocabulary():
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


def captioner_mentions(captions, vocabulary=None):
    """COCO categories that each caption mentions by captioner's own list, one per mention (module docstring).

    Args:
        captions: list of str.
        vocabulary: phrase -> category mapping, `captioner_vocabulary()` by default.

    Returns:
        list (one per caption) of lists of category names.
    """
    from captioner.evaluation import metrics

    vocabulary = captioner_vocabulary() if vocabulary is None else vocabulary
    longest = max(map(len, vocabulary), default=0)
    # The tokenizer keeps hyphens inside words ("t-shirt"); "motor-bike" and "hot-dog" are phrases here.
    return [mentions_in([part for word in words for part in word.split("-") if part], vocabulary, longest)
            for words in metrics.words_of(captions)]
