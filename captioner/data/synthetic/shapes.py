"""Shapes: the built-in captioning dataset (format v1, described in `data/README.md`).

Scenes of one to three coloured shapes on a noisy grey canvas, five template
captions per image, written in the MS COCO file layout so that the same readers
serve Shapes and COCO. Run on its own:

    python -m captioner.data.synthetic.shapes ROOT [--seed 0] [--image-size 96] [--splits 8000 500 500]

Generation writes into a sibling folder and renames it into place at the end,
so an interrupted run never leaves something that looks complete.
"""

import argparse
import dataclasses
import json
import os
import shutil
import sys

import numpy as np
from PIL import Image

from captioner import files
from captioner.data import data_home

SPEC_VERSION = 1
SPLITS = ("train", "val", "test")
DEFAULT_SPLIT_SIZES = (8000, 500, 500)
MANIFEST = "shapes.json"

SHAPES = ("circle", "square", "triangle", "diamond", "cross")
PLURALS = {
    "circle": "circles",
    "square": "squares",
    "triangle": "triangles",
    "diamond": "diamonds",
    "cross": "crosses",
}
COLOURS = {
    "red": (215, 38, 38),
    "green": (34, 160, 60),
    "blue": (40, 80, 215),
    "yellow": (235, 200, 30),
    "purple": (140, 60, 180),
    "orange": (245, 130, 20),
}
SIZES = ("small", "large")
ROWS = ("top", "middle", "bottom")
COLUMNS = ("left", "centre", "right")
POSITIONS = {
    (0, 0): "in the top left corner",
    (0, 1): "at the top",
    (0, 2): "in the top right corner",
    (1, 0): "on the left",
    (1, 1): "in the center",
    (1, 2): "on the right",
    (2, 0): "in the bottom left corner",
    (2, 1): "at the bottom",
    (2, 2): "in the bottom right corner",
}
VOCABULARY = frozenset(
    "a an image of there is are two three shapes and small large big "
    "in the top bottom left right center corner at on to above below".split()
    + list(COLOURS)
    + list(SHAPES)
    + list(PLURALS.values())
)

# Figures of the spec, in pixels for a 96-pixel canvas; they scale with the canvas.
_REFERENCE_SIZE = 96
_SMALL_RANGE = (14, 20)
_LARGE_RANGE = (28, 36)
_NOISE_SIGMA = 6.0
_BACKGROUND_RANGE = (200, 245)
_COLOUR_JITTER = 15
_COUNT_PROBABILITIES = (0.4, 0.4, 0.2)


@dataclasses.dataclass(frozen=True)
class ShapeObject:
    """One object of a scene.

    Args:
        shape: str, one of `SHAPES`.
        colour: str, one of `COLOURS`.
        size: str, "small" or "large".
        row: int, grid row 0..2 (top to bottom).
        column: int, grid column 0..2 (left to right).
        bbox: tuple of float, `[x, y, w, h]` of the object's square box in pixels.
    """

    shape: str
    colour: str
    size: str
    row: int
    column: int
    bbox: tuple


def _scaled(value, image_size):
    return int(round(value * image_size / _REFERENCE_SIZE))


def draw_scene(rng, image_size):
    """Draws one scene. Returns `(pixels [S, S, 3] uint8, objects, masks)`."""
    count = int(rng.choice(3, p=_COUNT_PROBABILITIES)) + 1
    cells = rng.choice(9, size=count, replace=False)
    cell = image_size / 3.0
    ys, xs = np.mgrid[0:image_size, 0:image_size].astype(np.float64) + 0.5

    objects, masks, colours = [], [], []
    for index in cells:
        row, column = divmod(int(index), 3)
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
        colour = list(COLOURS)[int(rng.integers(len(COLOURS)))]
        size = SIZES[int(rng.integers(2))]
        low, high = _SMALL_RANGE if size == "small" else _LARGE_RANGE
        side = int(rng.integers(_scaled(low, image_size), _scaled(high, image_size) + 1))
        # A large object can be wider than a cell; it is then centred without jitter.
        jitter = max(0, int(np.floor(cell / 2 - side / 2 - 1)))
        cx = (column + 0.5) * cell + int(rng.integers(-jitter, jitter + 1))
        cy = (row + 0.5) * cell + int(rng.integers(-jitter, jitter + 1))
        rgb = np.array(COLOURS[colour]) + rng.integers(-_COLOUR_JITTER, _COLOUR_JITTER + 1, size=3)
        mask = _shape_mask(shape, cx, cy, side, xs, ys)
        bbox = (cx - side / 2.0, cy - side / 2.0, float(side), float(side))
        objects.append(ShapeObject(shape, colour, size, row, column, bbox))
        masks.append(mask)
        colours.append(np.clip(rgb, 0, 255))

    grey = int(rng.integers(_BACKGROUND_RANGE[0], _BACKGROUND_RANGE[1] + 1))
    noise = rng.normal(0.0, _NOISE_SIGMA, size=(image_size, image_size, 3))
    canvas = np.full((image_size, image_size, 3), float(grey))
    for mask, rgb in zip(masks, colours):
        canvas[mask] = rgb
    pixels = np.clip(np.round(canvas + noise), 0, 255).astype(np.uint8)
    return pixels, objects, masks


def _shape_mask(shape, cx, cy, side, xs, ys):
    half = side / 2.0
    dx, dy = xs - cx, ys - cy
    if shape == "circle":
        return dx * dx + dy * dy <= half * half
    if shape == "square":
        return (dx >= -half) & (dx < half) & (dy >= -half) & (dy < half)
    if shape == "triangle":
        depth = dy + half  # distance below the apex
        return (depth >= 0) & (dy < half) & (np.abs(dx) <= depth / 2.0)
    if shape == "diamond":
        return np.abs(dx) + np.abs(dy) <= half
    if shape == "cross":
        arm = round(side / 3) / 2.0
        inside = (np.abs(dx) <= half) & (np.abs(dy) <= half)
        return inside & ((np.abs(dy) < arm) | (np.abs(dx) < arm))
    raise ValueError(f"Unknown shape {shape!r}")


def reading_order(objects):
    return sorted(objects, key=lambda o: (o.row, o.column))


def _noun_phrase(obj, big):
    size = "small" if obj.size == "small" else ("big" if big else "large")
    return f"a {size} {obj.colour} {obj.shape}"


def _colour_phrase(obj):
    article = "an" if obj.colour == "orange" else "a"
    return f"{article} {obj.colour} {obj.shape}"


def _position(obj):
    return POSITIONS[(obj.row, obj.column)]


def caption_from_template(objects, template, big=False):
    """Renders caption `template` (1..5) for `objects` in reading order.

    Args:
        objects: list of `ShapeObject`, sorted in reading order.
        template: int, 1..5, the template number of the spec for that count.
        big: bool, whether large objects are called "big" in this caption.
    """
    NP = lambda o: _noun_phrase(o, big)  # noqa: E731
    NPc, POS = _colour_phrase, _position
    if len(objects) == 1:
        (o,) = objects
        return {
            1: f"{NP(o)} {POS(o)}",
            2: f"there is {NP(o)} {POS(o)}",
            3: f"{NPc(o)} {POS(o)}",
            4: f"{NP(o)}",
            5: f"an image of {NP(o)} {POS(o)}",
        }[template]
    if len(objects) == 2:
        a, b = objects
        if a.column < b.column:
            rel, inverse = "to the left of", "to the right of"
        else:
            rel, inverse = "above", "below"
        if a.colour == b.colour and a.shape == b.shape:
            pair = f"two {a.colour} {PLURALS[a.shape]}"
        else:
            pair = f"two shapes {NPc(a)} and {NPc(b)}"
        return {
            1: f"{NP(a)} {rel} {NP(b)}",
            2: f"{NPc(b)} {inverse} {NPc(a)}",
            3: f"{NP(a)} and {NP(b)}",
            4: pair,
            5: f"{NPc(a)} {POS(a)} and {NPc(b)} {POS(b)}",
        }[template]
    if len(objects) == 3:
        a, b, c = objects
        return {
            1: f"{NPc(a)} {NPc(b)} and {NPc(c)}",
            2: f"three shapes {NPc(a)} {NPc(b)} and {NPc(c)}",
            3: f"{NP(a)} {NP(b)} and {NP(c)}",
            4: f"{NPc(a)} {POS(a)} {NPc(b)} {POS(b)} and {NPc(c)} {POS(c)}",
            5: "there are three shapes",
        }[template]
    raise ValueError(f"A scene has 1 to 3 objects, got {len(objects)}")


def draw_captions(rng, objects, count=5, max_draws=50):
    """Draws `count` captions, re-drawing duplicates until `max_draws` draws."""
    ordered = reading_order(objects)
    captions, draws = [], 0
    while len(captions) < count:
        template = int(rng.integers(1, 6))
        big = bool(rng.integers(2))
        caption = caption_from_template(ordered, template, big)
        draws += 1
        if caption not in captions or draws >= max_draws:
            captions.append(caption)
    return captions


@dataclasses.dataclass(frozen=True)
class ShapesParams:
    """What determines a Shapes dataset; equal params give byte-identical files.

    Args:
        seed: int, the random seed.
        image_size: int, the canvas side S in pixels.
        split_sizes: tuple of 3 ints, images in train, val and test.
    """

    seed: int = 0
    image_size: int = 96
    split_sizes: tuple = DEFAULT_SPLIT_SIZES

    def to_json(self):
        return {
            "spec_version": SPEC_VERSION,
            "seed": self.seed,
            "image_size": self.image_size,
            "split_sizes": dict(zip(SPLITS, self.split_sizes)),
        }


def _write_json(path, payload):
    with open(path, "w") as handle:
        json.dump(payload, handle, separators=(",", ":"))


def _write_split(root, split, split_index, first_id, params, progress):
    size = params.image_size
    rng = np.random.default_rng([params.seed, split_index])
    image_dir = os.path.join(root, "images", split)
    os.makedirs(image_dir, exist_ok=True)
    images, captions, instances = [], [], []
    count = params.split_sizes[split_index]
    for offset in range(count):
        image_id = first_id + offset
        pixels, objects, masks = draw_scene(rng, size)
        file_name = f"{image_id:012d}.jpg"
        Image.fromarray(pixels).save(os.path.join(image_dir, file_name), quality=95)
        images.append({"id": image_id, "file_name": file_name, "width": size, "height": size})
        # Annotation ids are image_id * 10 + index within the image: unique across splits.
        for index, caption in enumerate(draw_captions(rng, objects)):
            captions.append({"id": image_id * 10 + index, "image_id": image_id, "caption": caption})
        for index, (obj, mask) in enumerate(zip(objects, masks)):
            instances.append({
                "id": image_id * 10 + index,
                "image_id": image_id,
                "category_id": SHAPES.index(obj.shape) + 1,
                "bbox": list(obj.bbox),
                "area": int(mask.sum()),
                "iscrowd": 0,
                "color": obj.colour,
                "size": obj.size,
            })
        if progress and ((offset + 1) % 1000 == 0 or offset + 1 == count):
            progress(split, offset + 1, count)
    info = {"description": "Shapes captioning dataset", "version": str(SPEC_VERSION), "split": split,
            "seed": params.seed, "image_size": size}
    annotations_dir = os.path.join(root, "annotations")
    os.makedirs(annotations_dir, exist_ok=True)
    _write_json(os.path.join(annotations_dir, f"captions_{split}.json"),
                {"info": info, "images": images, "annotations": captions})
    categories = [{"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(SHAPES)]
    _write_json(os.path.join(annotations_dir, f"instances_{split}.json"),
                {"info": info, "images": images, "annotations": instances, "categories": categories})


def _print_progress(split, done, total):
    print(f"  shapes {split}: {done}/{total} images", file=sys.stderr, flush=True)


def generate(root, params=ShapesParams(), progress=_print_progress):
    """Writes a Shapes dataset to `root`, which must not exist yet.

    The files are written to `ROOT.partial-PID` and renamed to `root` once
    complete, with a `shapes.json` manifest of the params.
    """
    root = os.path.abspath(root)
    if os.path.exists(root):
        raise FileExistsError(f"{root} already exists; Shapes is only written to a new folder")
    if len(params.split_sizes) != 3 or min(params.split_sizes) < 1:
        raise ValueError(f"split_sizes must be 3 positive counts (train, val, test), got {params.split_sizes}")
    if params.image_size < 24:
        raise ValueError(f"image_size must be at least 24 pixels, got {params.image_size}")
    _remove_stale_partials(root)
    partial = f"{root}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    os.makedirs(partial)
    first_id = 1
    for split_index, split in enumerate(SPLITS):
        _write_split(partial, split, split_index, first_id, params, progress)
        first_id += params.split_sizes[split_index]
    _write_json(os.path.join(partial, MANIFEST), params.to_json())
    # A second training worker may have written the same dataset first: same seed, same files.
    files.publish_folder(partial, root, MANIFEST)
    return root


def _remove_stale_partials(root):
    parent, name = os.path.split(root)
    if not os.path.isdir(parent):
        return
    for entry in os.listdir(parent):
        if not entry.startswith(name + ".partial-"):
            continue
        pid = entry.rsplit("-", 1)[-1]
        if pid.isdigit() and _process_alive(int(pid)) and int(pid) != os.getpid():
            continue
        shutil.rmtree(os.path.join(parent, entry), ignore_errors=True)


def _process_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def ensure(root, params=ShapesParams(), progress=_print_progress):
    """Returns `root` holding Shapes written with `params`, generating it on first use."""
    manifest = os.path.join(root, MANIFEST)
    if os.path.exists(manifest):
        with open(manifest) as handle:
            found = json.load(handle)
        if found != params.to_json():
            raise ValueError(
                f"{root} holds Shapes made with {found}, not the requested {params.to_json()}; "
                "choose another --data-root or remove that folder")
        return root
    if os.path.exists(root):
        raise FileExistsError(f"{root} exists but has no {MANIFEST}: not a complete Shapes dataset")
    print(f"Writing the Shapes dataset to {root} (first use) ...", file=sys.stderr, flush=True)
    return generate(root, params, progress)


def default_root(params=ShapesParams(), base=None):
    """Where training writes Shapes: `$CAPTIONER_DATA` (default `./data`)/shapes-v1-...`."""
    base = base or data_home()
    sizes = "-".join(str(n) for n in params.split_sizes)
    return os.path.join(base, f"shapes-v{SPEC_VERSION}-{params.image_size}px-seed{params.seed}-{sizes}")


def default_source(source=None):
    """`source`, or the default Shapes dataset (written if absent): where the tree writers take images from."""
    if source is not None:
        return source
    params = ShapesParams()
    return ensure(default_root(params), params)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m captioner.data.synthetic.shapes", description=__doc__.split("\n\n")[0])
    parser.add_argument("root", help="folder to create")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--splits", type=int, nargs=3, default=list(DEFAULT_SPLIT_SIZES),
                        metavar=("TRAIN", "VAL", "TEST"))
    args = parser.parse_args(argv)
    params = ShapesParams(args.seed, args.image_size, tuple(args.splits))
    try:
        generate(args.root, params)
    except (FileExistsError, ValueError) as error:
        parser.error(str(error))
    print(args.root)


if __name__ == "__main__":
    main()
