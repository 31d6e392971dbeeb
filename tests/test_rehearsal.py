"""The rehearsal tree: MS COCO 2014's layout and formats at a small scale, read by the project's readers."""

import errno
import json
import os
import pathlib
import re

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from captioner.data import coco
from captioner.data.synthetic import rehearsal

SCALE, POOL, SEED = 0.002, 8, 0

# The fields of the real MS COCO 2014 and Karpathy files.
INFO_KEYS = {"description", "url", "version", "year", "contributor", "date_created"}
LICENSE_KEYS = {"url", "id", "name"}
IMAGE_KEYS = {"license", "file_name", "coco_url", "height", "width", "date_captured", "flickr_url", "id"}
CAPTION_KEYS = {"image_id", "id", "caption"}
INSTANCE_KEYS = {"segmentation", "area", "iscrowd", "image_id", "bbox", "category_id", "id"}
CATEGORY_KEYS = {"supercategory", "id", "name"}
KARPATHY_KEYS = {"filepath", "sentids", "filename", "imgid", "split", "sentences", "cocoid"}
SENTENCE_KEYS = {"tokens", "raw", "imgid", "sentid"}


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return rehearsal.build(str(tmp_path_factory.mktemp("rehearsal") / "coco"), SCALE, POOL, SEED, progress=False)


def load(tree, name):
    with open(tree.paths[name]) as handle:
        return json.load(handle)


def test_image_files_are_coco_names_hard_linked_to_the_pool(tree):
    counts = rehearsal.plan_counts(SCALE)
    assert (counts["train2014"], counts["val2014"]) == (round(82783 * SCALE), round(40504 * SCALE)) == (166, 81)
    pool = sorted(os.listdir(tree.paths["pool"]))
    assert len(pool) == POOL
    pool_inodes = {os.stat(os.path.join(tree.paths["pool"], name)).st_ino for name in pool}
    for folder in ("train2014", "val2014"):
        names = sorted(os.listdir(tree.paths[folder]))
        assert len(names) == counts[folder] == tree.counts[folder]
        assert all(re.fullmatch(rf"COCO_{folder}_\d{{12}}\.jpg", name) for name in names)
        captioned = sorted(image["file_name"] for image in load(tree, f"captions_{folder}")["images"])
        assert names == captioned
        for name in names:
            status = os.stat(os.path.join(tree.paths[folder], name))
            assert status.st_nlink > 1 and status.st_ino in pool_inodes
    assert tree.counts["linked"] == counts["train2014"] + counts["val2014"] and tree.counts["copied"] == 0


def test_pool_has_coco_sizes_and_a_greyscale_jpeg(tree):
    modes, shapes = [], []
    for name in sorted(os.listdir(tree.paths["pool"])):
        path = os.path.join(tree.paths["pool"], name)
        with Image.open(path) as image:
            assert image.format == "JPEG"
            modes.append(image.mode)
            shapes.append(image.size)
        assert 50_000 < os.path.getsize(path) < 300_000
    assert "L" in modes and "RGB" in modes and set(modes) <= {"L", "RGB"}
    assert all(max(size) == 640 and 300 <= min(size) <= 640 for size in shapes)
    # The sizes in the annotations are those of the linked files.
    for image in load(tree, "captions_val2014")["images"][:20]:
        with Image.open(os.path.join(tree.paths["val2014"], image["file_name"])) as picture:
            assert picture.size == (image["width"], image["height"])


def test_ids_are_unique_sparse_and_shared_by_both_files(tree):
    ids = []
    for folder in ("train2014", "val2014"):
        captions, instances = load(tree, f"captions_{folder}"), load(tree, f"instances_{folder}")
        assert captions["images"] == instances["images"]
        ids += [image["id"] for image in captions["images"]]
    assert len(set(ids)) == len(ids) and min(ids) >= 1 and max(ids) <= rehearsal.IMAGE_ID_SPACE
    assert max(ids) - min(ids) > 10 * len(ids)  # sparse, like COCO's, not 1..n


def test_captions_files_have_every_field_and_five_to_seven_captions(tree):
    for folder in ("train2014", "val2014"):
        payload = load(tree, f"captions_{folder}")
        assert set(payload) == {"info", "images", "licenses", "annotations"}
        assert set(payload["info"]) == INFO_KEYS
        assert [license["id"] for license in payload["licenses"]] == list(range(1, 9))
        assert all(set(license) == LICENSE_KEYS for license in payload["licenses"])
        assert all(set(image) == IMAGE_KEYS for image in payload["images"])
        assert all(set(caption) == CAPTION_KEYS for caption in payload["annotations"])
        per_image = {image["id"]: 0 for image in payload["images"]}
        for caption in payload["annotations"]:
            per_image[caption["image_id"]] += 1
        assert set(per_image.values()) <= {5, 6, 7} and 6 in per_image.values() and 7 in per_image.values()
        caption_ids = [caption["id"] for caption in payload["annotations"]]
        assert caption_ids == sorted(caption_ids) and len(set(caption_ids)) == len(caption_ids)
        assert len(payload["annotations"]) == tree.counts[f"captions_{folder}"]


def test_captions_read_like_coco(tree):
    texts = [c["caption"] for c in load(tree, "captions_train2014")["annotations"]]
    lengths = [len(text.split()) for text in texts]
    assert 9.0 < np.mean(lengths) < 12.0 and min(lengths) >= 5
    assert any(text[0].isupper() for text in texts) and any(text[0].islower() for text in texts)
    assert any(text.rstrip().endswith(".") for text in texts)
    assert any(text != text.strip() for text in texts)
    # Captions name the image's objects, mostly.
    instances = load(tree, "instances_train2014")
    names = {c["id"]: c["name"] for c in instances["categories"]}
    present = {}
    for annotation in instances["annotations"]:
        present.setdefault(annotation["image_id"], set()).add(names[annotation["category_id"]])
    mentioned = 0
    for caption in load(tree, "captions_train2014")["annotations"]:
        words = " " + " ".join(rehearsal.karpathy_tokens(caption["caption"])) + " "
        mentioned += any(f" {word} " in words or f" {rehearsal.plural(word)} " in words
                         for name in present.get(caption["image_id"], ()) for word in rehearsal.MENTIONS[name])
    assert mentioned > 0.5 * len(texts)


def test_instances_files_have_every_field_and_load_in_pycocotools(tree):
    for folder in ("train2014", "val2014"):
        payload = load(tree, f"instances_{folder}")
        assert set(payload) == {"info", "images", "licenses", "annotations", "categories"}
        assert len(payload["categories"]) == 80 and all(set(c) == CATEGORY_KEYS for c in payload["categories"])
        category_ids = [c["id"] for c in payload["categories"]]
        assert category_ids[:3] == [1, 2, 3] and category_ids[-1] == 90 and 12 not in category_ids
        assert all(set(annotation) == INSTANCE_KEYS for annotation in payload["annotations"])
        per_image = {image["id"]: 0 for image in payload["images"]}
        for annotation in payload["annotations"]:
            per_image[annotation["image_id"]] += 1
        assert max(per_image.values()) <= 15 and 4 < np.mean(list(per_image.values())) < 10
        assert {a["iscrowd"] for a in payload["annotations"]} == {0, 1}
    index = COCO(tree.paths["instances_val2014"])
    for annotation in index.dataset["annotations"]:
        mask = index.annToMask(annotation)
        x, y, w, h = annotation["bbox"]
        if annotation["iscrowd"]:
            assert set(annotation["segmentation"]) == {"counts", "size"}
            assert mask.sum() == annotation["area"] == w * h
        else:
            assert all(len(polygon) >= 6 and len(polygon) % 2 == 0 for polygon in annotation["segmentation"])
            assert 0 < annotation["area"] <= w * h and mask.sum() > 0


def test_karpathy_file_splits_val2014_proportionally(tree):
    payload = load(tree, "karpathy")
    assert set(payload) == {"images", "dataset"} and payload["dataset"] == "coco"
    entries = payload["images"]
    assert all(set(entry) == KARPATHY_KEYS for entry in entries)
    assert [entry["imgid"] for entry in entries] == list(range(len(entries)))
    by_split = {}
    for entry in entries:
        by_split.setdefault(entry["split"], set()).add(entry["cocoid"])
    counts = rehearsal.plan_counts(SCALE)
    assert {name: len(ids) for name, ids in by_split.items()} == {
        "train": 166, "restval": counts["val2014"] - 20, "val": round(5000 * SCALE), "test": round(5000 * SCALE)}
    train_ids = {image["id"] for image in load(tree, "captions_train2014")["images"]}
    val_ids = {image["id"] for image in load(tree, "captions_val2014")["images"]}
    assert by_split["train"] == train_ids
    assert by_split["restval"] | by_split["val"] | by_split["test"] == val_ids
    assert sum(len(ids) for ids in by_split.values()) == len(train_ids | val_ids)  # disjoint
    captions = {c["id"]: c for folder in ("train2014", "val2014")
                for c in load(tree, f"captions_{folder}")["annotations"]}
    for entry in entries:
        assert entry["filepath"] in ("train2014", "val2014")
        assert entry["filename"].startswith(f"COCO_{entry['filepath']}_")
        assert entry["sentids"] == [s["sentid"] for s in entry["sentences"]]
        for sentence in entry["sentences"]:
            assert set(sentence) == SENTENCE_KEYS and sentence["imgid"] == entry["imgid"]
            assert captions[sentence["sentid"]]["caption"] == sentence["raw"]
            assert captions[sentence["sentid"]]["image_id"] == entry["cocoid"]
            assert sentence["tokens"] and all(re.fullmatch(r"[a-z0-9]+", token) for token in sentence["tokens"])


def test_small_counts_keep_one_val_and_test_image():
    counts = rehearsal.plan_counts(1e-5)
    assert counts["karpathy_val"] == counts["karpathy_test"] == 1 and counts["karpathy_restval"] >= 0
    full = rehearsal.plan_counts(1.0)
    assert (full["train2014"], full["val2014"], full["karpathy_restval"]) == (82783, 40504, 30504)


def test_the_project_reader_reads_it(tree):
    karpathy = tree.paths["karpathy"]
    sizes = {split: len(coco.read_split(tree.root, split, karpathy).examples) for split in ("train", "val", "test")}
    assert sizes == {"train": 166 + 61, "val": 10, "test": 10}
    plain = coco.read_split(tree.root, "val")
    assert len(plain.examples) == 81 and all(5 <= len(e.captions) <= 7 for e in plain.examples)
    assert all(os.path.isfile(e.path) for e in plain.examples)


def test_rerun_is_a_no_op_and_other_parameters_are_refused(tree, capsys):
    before = {name: os.stat(path).st_mtime_ns for name, path in tree.paths.items() if os.path.isfile(path)}
    again = rehearsal.build(tree.root, SCALE, POOL, SEED, progress=False)
    assert not again.built and again.counts == tree.counts
    assert before == {name: os.stat(path).st_mtime_ns for name, path in tree.paths.items() if os.path.isfile(path)}
    assert rehearsal.main([tree.root, "--scale", str(SCALE), "--pool", str(POOL)]) == 0
    assert "nothing to do" in capsys.readouterr().err
    assert rehearsal.main([tree.root, "--scale", "0.003", "--pool", str(POOL), "--seed", "1"]) == 2
    error = capsys.readouterr().err
    assert "scale 0.002 (asked 0.003)" in error and "seed 0 (asked 1)" in error and "pool 8" not in error
    with pytest.raises(rehearsal.RehearsalError, match="pool 8 .asked 9."):
        rehearsal.build(tree.root, SCALE, 9, SEED, progress=False)


def test_refuses_a_foreign_folder_and_resumes_an_interrupted_build(tmp_path, monkeypatch):
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    with pytest.raises(rehearsal.RehearsalError, match="not a rehearsal tree"):
        rehearsal.build(str(tmp_path / "foreign"), SCALE, 2, SEED, progress=False)

    def interrupted(*args):
        raise KeyboardInterrupt

    out = str(tmp_path / "resumed")
    with monkeypatch.context() as patch:
        patch.setattr(rehearsal, "write_annotations", interrupted)
        with pytest.raises(KeyboardInterrupt):
            rehearsal.build(out, 0.0005, 2, SEED, progress=False)
    assert not os.path.exists(os.path.join(out, rehearsal.MARKER))
    with pytest.raises(rehearsal.RehearsalError, match="unfinished rehearsal build"):
        rehearsal.build(out, 0.0005, 3, SEED, progress=False)
    resumed = rehearsal.build(out, 0.0005, 2, SEED, progress=False)
    assert resumed.built and os.path.exists(resumed.paths["marker"])
    assert not os.path.exists(os.path.join(out, rehearsal.STARTED))
    counts = rehearsal.plan_counts(0.0005)
    train = coco.read_split(out, "train", resumed.paths["karpathy"])
    assert len(train.examples) == counts["train2014"] + counts["karpathy_restval"]


def test_copies_where_hard_links_fail(tmp_path, monkeypatch):
    def cross_device(source, target):
        raise OSError(errno.EXDEV, "Invalid cross-device link", target)

    monkeypatch.setattr(os, "link", cross_device)
    result = rehearsal.build(str(tmp_path / "copied"), 0.0005, 2, SEED, progress=False)
    total = result.counts["train2014"] + result.counts["val2014"]
    assert (result.counts["linked"], result.counts["copied"]) == (0, total)
    name = sorted(os.listdir(result.paths["val2014"]))[0]
    copy = os.path.join(result.paths["val2014"], name)
    assert os.stat(copy).st_nlink == 1
    pool = {pathlib.Path(result.paths["pool"], p).read_bytes() for p in os.listdir(result.paths["pool"])}
    assert pathlib.Path(copy).read_bytes() in pool


def test_same_parameters_give_the_same_files(tree, tmp_path):
    again = rehearsal.build(str(tmp_path / "again"), SCALE, POOL, SEED, progress=False)
    other_seed = rehearsal.build(str(tmp_path / "seed1"), SCALE, POOL, 1, progress=False)
    for name in ("captions_train2014", "instances_val2014", "karpathy"):
        assert pathlib.Path(again.paths[name]).read_bytes() == pathlib.Path(tree.paths[name]).read_bytes()
    assert sorted(os.listdir(again.paths["val2014"])) == sorted(os.listdir(tree.paths["val2014"]))
    assert sorted(os.listdir(other_seed.paths["val2014"])) != sorted(os.listdir(tree.paths["val2014"]))
