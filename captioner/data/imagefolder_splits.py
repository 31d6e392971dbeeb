"""Which split each image of an imagefolder dataset is in, and its id: derived, carved out, or pinned by a run.

    derive(keys)                   no split given: 5% test, 5% val (rounded half up, at least one each), 90% train
    carve(train_keys, name)        a split the metadata lacks, taken from its train images the same way
    image_ids(keys)                ids from the SHA-1 of each image's key: stable, whatever else is read
    read_pinned(path) / write_pinned(path, root, splits)   a run's `splits.json`

An image's key is its path relative to the dataset root, with `/` between
folders (an image outside the root: its absolute path). Orders come from the
SHA-1 of keys alone, so a split is the same on every machine and every run for
the same files; adding files can move images between derived splits, which is
why training writes the split it used into `RUN/splits.json` and evaluation
reads it from there.
"""

import hashlib
import json
import os

from captioner import files
from captioner.data.coco import DatasetError

SPLITS = ("train", "val", "test")
SHARE = 0.05  # of the images, for each of val and test when the split is derived
FILE_NAME = "splits.json"
FORMAT = "captioner imagefolder splits"


def image_key(path, root):
    """The key of the image file `path` (absolute) under the dataset root `root`."""
    relative = os.path.relpath(path, root) if root else path
    if relative == os.pardir or relative.startswith(os.pardir + os.sep) or os.path.isabs(relative):
        return path.replace(os.sep, "/")
    return relative.replace(os.sep, "/")


def _digest(key):
    return hashlib.sha1(key.encode("utf-8", "surrogateescape")).hexdigest()


def share_of(count):
    """Images of each of val and test out of `count`: 5%, rounded half up, at least one."""
    return max(1, int(count * SHARE + 0.5))


def derive(keys):
    """`{split: keys}` of images with no split given: ordered by the SHA-1 of their keys, test first, then val."""
    if len(keys) < 3:
        raise DatasetError(f"{len(keys)} usable captioned images are too few for a train, a val and a test split")
    ordered = sorted(keys, key=_digest)
    size = share_of(len(ordered))
    return {"test": ordered[:size], "val": ordered[size:2 * size], "train": ordered[2 * size:]}


def carve(train_keys):
    """`(carved, rest)`: 5% of the train images (at least one), by the SHA-1 order, for a split the metadata lacks."""
    if len(train_keys) < 2:
        raise DatasetError(f"the train split has {len(train_keys)} usable images: too few to take a missing split from")
    ordered = sorted(train_keys, key=_digest)
    size = share_of(len(ordered))
    return ordered[:size], ordered[size:]


def image_ids(keys):
    """`{key: id}`: 1 + the first 48 bits of the key's SHA-1 (below 2**53, safe in any JSON reader); on the
    unlikely collision, the next free number, in sorted key order."""
    ids, used = {}, set()
    for key in sorted(keys):
        image_id = 1 + int(_digest(key)[:12], 16)
        while image_id in used:
            image_id += 1
        ids[key] = image_id
        used.add(image_id)
    return ids


def read_pinned(path):
    """`{key: split}` of a `splits.json`; a `DatasetError` for a file that is not one."""
    if not os.path.isfile(path):
        raise DatasetError(f"Missing splits file: {path} does not exist (a run of an imagefolder dataset writes "
                           f"{FILE_NAME} into its folder)")
    try:
        with open(path, encoding="utf-8") as handle:
            payload = json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DatasetError(f"{path} is not a splits file: {error}") from None
    splits = payload.get("splits") if isinstance(payload, dict) else None
    if not isinstance(splits, dict) or not all(isinstance(splits.get(s, []), list)
                                               and all(isinstance(key, str) for key in splits.get(s, []))
                                               for s in SPLITS):
        raise DatasetError(f"{path} is not a splits file: expected {{\"splits\": {{\"train\": [file, ...], "
                           f"\"val\": [...], \"test\": [...]}}}}")
    owner = {}
    for split in SPLITS:
        for key in splits.get(split, []):
            if owner.setdefault(key, split) != split:
                raise DatasetError(f"{path}: {key} is in both the {owner[key]} and the {split} split")
    return owner


def write_pinned(path, root, splits):
    """Writes `splits.json`: each split's image files (keys, relative to `root`), sorted; atomically."""
    listed = {name: sorted(image_key(e.path, root) for e in split.examples) for name, split in splits.items()}
    payload = {"format": FORMAT, "version": 1, "root": root, "splits": listed}
    with files.replacing(path) as temporary, open(temporary, "w", encoding="utf-8") as handle:
        json.dump(payload, handle, indent=1, ensure_ascii=False)
