"""Broken image files found before hours of work, each named with its reason.

A truncated or corrupt JPEG stops training hours into an MS COCO epoch with
TensorFlow's `jpeg::Uncompress failed`, naming no file. `check` reads every
image of a split once when a training run, a feature-cache build or an
evaluation starts: the file is opened and fully decoded (JPEGs at an eighth of
their size, which still reads every byte of their compressed data), by a few
threads, and the answers are kept in a small cache (`cache_home()`, in the
user's cache folder) keyed by each file's path, size and modification time, so
a rerun pays only a `stat` per image.

Decoding uses Pillow, which reports problems as exceptions and prints nothing;
its libjpeg and libpng are those TensorFlow decodes with. Where the pipeline
still fails on an image that passed (`name_undecodable` finds it with
TensorFlow's own decoder), the error names the file.
"""

import concurrent.futures
import contextlib
import dataclasses
import hashlib
import io
import json
import os
import re
import warnings

from PIL import Image

from captioner import files
from captioner.console import Progress, log
from captioner.data.coco import DatasetError

MAX_PIXELS = 100_000_000  # the same limit as captioning people's images (`captioner.data.images`)
CACHE_VERSION = 1


@dataclasses.dataclass(frozen=True)
class Problem:
    """A file that cannot be trained or evaluated on.

    Args:
        path: str, the file.
        reason: str, what is wrong, as a person would say it.
    """

    path: str
    reason: str


EMPTY = "empty file (0 bytes)"
NOT_AN_IMAGE = "not an image, or its header is corrupt"
TRUNCATED = "truncated: the file ends before its image data does (an interrupted copy or download?)"


def too_large(width, height):
    return f"image too large ({width} x {height} pixels, limit {MAX_PIXELS})"


def reason_of(error):
    """What an error reading or decoding an image means, as a person would say it (one line).

    Every reader of image files says the same for the same file (the caption command, the image check,
    the data check): Pillow's and TensorFlow's errors alike.
    """
    if isinstance(error, FileNotFoundError):
        return "missing"
    if isinstance(error, PermissionError):
        return "permission denied"
    if isinstance(error, Image.UnidentifiedImageError):
        return NOT_AN_IMAGE
    if isinstance(error, Image.DecompressionBombError):
        return f"image too large ({error})"
    message = getattr(error, "message", None) or str(error) or type(error).__name__
    message = re.sub(r"\{\{function_node [^}]*\}\}\s*|\s*\[Op:[^\]]*\].*", "", message).splitlines()[0].strip()[:160]
    if "truncated" in message.lower() or "premature end" in message.lower():
        return TRUNCATED
    return f"cannot be decoded: {message}"


def decodes(data):
    """None if the image bytes `data` decode fully (within `MAX_PIXELS`), else the reason they do not (str).

    A JPEG is decoded at an eighth of its size, which still reads every byte of its compressed data.
    """
    if not data:
        return EMPTY
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                if width * height > MAX_PIXELS:
                    return too_large(width, height)
                if image.format == "JPEG":
                    image.draft("RGB", (max(1, width // 8), max(1, height // 8)))
                image.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        return reason_of(error)
    return None


def check_file(path):
    """None if `path` is an image that decodes fully, else the reason it does not (str)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as error:
        return reason_of(error)
    return decodes(data)


def cache_home():
    """Where the answers are kept: the user's cache (`$XDG_CACHE_HOME`, default `~/.cache`)`/captioner/image-checks`,
    the same from any folder (and never inside a dataset, which may be read-only or shared)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "captioner", "image-checks")


def _cache_path(paths):
    """One answer file per folder of images (the first image's), under `cache_home()`."""
    folder = os.path.dirname(os.path.abspath(paths[0])) if paths else ""
    digest = hashlib.sha1(folder.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return os.path.join(cache_home(), f"{digest}.json")


def _load_answers(path):
    try:
        with open(path) as handle:
            payload = json.load(handle)
        if payload.get("version") == CACHE_VERSION and isinstance(payload.get("files"), dict):
            return payload["files"]
    except (OSError, ValueError, AttributeError):
        pass
    return {}


def _signature(path):
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return [stat.st_size, stat.st_mtime_ns]


def check(paths, label="Checking images", workers=8, progress=True):
    """Checks each of `paths` (decoding it, or by its cached answer); returns the `Problem`s in `paths` order.

    Answers are cached in `cache_home()` by path, size and
    modification time: a file that changed is checked again, a missing one always.
    """
    paths = list(paths)
    if not paths:
        return []
    cache_file = _cache_path(paths)
    answers = _load_answers(cache_file)
    signatures = {path: _signature(path) for path in paths}
    todo = [p for p in paths if signatures[p] is not None and answers.get(p, {}).get("signature") != signatures[p]]
    if todo:
        bar = Progress(len(todo), f"{label} (each decoded once; answers kept)", enabled=progress and len(todo) >= 1000)
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            for done, (path, reason) in enumerate(zip(todo, pool.map(check_file, todo)), 1):
                answers[path] = {"signature": signatures[path], "problem": reason}
                bar.update(done)
        os.makedirs(os.path.dirname(cache_file), exist_ok=True)
        with files.replacing(cache_file) as temporary, open(temporary, "w") as handle:
            json.dump({"version": CACHE_VERSION, "files": answers}, handle)
    return [Problem(path, "missing" if signatures[path] is None else answers[path]["problem"])
            for path in paths if signatures[path] is None or answers[path]["problem"]]


def checked_splits(splits, skip_bad_images=False, progress=True):
    """`splits` once their images are checked: unchanged when all decode; else a `DatasetError` naming the
    broken files of every split, or, with `skip_bad_images`, the splits without them (`Split.bad_images`
    counts them, the log names them). A split given twice (test is val without a test split) is checked once.
    """
    found = {}
    for split in splits:
        if id(split) not in found:
            found[id(split)] = check([e.path for e in split.examples], f"Checking the {split.name} images",
                                     progress=progress)
    broken = [(split, found[id(split)]) for split in {id(s): s for s in splits}.values() if found[id(split)]]
    if broken and not skip_bad_images:
        report = "\n".join(f"{len(problems)} of the {len(split.examples)} images of the {split.name} split cannot "
                           f"be used:\n{describe(problems)}" for split, problems in broken)
        raise DatasetError(f"{report}\nReplace or delete them, or pass --skip-bad-images to leave them out "
                           "(they are then counted in the log and in metrics.json)")
    kept = {}
    for split in splits:
        problems = found[id(split)]
        if id(split) in kept or not problems:
            kept.setdefault(id(split), split)
            continue
        bad = {p.path for p in problems}
        log(f"Left out {len(problems)} {split.name} images that cannot be used (--skip-bad-images):\n"
            f"{describe(problems)}")
        kept[id(split)] = dataclasses.replace(split, examples=[e for e in split.examples if e.path not in bad],
                                              bad_images=split.bad_images + len(problems))
    return [kept[id(split)] for split in splits]


def checked_split(split, skip_bad_images=False, progress=True):
    """`checked_splits` of one split."""
    return checked_splits([split], skip_bad_images, progress)[0]


def describe(problems, limit=10):
    """The problems as lines a person reads: the first `limit` files with their reasons, then a count."""
    lines = [f"  {p.path}: {p.reason}" for p in problems[:limit]]
    if len(problems) > limit:
        lines.append(f"  ... and {len(problems) - limit} more")
    return "\n".join(lines)


def name_undecodable(paths, limit=10):
    """The first `limit` files of `paths` that TensorFlow's own decoder refuses, as `Problem`s (slow: every
    image decoded at full size). For an error the pipeline raised, to name its file."""
    import tensorflow as tf

    from captioner.data.pipeline import decode_image

    found = []
    for path in paths:
        try:
            decode_image(tf.io.read_file(path))
        except (tf.errors.OpError, OSError) as error:
            message = getattr(error, "message", str(error)).splitlines()[0][:160]
            found.append(Problem(path, f"TensorFlow cannot decode it: {message}"))
            if len(found) >= limit:
                break
    return found


DECODE_ERRORS = ("jpeg", "png", "gif", "bmp", "webp", "decode", "image", "Invalid JPEG", "Input is empty")


@contextlib.contextmanager
def naming_undecodable(paths):
    """Turns a decoding error that escapes the `tf.data` pipeline (it names no file) into a `DatasetError`
    naming the files of `paths` that TensorFlow cannot decode."""
    import tensorflow as tf

    try:
        yield
    except tf.errors.InvalidArgumentError as error:
        if not any(word.lower() in error.message.lower() for word in DECODE_ERRORS):
            raise
        found = name_undecodable(paths)
        if not found:
            raise
        raise DatasetError(f"An image failed to decode in the input pipeline ({error.message.splitlines()[0][:120]}); "
                           f"TensorFlow cannot decode:\n{describe(found)}\nReplace or delete them, or pass "
                           "--skip-bad-images") from None
