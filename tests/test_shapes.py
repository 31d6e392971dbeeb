"""The Shapes generator against its format (v1, described in `data/README.md`).

The expected captions are re-derived here from the spec's text, from the
instance annotations alone, not from the generator's own template code.
"""

import hashlib
import itertools
import json
import os

import numpy as np
import pytest
from PIL import Image

from captioner.data.synthetic import shapes

SPEC_COLOURS = {"red": (215, 38, 38), "green": (34, 160, 60), "blue": (40, 80, 215),
                "yellow": (235, 200, 30), "purple": (140, 60, 180), "orange": (245, 130, 20)}
SPEC_SHAPES = ["circle", "square", "triangle", "diamond", "cross"]
SPEC_PLURALS = ["circles", "squares", "triangles", "diamonds", "crosses"]
SPEC_POSITIONS = [["in the top left corner", "at the top", "in the top right corner"],
                  ["on the left", "in the center", "on the right"],
                  ["in the bottom left corner", "at the bottom", "in the bottom right corner"]]
SPEC_VOCABULARY = set(("a an image of there is are two three shapes and small large big in the top bottom "
                       "left right center corner at on to above below").split()) | set(SPEC_COLOURS) | set(
    SPEC_SHAPES) | set(SPEC_PLURALS)


def objects_of(instances, image, size):
    """(row, column, colour, shape, size) of each object, in reading order, from its annotation."""
    cell = size / 3
    found = []
    for ann in instances:
        x, y, w, h = ann["bbox"]
        row, column = int((y + h / 2) // cell), int((x + w / 2) // cell)
        found.append((row, column, ann["color"], SPEC_SHAPES[ann["category_id"] - 1], ann["size"]))
    return sorted(found)


def allowed_captions(objects):
    """Every caption the spec allows for these objects (each NP may say large or big)."""
    def np_variants(o):
        return [f"a small {o[2]} {o[3]}"] if o[4] == "small" else [f"a large {o[2]} {o[3]}", f"a big {o[2]} {o[3]}"]

    def npc(o):
        return f"{'an' if o[2] == 'orange' else 'a'} {o[2]} {o[3]}"

    def pos(o):
        return SPEC_POSITIONS[o[0]][o[1]]

    out = set()
    if len(objects) == 1:
        (o,) = objects
        for n in np_variants(o):
            out |= {f"{n} {pos(o)}", f"there is {n} {pos(o)}", f"{n}", f"an image of {n} {pos(o)}"}
        out.add(f"{npc(o)} {pos(o)}")
    elif len(objects) == 2:
        a, b = objects
        rel, inv = ("to the left of", "to the right of") if a[1] < b[1] else ("above", "below")
        for na, nb in itertools.product(np_variants(a), np_variants(b)):
            out |= {f"{na} {rel} {nb}", f"{na} and {nb}"}
        out.add(f"{npc(b)} {inv} {npc(a)}")
        if a[2:4] == b[2:4]:
            out.add(f"two {a[2]} {SPEC_PLURALS[SPEC_SHAPES.index(a[3])]}")
        else:
            out.add(f"two shapes {npc(a)} and {npc(b)}")
        out.add(f"{npc(a)} {pos(a)} and {npc(b)} {pos(b)}")
    else:
        a, b, c = objects
        out |= {f"{npc(a)} {npc(b)} and {npc(c)}", f"three shapes {npc(a)} {npc(b)} and {npc(c)}",
                f"{npc(a)} {pos(a)} {npc(b)} {pos(b)} and {npc(c)} {pos(c)}", "there are three shapes"}
        for na, nb, nc in itertools.product(np_variants(a), np_variants(b), np_variants(c)):
            out.add(f"{na} {nb} and {nc}")
    return out


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes") / "root"
    shapes.generate(str(root), shapes.ShapesParams(seed=3, image_size=96, split_sizes=(400, 40, 40)),
                    progress=None)
    return root


def load(root, kind, split):
    with open(os.path.join(root, "annotations", f"{kind}_{split}.json")) as handle:
        return json.load(handle)


def test_every_caption_matches_its_objects(dataset):
    counts = {1: 0, 2: 0, 3: 0}
    for split in shapes.SPLITS:
        captions, instances = load(dataset, "captions", split), load(dataset, "instances", split)
        assert [c["name"] for c in sorted(instances["categories"], key=lambda c: c["id"])] == SPEC_SHAPES
        assert captions["images"] == instances["images"]
        by_image = {}
        for ann in instances["annotations"]:
            by_image.setdefault(ann["image_id"], []).append(ann)
        for image in captions["images"]:
            objects = objects_of(by_image[image["id"]], image, 96)
            counts[len(objects)] += 1
            assert len({(o[0], o[1]) for o in objects}) == len(objects), "two objects share a cell"
            image_captions = [a["caption"] for a in captions["annotations"] if a["image_id"] == image["id"]]
            assert len(image_captions) == 5
            assert len(set(image_captions)) == 5
            allowed = allowed_captions(objects)
            for caption in image_captions:
                assert caption in allowed, (image["id"], caption, objects)
                assert caption == caption.strip() and "  " not in caption
                assert set(caption.split()) <= SPEC_VOCABULARY
    total = sum(counts.values())
    # 1, 2, 3 objects with p 0.4, 0.4, 0.2 (480 images: a loose 5-sigma band).
    assert abs(counts[1] / total - 0.4) < 0.12 and abs(counts[3] / total - 0.2) < 0.1


def test_files_layout_and_unique_ids(dataset):
    ids = []
    for split in shapes.SPLITS:
        captions = load(dataset, "captions", split)
        for image in captions["images"]:
            assert image["width"] == image["height"] == 96
            path = os.path.join(dataset, "images", split, image["file_name"])
            with Image.open(path) as im:
                assert im.format == "JPEG" and im.size == (96, 96) and im.mode == "RGB"
            ids.append(image["id"])
        annotation_ids = [a["id"] for a in captions["annotations"]]
        assert len(annotation_ids) == len(set(annotation_ids))
    assert len(ids) == len(set(ids)) == 480


def test_rendering_follows_the_spec(dataset):
    instances = load(dataset, "instances", "train")
    by_image = {}
    for ann in instances["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    for image in instances["images"][:60]:
        pixels = np.asarray(Image.open(os.path.join(dataset, "images", "train", image["file_name"])), np.float64)
        for ann in by_image[image["id"]]:
            x, y, w, h = ann["bbox"]
            assert w == h
            side = w
            assert (14 <= side <= 20) if ann["size"] == "small" else (28 <= side <= 36)
            row, column = int((y + h / 2) // 32), int((x + w / 2) // 32)
            if ann["size"] == "small":  # small objects must stay inside their cell
                assert column * 32 <= x and x + w <= (column + 1) * 32
                assert row * 32 <= y and y + h <= (row + 1) * 32
            # The box centre is inside every shape; its colour is the named one, jittered by <= 15 (+ noise, JPEG).
            cy, cx = int(y + h / 2), int(x + w / 2)
            centre = pixels[cy - 1:cy + 1, cx - 1:cx + 1].reshape(-1, 3).mean(0)
            assert np.abs(centre - SPEC_COLOURS[ann["color"]]).max() < 15 + 20
        # Corners of the canvas are background grey (unless covered): r, g, b close to each other.
        corner = pixels[:3, :3].reshape(-1, 3).mean(0)
        assert 185 <= corner.mean() <= 260 or any(
            a["bbox"][0] < 3 and a["bbox"][1] < 3 for a in by_image[image["id"]])


def digest(root):
    sha = hashlib.sha256()
    for folder, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            path = os.path.join(folder, name)
            sha.update(os.path.relpath(path, root).encode())
            with open(path, "rb") as handle:
                sha.update(handle.read())
    return sha.hexdigest()


def test_same_seed_gives_identical_files(tmp_path):
    params = shapes.ShapesParams(seed=7, image_size=48, split_sizes=(20, 5, 5))
    first = shapes.generate(str(tmp_path / "a"), params, progress=None)
    second = shapes.generate(str(tmp_path / "b"), params, progress=None)
    other = shapes.generate(str(tmp_path / "c"), shapes.ShapesParams(8, 48, (20, 5, 5)), progress=None)
    assert digest(first) == digest(second)
    assert digest(first) != digest(other)


def test_interrupted_generation_is_never_taken_for_complete(tmp_path, monkeypatch):
    root = str(tmp_path / "shapes")
    params = shapes.ShapesParams(seed=1, image_size=48, split_sizes=(10, 5, 5))
    real_write = shapes._write_split

    def crash_on_val(root_, split, *args, **kwargs):
        if split == "val":
            raise KeyboardInterrupt("killed")
        return real_write(root_, split, *args, **kwargs)

    monkeypatch.setattr(shapes, "_write_split", crash_on_val)
    with pytest.raises(KeyboardInterrupt):
        shapes.ensure(root, params, progress=None)
    assert not os.path.exists(root)
    monkeypatch.setattr(shapes, "_write_split", real_write)
    # A leftover partial folder of a dead process is cleaned; the data is written afresh.
    leftover = f"{root}.partial-999999999"
    os.makedirs(leftover)
    assert shapes.ensure(root, params, progress=None) == root
    assert not os.path.exists(leftover)
    assert len(load(root, "captions", "train")["images"]) == 10
    # Reused on the next call; a different request for the same folder is refused.
    assert shapes.ensure(root, params, progress=None) == root
    with pytest.raises(ValueError, match="not the requested"):
        shapes.ensure(root, shapes.ShapesParams(seed=2, image_size=48, split_sizes=(10, 5, 5)), progress=None)


def test_command_line(tmp_path):
    root = tmp_path / "cli"
    shapes.main([str(root), "--seed", "4", "--image-size", "48", "--splits", "6", "3", "3"])
    assert len(os.listdir(root / "images" / "test")) == 3
    with pytest.raises(SystemExit) as exit_info:
        shapes.main([str(root)])  # exists already
    assert exit_info.value.code == 2
