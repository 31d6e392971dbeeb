"""Reading people's own image files: found in a folder, checked, oriented and converted, one at a time.

Pixels come out as the pipeline's `decode_image` op gives them, so a plain
JPEG or PNG captions exactly as it would in training, evaluation or an
exported model. Files that need more than that (EXIF rotation, CMYK,
16-bit, alpha, palette, WebP) are normalised with Pillow first. A file that
cannot be used is reported with its reason; it never stops the run.
"""

import io
import os
import warnings
from concurrent import futures

import numpy as np
import tensorflow as tf
from PIL import Image, ImageOps

from captioner.data.pipeline import decode_image

EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp")
MAX_PIXELS = 100_000_000  # larger images are refused rather than decoded into gigabytes


def find_images(folder, recursive=False):
    """Image files under `folder` by extension, in sorted order, lazily (directories named like images skipped)."""
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{folder} is not a folder")
    for current, directories, files in os.walk(folder):
        directories.sort()
        for name in sorted(files):
            path = os.path.join(current, name)
            if name.lower().endswith(EXTENSIONS) and os.path.isfile(path):
                yield path
        if not recursive:
            break


def _needs_pillow(image):
    """Whether TF's decoder alone would not give the picture as a person sees it."""
    orientation = image.getexif().get(0x0112, 1)
    return image.format not in ("JPEG", "PNG", "GIF", "BMP") or image.mode not in ("RGB", "L") or orientation != 1


def read_image(path):
    """Returns `(pixels [H, W, 3] uint8, None)` or `(None, reason)`."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
        if not data:
            return None, "empty file"
        with warnings.catch_warnings():
            # Pillow warns above its own pixel limit; ours (MAX_PIXELS) is checked just below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
        with image:
            width, height = image.size
            if width * height > MAX_PIXELS:
                return None, f"image too large ({width} x {height} pixels, limit {MAX_PIXELS})"
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
            else:
                image.verify()  # catches truncated and corrupt files before TF sees them
        return decode_image(tf.constant(data)).numpy(), None
    except PermissionError:
        return None, "permission denied"
    except Image.DecompressionBombError as error:
        return None, f"image too large ({error})"
    except (OSError, SyntaxError, ValueError, tf.errors.OpError) as error:
        message = getattr(error, "message", None) or str(error) or type(error).__name__
        return None, f"unreadable image: {message.splitlines()[0][:200]}"


def read_images(paths, workers=4, lookahead=64):
    """`(path, pixels, reason)` for `paths` in order, read by a few threads with bounded lookahead."""
    with futures.ThreadPoolExecutor(workers) as pool:
        pending = []
        for path in paths:
            pending.append((path, pool.submit(read_image, path)))
            if len(pending) >= lookahead:
                path_, job = pending.pop(0)
                yield (path_, *job.result())
        for path_, job in pending:
            yield (path_, *job.result())
