"""A full-size stand-in for MS COCO 2014, to rehearse COCO-scale runs without the download.

    python -m captioner.data.synthetic.rehearsal OUT_DIR [--scale 1.0] [--pool 300] [--seed 0]

writes MS COCO 2014's layout and file formats with synthetic content: the
82,783 + 40,504 JPEGs of `train2014/` and `val2014/` (hard links to a pool of
`--pool` generated pictures of COCO's sizes, so the tree costs inodes, not
gigabytes), the captions and instances files of both splits with every field
the real ones have, and Karpathy's `dataset_coco.json` (113,287 / 5,000 /
5,000). `--scale` shrinks every count proportionally. Captions are made of a
Zipfian synthetic vocabulary whose size after a min-count of 5 is about
COCO's (about 10k words), mention the COCO categories of the image's
instances (and now and then one that is not there, so that object
hallucination figures such as CHAIR mean something), and carry real COCO's
quirks of case, punctuation and white space.

Everything is a function of (scale, pool, seed), and of the Pillow / libjpeg
version for the JPEG bytes. Files are written streaming (annotation parts to
disk, assembled at the end) and each JSON file atomically; `REHEARSAL.json`,
written last, marks a complete tree. Rerunning on a complete tree with the
same parameters does nothing; with others it is refused (exit status 2). An
interrupted build resumes when rerun with the same parameters.
"""

import argparse
import bisect
import dataclasses
import datetime
import itertools
import json
import math
import os
import random
import shutil
import string
import sys
import time

import numpy as np
from PIL import Image

from captioner import files

FORMAT_VERSION = 1
MARKER = "REHEARSAL.json"
STARTED = ".rehearsal-started.json"  # parameters of a build in progress, so a rerun can resume it
POOL_DIR = ".pool"
PARTS_DIR = ".parts"

# MS COCO 2014 and Karpathy's split, as published.
COCO_IMAGES = {"val2014": 40504, "train2014": 82783}
KARPATHY_HELD_OUT = 5000  # images of val2014 in each of Karpathy's val and test
# The id spaces real COCO 2014 draws from: image ids up to 581,929, caption ids up to about 830k,
# instance ids up to about 2.2M, and crowd annotations far above (900100xxxxxx).
IMAGE_ID_SPACE = 581_929
CAPTION_ID_SPACE = 829_717
INSTANCE_ID_SPACE = 2_232_119
CROWD_ID_BASE = 900_100_000_000
LONG_SIDE = 640
JPEG_QUALITY = 90

INFO = {
    "description": "Synthetic rehearsal of the 2014 MS COCO dataset (captioner.data.synthetic.rehearsal); not real data.",
    "url": "http://mscoco.org",
    "version": "1.0",
    "year": 2014,
    "contributor": "Microsoft COCO group (format); captioner (content)",
    "date_created": "2015-01-27 09:11:52.357475",
}

LICENSES = [
    {"url": "http://creativecommons.org/licenses/by-nc-sa/2.0/", "id": 1,
     "name": "Attribution-NonCommercial-ShareAlike License"},
    {"url": "http://creativecommons.org/licenses/by-nc/2.0/", "id": 2, "name": "Attribution-NonCommercial License"},
    {"url": "http://creativecommons.org/licenses/by-nc-nd/2.0/", "id": 3,
     "name": "Attribution-NonCommercial-NoDerivs License"},
    {"url": "http://creativecommons.org/licenses/by/2.0/", "id": 4, "name": "Attribution License"},
    {"url": "http://creativecommons.org/licenses/by-sa/2.0/", "id": 5, "name": "Attribution-ShareAlike License"},
    {"url": "http://creativecommons.org/licenses/by-nd/2.0/", "id": 6, "name": "Attribution-NoDerivs License"},
    {"url": "http://flickr.com/commons/usage/", "id": 7, "name": "No known copyright restrictions"},
    {"url": "http://www.usa.gov/copyright.shtml", "id": 8, "name": "United States Government Work"},
]
_LICENSE_WEIGHTS = (0.32, 0.12, 0.27, 0.14, 0.07, 0.05, 0.02, 0.01)

# The 80 COCO categories with their real ids (1..90 with gaps) and supercategories.
_CATEGORY_TABLE = (
    ("person", [(1, "person")]),
    ("vehicle", [(2, "bicycle"), (3, "car"), (4, "motorcycle"), (5, "airplane"), (6, "bus"), (7, "train"),
                 (8, "truck"), (9, "boat")]),
    ("outdoor", [(10, "traffic light"), (11, "fire hydrant"), (13, "stop sign"), (14, "parking meter"),
                 (15, "bench")]),
    ("animal", [(16, "bird"), (17, "cat"), (18, "dog"), (19, "horse"), (20, "sheep"), (21, "cow"),
                (22, "elephant"), (23, "bear"), (24, "zebra"), (25, "giraffe")]),
    ("accessory", [(27, "backpack"), (28, "umbrella"), (31, "handbag"), (32, "tie"), (33, "suitcase")]),
    ("sports", [(34, "frisbee"), (35, "skis"), (36, "snowboard"), (37, "sports ball"), (38, "kite"),
                (39, "baseball bat"), (40, "baseball glove"), (41, "skateboard"), (42, "surfboard"),
                (43, "tennis racket")]),
    ("kitchen", [(44, "bottle"), (46, "wine glass"), (47, "cup"), (48, "fork"), (49, "knife"), (50, "spoon"),
                 (51, "bowl")]),
    ("food", [(52, "banana"), (53, "apple"), (54, "sandwich"), (55, "orange"), (56, "broccoli"), (57, "carrot"),
              (58, "hot dog"), (59, "pizza"), (60, "donut"), (61, "cake")]),
    ("furniture", [(62, "chair"), (63, "couch"), (64, "potted plant"), (65, "bed"), (67, "dining table"),
                   (70, "toilet")]),
    ("electronic", [(72, "tv"), (73, "laptop"), (74, "mouse"), (75, "remote"), (76, "keyboard"),
                    (77, "cell phone")]),
    ("appliance", [(78, "microwave"), (79, "oven"), (80, "toaster"), (81, "sink"), (82, "refrigerator")]),
    ("indoor", [(84, "book"), (85, "clock"), (86, "vase"), (87, "scissors"), (88, "teddy bear"),
                (89, "hair drier"), (90, "toothbrush")]),
)
CATEGORIES = [{"supercategory": supercategory, "id": category_id, "name": name}
              for supercategory, members in _CATEGORY_TABLE for category_id, name in members]
CATEGORY_IDS = {c["name"]: c["id"] for c in CATEGORIES}

# How often a category occurs, roughly in real COCO's order (person far ahead); weights fall off as 1 / rank.
_FREQUENCY_ORDER = (
    "person", "car", "chair", "book", "bottle", "cup", "dining table", "bowl", "traffic light", "handbag",
    "umbrella", "bird", "boat", "truck", "bench", "sheep", "banana", "kite", "motorcycle", "backpack",
    "potted plant", "cow", "wine glass", "carrot", "knife", "broccoli", "donut", "bicycle", "skis", "vase",
    "horse", "tie", "cell phone", "orange", "cake", "sports ball", "clock", "suitcase", "spoon", "surfboard",
    "bus", "apple", "pizza", "tv", "couch", "remote", "sink", "skateboard", "elephant", "dog", "fork", "zebra",
    "airplane", "giraffe", "laptop", "tennis racket", "sandwich", "train", "cat", "baseball glove", "oven",
    "baseball bat", "hot dog", "keyboard", "snowboard", "frisbee", "refrigerator", "mouse", "stop sign",
    "toothbrush", "fire hydrant", "teddy bear", "microwave", "scissors", "bed", "parking meter", "toilet", "bear",
    "toaster", "hair drier",
)
assert sorted(_FREQUENCY_ORDER) == sorted(CATEGORY_IDS), "the frequency order must list the 80 categories"
_THEME_IDS = [CATEGORY_IDS[name] for name in _FREQUENCY_ORDER]
_THEME_CUMULATIVE = list(itertools.accumulate([4.0] + [1.0 / (rank + 1) for rank in range(1, 80)]))

# Words a caption uses for a category (a CHAIR-style metric maps them back); the first is the usual one.
MENTIONS = {
    "person": ("man", "woman", "person", "boy", "girl", "child", "player", "guy", "lady"),
    "bicycle": ("bicycle", "bike"), "motorcycle": ("motorcycle", "motorbike"),
    "airplane": ("airplane", "plane", "jet"), "fire hydrant": ("fire hydrant", "hydrant"),
    "cow": ("cow", "cattle"), "handbag": ("handbag", "purse"), "suitcase": ("suitcase", "luggage"),
    "sports ball": ("ball", "soccer ball"), "baseball bat": ("bat", "baseball bat"),
    "baseball glove": ("glove", "baseball glove"), "tennis racket": ("tennis racket", "racket"),
    "wine glass": ("wine glass", "glass"), "donut": ("donut", "doughnut"), "couch": ("couch", "sofa"),
    "potted plant": ("plant", "potted plant"), "dining table": ("table", "dining table"),
    "tv": ("tv", "television"), "cell phone": ("phone", "cell phone"), "refrigerator": ("refrigerator", "fridge"),
    "hair drier": ("hair dryer", "hair drier"),
}
MENTIONS.update({name: (name,) for name in CATEGORY_IDS if name not in MENTIONS})

_IRREGULAR_PLURALS = {
    "man": "men", "woman": "women", "person": "people", "people": "people", "child": "children",
    "sheep": "sheep", "cattle": "cattle", "luggage": "luggage", "skis": "skis", "scissors": "scissors",
    "mouse": "mice", "knife": "knives", "broccoli": "broccoli", "lady": "ladies", "guy": "guys",
}

# The fixed words of the caption templates.
_DETERMINERS = (("a", 0.66), ("the", 0.2), ("two", 0.05), ("some", 0.03), ("three", 0.02), ("many", 0.02),
                ("several", 0.02))
_PLURAL_DETERMINERS = frozenset({"two", "some", "three", "many", "several"})
_PREPOSITIONS = (("on", 0.2), ("in", 0.2), ("with", 0.18), ("of", 0.1), ("next to", 0.06), ("near", 0.05),
                 ("at", 0.05), ("by", 0.04), ("under", 0.03), ("behind", 0.03), ("in front of", 0.03),
                 ("on top of", 0.03))
_ADVERBS = ("outside", "together", "nearby", "inside", "outdoors", "here", "down", "up")
_FUNCTION_WORDS = frozenset(
    "a an the two three some many several and is are of on in with next to near at by under behind front top "
    "outside together nearby inside outdoors here down up mr mrs ms dr st jr sr vs etc ave mt rd ft co".split())

# Image shapes: 640 on the long side; the short side's distribution is COCO-like (480 the most common).
_SHORT_SIDES = ((480, 0.55), (427, 0.12), (426, 0.06), (424, 0.05), (428, 0.04), (425, 0.04), (512, 0.03),
                (360, 0.03), (383, 0.02), (400, 0.02), (640, 0.02), (453, 0.01), (429, 0.01))
PORTRAIT_SHARE = 0.2
GREY_SHARE = 0.02

# Captions and instances per image.
_EXTRA_CAPTIONS = ((6, 0.004), (7, 0.0008))  # real 2014: 414,113 captions for 82,783 train images
_CROWD_IMAGE_SHARE = 0.08  # images with one iscrowd=1 annotation (COCO: about 1% of all annotations)
MAX_INSTANCES = 15
_GEOMETRY_CHUNK = 20000  # outlines drawn at once: vectorised, yet a few MB of Python floats at a time

# The synthetic vocabulary: sizes and Zipf exponent chosen so that a min-count of 5 over the full train
# captions keeps about 10k words, COCO's figure (at 1.3, seed 0: 9,552 words of 26,907 over 414,381 captions).
_VOCABULARY_SIZES = {"noun": 18000, "adjective": 7000, "verb": 4000}
_ZIPF_EXPONENT = 1.3


@dataclasses.dataclass(frozen=True)
class Rehearsal:
    """What `build` wrote (or found already written).

    Args:
        root: str, the tree's folder (absolute).
        scale: float, pool: int, seed: int: the parameters it was built with.
        counts: dict, images per folder, captions and instances per file, Karpathy images per split, pool
            size, and how many image files are hard links and how many copies.
        paths: dict, absolute paths of the image folders, annotation files, Karpathy file, pool and marker.
        built: bool, False when the tree was already complete and nothing was written.
        seconds: float, wall time of this call.
    """

    root: str
    scale: float
    pool: int
    seed: int
    counts: dict
    paths: dict
    built: bool
    seconds: float


class RehearsalError(ValueError):
    """OUT_DIR cannot be built into: another tree, other parameters, or bad parameters."""


# ---------------------------------------------------------------------------------------------- sizes


def plan_counts(scale):
    """Image counts at `scale`: `{"train2014", "val2014", "karpathy_val", "karpathy_test", "karpathy_restval"}`.

    Args:
        scale: float > 0, 1.0 for MS COCO 2014's counts.

    Every count is round(full count * scale), with at least one train image and
    one Karpathy val and test image (so val2014 has at least two).
    """
    train = max(1, round(COCO_IMAGES["train2014"] * scale))
    held_out = max(1, round(KARPATHY_HELD_OUT * scale))
    val = max(2 * held_out, round(COCO_IMAGES["val2014"] * scale))
    return {"train2014": train, "val2014": val, "karpathy_val": held_out, "karpathy_test": held_out,
            "karpathy_restval": val - 2 * held_out}


def _parameters(scale, pool, seed):
    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
        raise RehearsalError(f"scale must be a positive number, got {scale!r}")
    if not (isinstance(pool, int) and pool >= 1):
        raise RehearsalError(f"pool must be a positive integer, got {pool!r}")
    if not (isinstance(seed, int) and seed >= 0):
        raise RehearsalError(f"seed must be a non-negative integer, got {seed!r}")
    return {"format": FORMAT_VERSION, "scale": float(scale), "pool": pool, "seed": seed}


def _differences(found, wanted):
    return ", ".join(f"{key} {found.get(key)!r} (asked {wanted[key]!r})"
                     for key in wanted if found.get(key) != wanted[key])


# ---------------------------------------------------------------------------------------------- output


class _Log:
    """Stage names and counts on stderr, with the time since the build started."""

    def __init__(self, enabled):
        self.enabled = enabled
        self.start = time.monotonic()

    def __call__(self, message):
        if self.enabled:
            print(f"[rehearsal {time.monotonic() - self.start:6.1f}s] {message}", file=sys.stderr, flush=True)


def _write_json(path, payload):
    """Writes `payload` to `path` atomically (temporary file, fsync, rename)."""
    with files.replacing(path) as temporary:
        with open(temporary, "w") as handle:
            json.dump(payload, handle)


class _ListPart:
    """Items of one JSON list, written to a part file as they come (joined by commas, no brackets)."""

    def __init__(self, path):
        self.path = path
        self.handle = open(path, "w", buffering=1 << 20)
        self.count = 0

    def add(self, item):
        self.handle.write((", " if self.count else "") + json.dumps(item))
        self.count += 1

    def close(self):
        self.handle.close()


def _assemble(path, pieces):
    """Writes `path` atomically from `pieces`: strings written as they are, `_ListPart`s copied in."""
    with files.replacing(path) as temporary:
        with open(temporary, "w") as out:
            for piece in pieces:
                if isinstance(piece, _ListPart):
                    with open(piece.path) as part:
                        shutil.copyfileobj(part, out, 1 << 22)
                else:
                    out.write(piece)


# ---------------------------------------------------------------------------------------------- pictures


def pool_plan(pool, seed):
    """The `(width, height, grey)` of each pool picture.

    Args:
        pool: int, number of pictures.
        seed: int.

    640 pixels on the long side; round(20%) portrait, and max(1, round(2%))
    greyscale when the pool has at least two pictures (so a small pool still
    holds one), placed at seeded positions.
    """
    rng = np.random.default_rng([seed, 0])
    sides, weights = zip(*_SHORT_SIDES)
    short = rng.choice(sides, size=pool, p=np.array(weights) / sum(weights))
    order = rng.permutation(pool)
    portrait = set(order[:round(PORTRAIT_SHARE * pool)].tolist())
    grey_count = max(1, round(GREY_SHARE * pool)) if pool >= 2 else 0
    grey = set(rng.permutation(pool)[:grey_count].tolist())
    plan = []
    for index in range(pool):
        width, height = (int(short[index]), LONG_SIDE) if index in portrait else (LONG_SIDE, int(short[index]))
        plan.append((width, height, index in grey))
    return plan


def picture(rng, width, height, grey):
    """A synthetic photo-like picture: a gradient, soft blobs, ellipses and grain, as uint8 pixels.

    Args:
        rng: numpy Generator.
        width, height: int.
        grey: bool, one channel (like COCO's greyscale JPEGs) instead of RGB.

    The grain is what makes the JPEG weigh what a photo does at quality 90
    (100-200 KB at 640 x 480); smooth content alone would compress to a few KB
    and make decoding cheaper than COCO's.
    """
    ys = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    xs = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (xs * np.cos(angle) + ys * np.sin(angle))
    ramp = (ramp - ramp.min()) / max(float(ramp.max() - ramp.min()), 1e-6)
    low, high = rng.uniform(0, 255, 3).astype(np.float32), rng.uniform(0, 255, 3).astype(np.float32)
    pixels = low + (high - low) * ramp[..., None]
    coarse = rng.normal(128, 40, (height // 40 + 2, width // 40 + 2, 3)).clip(0, 255).astype(np.uint8)
    pixels += np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC), np.float32) - 128
    for _ in range(int(rng.integers(3, 9))):
        _paint_ellipse(rng, pixels, width, height)
    grain = float(rng.uniform(9, 16))
    half = rng.standard_normal((height // 2 + 1, width // 2 + 1, 3), dtype=np.float32)
    pixels += grain * np.repeat(np.repeat(half, 2, axis=0), 2, axis=1)[:height, :width]
    pixels += 0.6 * grain * rng.standard_normal((height, width, 3), dtype=np.float32)
    pixels = pixels.clip(0, 255)
    if grey:
        pixels = pixels.mean(axis=2)
    return pixels.astype(np.uint8)


def _paint_ellipse(rng, pixels, width, height):
    """Blends a filled ellipse of a random colour into `pixels`, working on its bounding box only."""
    cx, cy = rng.uniform(0, width), rng.uniform(0, height)
    rx, ry = rng.uniform(20, width / 3), rng.uniform(20, height / 3)
    colour = rng.uniform(0, 255, 3).astype(np.float32)
    x0, x1 = max(0, int(cx - rx)), min(width, int(cx + rx) + 1)
    y0, y1 = max(0, int(cy - ry)), min(height, int(cy + ry) + 1)
    if x0 >= x1 or y0 >= y1:
        return
    ys, xs = np.ogrid[y0:y1, x0:x1]
    inside = ((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2 < 1
    box = pixels[y0:y1, x0:x1]
    box[inside] = 0.3 * box[inside] + 0.7 * colour


def _pool_path(root, index):
    return os.path.join(root, POOL_DIR, f"pool-{index:05d}.jpg")


def write_pool(root, plan, seed, log):
    """Writes the pool's JPEGs under `root/.pool/` (skipping those a previous run finished).

    Args:
        root: str, the tree.
        plan: list of `(width, height, grey)` from `pool_plan`.
        seed: int.
        log: `_Log`.
    """
    os.makedirs(os.path.join(root, POOL_DIR), exist_ok=True)
    for name in os.listdir(os.path.join(root, POOL_DIR)):
        if name.endswith(".partial"):  # torn by an interrupted run; the picture is drawn again below
            os.remove(os.path.join(root, POOL_DIR, name))
    for index, (width, height, grey) in enumerate(plan):
        path = _pool_path(root, index)
        if not os.path.exists(path):
            # Its own stream per picture: a resumed build redraws exactly the missing ones.
            pixels = picture(np.random.default_rng([seed, 1, index]), width, height, grey)
            with files.replacing(path) as temporary:
                Image.fromarray(pixels).save(temporary, "JPEG", quality=JPEG_QUALITY)
        if (index + 1) % 50 == 0 or index + 1 == len(plan):
            log(f"pool: {index + 1}/{len(plan)} JPEGs")


def _link(source, target):
    """Hard-links `target` to `source`, or copies it where linking fails. Returns "linked" or "copied"."""
    try:
        os.link(source, target)
        return "linked"
    except FileExistsError:
        if os.path.samefile(source, target):
            return "linked"
        if os.path.getsize(source) == os.path.getsize(target):
            return "copied"  # a copy from an earlier run that could not link
        os.unlink(target)
        return _link(source, target)
    except OSError:
        # Another device, a file system without hard links, or too many links to one inode.
        shutil.copyfile(source, target)
        return "copied"


def link_images(root, folder, ids, pool_index, log):
    """Fills `root/folder/` with `COCO_<folder>_<id>.jpg` files linked to their pool pictures.

    Args:
        root: str, the tree.
        folder: str, "train2014" or "val2014".
        ids: int array, the images' ids.
        pool_index: int array, each image's pool picture.
        log: `_Log`.

    Returns:
        dict `{"linked": n, "copied": n}`.
    """
    os.makedirs(os.path.join(root, folder), exist_ok=True)
    done = {"linked": 0, "copied": 0}
    for position, (image_id, index) in enumerate(zip(ids.tolist(), pool_index.tolist())):
        target = os.path.join(root, folder, file_name(folder, image_id))
        done[_link(_pool_path(root, index), target)] += 1
        if (position + 1) % 20000 == 0 or position + 1 == len(ids):
            log(f"{folder}: {position + 1}/{len(ids)} image files")
    return done


def file_name(folder, image_id):
    """COCO's file name of an image: `COCO_train2014_000000000009.jpg`."""
    return f"COCO_{folder}_{image_id:012d}.jpg"


# ---------------------------------------------------------------------------------------------- words


@dataclasses.dataclass
class Vocabulary:
    """Synthetic word forms by role, with their cumulative Zipf weights (drawn by bisection).

    Args:
        words: dict role -> list of str, most frequent first.
        cumulative: dict role -> list of float.
    """

    words: dict
    cumulative: dict

    def draw(self, rnd, role):
        """One word of `role` ("noun", "adjective", "verb"), Zipf-distributed."""
        weights = self.cumulative[role]
        return self.words[role][bisect.bisect(weights, rnd.random() * weights[-1])]


_ONSETS = ("b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z", "br", "bl",
           "cr", "dr", "fr", "gr", "pl", "pr", "st", "tr", "sh", "ch", "th", "sl", "sn", "gl")
_VOWELS = ("a", "e", "i", "o", "u", "a", "e", "o", "ai", "ea", "oo", "ou")
_CODAS = ("", "", "", "n", "r", "l", "s", "m", "t", "nd", "st", "rk")
_ADJECTIVE_ENDINGS = ("y", "ic", "ish", "ous", "al", "ful", "en")


def _stem(rnd, syllables):
    return "".join(rnd.choice(_ONSETS) + rnd.choice(_VOWELS) + rnd.choice(_CODAS) for _ in range(syllables))


def synthetic_vocabulary(seed):
    """Pronounceable invented words (nouns, -ing verbs, adjectives), distinct from the template words.

    Args:
        seed: int.
    """
    rnd = random.Random(f"rehearsal-vocabulary-{seed}")
    taken = set(_FUNCTION_WORDS) | {word for names in MENTIONS.values() for name in names for word in name.split()}
    makers = {
        "noun": lambda: _stem(rnd, rnd.choice((2, 2, 3))),
        "adjective": lambda: _stem(rnd, rnd.choice((1, 2))) + rnd.choice(_ADJECTIVE_ENDINGS),
        "verb": lambda: _stem(rnd, rnd.choice((1, 2))) + "ing",
    }
    words, cumulative = {}, {}
    for role, size in _VOCABULARY_SIZES.items():
        chosen = []
        while len(chosen) < size:
            word = makers[role]()
            if word not in taken:
                taken.add(word)
                chosen.append(word)
        words[role] = chosen
        cumulative[role] = list(itertools.accumulate(rank ** -_ZIPF_EXPONENT for rank in range(1, size + 1)))
    return Vocabulary(words, cumulative)


def _weighted(rnd, table):
    """A value from `((value, weight), ...)`."""
    point = rnd.random() * sum(weight for _, weight in table)
    for value, weight in table:
        point -= weight
        if point < 0:
            return value
    return table[-1][0]


def plural(word):
    """English plural of a mention word or an invented noun ("man" -> "men", "bus" -> "buses")."""
    head, _, last = word.rpartition(" ")
    if last in _IRREGULAR_PLURALS:
        form = _IRREGULAR_PLURALS[last]
    elif last.endswith(("s", "sh", "ch", "x", "z")):
        form = last + "es"
    else:
        form = last + "s"
    return f"{head} {form}" if head else form


def _noun(rnd, vocabulary, present, mention, hallucinate):
    """A noun: a mention of one of the image's categories, of one it lacks, or an invented one.

    Args:
        rnd: random.Random.
        vocabulary: `Vocabulary`.
        present: tuple of category names, one per instance (repeats weight the choice).
        mention, hallucinate: float, probabilities of naming a present and an absent category.
    """
    point = rnd.random()
    if present and point < mention:
        return rnd.choice(MENTIONS[rnd.choice(present)])
    if point > 1 - hallucinate:
        while True:
            name = _FREQUENCY_ORDER[bisect.bisect(_THEME_CUMULATIVE, rnd.random() * _THEME_CUMULATIVE[-1])]
            if name not in present:
                return rnd.choice(MENTIONS[name])
    return vocabulary.draw(rnd, "noun")


def _noun_phrase(rnd, vocabulary, present, mention, hallucinate):
    """`det [adjective ...] noun` as a list of words, "an" before a vowel and a plural after "two" etc."""
    determiner = _weighted(rnd, _DETERMINERS)
    adjectives = [vocabulary.draw(rnd, "adjective") for _ in range(_weighted(rnd, ((0, 0.55), (1, 0.37), (2, 0.08))))]
    noun = _noun(rnd, vocabulary, present, mention, hallucinate)
    if determiner in _PLURAL_DETERMINERS:
        noun = plural(noun)
    following = (adjectives + [noun])[0]
    if determiner == "a" and following[0] in "aeiou":
        determiner = "an"
    return [determiner] + adjectives + noun.split()


def _target_length(rnd):
    """Words a caption aims at: mostly 7-13 (COCO's mean is about 10.5), a long tail up to 50."""
    if rnd.random() < 0.03:
        return min(46, 14 + int(rnd.expovariate(1 / 7)))  # the phrase that reaches it may add up to 4
    return 6 + _poisson(rnd, 3.45)


def _poisson(rnd, mean):
    limit, count, product = math.exp(-mean), 0, rnd.random()
    while product > limit:
        count += 1
        product *= rnd.random()
    return count


def caption_words(rnd, vocabulary, present):
    """The words of one caption: `NP [is] VERB` then prepositional or `and` phrases up to a drawn length.

    Args:
        rnd: random.Random.
        vocabulary: `Vocabulary`.
        present: tuple of the image's instance category names (may be empty).
    """
    target = _target_length(rnd)
    words = _noun_phrase(rnd, vocabulary, present, mention=0.75, hallucinate=0.03)
    if rnd.random() < 0.3:
        words.append("are" if words[0] in _PLURAL_DETERMINERS else "is")
    words.append(vocabulary.draw(rnd, "verb"))
    while len(words) < target:
        if rnd.random() < 0.04:  # a comma between phrases, as some COCO captions have
            words[-1] += ","
        if target - len(words) == 1:
            words.append(rnd.choice(_ADVERBS))
        elif rnd.random() < 0.2:
            words += ["and"] + _noun_phrase(rnd, vocabulary, present, mention=0.35, hallucinate=0.025)
        else:
            words += _weighted(rnd, _PREPOSITIONS).split()
            words += _noun_phrase(rnd, vocabulary, present, mention=0.35, hallucinate=0.025)
    return words


def caption_text(rnd, words):
    """Joins `words` with real COCO's quirks: case, final period, stray white space.

    Args:
        rnd: random.Random.
        words: list of str, lower case.
    """
    words = words[:-1] + [words[-1].rstrip(",")]
    gap = rnd.randrange(1, len(words)) if len(words) > 1 and rnd.random() < 0.01 else -1
    text = "".join((" " if i else "") + (" " if i == gap else "") + word for i, word in enumerate(words))
    if rnd.random() < 0.88:
        text = text[0].upper() + text[1:]
    if rnd.random() < 0.35:
        text += "."
    point = rnd.random()
    if point < 0.04:
        text += " "
    elif point < 0.045:
        text = " " + text
    elif point < 0.048:
        text += "\n"
    return text


_PUNCTUATION = str.maketrans("", "", string.punctuation)


def karpathy_tokens(raw):
    """Karpathy's `tokens` of a caption: lower case, punctuation removed, split on white space."""
    return raw.lower().translate(_PUNCTUATION).split()


# ---------------------------------------------------------------------------------------------- images


def _image_entry(rnd, folder, image_id, width, height):
    """An `images` entry with every field of COCO 2014's, in its key order."""
    captured = datetime.datetime(2013, 11, 14) + datetime.timedelta(seconds=rnd.randrange(12 * 86400))
    farm, server = rnd.randint(1, 9), rnd.randint(1000, 9999)
    photo, secret = rnd.randrange(10**9, 10**10), f"{rnd.getrandbits(40):010x}"
    return {
        "license": _weighted(rnd, tuple(zip(range(1, 9), _LICENSE_WEIGHTS))),
        "file_name": file_name(folder, image_id),
        "coco_url": f"http://images.cocodataset.org/{folder}/{file_name(folder, image_id)}",
        "height": height,
        "width": width,
        "date_captured": captured.strftime("%Y-%m-%d %H:%M:%S"),
        "flickr_url": f"http://farm{farm}.staticflickr.com/{server}/{photo}_{secret}_z.jpg",
        "id": image_id,
    }


def _instance_categories(rnd):
    """An image's instance categories (ids, crowd first if any) and whether the first is a crowd.

    0-15 instances (mean about 7, about 1% of images none), drawn from one to
    three "themes" so that an image holds several of the same thing, as COCO's do.
    """
    if rnd.random() < 0.01:
        return (), False
    count = min(MAX_INSTANCES, max(1, round(rnd.gammavariate(2.4, 3.0))))
    themes = [_THEME_IDS[bisect.bisect(_THEME_CUMULATIVE, rnd.random() * _THEME_CUMULATIVE[-1])]
              for _ in range(1 + (rnd.random() < 0.6) + (rnd.random() < 0.3))]
    weights = list(itertools.accumulate(1.0 / (rank + 1) for rank in range(len(themes))))
    categories = tuple(themes[bisect.bisect(weights, rnd.random() * weights[-1])] for _ in range(count))
    return categories, rnd.random() < _CROWD_IMAGE_SHARE


@dataclasses.dataclass
class _Split:
    """The drawn skeleton of one image folder: ids, pool pictures, instance categories, caption counts."""

    folder: str
    ids: np.ndarray
    pool_index: np.ndarray
    categories: list  # per image, tuple of category ids
    crowd: list  # per image, bool: its first instance is a crowd annotation
    caption_counts: np.ndarray
    caption_ids: np.ndarray = None  # ascending, file order
    instance_ids: np.ndarray = None  # ascending, file order, non-crowd instances only


def _caption_counts(rng, count):
    """5 captions per image, a few 6 and 7; at least one of each when the split has three images or more.

    Forcing one of each keeps the "more than five captions" path exercised even in a small tree.
    """
    draws = rng.random(count)
    counts = np.full(count, 5, np.int64)
    counts[draws < _EXTRA_CAPTIONS[0][1] + _EXTRA_CAPTIONS[1][1]] = 6
    counts[draws < _EXTRA_CAPTIONS[1][1]] = 7
    if count >= 3:
        for extra in (6, 7):
            if not (counts == extra).any():
                counts[rng.choice(np.flatnonzero(counts == 5))] = extra
    return counts


def draw_splits(counts, plan, seed):
    """The skeleton of both image folders, with globally unique sparse ids.

    Args:
        counts: dict from `plan_counts`.
        plan: the pool plan.
        seed: int.

    Image, caption and instance ids are drawn without replacement from COCO's
    id ranges (wider if the tree is larger than COCO), and train and val
    interleave in them as in the real files.
    """
    rng = np.random.default_rng([seed, 2])
    sizes = [counts[folder] for folder in COCO_IMAGES]
    image_ids = rng.choice(_id_space(IMAGE_ID_SPACE, sum(sizes)), size=sum(sizes), replace=False) + 1
    splits, start = [], 0
    for folder, size in zip(COCO_IMAGES, sizes):
        rnd = random.Random(f"rehearsal-{seed}-{folder}-instances")
        drawn = [_instance_categories(rnd) for _ in range(size)]
        splits.append(_Split(folder, image_ids[start:start + size], rng.integers(len(plan), size=size),
                             [c for c, _ in drawn], [bool(c) and crowd for c, crowd in drawn],
                             _caption_counts(rng, size)))
        start += size
    caption_ids = _interleaved_ids(rng, [int(s.caption_counts.sum()) for s in splits], CAPTION_ID_SPACE)
    instance_ids = _interleaved_ids(
        rng, [sum(len(c) for c in s.categories) - sum(s.crowd) for s in splits], INSTANCE_ID_SPACE)
    for split, captions, instances in zip(splits, caption_ids, instance_ids):
        split.caption_ids, split.instance_ids = captions, instances
    return splits


def _id_space(space, total):
    """COCO's id range, widened when a tree larger than COCO would fill it more densely than COCO's captions do."""
    return max(space, total * 4 // 3)


def _interleaved_ids(rng, counts, space):
    """Sorted unique ids for each of several files, drawn together so that the files' ids interleave."""
    total = sum(counts)
    ids = np.sort(rng.choice(_id_space(space, total), size=total, replace=False)) + 1
    owner = rng.permutation(np.repeat(np.arange(len(counts)), counts))
    return [ids[owner == k] for k in range(len(counts))]


# ---------------------------------------------------------------------------------------------- instances


def _hundredths(values):
    """Rounds to 2 decimals as COCO's coordinates are; k / 100 prints as k / 100 does, not 0.1 + 0.2's digits."""
    return np.rint(values * 100) / 100


def polygon_geometry(rng, widths, heights):
    """Outlines of objects in pictures of the given sizes: `(segmentations, areas, bboxes)`, lists per object.

    Args:
        rng: numpy Generator.
        widths, heights: int arrays, the picture of each object.

    Each object is a jittered ellipse of 6-14 vertices (one in 20 gets a second,
    smaller part below it, as occluded COCO objects have), its box from 0.1% to
    half the picture; coordinates clipped to the picture and rounded to 2
    decimals. `area` is the polygons' area (shoelace), not a pixel count, as in
    COCO; `bbox` is the tight box of the vertices. All objects are drawn at once
    (vectorised): a Python loop per vertex made this the build's slowest stage.
    """
    count = len(widths)
    if count == 0:
        return [], [], []
    widths, heights = np.asarray(widths, np.float64), np.asarray(heights, np.float64)
    share = np.exp(rng.uniform(np.log(0.001), np.log(0.5), count))
    aspect = np.exp(rng.uniform(np.log(0.4), np.log(2.5), count))
    box_w = np.minimum(widths - 2, np.sqrt(share * widths * heights * aspect))
    box_h = np.minimum(heights - 2, np.sqrt(share * widths * heights / aspect))
    cx, cy = rng.uniform(box_w / 2, widths - box_w / 2), rng.uniform(box_h / 2, heights - box_h / 2)
    second = np.flatnonzero(rng.random(count) < 0.05)
    # Polygons: every object's main part, then the second parts; `owner` is the object of each.
    owner = np.concatenate([np.arange(count), second])
    poly_cx = np.concatenate([cx, cx[second] + rng.uniform(-0.3, 0.3, len(second)) * box_w[second]])
    poly_cy = np.concatenate([cy, cy[second] + 0.45 * box_h[second]])
    poly_rx = np.concatenate([box_w / 2, box_w[second] / 5])
    poly_ry = np.concatenate([box_h / 2, box_h[second] / 6])
    x, y, starts = _ellipse_vertices(rng, poly_cx, poly_cy, poly_rx, poly_ry, widths[owner], heights[owner])
    # Shoelace per polygon: each vertex with the one before it, the first with the polygon's last.
    before = np.arange(len(x)) - 1
    before[starts] = np.append(starts[1:], len(x)) - 1
    cross = x * y[before] - x[before] * y
    areas = np.bincount(owner, np.abs(np.add.reduceat(cross, starts)) / 2, minlength=count)
    low_x, low_y = np.full(count, np.inf), np.full(count, np.inf)
    high_x, high_y = np.full(count, -np.inf), np.full(count, -np.inf)
    np.minimum.at(low_x, owner, np.minimum.reduceat(x, starts))
    np.minimum.at(low_y, owner, np.minimum.reduceat(y, starts))
    np.maximum.at(high_x, owner, np.maximum.reduceat(x, starts))
    np.maximum.at(high_y, owner, np.maximum.reduceat(y, starts))
    bboxes = np.stack([low_x, low_y, _hundredths(high_x - low_x), _hundredths(high_y - low_y)], axis=1)
    return _segmentations(x, y, starts, owner, count), _hundredths(areas).tolist(), bboxes.tolist()


def _ellipse_vertices(rng, cx, cy, rx, ry, widths, heights):
    """Vertices of jittered ellipses, concatenated: `(x, y, start of each polygon)`."""
    sizes = rng.integers(6, 15, len(cx))
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    polygon = np.repeat(np.arange(len(cx)), sizes)
    # Sorting by (polygon, angle) orders each polygon's vertices around its centre.
    angles = rng.uniform(0, 2 * np.pi, len(polygon))
    angles = angles[np.lexsort((angles, polygon))]
    radius = rng.uniform(0.75, 1.0, len(polygon))
    x = np.clip(cx[polygon] + rx[polygon] * radius * np.cos(angles), 0, widths[polygon])
    y = np.clip(cy[polygon] + ry[polygon] * radius * np.sin(angles), 0, heights[polygon])
    return _hundredths(x), _hundredths(y), starts


def _segmentations(x, y, starts, owner, count):
    """COCO's `segmentation` per object: a list of flat `[x1, y1, x2, y2, ...]` polygons."""
    flat = np.stack([x, y], axis=1).ravel().tolist()
    bounds = np.append(starts, len(x)) * 2
    segmentations = [[] for _ in range(count)]
    for polygon, object_index in enumerate(owner.tolist()):
        segmentations[object_index].append(flat[bounds[polygon]:bounds[polygon + 1]])
    return segmentations


def crowd_rle(x, y, box_w, box_h, width, height):
    """Uncompressed RLE (column-major run lengths, zeros first) of a box mask, as COCO's iscrowd=1 entries.

    Args:
        x, y, box_w, box_h: int, the box in pixels (inside the picture).
        width, height: int, the picture.
    """
    counts = [x * height + y]
    for _ in range(box_w - 1):
        counts += [box_h, height - box_h]
    counts += [box_h, height - y - box_h + (width - x - box_w) * height]
    return {"counts": counts, "size": [height, width]}


def _crowd_instance(rnd, width, height):
    """`(segmentation, area, bbox)` of a crowd region: a box given as uncompressed RLE."""
    box_w, box_h = rnd.randint(width // 6, width // 2), rnd.randint(height // 6, height // 2)
    x, y = rnd.randint(0, width - box_w), rnd.randint(0, height - box_h)
    bbox = [float(x), float(y), float(box_w), float(box_h)]
    return crowd_rle(x, y, box_w, box_h, width, height), box_w * box_h, bbox


def write_instances(part, split, plan, seed, log):
    """Writes the split's instance annotations to `part`, sorted by id (images interleaved, crowds last).

    Args:
        part: `_ListPart`.
        split: `_Split`.
        plan: the pool plan (image sizes).
        seed: int.
        log: `_Log`.
    """
    rnd = random.Random(f"rehearsal-{seed}-{split.folder}-geometry")
    plain, crowds = [], []
    for position, categories in enumerate(split.categories):
        for order, category in enumerate(categories):
            (crowds if order == 0 and split.crowd[position] else plain).append((position, category))
    plain = _shuffled(rnd, plain)
    rng = np.random.default_rng([seed, 4, list(COCO_IMAGES).index(split.folder)])
    for start in range(0, len(plain), _GEOMETRY_CHUNK):
        chunk = plain[start:start + _GEOMETRY_CHUNK]
        sizes = np.array([plan[split.pool_index[position]][:2] for position, _ in chunk], np.int64)
        geometry = zip(*polygon_geometry(rng, sizes[:, 0], sizes[:, 1]))
        ids = split.instance_ids[start:start + _GEOMETRY_CHUNK].tolist()
        for annotation_id, (position, category), shape in zip(ids, chunk, geometry):
            part.add(_instance(split, position, category, annotation_id, 0, shape))
    for position, category in sorted(crowds, key=lambda crowd: int(split.ids[crowd[0]])):
        width, height, _ = plan[split.pool_index[position]]
        crowd_id = CROWD_ID_BASE + int(split.ids[position])
        part.add(_instance(split, position, category, crowd_id, 1, _crowd_instance(rnd, width, height)))
    log(f"instances_{split.folder}: {part.count} annotations ({len(crowds)} crowd)")


def _instance(split, position, category, annotation_id, iscrowd, shape):
    """An instances `annotations` entry with every field of COCO 2014's, in its key order."""
    segmentation, area, bbox = shape
    return {"segmentation": segmentation, "area": area, "iscrowd": iscrowd, "image_id": int(split.ids[position]),
            "bbox": bbox, "category_id": category, "id": annotation_id}


def _shuffled(rnd, items):
    items = list(items)
    rnd.shuffle(items)
    return items


# ---------------------------------------------------------------------------------------------- captions


def write_captions(part, split, vocabulary, seed, log):
    """Writes the split's caption annotations to `part`, sorted by id (an image's captions scattered).

    Args:
        part: `_ListPart`.
        split: `_Split`.
        vocabulary: `Vocabulary`.
        seed: int.
        log: `_Log`.

    Returns:
        `{image position: [(caption id, text), ...]}` in id order, for the Karpathy file.
    """
    rnd = random.Random(f"rehearsal-{seed}-{split.folder}-captions")
    slots = [position for position, count in enumerate(split.caption_counts.tolist()) for _ in range(count)]
    rnd.shuffle(slots)
    names = {c["id"]: c["name"] for c in CATEGORIES}
    by_image = {}
    for number, (caption_id, position) in enumerate(zip(split.caption_ids.tolist(), slots)):
        present = tuple(names[c] for c in split.categories[position])
        text = caption_text(rnd, caption_words(rnd, vocabulary, present))
        part.add({"image_id": int(split.ids[position]), "id": caption_id, "caption": text})
        by_image.setdefault(position, []).append((caption_id, text))
        if (number + 1) % 100000 == 0:
            log(f"captions_{split.folder}: {number + 1}/{len(slots)} captions")
    log(f"captions_{split.folder}: {part.count} captions")
    return by_image


def write_images(part, split, plan, seed):
    """Writes the split's `images` entries to `part`, in the split's (random id) order."""
    rnd = random.Random(f"rehearsal-{seed}-{split.folder}-images")
    for image_id, index in zip(split.ids.tolist(), split.pool_index.tolist()):
        width, height, _ = plan[index]
        part.add(_image_entry(rnd, split.folder, image_id, width, height))


def karpathy_assignment(count, counts, seed):
    """Karpathy split names of val2014's images, in order: `karpathy_val` "val", as many "test", rest "restval"."""
    order = np.random.default_rng([seed, 3]).permutation(count)
    names = np.full(count, "restval", dtype=object)
    names[order[:counts["karpathy_val"]]] = "val"
    names[order[counts["karpathy_val"]:counts["karpathy_val"] + counts["karpathy_test"]]] = "test"
    return names.tolist()


def write_karpathy(part, split, captions, split_names, first_imgid):
    """Writes the split's `dataset_coco.json` entries to `part`; sentids are the captions' COCO ids.

    Args:
        part: `_ListPart`.
        split: `_Split`.
        captions: `{position: [(caption id, text), ...]}` from `write_captions`.
        split_names: list of str per image ("train", "restval", "val", "test").
        first_imgid: int, `imgid` of the split's first image (positions count over the whole file).
    """
    for position, image_id in enumerate(split.ids.tolist()):
        imgid = first_imgid + position
        sentences = [{"tokens": karpathy_tokens(text), "raw": text, "imgid": imgid, "sentid": caption_id}
                     for caption_id, text in captions[position]]
        part.add({"filepath": split.folder, "sentids": [s["sentid"] for s in sentences],
                  "filename": file_name(split.folder, image_id), "imgid": imgid, "split": split_names[position],
                  "sentences": sentences, "cocoid": image_id})


# ---------------------------------------------------------------------------------------------- build


def _annotation_paths(root):
    paths = {}
    for folder in COCO_IMAGES:
        paths[f"captions_{folder}"] = os.path.join(root, "annotations", f"captions_{folder}.json")
        paths[f"instances_{folder}"] = os.path.join(root, "annotations", f"instances_{folder}.json")
    return paths


def tree_paths(root):
    """Absolute paths of everything a tree holds, by name."""
    paths = {"root": root, "train2014": os.path.join(root, "train2014"), "val2014": os.path.join(root, "val2014"),
             "karpathy": os.path.join(root, "dataset_coco.json"), "pool": os.path.join(root, POOL_DIR),
             "marker": os.path.join(root, MARKER)}
    paths.update(_annotation_paths(root))
    return paths


def _check_target(root, parameters, log):
    """Returns the marker of a complete tree of `parameters` in `root`, None if there is work to do.

    Raises:
        RehearsalError: `root` holds another tree, other parameters' build, or something else.
    """
    for name, what in ((MARKER, "a rehearsal tree"), (STARTED, "an unfinished rehearsal build")):
        path = os.path.join(root, name)
        if os.path.exists(path):
            with open(path) as handle:
                found = json.load(handle)
            if found.get("parameters") != parameters:
                raise RehearsalError(
                    f"{root} holds {what} with other parameters: "
                    f"{_differences(found.get('parameters', {}), parameters)}; remove it or choose another OUT_DIR")
            if name == MARKER:
                return found
            log(f"resuming the unfinished build in {root}")
            return None
    if os.path.isdir(root) and os.listdir(root):
        raise RehearsalError(f"{root} exists, is not empty and is not a rehearsal tree (no {MARKER}); "
                             "choose a new or empty OUT_DIR")
    if os.path.exists(root) and not os.path.isdir(root):
        raise RehearsalError(f"{root} exists and is not a folder")
    return None


def build(out_dir, scale=1.0, pool=300, seed=0, progress=True):
    """Writes (or finds complete) a rehearsal tree in `out_dir`; see the module docstring.

    Args:
        out_dir: str, the tree's folder: new, empty, or a tree of the same parameters (complete or not).
        scale: float > 0, share of MS COCO 2014's image counts.
        pool: int >= 1, distinct JPEGs the image files link to.
        seed: int >= 0.
        progress: bool, print stages and counts to stderr.

    Returns:
        `Rehearsal`.

    Raises:
        RehearsalError: bad parameters, or `out_dir` holds something else (the message says what).
    """
    started = time.monotonic()
    log = _Log(progress)
    root = os.path.abspath(out_dir)
    parameters = _parameters(scale, pool, seed)
    found = _check_target(root, parameters, log)
    if found is not None:
        log(f"{root} already holds a complete rehearsal tree with these parameters; nothing to do")
        return Rehearsal(root, float(scale), pool, seed, found["counts"], tree_paths(root), False,
                         time.monotonic() - started)
    os.makedirs(root, exist_ok=True)
    _write_json(os.path.join(root, STARTED), {"parameters": parameters})
    counts = dict(plan_counts(scale), pool=pool)
    log(f"building {root}: scale {scale}, pool {pool}, seed {seed}; "
        f"{counts['train2014']} train2014 + {counts['val2014']} val2014 images")
    plan = pool_plan(pool, seed)
    write_pool(root, plan, seed, log)
    splits = draw_splits(counts, plan, seed)
    links = {"linked": 0, "copied": 0}
    for split in splits:
        for kind, number in link_images(root, split.folder, split.ids, split.pool_index, log).items():
            links[kind] += number
    counts.update(links)
    counts.update(write_annotations(root, splits, plan, counts, seed, log))
    marker = {"parameters": parameters, "generator": "captioner.data.synthetic.rehearsal", "counts": counts}
    _write_json(os.path.join(root, MARKER), marker)
    os.remove(os.path.join(root, STARTED))
    seconds = time.monotonic() - started
    log(f"done in {seconds:.1f}s: {json.dumps(counts)}")
    return Rehearsal(root, float(scale), pool, seed, counts, tree_paths(root), True, seconds)


def write_annotations(root, splits, plan, counts, seed, log):
    """Writes the four COCO annotation files and `dataset_coco.json`, streaming through part files.

    Args:
        root: str, the tree.
        splits: list of `_Split`, val2014 first (Karpathy's file lists val2014's images first).
        plan: the pool plan.
        counts: dict from `plan_counts`.
        seed: int.
        log: `_Log`.

    Returns:
        dict of caption and instance counts per file.
    """
    parts_dir = os.path.join(root, PARTS_DIR)
    shutil.rmtree(parts_dir, ignore_errors=True)  # parts of an interrupted run: rewritten from scratch
    os.makedirs(parts_dir)
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    vocabulary = synthetic_vocabulary(seed)
    written, karpathy_parts, imgid = {}, [], 0
    for split in splits:
        names = (karpathy_assignment(len(split.ids), counts, seed) if split.folder == "val2014"
                 else ["train"] * len(split.ids))
        by_image, found = _write_coco_files(root, parts_dir, split, plan, vocabulary, seed, log)
        written.update(found)
        karpathy = _ListPart(os.path.join(parts_dir, f"karpathy_{split.folder}"))
        write_karpathy(karpathy, split, by_image, names, imgid)
        karpathy.close()
        karpathy_parts.append(karpathy)
        imgid += len(split.ids)
    pieces = ['{"images": [', karpathy_parts[0]]
    for extra in karpathy_parts[1:]:
        pieces += [", ", extra]
    _assemble(os.path.join(root, "dataset_coco.json"), pieces + ['], "dataset": "coco"}'])
    log(f"dataset_coco.json: {imgid} images")
    shutil.rmtree(parts_dir)
    return written


def _write_coco_files(root, parts_dir, split, plan, vocabulary, seed, log):
    """Writes the split's `captions_<folder>.json` and `instances_<folder>.json`.

    Returns:
        `(captions by image from write_captions, {file name: annotations written})`.
    """
    images, captions, instances = (_ListPart(os.path.join(parts_dir, f"{name}_{split.folder}"))
                                   for name in ("images", "captions", "instances"))
    write_images(images, split, plan, seed)
    write_instances(instances, split, plan, seed, log)
    by_image = write_captions(captions, split, vocabulary, seed, log)
    for part in (images, captions, instances):
        part.close()
    # Real COCO's key order: info, images, licenses, annotations (, categories).
    head = '{"info": ' + json.dumps(INFO) + ', "images": ['
    licenses = '], "licenses": ' + json.dumps(LICENSES) + ', "annotations": ['
    paths = _annotation_paths(root)
    _assemble(paths[f"captions_{split.folder}"], [head, images, licenses, captions, "]}"])
    _assemble(paths[f"instances_{split.folder}"],
              [head, images, licenses, instances, '], "categories": ' + json.dumps(CATEGORIES) + "}"])
    log(f"annotations/captions_{split.folder}.json and instances_{split.folder}.json written")
    return by_image, {f"captions_{split.folder}": captions.count, f"instances_{split.folder}": instances.count}


def main(argv=None):
    """The command line; returns the exit status (2 for refused parameters or OUT_DIR)."""
    parser = argparse.ArgumentParser(prog="python -m captioner.data.synthetic.rehearsal",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", metavar="OUT_DIR", help="folder to write (new, empty, or this command's)")
    parser.add_argument("--scale", type=float, default=1.0, help="share of MS COCO 2014's counts (default 1.0)")
    parser.add_argument("--pool", type=int, default=300, help="distinct JPEGs the image files link to (300)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    args = parser.parse_args(argv)
    try:
        result = build(args.out_dir, args.scale, args.pool, args.seed, progress=not args.quiet)
    except RehearsalError as error:
        print(f"python -m captioner.data.synthetic.rehearsal: error: {error}", file=sys.stderr)
        return 2
    print(json.dumps({"root": result.root, "built": result.built, "counts": result.counts}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
