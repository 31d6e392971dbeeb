"""`python -m captioner.data.check`: the report a person reads before training, on trees with known defects."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from captioner.data import check
from captioner.data.synthetic import flickr_tree, imagefolder_tree
from conftest import exit_status
from test_imagefolder import defect_tree


@pytest.fixture(scope="module")
def defects(small_shapes, tmp_path_factory):
    root = str(tmp_path_factory.mktemp("check") / "defects")
    return root, defect_tree(small_shapes, root)


def run(capsys, *argv):
    status = exit_status(check.main, argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_report_of_a_tree_with_every_kind_of_defect(defects, capsys):
    root, expected = defects
    captions = os.path.join(root, "captions.csv")
    status, out, _ = run(capsys, "--dataset", "imagefolder", root, "--captions", captions)
    assert status == 0  # an imagefolder's bad rows and broken files are skipped and counted: training can start
    assert out.startswith(f"imagefolder dataset at {root} (preset imagefolder-lstm: min_count 2, max_length 30)\n"
                          "  captions.csv: CSV, 41 rows; image column 'image', caption column 'caption', split column "
                          "'split'\n  split from the split column\n")
    for line in ("  train       11        19  1.73 (1-3)", "  val          3         5  1.67 (1-2)",
                 "  test         3         4  1.33 (1-2)", "  images with k captions: 1: 8, 2: 7, 3: 2",
                 "Skipped rows: 15 of 42",
                 "    1 rows whose quotes do not close (or hold text after a closing quote) (line 40)",
                 "    1 rows whose image file is missing (line 31)", "        line 31: photos/gone.jpg",
                 "    1 rows with an unknown split value (train, val, validation, test) (line 36)",
                 "        line 36: holdout",
                 "    3 rows of an image given in two splits (lines 5, 6, 35)",
                 "        line 35: photos/img_0003.jpg (test and train)",
                 "    2 rows whose image cannot be decoded (lines 38, 39)",
                 "        line 39: photos/notes.jpg: not an image, or its header is corrupt",
                 "Images without a caption (ignored): 2, e.g. photos/extra_1.jpg, photos/extra_2.jpg",
                 "Broken image files: 2 (left out)",
                 "Images: 17 files, headers of 17 read: JPEG 17; RGB 17; width 64-64 (median 64), height 64-64 "
                 "(median 64); 17 smaller than the encoder input (224 px)",
                 "  - 15 of the 42 rows are skipped (see above)",
                 "Verdict: ready to train (exit 0)"):
        assert line in out.splitlines(), line
    assert "Caption length in words: p5 " in out and "Vocabulary: 31 words seen at least 2 times" in out

    status, out, _ = run(capsys, "--dataset", "imagefolder", root, "--captions", captions, "--json", "--min-count", "1")
    report = json.loads(out)
    assert status == 0 and report["exit_status"] == 0 and not report["fatal"]
    skipped = report["skipped_rows"]["captions.csv"]
    assert {reason: figures["lines"] for reason, figures in skipped.items()} == expected
    assert skipped["rows whose image is a URL, not a file"]["examples"] == \
        [{"line": 32, "value": "https://example.com/a.jpg"}]
    assert {name: (s["images"], s["captions"]) for name, s in report["splits"].items()} == \
        {"train": (11, 19), "val": (3, 5), "test": (3, 4)}
    assert report["uncaptioned_images"] == {"count": 2, "examples": ["photos/extra_1.jpg", "photos/extra_2.jpg"]}
    assert sorted(os.path.basename(f["path"]) for f in report["broken_images"]["files"]) == ["notes.jpg",
                                                                                           "truncated.jpg"]
    assert report["vocabulary"]["min_count"] == 1 and report["vocabulary"]["words"] == 44
    assert report["caption_length"]["max_length"] == 30 and report["captions_per_image"] == {"1": 8, "2": 7, "3": 2}
    assert report["images"]["formats"] == {"JPEG": 17}


def test_fatal_problems_exit_1_with_the_reason(defects, small_shapes, tmp_path, capsys):
    # Most rows unusable: refused.
    os.makedirs(tmp_path / "moved")
    with open(tmp_path / "moved" / "c.csv", "w") as handle:
        handle.write("file_name,text\n" + "".join(f"img_{k}.jpg,a caption\n" for k in range(4)))
    status, out, _ = run(capsys, str(tmp_path / "moved"), "--captions", str(tmp_path / "moved" / "c.csv"))
    assert status == 1
    assert "error: 4 of the 4 rows cannot be used, more than half: c.csv: 4 rows whose image file is missing" in out
    assert out.rstrip().endswith("Verdict: training cannot start on this data (exit 1)")
    # A missing column names the columns found, in text and in JSON.
    status, out, _ = run(capsys, defects[0], "--captions", os.path.join(defects[0], "captions.csv"),
                         "--caption-column", "description", "--json")
    assert status == 1 and json.loads(out)["fatal"] == [
        f"{os.path.join(defects[0], 'captions.csv')}: no caption column 'description' (--caption-column); its columns "
        "are 'image', 'caption', 'split'"]
    # A COCO-layout root with a broken image stops training unless --skip-bad-images: so does the check.
    root = str(tmp_path / "coco")
    shutil.copytree(small_shapes, root)  # copies: the session's Shapes stays whole
    victim = sorted(os.listdir(os.path.join(root, "images", "val")))[0]
    with open(os.path.join(root, "images", "val", victim), "r+b") as handle:
        handle.truncate(200)
    status, out, _ = run(capsys, "--dataset", "coco", root)
    assert status == 1
    assert ("  - 1 image files cannot be decoded: training stops on them; replace or delete them, or pass "
            "--skip-bad-images to leave them out") in out
    status, out, _ = run(capsys, "--dataset", "coco", root, "--skip-bad-images")
    assert status == 0 and "  - 1 broken image files are left out" in out


def test_every_other_dataset_and_its_reader_notes(small_shapes, tmp_path, capsys):
    status, out, _ = run(capsys, "--dataset", "shapes", small_shapes, "--json")
    report = json.loads(out)
    assert status == 0 and report["preset"] == "shapes" and report["vocabulary"]["min_count"] == 1
    assert {n: s["images"] for n, s in report["splits"].items()} == {"train": 200, "val": 30, "test": 30}
    root = str(tmp_path / "flickr8k")
    flickr_tree.write(root, small_shapes, "flickr8k", "token", karpathy=True, sizes=(40, 8, 8), extra=3)
    status, out, _ = run(capsys, "--dataset", "flickr8k", root)
    assert status == 0
    assert "4 captioned images are in no split file and are not used (1 without an image file)" in out
    root = str(tmp_path / "flickr30k")
    flickr_tree.write(root, small_shapes, "flickr30k", "csv", karpathy=True, sizes=(40, 8, 8))
    status, out, _ = run(capsys, "--dataset", "flickr30k", "--data-root", root, "--karpathy-json",
                         os.path.join(root, "dataset_flickr30k.json"), "--json")
    assert status == 0 and json.loads(out)["splits"]["test"]["images"] == 8
    status, out, err = run(capsys, "--dataset", "coco")
    assert status == 2 and "needs --data-root" in err


def test_an_hf_tree_with_splits_and_a_pinned_split(small_shapes, tmp_path, capsys):
    root = str(tmp_path / "hf")
    imagefolder_tree.write(root, small_shapes, "hf-splits", (20, 3, 3), 2)
    status, out, _ = run(capsys, root)
    assert status == 0 and "  split from the metadata files of the train/, validation/, test/ folders" in out
    assert "  test/metadata.csv: CSV, 4 rows; image column 'file_name', caption column 'text'" in out
    # A run's splits.json wins over the folders: one train image moved to test, one val image gone.
    keys = {split: [f"{folder}/{name}" for name in sorted(os.listdir(os.path.join(root, folder)))
                    if name.endswith(".jpg")] for split, folder in imagefolder_tree.HF_FOLDERS.items()}
    pinned = str(tmp_path / "splits.json")
    with open(pinned, "w") as handle:
        json.dump({"splits": {"train": keys["train"][1:], "val": keys["val"][1:],
                              "test": keys["test"] + keys["train"][:1]}}, handle)
    status, out, _ = run(capsys, root, "--splits-file", pinned, "--json")
    report = json.loads(out)
    assert status == 0 and report["split_from"] == f"split pinned by {pinned}"
    assert {n: s["images"] for n, s in report["splits"].items()} == {"train": 19, "val": 2, "test": 4}
    assert report["notes"] == [f"1 captioned images are not in {pinned} (added since the run started, or left out by "
                               "it as broken files) and are left out here too, first: validation/img_0021.jpg"]


def test_the_check_imports_no_tensorflow():
    script = "import sys, captioner.data.check; print('tensorflow' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
