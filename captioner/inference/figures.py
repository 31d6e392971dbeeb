"""Attention figures: a caption word by word, each word over the image with its attention map.

Figures are `matplotlib.figure.Figure` objects made without pyplot, so this
module changes nothing of matplotlib's state: in a notebook a figure shows
where it is displayed (`display(figure)`, or as a cell's last value), and
files are written through `save_attention_figure` or `png_bytes` whatever the
backend.
"""

import io
import math
import os

import numpy as np
from matplotlib.figure import Figure
from PIL import Image


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

    Returns:
        a `matplotlib.figure.Figure`.
    """
    words = caption.split() + ["<end>"]
    words = words[:len(attention)]
    height, width = pixels.shape[:2]
    panels = len(words) + 1
    rows = math.ceil(panels / columns)
    figure = Figure(figsize=(2.4 * columns, 2.6 * rows))
    axes = figure.subplots(rows, columns, squeeze=False)
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


def png_bytes(figure, dpi=80):
    """The figure as PNG bytes (for a report or a web page)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def save_attention_figure(pixels, caption, attention, grid_shape, path):
    """Writes `attention_figure` to `path` (PNG), creating its folder."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    attention_figure(pixels, caption, attention, grid_shape).savefig(path, dpi=80)
    return path


def learning_curves(rows):
    """A figure of a run's `log.csv` rows: training and validation loss, and the validation figures by epoch.

    Args:
        rows: list of dicts (`csv.DictReader` of `log.csv`): `epoch`, `loss`, `val_loss`, and the
            validation figures present (`val_cider_d`, `val_nltk_bleu_4`; a self-critical stage logs `reward`).
    """
    epochs = [int(row["epoch"]) + 1 for row in rows]
    value = lambda row, key: float(row[key]) if row.get(key) not in (None, "") else None  # noqa: E731
    figure = Figure(figsize=(10, 3.6))
    left, right = figure.subplots(1, 2)
    for key, label in (("loss", "training"), ("val_loss", "validation")):
        points = [(e, value(r, key)) for e, r in zip(epochs, rows) if value(r, key) is not None]
        if points:
            left.plot(*zip(*points), marker="o", label=label)
    left.set(title="loss (masked cross-entropy; SCST: policy loss)", xlabel="epoch")
    left.legend()
    for key, label in (("val_cider_d", "CIDEr-D"), ("val_nltk_bleu_4", "BLEU-4 (nltk)"),
                       ("reward", "sampled reward (CIDEr-D)")):
        points = [(e, value(r, key)) for e, r in zip(epochs, rows) if value(r, key) is not None]
        if points:
            right.plot(*zip(*points), marker="o", label=label)
    right.set(title="validation, greedy captions (0-1; CIDEr-D 1.0 = '100')", xlabel="epoch")
    right.legend()
    figure.tight_layout()
    return figure
