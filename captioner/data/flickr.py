"""Readers for Flickr8k and Flickr30k, in the files their users already have.

The layouts as distributed and as widely re-packaged, found in the root or up to
two folder levels below it:

- **Flickr8k**: images in `Flicker8k_Dataset/` (sic), `Flickr8k_Dataset/` or
  `Images/`; captions in `Flickr8k.token.txt` (`name.jpg#k<TAB>caption`, k in
  0-4) or in the CSV re-packaging `captions.txt` (an `image,caption` header,
  captions quoted where they hold commas); the official split in
  `Flickr_8k.{train,dev,test}Images.txt` (dev is our `val`).
- **Flickr30k**: images in `flickr30k-images/` (or `flickr30k_images/`,
  `Images/`); captions in `results_20130124.token` (the token format),
  `results.csv` (`image_name| comment_number| comment`) or `captions.txt`
  (`image_name,comment_number,comment`).
- **Either, with Karpathy's split** (`dataset_flickr8k.json` /
  `dataset_flickr30k.json`, `--karpathy-json`): the captions and splits come from
  that file; it has no `filepath` or `cocoid`, so ids are its `imgid`.

The caption file's format is told from its first lines, not its name. Without
split files or a Karpathy file (Flickr30k was released without a split, the CSV
re-packagings drop Flickr8k's) the split is derived: images ordered by a hash of
their file name, the first go to test and val (Flickr8k 1000 and 1000, Flickr30k
1000 and 1014, as in the standard splits; a tenth each on small sets), the rest
to train. It is logged, and stable as long as the file names are.

Image ids are the Flickr photo ids, the leading digits of each file name
(`1000268201_693b08cb0e.jpg` -> 1000268201, `1000092795.jpg` -> 1000092795),
when every image of the three splits has distinct ones; otherwise 1 + the
name's position in the sorted list of the splits' images.

Lines that cannot be used are skipped and counted, and the counts are logged
with the first line numbers: no tab, no `#k`, `k` out of range, an empty
caption, a repeated line, a second caption under the same `name#k` (the first
is kept). A byte-order mark and CRLF line ends are read as what they are.
Captions of images that are not in the image folder are skipped and counted
too (Flickr8k's own token file names one, `2258277193_586949ec62.jpg.1`, in no
split file); where the split is derived, if more than one and more than 5% are
missing, the folder is taken to be the wrong one and reading stops, unless `skip_missing_images`. An image a
split file lists without its file is an error, or skipped with that flag, as
for COCO. A file with no usable line is an error
naming the format expected. Every format ends as the same `coco.Split`, so
everything downstream reads Flickr as it reads COCO.
"""

import dataclasses
import hashlib
import os
import re

from captioner.console import log
from captioner.data import coco
from captioner.data.caption_files import FORMS, IMAGE_SUFFIXES, read_captions, read_name_list
from captioner.data.coco import DatasetError

MAX_MISSING_SHARE = 0.05  # more captioned images missing than this: the image folder is the wrong one
SPLITS = ("train", "val", "test")


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where one dataset's files are, as distributed.

    Args:
        title: str, the dataset's name in messages.
        image_dirs: tuple of str, image folder names, in order of preference.
        caption_files: tuple of str, caption file names, in order of preference.
        split_files: dict split -> file name of its image list, or None (no official split).
        derived_sizes: `(val, test)` images of a derived split.
    """

    title: str
    image_dirs: tuple
    caption_files: tuple
    split_files: dict
    derived_sizes: tuple


LAYOUTS = {
    "flickr8k": Layout("Flickr8k", ("Flicker8k_Dataset", "Flickr8k_Dataset", "Images", "images"),
                       ("Flickr8k.token.txt", "captions.txt"),
                       {"train": "Flickr_8k.trainImages.txt", "val": "Flickr_8k.devImages.txt",
                        "test": "Flickr_8k.testImages.txt"}, (1000, 1000)),
    "flickr30k": Layout("Flickr30k", ("flickr30k-images", "flickr30k_images", "Images", "images"),
                        ("results_20130124.token", "results.csv", "captions.txt"), None, (1014, 1000)),
}


def _folders(root, depth=2):
    """`root` and its sub-folders down to `depth` levels, breadth first, names sorted."""
    found, level = [root], [root]
    for _ in range(depth):
        below = []
        for folder in level:
            try:
                with os.scandir(folder) as entries:
                    below.extend(sorted(e.path for e in entries if e.is_dir() and not e.name.startswith(".")))
            except OSError:
                continue
        found.extend(below)
        level = below
    return found


def _find_file(folders, names):
    for name in names:
        for folder in folders:
            path = os.path.join(folder, name)
            if os.path.isfile(path):
                return path
    return None


def _image_names(folder):
    with os.scandir(folder) as entries:
        return {e.name for e in entries if e.is_file() and e.name.lower().endswith(IMAGE_SUFFIXES)}


def _find_image_dir(folders, layout):
    """`(folder, its image file names)` of the first image folder of `layout` holding images, or `(None, None)`."""
    for name in layout.image_dirs:
        for folder in folders:
            path = os.path.join(folder, name)
            names = _image_names(path) if os.path.isdir(path) else None
            if names:
                return path, names
    return None, None


def image_ids(names):
    """Image id of each file name of the splits (see the module doc): the Flickr photo id, else a position."""
    photo = {name: re.match(r"\d+", name) for name in names}
    ids = {name: int(match.group()) for name, match in photo.items() if match}
    if len(ids) == len(photo) and len(set(ids.values())) == len(ids):
        return ids
    return {name: position + 1 for position, name in enumerate(sorted(names))}


def derived_split(names, sizes):
    """`{split: names}`: names ordered by the SHA-1 of the name, test first, then val, the rest train."""
    if len(names) < 3:
        raise DatasetError(f"{len(names)} captioned images are too few for a train, a val and a test split")
    ordered = sorted(names, key=lambda name: hashlib.sha1(name.encode()).hexdigest())
    val_size, test_size = (min(size, max(1, len(ordered) // 10)) for size in sizes)
    return {"test": ordered[:test_size], "val": ordered[test_size:test_size + val_size],
            "train": ordered[test_size + val_size:]}


def _split_from_names(name, split_names, captions, ids, image_dir, source, skip_missing_images):
    images, annotations = [], []
    for file_name in split_names:
        image_id = ids[file_name]
        images.append({"id": image_id, "file_name": file_name})
        annotations.extend({"id": len(annotations) + 1, "image_id": image_id, "caption": caption}
                           for caption in captions.by_image[file_name])
    index = coco.coco_index({"images": images, "annotations": annotations}, source)
    examples, skipped = coco.examples_from_coco(index, image_dir, f"{source} ({name} split)", skip_missing_images)
    return coco.Split(name, examples, None, index, skipped)


def _locate(root, layout, karpathy_json):
    if not os.path.isdir(root):
        raise DatasetError(f"Dataset root {root} does not exist or is not a folder")
    folders = _folders(root)
    image_dir, on_disk = _find_image_dir(folders, layout)
    if image_dir is None:
        on_disk = _image_names(root)
        if on_disk:
            image_dir = root
        else:
            raise DatasetError(f"No {layout.title} images under {root}: expected a folder named one of "
                               f"{', '.join(layout.image_dirs)} holding the .jpg files (searched two levels down)")
    caption_file = None if karpathy_json else _find_file(folders, layout.caption_files)
    if caption_file is None and not karpathy_json:
        others = [name for other in LAYOUTS.values() if other is not layout for name in other.caption_files
                  if name not in layout.caption_files and _find_file(folders, [name])]
        hint = f" ({others[0]} is there: is it {_title_of(others[0])}?)" if others else ""
        raise DatasetError(f"No {layout.title} captions under {root}: expected one of "
                           f"{', '.join(layout.caption_files)} (searched two levels down), or pass "
                           f"--karpathy-json dataset_{layout.title.lower()}.json{hint}")
    return folders, image_dir, on_disk, caption_file


def _title_of(caption_file):
    return next(f"{layout.title}, --dataset {key}" for key, layout in LAYOUTS.items()
                if caption_file in layout.caption_files)


def read_splits(root, dataset, names=SPLITS, karpathy_json=None, skip_missing_images=False):
    """Reads splits of a Flickr8k or Flickr30k root, parsing its files once.

    Args:
        root: str, the folder the dataset was unpacked into.
        dataset: str, "flickr8k" or "flickr30k".
        names: splits wanted, of "train", "val", "test".
        karpathy_json: str or None, Karpathy's `dataset_flickr8k.json` / `dataset_flickr30k.json`.
        skip_missing_images: bool, drop captioned images whose file is missing instead of failing.

    Returns:
        dict split name -> `coco.Split` (no annotation file: the index is built in memory).
    """
    if dataset not in LAYOUTS:
        raise ValueError(f"Unknown Flickr dataset {dataset!r}; choose one of {', '.join(LAYOUTS)}")
    unknown = [name for name in names if name not in SPLITS]
    if unknown:
        raise DatasetError(f"No split {unknown[0]!r} in {LAYOUTS[dataset].title}: the splits are "
                           f"{', '.join(SPLITS)} (Flickr8k's dev is val)")
    layout = LAYOUTS[dataset]
    folders, image_dir, on_disk, caption_file = _locate(root, layout, karpathy_json)
    if karpathy_json:
        splits, payload = {}, coco.load_json(karpathy_json, "Karpathy split file")
        for name in names:
            index = coco.coco_index(coco.karpathy_coco(karpathy_json, name, payload), karpathy_json)
            examples, skipped = coco.examples_from_coco(index, image_dir, f"{karpathy_json} ({name} split)",
                                                        skip_missing_images)
            splits[name] = coco.Split(name, examples, None, index, skipped)
        return splits

    captions = read_captions(caption_file)
    notes = [f"{os.path.relpath(caption_file, root)}: {captions.count} captions of {len(captions.by_image)} "
             f"images, read as {FORMS[captions.form]}"]
    if captions.problems:
        notes.append(f"skipped {captions.problems.summary()}")
    if captions.repaired:
        notes.append(f"{captions.repaired} row(s) without the '|' before the comment read as 'k comment'")
    absent = sorted(set(captions.by_image) - on_disk)

    split_paths = {}
    if layout.split_files:
        split_paths = {name: _find_file(folders, [file]) for name, file in layout.split_files.items()}
        if any(split_paths.values()) and not all(split_paths.values()):
            missing = [layout.split_files[n] for n, p in split_paths.items() if not p]
            raise DatasetError(f"{root} has some of {layout.title}'s split files but not {', '.join(missing)}: "
                               f"give all three, or none (the split is then derived from the file names)")
    if all(split_paths.values()) and split_paths:
        lists = {name: read_name_list(path) for name, path in split_paths.items()}
        owner = {}
        for name in SPLITS:
            for image in lists[name]:
                owner.setdefault(image, []).append(name)
        shared = sorted(image for image, splits in owner.items() if len(splits) > 1)
        if shared:
            raise DatasetError(f"{len(shared)} images are in more than one of {layout.title}'s split files (an "
                               f"image must be in one split only), first: "
                               f"{', '.join(f'{n} ({owner[n][0]} and {owner[n][1]})' for n in shared[:3])}")
        for name in SPLITS:  # all three, so that ids do not depend on the splits asked for
            uncaptioned = [n for n in lists[name] if n not in captions.by_image]
            if uncaptioned and name in names:
                notes.append(f"{len(uncaptioned)} images of {os.path.basename(split_paths[name])} have no "
                             f"caption and are left out, first: {uncaptioned[:3]}")
            lists[name] = [n for n in lists[name] if n in captions.by_image]
        listed = set().union(*lists.values())
        outside = [n for n in captions.by_image if n not in listed]
        if outside:
            notes.append(f"{len(outside)} captioned images are in no split file and are not used"
                         + (f" ({len(set(outside) & set(absent))} without an image file)"
                            if set(outside) & set(absent) else ""))
        source = caption_file
    else:
        if absent:
            share = len(absent) / len(captions.by_image)
            if share > MAX_MISSING_SHARE and len(absent) > 1 and not skip_missing_images:
                raise DatasetError(
                    f"{caption_file}: {len(absent)} of {len(captions.by_image)} captioned images are not in "
                    f"{image_dir}, first: {absent[:3]}; is it the right image folder? Pass "
                    f"--skip-missing-images to train without them")
            notes.append(f"skipped the captions of {len(absent)} images not in {image_dir}, first: {absent[:3]}")
        present = [n for n in captions.by_image if n in on_disk]
        lists = derived_split(present, layout.derived_sizes)
        what = "no split files" if layout.split_files else "no official split"
        notes.append(f"{what}: split derived from a hash of the file names, train/val/test "
                     f"{len(lists['train'])}/{len(lists['val'])}/{len(lists['test'])} images (pass "
                     f"--karpathy-json dataset_{dataset}.json for Karpathy's)")
        source = caption_file
    log(f"{layout.title}: " + "; ".join(notes))
    ids = image_ids([n for split in SPLITS for n in lists[split]])
    return {name: _split_from_names(name, lists[name], captions, ids, image_dir, source, skip_missing_images)
            for name in names}


def read_split(root, dataset, split, karpathy_json=None, skip_missing_images=False):
    """One split of a Flickr root (see `read_splits`)."""
    return read_splits(root, dataset, (split,), karpathy_json, skip_missing_images)[split]
