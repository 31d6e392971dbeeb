"""Broken images named before any work: checked once, answers cached, skipped on request, named in the pipeline."""

import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from captioner import runs, train
from captioner.data import coco, image_check
from captioner.data.pipeline import image_dataset
from conftest import exit_status


@pytest.fixture()
def broken_tree(small_shapes, tmp_path):
    """The small Shapes set with one truncated train JPEG and one zero-byte val JPEG."""
    root = tmp_path / "shapes"
    shutil.copytree(small_shapes, root)
    train_path = coco.read_split(str(root), "train").examples[3].path
    val_path = coco.read_split(str(root), "val").examples[0].path
    data = open(train_path, "rb").read()
    open(train_path, "wb").write(data[:len(data) // 2])
    open(val_path, "wb").close()
    return root, train_path, val_path


def test_each_kind_of_broken_file_gets_its_reason(tmp_path):
    good = tmp_path / "good.jpg"
    Image.fromarray(np.full((40, 60, 3), 120, np.uint8)).save(good, quality=90)
    data = good.read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(data[:len(data) // 2])
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("not an image")
    Image.new("1", (12000, 12000)).save(tmp_path / "huge.png")
    reasons = {name: image_check.check_file(str(tmp_path / name))
               for name in ("good.jpg", "truncated.jpg", "empty.jpg", "text.jpg", "huge.png", "missing.jpg")}
    assert reasons["good.jpg"] is None
    assert reasons["truncated.jpg"].startswith("truncated: the file ends before its image data does")
    assert reasons["empty.jpg"] == "empty file (0 bytes)" and reasons["missing.jpg"] == "missing"
    assert reasons["text.jpg"] == "not an image, or its header is corrupt"
    assert reasons["huge.png"].startswith("image too large (12000 x 12000 pixels")


def test_training_stops_before_any_work_naming_the_broken_files(broken_tree, tmp_path, capsys):
    root, train_path, val_path = broken_tree
    status = exit_status(train.main, ["--preset", "tiny", "--data-root", str(root), "--run-dir", str(tmp_path / "run")])
    error = capsys.readouterr().err
    assert status == 2
    assert f"1 of the 200 images of the train split cannot be used:\n  {train_path}: truncated: " in error
    assert f"1 of the 30 images of the val split cannot be used:\n  {val_path}: empty file (0 bytes)" in error
    assert "--skip-bad-images" in error and not os.path.exists(tmp_path / "run")


def test_answers_are_cached_by_size_and_time(broken_tree, monkeypatch):
    root, train_path, _ = broken_tree
    paths = [e.path for e in coco.read_split(str(root), "train").examples]
    assert [p.path for p in image_check.check(paths)] == [train_path]
    decoded = []
    original = image_check.check_file
    monkeypatch.setattr(image_check, "check_file", lambda path: decoded.append(path) or original(path))
    assert [p.path for p in image_check.check(paths)] == [train_path] and decoded == []  # all known
    shutil.copy(paths[0], train_path)  # repaired: its size and time changed, so it is decoded again
    assert image_check.check(paths) == [] and decoded == [train_path]


def test_a_decoding_error_in_the_pipeline_names_its_file(broken_tree):
    root, train_path, _ = broken_tree
    paths = [e.path for e in coco.read_split(str(root), "train").examples[:8]]
    with pytest.raises(coco.DatasetError, match="TensorFlow cannot decode:\n  " + train_path):
        with image_check.naming_undecodable(paths):
            for _ in image_dataset(paths, 32, "unit", 4):
                pass


@pytest.mark.slow
def test_skip_bad_images_trains_without_them_and_counts_them(broken_tree, tmp_path):
    root, _, _ = broken_tree
    run_dir = str(tmp_path / "run")
    assert train.main(["--preset", "tiny", "--data-root", str(root), "--run-dir", run_dir, "--skip-bad-images",
                       "--epochs", "1", "--steps-per-epoch", "3", "--search-images", "0", "--quiet"]) == 0
    metrics = runs.read_json(os.path.join(run_dir, runs.METRICS))
    assert metrics["bad_images_left_out"] == {"train": 1, "val": 1, "test": 0}
    assert json.load(open(os.path.join(run_dir, runs.CONFIG)))["skip_bad_images"] is True
