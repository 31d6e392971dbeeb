"""Reading people's own image files: found in a folder, checked, oriented and converted, one at a time.

Pixels come out as the pipeline's `decode_image` op gives them, so a plain
JPEG or PNG captions exactly as it would in training, evaluation or an
exported model. Files that need more than that (EXIF rotation, CMYK,
16-bit, alpha, palette, WebP) are normalised with Pillow first. A file that
cannot be used is reported with its reason; it never stops the run.
"""

import collections
import contextlib
import io
import os
import threading
import warnings
from concurrent import futures

import numpy as np
import tensorflow as tf
from PIL import Image, ImageOps

from captioner.data import image_check
from captioner.data.pipeline import decode_image

EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp")
from captioner.data.image_check import MAX_PIXELS  # noqa: E402  (larger images are refused, not decoded)


def find_images(folder, recursive=False):
    """Image files under `folder` by extension, in sorted order, lazily (directories named like images skipped)."""
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{folder} is not a folder")
    for current, directories, files in os.walk(os.path.normpath(folder)):
        directories.sort()
        for name in sorted(files):
            path = os.path.join(current, name)  # `./photos/` and `photos` give the same paths, for resuming
            if name.lower().endswith(EXTENSIONS) and os.path.isfile(path):
                yield path
        if not recursive:
            break


def _needs_pillow(image):
    """Whether TF's decoder alone would not give the picture as a person sees it."""
    orientation = image.getexif().get(0x0112, 1)
    return image.format not in ("JPEG", "PNG", "GIF", "BMP") or image.mode not in ("RGB", "L") or orientation != 1


BYTES_PER_PIXEL = 24  # decoded bytes a pixel costs while it is read and resized (uint8 copies, float32 resize)
DEFAULT_MEMORY_BUDGET = 1 << 30  # bytes of decoded pixels in flight while captioning a folder


class MemoryBudget:
    """Bytes that threads reserve before decoding and give back after: memory bounded by size, not by count.

    A reservation larger than the whole budget waits until nothing else is
    held, then goes alone, so one huge image is never refused for its size
    (`MAX_PIXELS` does that) and never shares memory with others.

    Args:
        capacity: int, bytes.
    """

    def __init__(self, capacity):
        self.capacity = capacity
        self.held = 0
        self.condition = threading.Condition()

    @contextlib.contextmanager
    def reserve(self, size):
        size = min(size, self.capacity)
        with self.condition:
            self.condition.wait_for(lambda: self.held + size <= self.capacity)
            self.held += size
        try:
            yield
        finally:
            with self.condition:
                self.held -= size
                self.condition.notify_all()


def read_image(path, budget=None, prepare=None):
    """Returns `(pixels [H, W, 3] uint8, None)` or `(None, reason)`.

    Args:
        path: str, the file.
        budget: `MemoryBudget` or None: the decoded size is reserved from it
            (known from the header, before decoding) until `prepare` is done.
        prepare: function of the pixels, or None: its result is returned in
            their place, and the full-size pixels are let go inside the reservation.
    """
    try:
        with open(path, "rb") as handle:
            data = handle.read()
        if not data:
            return None, image_check.EMPTY
        with warnings.catch_warnings():
            # Pillow warns above its own pixel limit; ours (MAX_PIXELS) is checked just below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
        with image:
            width, height = image.size
            if width * height > MAX_PIXELS:
                return None, image_check.too_large(width, height)
            reservation = budget.reserve(width * height * BYTES_PER_PIXEL) if budget else contextlib.nullcontext()
            with reservation:
                # A truncated or corrupt file is told apart, and named, as the image check names it.
                reason = image_check.decodes(data)
                if reason:
                    return None, reason
                pixels = _decode(image, data)
                return (prepare(pixels) if prepare else pixels), None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError, tf.errors.OpError) as error:
        return None, image_check.reason_of(error)


def _decode(image, data):
    """Pixels of an opened Pillow `image` whose encoded bytes are `data`, upright, RGB."""
    if _needs_pillow(image):
        image.seek(0)
        image = ImageOps.exif_transpose(image)
        if image.mode in ("RGBA", "LA", "P", "PA") or "transparency" in image.info:
            # Transparent areas become white, as most viewers show them.
            rgba = image.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            image = Image.alpha_composite(white, rgba)
        if image.mode in ("I;16", "I;16B", "I;16L", "I"):
            array = np.asarray(image, dtype=np.float64)
            image = Image.fromarray(np.clip(array / 257.0, 0, 255).astype(np.uint8))
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="PNG")
        data = buffer.getvalue()
    return decode_image(tf.constant(data)).numpy()


def read_images(paths, workers=4, lookahead=64, prepare=None, memory_budget=None):
    """`(path, pixels or prepare(pixels), reason)` for `paths` in order, read by a few threads.

    At most `lookahead` files are queued ahead of the consumer; with a
    `memory_budget` (bytes), decoding threads also wait for decoded bytes to
    be free, so full-size pixels in flight stay within it (see `MemoryBudget`).
    """
    budget = MemoryBudget(memory_budget) if memory_budget else None
    with futures.ThreadPoolExecutor(workers) as pool:
        pending = collections.deque()
        for path in paths:
            pending.append((path, pool.submit(read_image, path, budget, prepare)))
            if len(pending) >= lookahead:
                path_, job = pending.popleft()
                yield (path_, *job.result())
        for path_, job in pending:
            yield (path_, *job.result())
