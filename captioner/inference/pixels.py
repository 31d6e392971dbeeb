"""Images as people hand them to the Python API, made into the model's input: `Captioner.caption`."""

import os

import numpy as np
from PIL import Image, ImageOps

from captioner.data import images as images_lib
from captioner.data.pipeline import normalize_image, resize_image


def to_pixels(image):
    """`[H, W, 3]` uint8 pixels of a path, a PIL image or an array, read as the caption command reads files.

    Raises ValueError for what cannot be an image (an unreadable file, a float array, a wrong shape).
    """
    if isinstance(image, (str, os.PathLike)):
        pixels, reason = images_lib.read_image(os.fspath(image))
        if reason:
            raise ValueError(f"{os.fspath(image)}: {reason}")
        return pixels
    if isinstance(image, Image.Image):
        image = ImageOps.exif_transpose(image)
        if image.mode in ("RGBA", "LA", "P", "PA") or "transparency" in image.info:
            rgba = image.convert("RGBA")
            image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
        return np.asarray(image.convert("RGB"))
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise ValueError(f"an array of {array.dtype}: caption() takes uint8 pixels (0-255), [H, W, 3]; for batches "
                         "already resized and normalised for the model, use generate()")
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] not in (3, 4):
        raise ValueError(f"an array of shape {array.shape}: caption() takes [H, W, 3] (or [H, W] grey, [H, W, 4] RGBA)")
    if array.shape[-1] == 4:
        return to_pixels(Image.fromarray(array, "RGBA"))
    return array


def caption(model, images, beam_size=None, alpha=None, max_length=None, batch_size=32, decoding=None,
            **controls):
    """`Captioner.caption`: see there."""
    single = not isinstance(images, (list, tuple))
    items = [images] if single else list(images)
    if not items:
        return []
    if decoding is None:
        decoding = model.decoding_settings(beam_size, alpha, **controls)
    prepared = [normalize_image(resize_image(to_pixels(item), model.image_size), model.normalization).numpy()
                for item in items]
    results = []
    for start in range(0, len(prepared), batch_size):
        output = model.generate(np.stack(prepared[start:start + batch_size]), max_length=max_length,
                                decoding=decoding)
        for row, (text, score) in enumerate(zip(output["captions"].numpy(), output["scores"].numpy())):
            result = {"caption": text.decode("utf-8"), "score": float(score)}
            if decoding.num_captions > 1:
                result["captions"] = [
                    {"caption": t.decode("utf-8"), "score": float(s), "log_prob": float(lp)}
                    for t, s, lp in zip(*(output[f"nbest_{key}"][row].numpy()
                                          for key in ("captions", "scores", "log_probs")))]
            results.append(result)
    return results[0] if single else results
