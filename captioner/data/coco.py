"""Readers for captioning data in the MS COCO layouts, all through pycocotools.

Three layouts, one code path (`read_split` -> a COCO index -> `Example`s):

- **COCO-format root** (as Shapes writes it): `images/<split>/` and
  `annotations/captions_<split>.json`.
- **MS COCO**: `train2014/`, `val2014/`, `annotations/captions_{train,val}2014.json`
  (2017 names work too).
- **Karpathy split**: `dataset_coco.json` with `images[].split` in
  train/restval/val/test (restval joins train), `filepath`, `filename`,
  `sentences[].raw`; it is turned into a COCO index over the MS COCO images.
"""

import contextlib
import dataclasses
import io
import json
import os

from pycocotools.coco import COCO


class DatasetError(ValueError):
    """Input data that cannot be used; the message names the path and what was expected."""


class MissingSplitError(DatasetError):
    """The root has no captions file for a split at all (MS COCO 2014 has no test captions)."""


@dataclasses.dataclass(frozen=True)
class Example:
    """One image with its reference captions.

    Args:
        image_id: int, the COCO image id.
        path: str, the image file.
        captions: tuple of str, the reference captions as written.
    """

    image_id: int
    path: str
    captions: tuple


@dataclasses.dataclass
class Split:
    """The examples of one split and where they came from.

    Args:
        name: str, the split name.
        examples: list of `Example`.
        annotation_file: str or None, the COCO captions file (None for Karpathy).
        coco: pycocotools `COCO` index of the split's captions.
        skipped: int, images dropped because their file was missing.
        bad_images: int, images dropped because their file cannot be decoded (`--skip-bad-images`).
    """

    name: str
    examples: list
    annotation_file: str
    coco: COCO
    skipped: int = 0
    bad_images: int = 0


def load_json(path, what):
    if not os.path.isfile(path):
        raise DatasetError(f"Missing {what}: {path} does not exist")
    try:
        with open(path) as handle:
            return json.load(handle)
    except json.JSONDecodeError as error:
        raise DatasetError(f"Malformed JSON in {what} {path}: {error}") from None


def coco_index(dataset, source):
    """Builds a pycocotools index from an in-memory COCO captions dict."""
    for key in ("images", "annotations"):
        if not isinstance(dataset.get(key), list):
            raise DatasetError(f"{source} is not a COCO captions file: it has no '{key}' list")
    coco = COCO()
    coco.dataset = dataset
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            coco.createIndex()
    except (KeyError, TypeError) as error:
        raise DatasetError(f"{source} is not a COCO captions file: an entry lacks {error}") from None
    unknown = sorted({a["image_id"] for a in dataset["annotations"]} - set(coco.imgs))
    if unknown:
        raise DatasetError(
            f"{source}: {len(unknown)} captions point at image ids missing from 'images', "
            f"first: {unknown[:5]}")
    return coco


def examples_from_coco(coco, image_dir, source, skip_missing_images=False):
    """Turns a COCO index into `Example`s, checking that every image file exists.

    Returns:
        `(examples, skipped)`: images with at least one caption, sorted by id,
        and how many were dropped for a missing file.
    """
    examples, missing = [], []
    for image_id in sorted(coco.imgs):
        captions = tuple(a["caption"] for a in coco.imgToAnns.get(image_id, []))
        if not captions:
            continue
        path = os.path.join(image_dir, coco.imgs[image_id]["file_name"])
        if not os.path.isfile(path):
            missing.append(path)
            continue
        examples.append(Example(image_id, path, captions))
    if missing and not skip_missing_images:
        raise DatasetError(
            f"{source}: {len(missing)} captioned images are missing under {image_dir}, first: "
            f"{missing[:3]}; pass --skip-missing-images to train without them")
    if not examples:
        raise DatasetError(f"{source}: the split has no captioned images")
    return examples, len(missing)


def _coco_layout(root, split):
    """Annotation file and image folder of `split` in a COCO-format or MS COCO root."""
    candidates = [(os.path.join(root, "annotations", f"captions_{split}.json"), os.path.join(root, "images", split))]
    for year in ("2014", "2017"):
        candidates.append((os.path.join(root, "annotations", f"captions_{split}{year}.json"),
                           os.path.join(root, f"{split}{year}")))
    for annotation_file, image_dir in candidates:
        if os.path.isfile(annotation_file):
            return annotation_file, image_dir
    expected = ", ".join(os.path.relpath(a, root) for a, _ in candidates)
    raise MissingSplitError(f"No captions for split '{split}' in {root}: expected one of {expected}")


def karpathy_coco(karpathy_json, split, payload=None):
    """Turns a Karpathy split file (`dataset_coco.json`, `dataset_flickr8k.json`, ...) into a COCO captions dict
    for `split`.

    File names become `filepath/filename`, relative to the dataset root (Flickr's files have no `filepath`);
    ids are `cocoid`, else `imgid`, else the entry's position. `payload` is the file's content if already loaded.
    """
    payload = load_json(karpathy_json, "Karpathy split file") if payload is None else payload
    if not isinstance(payload, dict):
        raise DatasetError(f"{karpathy_json} is not a Karpathy split file: it is not a JSON object")
    if not isinstance(payload.get("images"), list):
        raise DatasetError(f"{karpathy_json} is not a Karpathy split file: it has no 'images' list")
    wanted = {"train": ("train", "restval")}.get(split, (split,))
    images, annotations = [], []
    for position, entry in enumerate(payload["images"]):
        try:
            if entry["split"] not in wanted:
                continue
            image_id = int(entry.get("cocoid", entry.get("imgid", position)))
            file_name = os.path.join(entry.get("filepath", ""), entry["filename"])
            sentences = [s["raw"] for s in entry["sentences"]]
        except (KeyError, TypeError) as error:
            raise DatasetError(f"{karpathy_json}: image entry {position} lacks {error}") from None
        images.append({"id": image_id, "file_name": file_name})
        annotations.extend({"id": len(annotations) + 1, "image_id": image_id, "caption": raw} for raw in sentences)
    if not images:
        raise DatasetError(f"{karpathy_json}: no images in split '{split}' (splits: train+restval, val, test)")
    return {"images": images, "annotations": annotations}


def read_split(root, split, karpathy_json=None, skip_missing_images=False, karpathy_payload=None):
    """Reads one split of a COCO-layout root (optionally through the Karpathy split).

    Args:
        root: str, the dataset root.
        split: str, "train", "val" or "test" ("test" of MS COCO needs the Karpathy file).
        karpathy_json: str or None, path of `dataset_coco.json`.
        skip_missing_images: bool, drop captions of missing images instead of failing.
        karpathy_payload: the Karpathy file's content if already parsed (it is ~140 MB for MS COCO:
            reading several splits parses it once).
    """
    if not os.path.isdir(root):
        raise DatasetError(f"Dataset root {root} does not exist or is not a folder")
    if karpathy_json:
        source, image_dir, annotation_file = karpathy_json, root, None
        dataset = karpathy_coco(karpathy_json, split, karpathy_payload)
    else:
        annotation_file, image_dir = _coco_layout(root, split)
        source = annotation_file
        dataset = load_json(annotation_file, "captions file")
    coco = coco_index(dataset, source)
    examples, skipped = examples_from_coco(coco, image_dir, source, skip_missing_images)
    return Split(split, examples, annotation_file, coco, skipped)
