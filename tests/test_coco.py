"""COCO, Karpathy and COCO-format readers, on layouts built here from Shapes images."""

import json
import os
import shutil

import pytest

from captioner.data import coco


def shapes_split(root, split):
    with open(os.path.join(root, "annotations", f"captions_{split}.json")) as handle:
        return json.load(handle)


@pytest.fixture()
def coco_root(small_shapes, tmp_path):
    """MS COCO's own layout: train2014/, val2014/, annotations/captions_{train,val}2014.json."""
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    for split in ("train", "val"):
        shutil.copytree(os.path.join(small_shapes, "images", split), root / f"{split}2014")
        payload = shapes_split(small_shapes, split)
        with open(root / "annotations" / f"captions_{split}2014.json", "w") as handle:
            json.dump(payload, handle)
    return root


@pytest.fixture()
def karpathy_json(small_shapes, coco_root, tmp_path):
    """A `dataset_coco.json` over the COCO root: val2014 split into restval / val / test."""
    images = []
    for split in ("train", "val"):
        payload = shapes_split(small_shapes, split)
        by_image = {}
        for ann in payload["annotations"]:
            by_image.setdefault(ann["image_id"], []).append(ann["caption"])
        for position, image in enumerate(payload["images"]):
            karpathy_split = "train" if split == "train" else ("restval", "val", "test")[position % 3]
            images.append({"filepath": f"{split}2014", "filename": image["file_name"], "cocoid": image["id"],
                           "split": karpathy_split,
                           "sentences": [{"raw": c.capitalize() + ".", "tokens": c.split()}
                                         for c in by_image[image["id"]]]})
    path = tmp_path / "dataset_coco.json"
    with open(path, "w") as handle:
        json.dump({"images": images, "dataset": "coco"}, handle)
    return str(path)


def test_coco_format_root_as_shapes_writes_it(small_shapes):
    split = coco.read_split(small_shapes, "test")
    assert len(split.examples) == 30
    example = split.examples[0]
    assert os.path.isfile(example.path) and len(example.captions) == 5
    assert split.annotation_file.endswith("captions_test.json")
    assert split.coco.getAnnIds(imgIds=[example.image_id])


def test_coco_2014_layout(coco_root):
    train = coco.read_split(str(coco_root), "train")
    val = coco.read_split(str(coco_root), "val")
    assert len(train.examples) == 200 and len(val.examples) == 30
    assert all("train2014" in e.path for e in train.examples)
    with pytest.raises(coco.DatasetError, match="No captions for split 'test'"):
        coco.read_split(str(coco_root), "test")


def test_karpathy_split_restval_joins_train(coco_root, karpathy_json):
    train = coco.read_split(str(coco_root), "train", karpathy_json=karpathy_json)
    val = coco.read_split(str(coco_root), "val", karpathy_json=karpathy_json)
    test = coco.read_split(str(coco_root), "test", karpathy_json=karpathy_json)
    assert len(train.examples) == 200 + 10 and len(val.examples) == 10 and len(test.examples) == 10
    assert {e.image_id for e in train.examples}.isdisjoint({e.image_id for e in test.examples})
    assert any("val2014" in e.path for e in train.examples)  # restval images
    assert all(os.path.isfile(e.path) for e in test.examples)
    assert test.examples[0].captions[0].endswith(".")  # raw sentences, as written


def test_the_karpathy_file_is_parsed_once_for_all_splits(coco_root, karpathy_json, monkeypatch):
    from captioner.data import datasets

    parsed = []
    original = coco.load_json
    monkeypatch.setattr(coco, "load_json", lambda path, what: parsed.append(path) or original(path, what))
    splits = datasets.read_splits("coco", str(coco_root), ("train", "val", "test"), karpathy_json)
    assert parsed == [karpathy_json] and [len(splits[s].examples) for s in ("train", "val", "test")] == [210, 10, 10]


def test_missing_root_and_files_are_named(tmp_path, coco_root):
    with pytest.raises(coco.DatasetError, match="does not exist"):
        coco.read_split(str(tmp_path / "nowhere"), "train")
    with pytest.raises(coco.DatasetError, match="Missing Karpathy split file"):
        coco.read_split(str(coco_root), "train", karpathy_json=str(tmp_path / "none.json"))


def test_malformed_json_names_the_file(coco_root):
    path = coco_root / "annotations" / "captions_val2014.json"
    path.write_text('{"images": [')
    with pytest.raises(coco.DatasetError, match=r"Malformed JSON .*captions_val2014.json"):
        coco.read_split(str(coco_root), "val")
    path.write_text('{"images": []}')
    with pytest.raises(coco.DatasetError, match="no 'annotations' list"):
        coco.read_split(str(coco_root), "val")


def test_captions_of_unknown_image_ids(coco_root):
    path = coco_root / "annotations" / "captions_val2014.json"
    payload = json.loads(path.read_text())
    payload["annotations"].append({"id": 999999, "image_id": 123456789, "caption": "a red circle"})
    path.write_text(json.dumps(payload))
    with pytest.raises(coco.DatasetError, match=r"1 captions point at image ids missing .*123456789"):
        coco.read_split(str(coco_root), "val")


def test_missing_images_fail_or_are_skipped_on_request(coco_root):
    files = sorted(os.listdir(coco_root / "val2014"))
    for name in files[:4]:
        os.remove(coco_root / "val2014" / name)
    with pytest.raises(coco.DatasetError, match=r"4 captioned images are missing .*--skip-missing-images") as error:
        coco.read_split(str(coco_root), "val")
    assert files[0] in str(error.value)
    split = coco.read_split(str(coco_root), "val", skip_missing_images=True)
    assert split.skipped == 4 and len(split.examples) == 26
