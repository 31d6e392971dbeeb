"""Attention figures: a caption word by word, each word over the image with its attention map."""

import math
import os

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402


def attention_map(weights, grid_shape, width, height):
    """One step's attention over `P = rows * columns` regions -> a `[height, width]` map, bilinear."""
    rows, columns = grid_shape
    grid = np.asarray(weights, np.float32).reshape(rows, columns)
    grid = grid / max(float(grid.max()), 1e-8)
    return np.asarray(Image.fromarray(grid).resize((width, height), Image.BILINEAR))


def attention_figure(pixels, caption, attention, grid_shape, columns=5):
    """A figure with the image, then one panel per caption word and the end token.

    Args:
        pixels: `[H, W, 3]` uint8, the image.
        caption: str, the generated caption; word i was emitted at step i.
        attention: `[L, P]` array, the decoder's attention at each step.
        grid_shape: (rows, columns) of the encoder's region grid.
        columns: int, panels per row.
    """
    words = caption.split() + ["<end>"]
    words = words[:len(attention)]
    height, width = pixels.shape[:2]
    panels = len(words) + 1
    rows = math.ceil(panels / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(2.4 * columns, 2.6 * rows), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    axes.flat[0].imshow(pixels)
    axes.flat[0].set_title("image", fontsize=9)
    for step, word in enumerate(words):
        axis = axes.flat[step + 1]
        axis.imshow(pixels)
        axis.imshow(attention_map(attention[step], grid_shape, width, height), cmap="inferno", alpha=0.6,
                    vmin=0.0, vmax=1.0)
        axis.set_title(word, fontsize=10)
    figure.suptitle(caption, fontsize=11)
    figure.tight_layout()
    return figure


def save_attention_figure(pixels, caption, attention, grid_shape, path):
    """Writes `attention_figure` to `path` (PNG), creating its folder."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    figure = attention_figure(pixels, caption, attention, grid_shape)
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path
