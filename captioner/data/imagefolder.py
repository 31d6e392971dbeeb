"""Your own captioned images (`--dataset imagefolder`): image files and a table of their captions.

Where the captions are, in this order:

- **`--captions FILE`**: any CSV, TSV or JSON Lines file (`captioner.data.caption_tables`); image paths in
  it are relative to the file's folder, or absolute.
- **Hugging Face `imagefolder`**: `DIR/metadata.jsonl` or `DIR/metadata.csv`, `file_name` relative to
  `DIR`; the split comes from a `split` column, or from the first folder of every `file_name` when each is
  one of `train/`, `validation/` (`val/`, `valid/`, `dev/`), `test/`.
- **Per split**: `DIR/{train,validation|val,test}/metadata.{jsonl,csv}`, `file_name` relative to its folder.

Columns: the image's is `--image-column`, else the first of `IMAGE_COLUMNS` present; the caption's is
`--caption-column`, else the first of `CAPTION_COLUMNS` (names compared ignoring case); a missing one is an
error naming the columns found. An optional `split` column takes train, val, validation, test (any case). An
image has several captions as several rows, or as a JSON list (in JSON Lines, or as a JSON-list string in a
CSV cell).

Rows that cannot be used are skipped and counted by reason with their line numbers (an empty caption, no
image name, a URL, a missing image file, a format training cannot decode, an image given in two splits, an
unknown split, a repeated row, an image that cannot be decoded: `captioner.data.image_check`, for the splits
read); more than half of the rows unusable is an error, as is a split left without images. Images in the
folders the captions point into that have no caption are ignored and counted.

Splits (`captioner.data.imagefolder_splits`): given by the metadata, or derived by the SHA-1 of each image's
key (its path under the root), 5% test and 5% val (rounded half up, at least one each), the rest train; a
split the metadata lacks is taken, 5% likewise, from its train images. A `splits.json` (`Options.splits_file`;
training writes `RUN/splits.json`) pins the split instead: images it does not list are left out. Image ids
come from the keys' SHA-1: the same whatever splits are read, and as files are added.
"""

import dataclasses
import os

from captioner.console import log
from captioner.data import coco, image_check
from captioner.data import imagefolder_splits as pinning
from captioner.data.caption_files import Problems
from captioner.data.caption_tables import captions_of, find_column, read_table
from captioner.data.coco import DatasetError

SPLITS = pinning.SPLITS
SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "validation": "val", "valid": "val",
               "dev": "val", "test": "test", "testing": "test"}
IMAGE_COLUMNS = ("file_name", "image", "image_path", "filename", "path")
CAPTION_COLUMNS = ("text", "caption", "captions", "sentence")
METADATA_NAMES = ("metadata.jsonl", "metadata.csv")
DECODABLE = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp")  # what training's TensorFlow decoder reads
IMAGE_SUFFIXES = DECODABLE + (".tif", ".tiff", ".heic", ".avif")  # files counted as images of a folder
MAX_UNUSABLE = 0.5
SPLITS_FILE = pinning.FILE_NAME  # what a training run writes into its folder


@dataclasses.dataclass(frozen=True)
class Options:
    """How to read an imagefolder dataset (the config fields of the same names).

    Args:
        captions: str or None, a CSV/TSV/JSONL of captions instead of the root's metadata files.
        image_column, caption_column: str or None, the columns' names (None: found among the common ones).
        separator: str or None, the CSV separator (None: `,`, a tab for `.tsv`).
        splits_file: str or None, a `splits.json` that pins each split's images.
    """

    captions: str = None
    image_column: str = None
    caption_column: str = None
    separator: str = None
    splits_file: str = None

    @classmethod
    def of(cls, config, run_dir=None):
        """The options of `config`; for the run folder `run_dir`, its own `splits.json` where it exists (a
        moved run's too), and none where the run is about to write it."""
        splits_file = config.splits_file
        if run_dir:
            own = os.path.abspath(os.path.join(run_dir, pinning.FILE_NAME))
            if os.path.isfile(own):
                splits_file = own
            elif splits_file and os.path.abspath(splits_file) == own:
                splits_file = None
        return cls(config.captions, config.image_column, config.caption_column, config.separator, splits_file)


class Skipped(Problems):
    """Rows skipped in one file: count, line numbers and up to three examples per reason."""

    def __init__(self):
        super().__init__()
        self.examples = {}

    def add(self, reason, line_number, example=None):
        super().add(reason, line_number)
        if example is not None and len(self.examples.setdefault(reason, [])) < 3:
            self.examples[reason].append((line_number, example))

    @property
    def count(self):
        return sum(len(numbers) for numbers in self.lines.values())


@dataclasses.dataclass
class Source:
    """One file of captions: its `caption_tables.Table`, the columns read, the split it is of (or None)."""

    path: str
    split: str
    table: object = None
    image_column: str = None
    caption_column: str = None
    split_column: str = None
    skipped: Skipped = dataclasses.field(default_factory=Skipped)


@dataclasses.dataclass
class Image:
    key: str
    path: str
    captions: list
    splits: set
    rows: list  # (Source, line number)


@dataclasses.dataclass
class Reading:
    """What reading an imagefolder dataset found (the check report and the log show it).

    Args:
        root: str, the dataset root.
        sources: list of `Source`.
        splits: dict split name -> `coco.Split`, the splits asked for.
        sizes: dict split name -> images assigned to it, for all three (before images that do not decode).
        split_from: str, where the split came from, as a person would say it.
        rows: int, the rows of all sources (lines that are not rows included).
        uncaptioned: list of str, image files of the folders read that have no caption (ignored).
        broken: list of `image_check.Problem`, images of the splits read that cannot be decoded (left out).
        notes: list of str, anything else the log says.
    """

    root: str
    sources: list
    splits: dict
    sizes: dict
    split_from: str
    rows: int
    uncaptioned: list
    broken: list
    notes: list

    @property
    def skipped(self):
        return sum(source.skipped.count for source in self.sources)

    def relative(self, path):
        return pinning.image_key(path, self.root)

    def summary(self):
        """The lines the log gets."""
        lines = [f"imagefolder {self.root}: " + "; ".join(
            f"{self.relative(s.path)} ({s.table.describe()}; image column {s.image_column!r}, caption column "
            f"{s.caption_column!r}{f', split column {s.split_column!r}' if s.split_column else ''})"
            for s in self.sources)]
        lines.append(f"  {self.split_from}: train/val/test {'/'.join(str(self.sizes.get(n, 0)) for n in SPLITS)} "
                     f"images; " + ", ".join(f"{sum(len(e.captions) for e in split.examples)} {name} captions"
                                            for name, split in self.splits.items()))
        for source in self.sources:
            if source.skipped:
                lines.append(f"  skipped {source.skipped.count} of the rows of {self.relative(source.path)}: "
                             f"{source.skipped.summary()}")
        if self.uncaptioned:
            lines.append(f"  {len(self.uncaptioned)} images in its folders have no caption and are ignored, first: "
                         f"{', '.join(self.relative(p) for p in self.uncaptioned[:3])}")
        if self.broken:
            lines.append(f"  left out {len(self.broken)} images that cannot be decoded:\n"
                         + image_check.describe(self.broken))
        lines.extend(f"  {note}" for note in self.notes)
        return "\n".join(lines)


def _find_sources(root, options):
    if options.captions:
        return [Source(os.path.abspath(options.captions), None)]
    if not root or not os.path.isdir(root):
        raise DatasetError(f"Dataset root {root} does not exist or is not a folder")
    def found(folder):
        return [os.path.join(folder, n) for n in METADATA_NAMES if os.path.isfile(os.path.join(folder, n))]

    top, per_split = found(root), {}
    with os.scandir(root) as entries:
        folders = sorted((e for e in entries if e.is_dir() and e.name.lower() in SPLIT_NAMES and found(e.path)),
                         key=lambda e: e.name)
    for folder in folders:
        split = SPLIT_NAMES[folder.name.lower()]
        if split in per_split:
            raise DatasetError(f"{root}: both {per_split[split][0]} and {found(folder.path)[0]} hold the {split} "
                               f"split's metadata: keep one")
        per_split[split] = found(folder.path)
    for paths in [top, *per_split.values()]:
        if len(paths) > 1:
            raise DatasetError(f"{os.path.dirname(paths[0])} holds both {' and '.join(map(os.path.basename, paths))}: "
                               f"keep one")
    if top and per_split:
        raise DatasetError(f"{root} has both {top[0]} and per-split metadata files "
                           f"({', '.join(p[0] for p in per_split.values())}): keep one layout")
    if top or per_split:
        return [Source(top[0], None)] if top else [Source(paths[0], split) for split, paths in per_split.items()]
    tables = sorted(n for n in os.listdir(root) if n.lower().endswith((".csv", ".tsv", ".jsonl")))
    hint = f" ({', '.join(tables[:3])} {'is' if len(tables) == 1 else 'are'} there: pass --captions " \
           f"{os.path.join(root, tables[0])}?)" if tables else ""
    raise DatasetError(f"No captions in {root}: expected metadata.jsonl or metadata.csv in it (Hugging Face "
                       f"imagefolder: a file_name and a text column) or in its train/, validation/ and test/ "
                       f"folders, or a CSV, TSV or JSONL of image and caption columns given with --captions{hint}")


def _read_source(source, root, options, images, referenced):
    """Reads one file's rows into `images` (key -> `Image`), counting the rows it skips."""
    table = source.table = read_table(source.path, options.separator)
    source.image_column = find_column(table, options.image_column, IMAGE_COLUMNS, "image", "--image-column")
    source.caption_column = find_column(table, options.caption_column, CAPTION_COLUMNS, "caption",
                                        "--caption-column")
    if source.split is None:
        source.split_column = next((c for c in table.columns if c.strip().lower() == "split"), None)
    for reason, numbers in table.problems.lines.items():
        for number in numbers:
            source.skipped.add(reason, number)
    base, add = os.path.dirname(source.path), source.skipped.add
    last = table.columns[-1] == source.caption_column and table.form == "csv"
    for number, row in table.rows:
        name, value = row.get(source.image_column), row.get(source.caption_column)
        if None in row:
            if not last:
                add("rows with more fields than the header", number)
                continue
            value = table.separator.join([value, *row[None]])  # an unquoted separator in the last column
        if not isinstance(name, str) or not name.strip():
            add("rows without an image name", number)
            continue
        name = name.strip()
        if "://" in name:
            add("rows whose image is a URL, not a file", number, name)
            continue
        captions, problem = captions_of(value)
        if problem:
            add(problem, number)
            continue
        split = source.split
        if source.split_column:
            text = row.get(source.split_column)
            text = text.strip().lower() if isinstance(text, str) else ""
            if not text:
                add("rows without a split value", number)
                continue
            if text not in SPLIT_NAMES:
                add("rows with an unknown split value (train, val, validation, test)", number, text)
                continue
            split = SPLIT_NAMES[text]
        path = os.path.normpath(os.path.join(base, name.replace("\\", "/")))
        referenced.add(path)
        if not path.lower().endswith(DECODABLE):
            add("rows whose image is not a JPEG, PNG, GIF, BMP or WebP file", number, name)
            continue
        if not os.path.isfile(path):
            add("rows whose image file is missing", number, name)
            continue
        key = pinning.image_key(path, root)
        image = images.setdefault(key, Image(key, path, [], set(), []))
        image.splits.add(split)  # before the repeat test: the same row under another split is a conflict
        new = [c for c in captions if c not in image.captions]
        if not new:
            add("repeated rows (same image and caption)", number)
            continue
        image.captions.extend(dict.fromkeys(new))
        image.rows.append((source, number))


def _check_share(sources):
    rows = sum(len(s.table.rows) + sum(len(n) for n in s.table.problems.lines.values()) for s in sources)
    unusable = sum(s.skipped.count for s in sources)
    if rows and unusable > MAX_UNUSABLE * rows:
        reasons = "; ".join(f"{os.path.basename(s.path)}: {s.skipped.summary()}" for s in sources if s.skipped)
        hint = ""
        missing = next((s for s in sources if "rows whose image file is missing" in s.skipped.examples), None)
        if missing:
            line, name = missing.skipped.examples["rows whose image file is missing"][0]
            hint = (f". Image paths are read relative to the folder of the file that names them: line {line} names "
                    f"{name!r}, which is not at {os.path.join(os.path.dirname(missing.path), name)}")
        raise DatasetError(f"{unusable} of the {rows} rows cannot be used, more than half: {reasons}{hint}")
    return rows


def _assign(images, sources, options, notes):
    """`(split -> keys, how)` for the usable images."""
    if options.splits_file:
        pinned = pinning.read_pinned(options.splits_file)
        assigned = {name: sorted(k for k in images if pinned.get(k) == name) for name in SPLITS}
        outside = [k for k in images if k not in pinned]
        if outside:
            notes.append(f"{len(outside)} captioned images are not in {options.splits_file} (added since the run "
                         f"started, or left out by it as broken files) and are left out here too, first: "
                         f"{', '.join(sorted(outside)[:3])}")
        gone = [k for k in pinned if k not in images]
        if gone:
            notes.append(f"{len(gone)} images of {options.splits_file} are gone or their rows skipped, first: "
                         f"{', '.join(sorted(gone)[:3])}")
        return assigned, f"split pinned by {options.splits_file}"
    given = {k: next(iter(image.splits)) for k, image in images.items()}
    if any(s.split_column for s in sources):
        how = "split from the split column"
    elif any(s.split for s in sources):
        how = "split from the metadata files of the train/, validation/, test/ folders"
    else:
        given = {k: _first_folder(image) for k, image in images.items()}
        how = "split from the train/, validation/, test/ folders of the file names"
        if not all(given.values()):
            return pinning.derive(list(images)), "split derived from a hash of the file names (5% test, 5% val)"
    assigned = {name: sorted(k for k, split in given.items() if split == name) for name in SPLITS}
    for name in ("val", "test"):
        if not assigned[name]:
            assigned[name], assigned["train"] = pinning.carve(assigned["train"])
            notes.append(f"no {name} split in the metadata: {len(assigned[name])} of the train images (5%, by a hash "
                         f"of the file names) are the {name} split")
    return assigned, how


def _first_folder(image):
    """The split named by the first folder of an image's path as its file gives it (`train/x.jpg`), or None."""
    parts = os.path.relpath(image.path, os.path.dirname(image.rows[0][0].path)).split(os.sep)
    return SPLIT_NAMES.get(parts[0].lower()) if len(parts) > 1 else None


def _uncaptioned(sources, images, referenced):
    folders = {os.path.dirname(s.path) for s in sources} | {os.path.dirname(p) for p in referenced}
    found = []
    for folder in sorted(folders):
        try:
            with os.scandir(folder) as entries:
                found.extend(e.path for e in entries if e.is_file() and e.name.lower().endswith(IMAGE_SUFFIXES)
                             and os.path.normpath(e.path) not in referenced)
        except OSError:
            continue
    return sorted(found)


def root_of(captions):
    """The root of a dataset given by its captions file alone: the file's folder (paths in it are relative to it)."""
    return os.path.dirname(os.path.abspath(os.path.expanduser(captions)))


def read(root, names=SPLITS, options=None, progress=True):
    """Reads an imagefolder dataset; returns a `Reading` whose `splits` are `names`'.

    Args:
        root: str or None, the dataset root (None: the folder of `options.captions`).
        names: splits wanted, of "train", "val", "test" (every image's split is known whichever are asked for).
        options: `Options`.
        progress: bool, show the image check's progress on large splits.
    """
    options = options or Options()
    unknown = [name for name in names if name not in SPLITS]
    if unknown:
        raise DatasetError(f"No split {unknown[0]!r} in an imagefolder dataset: the splits are {', '.join(SPLITS)}")
    root = os.path.abspath(root or root_of(options.captions or "."))
    sources, images, referenced, notes = _find_sources(root, options), {}, set(), []
    for source in sources:
        _read_source(source, root, options, images, referenced)
        notes.extend(f"{os.path.basename(source.path)}: {note}" for note in source.table.notes)
    for key in [k for k, image in images.items() if len(image.splits) > 1]:
        image = images.pop(key)
        for source, number in image.rows:
            source.skipped.add("rows of an image given in two splits", number,
                               f"{key} ({' and '.join(sorted(map(str, image.splits)))})")
    rows = _check_share(sources)
    if not images:
        files = ", ".join(s.path for s in sources)
        if not rows:
            raise DatasetError(f"{files}: a header and no rows of captions")
        raise DatasetError(f"No usable row in {files}: " + "; ".join(s.skipped.summary() for s in sources if s.skipped))
    assigned, how = _assign(images, sources, options, notes)
    ids = pinning.image_ids([k for keys in assigned.values() for k in keys])
    splits, broken = {}, []
    for name in names:
        paths = [images[k].path for k in assigned[name]]
        problems = image_check.check(paths, f"Checking the {name} images", progress=progress)
        by_path = {images[k].path: k for k in assigned[name]}
        for problem in problems:
            for source, number in images[by_path[problem.path]].rows:
                source.skipped.add("rows whose image cannot be decoded", number,
                                   f"{by_path[problem.path]}: {problem.reason}")
        broken.extend(problems)
        bad = {p.path for p in problems}
        kept = sorted((k for k in assigned[name] if images[k].path not in bad), key=ids.get)
        if not kept:
            raise DatasetError(f"The {name} split of {root} has no usable image ({len(assigned[name])} assigned, "
                               f"{len(bad)} of them cannot be decoded)")
        index = coco.coco_index({"images": [{"id": ids[k], "file_name": k} for k in kept],
                                 "annotations": [{"id": n + 1, "image_id": ids[k], "caption": c} for n, (k, c) in
                                                 enumerate((k, c) for k in kept for c in images[k].captions)]},
                                f"{root} ({name} split)")
        examples = [coco.Example(ids[k], images[k].path, tuple(images[k].captions)) for k in kept]
        splits[name] = coco.Split(name, examples, None, index, 0, len(problems))
    _check_share(sources)
    for source in sources:  # line numbers in file order, whatever order the checks found them in
        for numbers in source.skipped.lines.values():
            numbers.sort()
        for examples in source.skipped.examples.values():
            examples.sort()
    return Reading(root, sources, splits, {n: len(k) for n, k in assigned.items()}, how, rows,
                   _uncaptioned(sources, images, referenced), broken, notes)


def read_splits(root, names=SPLITS, options=None, progress=True):
    """Reads splits of an imagefolder dataset (see `read`) and logs what was read and skipped.

    Returns:
        dict split name -> `coco.Split` (no annotation file: the index is built in memory).
    """
    reading = read(root, names, options, progress)
    log(reading.summary())
    return reading.splits


def write_run_splits(config, run_dir, data):
    """Writes `RUN/splits.json` (each split's image files) for a run of an imagefolder dataset, unless it is there:
    evaluation reads the run's test images from it, even after files were added. Nothing for other datasets."""
    path = os.path.join(run_dir, pinning.FILE_NAME)
    if config.dataset != "imagefolder" or os.path.exists(path):
        return
    pinning.write_pinned(path, os.path.abspath(data.root), {"train": data.train, "val": data.val, "test": data.test})
