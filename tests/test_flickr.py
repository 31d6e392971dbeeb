"""Flickr8k and Flickr30k readers, on trees written here in each distributed format from Shapes images."""

import json
import os
import re

import keras
import numpy as np
import pytest

from captioner import config as config_lib
from captioner import evaluate, runs
from captioner.training import cross_entropy
from captioner.data import datasets, flickr
from captioner.data.synthetic import flickr_tree
from captioner.data import tokenizer as tokenizer_lib
from captioner.data.coco import DatasetError
from captioner.data.pipeline import caption_dataset
from captioner.evaluation import metrics as metrics_lib
from test_evaluate import assert_figures_afresh

SIZES = (40, 8, 8)
EXTRA = 3
FORMATS = [("flickr8k", "token"), ("flickr8k", "csv"), ("flickr30k", "token"), ("flickr30k", "csv")]


@pytest.fixture(scope="module")
def trees(small_shapes, tmp_path_factory):
    """`{(dataset, format): (root, parts)}`: a tree per format, each with Karpathy's file; `parts` as written."""
    base = tmp_path_factory.mktemp("flickr")
    return {(dataset, form): (root, flickr_tree.write(root, small_shapes, dataset, form, karpathy=True,
                                                      sizes=SIZES, extra=EXTRA))
            for dataset, form in FORMATS for root in [str(base / f"{dataset}-{form}")]}


def photo_id(name):
    return int(re.match(r"\d+", name).group())


def test_flickr8k_token_files_and_official_split(trees, capsys):
    root, parts = trees["flickr8k", "token"]
    splits = datasets.read_splits("flickr8k", root, ("train", "val", "test"))
    for name in ("train", "val", "test"):
        split = splits[name]
        written = dict(parts[name])
        assert len(split.examples) == len(written) == dict(zip(("train", "val", "test"), SIZES))[name]
        assert {os.path.basename(e.path): e.captions for e in split.examples} == \
            {n: tuple(c) for n, c in written.items()}
        # Ids are Flickr photo ids (past 2**31 here, as Flickr8k's are), and the index holds every caption.
        assert [e.image_id for e in split.examples] == sorted(photo_id(n) for n in written)
        assert max(e.image_id for e in split.examples) > 2 ** 31
        assert len(split.coco.getAnnIds()) == 5 * len(written) and split.annotation_file is None
        assert all(os.path.dirname(e.path).endswith("Flicker8k_Dataset") for e in split.examples)
    err = capsys.readouterr().err
    # The extra images and the token file's caption of a missing `.jpg.1` image are in no split file.
    assert f"{EXTRA + 1} captioned images are in no split file and are not used (1 without an image file)" in err


@pytest.mark.parametrize("dataset,form", [f for f in FORMATS if f != ("flickr8k", "token")])
def test_formats_without_a_split_file_get_a_derived_split(trees, dataset, form, capsys):
    root, parts = trees[dataset, form]
    splits = flickr.read_splits(root, dataset)
    written = {n: tuple(c) for part in parts.values() for n, c in part}
    total = sum(SIZES) + EXTRA
    sizes = {name: len(split.examples) for name, split in splits.items()}
    assert sizes == {"train": total - 2 * (total // 10), "val": total // 10, "test": total // 10}
    read = {os.path.basename(e.path): e.captions for split in splits.values() for e in split.examples}
    assert read == written  # every image once, with its five captions in order
    ids = [e.image_id for split in splits.values() for e in split.examples]
    assert sorted(ids) == sorted(photo_id(n) for n in written)
    # Derived from the file names alone: the same on a second reading, and for one split read alone.
    assert [e.image_id for e in flickr.read_split(root, dataset, "test").examples] == \
        [e.image_id for e in splits["test"].examples]
    err = capsys.readouterr().err
    assert "split derived from a hash of the file names" in err and f"--karpathy-json dataset_{dataset}.json" in err
    if (dataset, form) == ("flickr30k", "csv"):
        assert "1 row(s) without the '|' before the comment read as 'k comment'" in err


@pytest.mark.parametrize("dataset,form", [("flickr8k", "token"), ("flickr30k", "csv")])
def test_karpathy_json_gives_splits_and_imgid_ids(trees, dataset, form):
    root, parts = trees[dataset, form]
    karpathy = os.path.join(root, f"dataset_{dataset}.json")
    splits = datasets.read_splits(dataset, root, ("train", "val", "test"), karpathy)
    position = 0
    for name, size in zip(("train", "val", "test"), SIZES):
        split = splits[name]
        assert [e.image_id for e in split.examples] == list(range(position, position + size))
        assert [(os.path.basename(e.path), list(e.captions)) for e in split.examples] == parts[name]
        position += size


@pytest.mark.slow
def test_one_training_step_on_each_format(trees):
    """One model (the trees share their words) takes a training step on batches read from each format."""
    splits = {key: datasets.read_split(key[0], root, "train") for key, (root, _) in trees.items()}
    words = tokenizer_lib.build_vocabulary([c for s in splits.values() for e in s.examples for c in e.captions])
    vocabulary = tokenizer_lib.CaptionTokenizer(words).words
    assert "circle" in vocabulary and "." not in vocabulary and "A" not in vocabulary
    config = config_lib.preset("tiny", image_size=32, feature_dim=8, embed_dim=8, hidden_dim=16, attention_dim=8,
                               batch_size=4)
    keras.utils.set_random_seed(0)
    captioner, model = cross_entropy.build_models(config, vocabulary)
    cross_entropy.compile_model(model, config, steps_per_epoch=1)
    for key, split in splits.items():
        batches = caption_dataset(split.examples, captioner.tokenizer, config.image_size, captioner.normalization,
                                  config.batch_size, max_length=config.max_length)
        x, y, weights = next(iter(batches))
        assert x["images"].shape == (4, 32, 32, 3) and x["tokens"].shape[:2] == (4, 5), key
        loss = model.train_on_batch(x, y, sample_weight=weights)
        assert np.isfinite(loss).all() and np.ravel(loss)[0] > 0, key


@pytest.mark.slow
def test_train_and_evaluate_on_flickr30k_csv(trees, tmp_path, capsys):
    """The train command's code path end to end (the Transformer; the step above was the LSTM's): feature cache,
    derived split, photo ids past 2**31, then the evaluate command."""
    root, _ = trees["flickr30k", "csv"]
    config = config_lib.preset("tiny", dataset="flickr30k", decoder="transformer", data_root=root, image_size=64,
                               epochs=1, steps_per_epoch=2, search_images=0, encoder="MobileNetV3Small",
                               encoder_weights=None, train_encoder=False, feature_cache=True,
                               feature_cache_dir=str(tmp_path / "cache"))
    run_dir = str(tmp_path / "run")
    metrics = cross_entropy.train(config, run_dir, verbose=0)
    assert metrics["split"] == "test" and metrics["images"] == (sum(SIZES) + EXTRA) // 10
    predictions = runs.read_json(os.path.join(run_dir, "predictions_test.json"))
    assert all(p["image_id"] > 2 ** 31 for p in predictions)
    # The run's test figures are those of its written predictions against the Flickr test references.
    references = {e.image_id: list(e.captions) for e in flickr.read_split(root, "flickr30k", "test").examples}
    assert [p["image_id"] for p in predictions] == sorted(references)
    captions = [p["caption"] for p in predictions]
    groups = [references[p["image_id"]] for p in predictions]
    for name, value in metrics_lib.nltk_corpus_bleu(groups, captions).items():
        assert metrics[name] == pytest.approx(value, abs=1e-12), name
    assert metrics["cider_d"] == pytest.approx(metrics_lib.cider_d(groups, [c or "<empty>" for c in captions])[0],
                                               abs=1e-12)
    capsys.readouterr()
    assert evaluate.main([run_dir, "--split", "val", "--no-java", "--output-dir", str(tmp_path / "eval")]) == 0
    scored = runs.read_json(str(tmp_path / "eval" / "metrics.json"))
    assert scored["split"] == "val" and scored["images"] == (sum(SIZES) + EXTRA) // 10
    assert scored["genericness"]["greedy"]["copied_from_train"] is not None
    # The COCO figures again, from the written predictions and the Flickr val references alone (Flickr's
    # capitalised, full-stopped captions: the references are tokenised as the predictions are).
    references = {e.image_id: list(e.captions) for e in flickr.read_split(root, "flickr30k", "val").examples}
    assert_figures_afresh(scored, references, runs.read_json(str(tmp_path / "eval" / "predictions.json")))
    per_image = runs.read_json(str(tmp_path / "eval" / "per_image.json"))
    assert {p["image_id"] for p in per_image} == {e.image_id for e in flickr.read_split(root, "flickr30k", "val")
                                                  .examples}
    # Someone's results file for the Flickr split, scored with no model (Flickr has no captions file to name).
    results = str(tmp_path / "eval" / "predictions.json")
    assert evaluate.main(["--results", results, "--data-root", root, "--dataset", "flickr30k", "--split", "val",
                          "--no-java", "--output-dir", str(tmp_path / "rescored")]) == 0
    rescored = runs.read_json(str(tmp_path / "rescored" / "metrics.json"))
    assert rescored["coco_bleu_4"] == pytest.approx(scored["coco_bleu_4"], abs=1e-12) and rescored["split"] == "val"


# Malformed files, written line by line.

def token_tree(tmp_path, lines, images=("1001_aa.jpg", "1002_bb.jpg", "1003_cc.jpg"), raw=None):
    root = tmp_path / "f8k"
    (root / "Flicker8k_Dataset").mkdir(parents=True)
    for name in images:
        (root / "Flicker8k_Dataset" / name).write_bytes(b"not read here")
    data = raw if raw is not None else "\n".join(lines).encode()
    (root / "Flickr8k.token.txt").write_bytes(data)
    return root


def test_malformed_token_lines_are_skipped_and_counted(tmp_path, capsys):
    lines = ["1001_aa.jpg#0\tA dog runs .", "1001_aa.jpg#1\tA dog runs on grass .",
             "1001_aa.jpg#2 no tab here", "1001_aa.jpg\tno caption number", "1001_aa.jpg#7\tseven is out of range",
             "1001_aa.jpg#1\tA dog runs on grass .", "1001_aa.jpg#1\tA different second caption .",
             "1001_aa.jpg#3\t   ", "", "1002_bb.jpg#0\tA cat sleeps .", "1003_cc.jpg#0\tA bird sings .",
             "9999_zz.jpg#0\tAn image that is not in the folder ."]
    # A byte-order mark and CRLF line ends, as files saved on Windows have.
    root = token_tree(tmp_path, lines, raw=b"\xef\xbb\xbf" + "\r\n".join(lines).encode() + b"\r\n")
    splits = flickr.read_splits(str(root), "flickr8k", skip_missing_images=False)
    examples = {e.image_id: e.captions for split in splits.values() for e in split.examples}
    assert examples == {1001: ("A dog runs .", "A dog runs on grass ."), 1002: ("A cat sleeps .",),
                        1003: ("A bird sings .",)}
    err = capsys.readouterr().err
    for counted in ("1 lines without a tab between name#k and caption (line 3)",
                    "1 lines without #k after the image name (line 4)",
                    "1 lines with a caption number outside 0-4 (line 5)", "1 repeated lines (line 6)",
                    "1 second captions under one name#k (the first kept) (line 7)",
                    "1 lines with an empty caption (line 8)",
                    "skipped the captions of 1 images not in"):
        assert counted in err


def test_unusable_files_and_folders_give_clear_errors(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        flickr.read_splits(str(tmp_path / "nowhere"), "flickr8k")
    root = token_tree(tmp_path, ["1001_aa.jpg#0 A", "1002_bb.jpg#0 B"])
    with pytest.raises(DatasetError, match=r"no usable caption in it.*2 lines without a tab"):
        flickr.read_splits(str(root), "flickr8k")
    (root / "Flickr8k.token.txt").write_text("")
    with pytest.raises(DatasetError, match="is empty"):
        flickr.read_splits(str(root), "flickr8k")
    (root / "Flickr8k.token.txt").rename(root / "results_20130124.token")
    with pytest.raises(DatasetError, match=r"No Flickr8k captions.*results_20130124.token is there: is it "
                                           r"Flickr30k, --dataset flickr30k"):
        flickr.read_splits(str(root), "flickr8k")
    with pytest.raises(DatasetError, match="No Flickr30k images"):
        flickr.read_splits(str(root), "flickr30k")
    with pytest.raises(DatasetError, match="No split 'dev'"):
        flickr.read_splits(str(root), "flickr8k", ("dev",))


def test_a_wrong_image_folder_stops_reading_unless_told_to_skip(tmp_path):
    lines = [f"{1000 + i}_x.jpg#0\tCaption {i} ." for i in range(40)]
    root = token_tree(tmp_path, lines, images=[f"{1000 + i}_x.jpg" for i in range(30)])
    with pytest.raises(DatasetError, match=r"10 of 40 captioned images are not in .*--skip-missing-images"):
        flickr.read_splits(str(root), "flickr8k")
    splits = flickr.read_splits(str(root), "flickr8k", skip_missing_images=True)
    assert sum(len(s.examples) for s in splits.values()) == 30


def test_split_files_must_come_together_and_name_existing_images(tmp_path, capsys):
    lines = [f"{1000 + i}_x.jpg#{k}\tCaption {i} {k} ." for i in range(6) for k in range(5)]
    root = token_tree(tmp_path, lines, images=[f"{1000 + i}_x.jpg" for i in range(5)])
    (root / "Flickr_8k.trainImages.txt").write_text("1000_x.jpg\r\n1001_x.jpg\r\n1005_x.jpg\r\n\r\n")
    with pytest.raises(DatasetError, match="but not Flickr_8k.devImages.txt, Flickr_8k.testImages.txt"):
        flickr.read_splits(str(root), "flickr8k")
    (root / "Flickr_8k.devImages.txt").write_text("1002_x.jpg\n1009_x.jpg\n")
    (root / "Flickr_8k.testImages.txt").write_text("\ufeff1003_x.jpg\n1004_x.jpg\n")
    # 1005 is listed but its image is missing: an error, or skipped on request; 1009 has no caption.
    with pytest.raises(DatasetError, match="1 captioned images are missing.*--skip-missing-images"):
        flickr.read_splits(str(root), "flickr8k")
    splits = flickr.read_splits(str(root), "flickr8k", skip_missing_images=True)
    assert {n: [e.image_id for e in s.examples] for n, s in splits.items()} == \
        {"train": [1000, 1001], "val": [1002], "test": [1003, 1004]}
    assert splits["train"].skipped == 1 and len(splits["test"].examples[0].captions) == 5
    assert "1 images of Flickr_8k.devImages.txt have no caption" in capsys.readouterr().err


def test_token_lines_with_odd_numbers_and_spaces(tmp_path):
    root = token_tree(tmp_path, ["1001_aa.jpg #0\tSpace before the hash .", "1001_aa.jpg#\u00b2\tA superscript two .",
                                 "1002_bb.jpg#-1\tMinus one .", "1002_bb.jpg#1\tFine .", "1003_cc.jpg#0\tFine too ."])
    captions = flickr.read_captions(str(root / "Flickr8k.token.txt"))
    assert captions.by_image == {"1001_aa.jpg": ["Space before the hash ."], "1002_bb.jpg": ["Fine ."],
                                 "1003_cc.jpg": ["Fine too ."]}
    assert captions.problems.summary() == "2 lines with a caption number outside 0-4 (lines 2, 3)"


def test_files_that_are_not_utf8_name_the_line(tmp_path):
    root = token_tree(tmp_path, [], raw=b"\xef\xbb\xbf1001_aa.jpg#0\tA dog .\r\n1002_bb.jpg#0\tA caf\xe9 .\r\n")
    with pytest.raises(DatasetError, match=r"is not UTF-8 text: line 2 \(byte 45\)"):
        flickr.read_captions(str(root / "Flickr8k.token.txt"))


def test_csv_captions_with_commas_quoted_or_not(tmp_path):
    root = tmp_path / "kaggle"
    (root / "Images").mkdir(parents=True)
    for name in ("1_a.jpg", "2_b.jpg"):
        (root / "Images" / name).write_bytes(b"x")
    (root / "captions.txt").write_text('image,caption\n1_a.jpg,"A dog, wet, shakes ."\n'
                                       '1_a.jpg,A dog, unquoted, shakes .\n2_b.jpg,A cat .\n2_b.jpg,A cat .\n'
                                       '2_b.jpg\n')
    captions = flickr.read_captions(str(root / "captions.txt"))
    assert captions.form == "csv"
    # The same sentence twice for one image is two captions (the rows carry no number to tell a repeat).
    assert captions.by_image == {"1_a.jpg": ["A dog, wet, shakes .", "A dog, unquoted, shakes ."],
                                 "2_b.jpg": ["A cat .", "A cat ."]}
    assert captions.problems.summary() == "1 rows without a comma between image and caption (line 6)"
    # A quote that never closes is one bad row, not the rest of the file swallowed into one caption.
    rows = ["image,caption"] + [f"{i}_a.jpg,Caption {i} ." for i in range(3)]
    (root / "captions.txt").write_text("\n".join(rows[:2] + ['1_a.jpg,"A dog says hi .'] + rows[2:]) + "\n")
    captions = flickr.read_captions(str(root / "captions.txt"))
    assert captions.by_image == {"0_a.jpg": ["Caption 0 ."], "1_a.jpg": ["Caption 1 ."], "2_a.jpg": ["Caption 2 ."]}
    assert captions.problems.summary() == "1 rows whose quotes do not close (line 3)"
    # Beyond five captions of an image, a repeated row is a repeat.
    (root / "captions.txt").write_text("image,caption\n" + "1_a.jpg,Same .\n" * 7)
    captions = flickr.read_captions(str(root / "captions.txt"))
    assert captions.by_image == {"1_a.jpg": ["Same ."] * 5}
    assert captions.problems.summary() == "2 repeated rows (lines 7, 8)"
    (root / "captions.txt").write_text("filename,text\n1_a.jpg,A dog .\n")
    with pytest.raises(DatasetError, match="unknown header 'filename,text'"):
        flickr.read_captions(str(root / "captions.txt"))


def test_numbered_captions_separated_by_commas(tmp_path):
    """Another Kaggle copy of Flickr30k: `captions.txt` as `image_name,comment_number,comment`."""
    path = tmp_path / "captions.txt"
    path.write_text('image_name,comment_number,comment\n30.jpg,0,A dog runs .\n30.jpg,1,"A dog, brown, runs ."\n'
                    '30.jpg,1,Another first caption .\n31.jpg,9,Nine .\n31.jpg,0,A cat , unquoted .\n')
    captions = flickr.read_captions(str(path))
    assert captions.form == "csv3"
    assert captions.by_image == {"30.jpg": ["A dog runs .", "A dog, brown, runs ."], "31.jpg": ["A cat , unquoted ."]}
    assert captions.problems.summary() == ("1 second captions under one name#k (the first kept) (line 4); "
                                           "1 lines with a caption number outside 0-4 (line 5)")


def test_ids_do_not_depend_on_the_splits_asked_for(tmp_path):
    """Names without photo ids: ids are positions among the splits' images, whichever splits are read."""
    lines = [f"b{i:03d}.jpg#0\tCaption {i} ." for i in range(9)]
    root = token_tree(tmp_path, lines, images=[f"b{i:03d}.jpg" for i in range(9)])
    (root / "Flickr_8k.trainImages.txt").write_text("".join(f"b{i:03d}.jpg\n" for i in range(5)))
    (root / "Flickr_8k.devImages.txt").write_text("a000.jpg\nb005.jpg\nb006.jpg\n")  # a000 has no caption
    (root / "Flickr_8k.testImages.txt").write_text("b007.jpg\nb008.jpg\n")
    every = flickr.read_splits(str(root), "flickr8k")
    alone = flickr.read_splits(str(root), "flickr8k", ("test",))
    assert [e.image_id for e in alone["test"].examples] == [e.image_id for e in every["test"].examples] == [8, 9]
    # An image in two split files would leak between them: refused.
    (root / "Flickr_8k.testImages.txt").write_text("b007.jpg\nb008.jpg\nb001.jpg\n")
    with pytest.raises(DatasetError, match=r"1 images are in more than one.*b001.jpg \(train and test\)"):
        flickr.read_splits(str(root), "flickr8k")


def test_photo_ids_fall_back_to_positions_when_names_lack_or_share_them():
    assert flickr.image_ids(["1000_a.jpg", "20.jpg"]) == {"1000_a.jpg": 1000, "20.jpg": 20}
    assert flickr.image_ids(["b.jpg", "1000_a.jpg"]) == {"1000_a.jpg": 1, "b.jpg": 2}
    assert flickr.image_ids(["7_a.jpg", "7_b.jpg"]) == {"7_a.jpg": 1, "7_b.jpg": 2}


def test_flickr_presets_and_config():
    for name in ("flickr8k-lstm", "flickr8k-transformer"):
        config = config_lib.preset(name, data_root="/somewhere")
        assert config.dataset == "flickr8k" and config.feature_cache and not config.train_encoder
        assert config.encoder_weights == "imagenet"
    with pytest.raises(ValueError, match="needs --data-root"):
        config_lib.preset("flickr8k-lstm")


# The files as their users have them: literal lines in the shapes of the distributed files, not this project's
# writer (flickr_tree) read back by its own reader.

def image_folder(folder, names):
    folder.mkdir(parents=True)
    for name in names:
        (folder / name).write_bytes(b"not read here")


RESULTS_CSV = """image_name| comment_number| comment
1000092795.jpg| 0| Two young guys with shaggy hair look at their hands while hanging out in the yard .
1000092795.jpg| 1| Two young , White males are outside near many bushes .
1000092795.jpg| 2| Two men in green shirts are standing in a yard .
1000092795.jpg| 3| A man in a blue shirt standing in a garden .
1000092795.jpg| 4| Two friends enjoy time spent together .
10002456.jpg| 0| Several men in hard hats are operating a giant pulley system .
10002456.jpg| 1| Workers look down from up above on a piece of equipment .
10002456.jpg| 2| Two men working on a machine wearing hard hats .
10002456.jpg| 3| Four men on top of a tall structure .
10002456.jpg| 4| Three men on a large rig .
1000268201.jpg| 0| A child in a pink dress is climbing up a set of stairs in an entry way .
1000268201.jpg| 1| A little girl in a pink dress going into a wooden cabin .
1000268201.jpg| 2| A little girl climbing the stairs to her playhouse .
1000268201.jpg| 3| A little girl climbing into a wooden playhouse .
1000268201.jpg| 4| A girl going into a wooden building .
2199200615.jpg| 0| A brown and white dog is running through the grass .
2199200615.jpg| 1| A dog is running in a grassy field .
2199200615.jpg| 2| A white and brown dog runs through a field .
2199200615.jpg| 3| A dog running on the grass .
2199200615.jpg| 4 A dog runs across the grass .
"""


def test_flickr30k_results_csv_as_distributed(tmp_path, capsys):
    """Flickr30k's `results.csv` (Kaggle's layout: the file beside the image folder, inside a folder of the same
    name), with the real file's row that lacks the `|` before its comment."""
    root = tmp_path / "flickr30k"
    names = ["1000092795.jpg", "10002456.jpg", "1000268201.jpg", "2199200615.jpg"]
    image_folder(root / "flickr30k_images" / "flickr30k_images", names)
    (root / "flickr30k_images" / "results.csv").write_text(RESULTS_CSV)
    captions = flickr.read_captions(str(root / "flickr30k_images" / "results.csv"))
    assert captions.form == "pipe" and captions.repaired == 1 and not captions.problems and captions.count == 20
    assert captions.by_image["1000092795.jpg"] == [
        "Two young guys with shaggy hair look at their hands while hanging out in the yard .",
        "Two young , White males are outside near many bushes .", "Two men in green shirts are standing in a yard .",
        "A man in a blue shirt standing in a garden .", "Two friends enjoy time spent together ."]
    assert captions.by_image["2199200615.jpg"][3:] == ["A dog running on the grass .", "A dog runs across the grass ."]
    splits = flickr.read_splits(str(root), "flickr30k")
    # Four images: one each to test and val, by the SHA-1 order of their names (pinned: computed once).
    assert {name: [os.path.basename(e.path) for e in split.examples] for name, split in splits.items()} == {
        "train": ["1000092795.jpg", "1000268201.jpg"], "val": ["10002456.jpg"], "test": ["2199200615.jpg"]}
    assert [e.image_id for e in splits["train"].examples] == [1000092795, 1000268201]  # Flickr photo ids
    assert [e.image_id for e in splits["val"].examples] == [10002456]
    assert splits["test"].examples[0].captions == tuple(captions.by_image["2199200615.jpg"])
    assert splits["val"].examples[0].captions[0] == "Several men in hard hats are operating a giant pulley system ."
    assert "1 row(s) without the '|' before the comment read as 'k comment'" in capsys.readouterr().err


FLICKR8K_TOKENS = "".join(line + "\n" for line in [  # lines of Flickr8k.token.txt
    "1000268201_693b08cb0e.jpg#0\tA child in a pink dress is climbing up a set of stairs in an entry way .",
    "1000268201_693b08cb0e.jpg#1\tA girl going into a wooden building .",
    "1000268201_693b08cb0e.jpg#2\tA little girl climbing into a wooden playhouse .",
    "1000268201_693b08cb0e.jpg#3\tA little girl climbing the stairs to her playhouse .",
    "1000268201_693b08cb0e.jpg#4\tA little girl in a pink dress going into a wooden cabin .",
    "1001773457_577c3a7d70.jpg#0\tA black dog and a spotted dog are fighting",
    "1001773457_577c3a7d70.jpg#1\tA black dog and a tri-colored dog playing with each other on the road .",
    "1001773457_577c3a7d70.jpg#2\t"
    "A black dog and a white dog with brown spots are staring at each other in the street .",
    "1001773457_577c3a7d70.jpg#3\tTwo dogs of different breeds looking at each other on the road .",
    "1001773457_577c3a7d70.jpg#4\tTwo dogs on pavement moving toward each other .",
    "1002674143_1b742ab4b8.jpg#0\t"
    "A little girl covered in paint sits in front of a painted rainbow with her hands in a bowl .",
    "1002674143_1b742ab4b8.jpg#1\tA little girl is sitting in front of a large painted rainbow .",
    "1003163366_44323f5815.jpg#0\tA man lays on a bench while his dog sits by him .",
    "2258277193_586949ec62.jpg.1#0\tA man in a black jacket and jeans stands on a sidewalk .",
])


def test_flickr8k_token_file_and_split_files_as_distributed(tmp_path, capsys):
    """`Flickr8k.token.txt` lines (a tab after `name#k`, a caption without its final period, the `.jpg.1` name of
    an image that is not there) and the official split files, in `Flickr8k_text/` as distributed."""
    root = tmp_path / "flickr8k"
    names = ["1000268201_693b08cb0e.jpg", "1001773457_577c3a7d70.jpg", "1002674143_1b742ab4b8.jpg",
             "1003163366_44323f5815.jpg"]
    image_folder(root / "Flicker8k_Dataset", names)
    (root / "Flickr8k_text").mkdir()
    (root / "Flickr8k_text" / "Flickr8k.token.txt").write_text(FLICKR8K_TOKENS)
    (root / "Flickr8k_text" / "Flickr_8k.trainImages.txt").write_text(
        "1001773457_577c3a7d70.jpg\n1000268201_693b08cb0e.jpg\n")
    (root / "Flickr8k_text" / "Flickr_8k.devImages.txt").write_text("1002674143_1b742ab4b8.jpg\n")
    (root / "Flickr8k_text" / "Flickr_8k.testImages.txt").write_text("1003163366_44323f5815.jpg\n")
    splits = flickr.read_splits(str(root), "flickr8k")
    read = {name: [(e.image_id, os.path.basename(e.path), e.captions) for e in split.examples]
            for name, split in splits.items()}
    assert read["train"] == [
        (1000268201, "1000268201_693b08cb0e.jpg",
         ("A child in a pink dress is climbing up a set of stairs in an entry way .",
          "A girl going into a wooden building .", "A little girl climbing into a wooden playhouse .",
          "A little girl climbing the stairs to her playhouse .",
          "A little girl in a pink dress going into a wooden cabin .")),
        (1001773457, "1001773457_577c3a7d70.jpg",
         ("A black dog and a spotted dog are fighting",
          "A black dog and a tri-colored dog playing with each other on the road .",
          "A black dog and a white dog with brown spots are staring at each other in the street .",
          "Two dogs of different breeds looking at each other on the road .",
          "Two dogs on pavement moving toward each other ."))]
    assert read["val"] == [(1002674143, "1002674143_1b742ab4b8.jpg", (
        "A little girl covered in paint sits in front of a painted rainbow with her hands in a bowl .",
        "A little girl is sitting in front of a large painted rainbow ."))]
    assert read["test"] == [(1003163366, "1003163366_44323f5815.jpg",
                             ("A man lays on a bench while his dog sits by him .",))]
    assert "1 captioned images are in no split file and are not used (1 without an image file)" in \
        capsys.readouterr().err


def karpathy_entry(imgid, filename, split, raws):
    """An image entry of Karpathy's `dataset_flickr8k.json`, with its keys and shapes."""
    first = 5 * imgid
    return {"sentids": list(range(first, first + len(raws))), "imgid": imgid, "split": split, "filename": filename,
            "sentences": [{"tokens": raw.lower().rstrip(" .").split(), "raw": raw, "imgid": imgid,
                           "sentid": first + k} for k, raw in enumerate(raws)]}


def test_karpathy_json_as_distributed(tmp_path):
    root = tmp_path / "flickr8k"
    entries = [
        karpathy_entry(0, "2513260012_03d33305cf.jpg", "train", [
            "A black dog is running after a white dog in the snow .", "Black dog chasing brown dog through snow",
            "Two dogs chase each other across the snowy ground .", "Two dogs play together in the snow .",
            "Two dogs running through a low lying body of water ."]),
        karpathy_entry(1, "2903617548_d3e38d7f88.jpg", "train", [
            "A little baby plays croquet .", "A little girl plays croquet next to a truck ."]),
        karpathy_entry(2, "3338291921_fe7ae0c8f8.jpg", "val", [
            "A brown dog in the snow has something hot pink in its mouth ."]),
        karpathy_entry(3, "488416045_1c6d903fe0.jpg", "test", [
            "A brown dog is running after the black dog .", "Two dogs run across the grass ."]),
    ]
    assert entries[0]["sentences"][0] == {
        "tokens": ["a", "black", "dog", "is", "running", "after", "a", "white", "dog", "in", "the", "snow"],
        "raw": "A black dog is running after a white dog in the snow .", "imgid": 0, "sentid": 0}
    image_folder(root / "Flicker8k_Dataset", [e["filename"] for e in entries])
    karpathy = root / "dataset_flickr8k.json"
    karpathy.write_text(json.dumps({"images": entries, "dataset": "flickr8k"}))
    splits = datasets.read_splits("flickr8k", str(root), ("train", "val", "test"), str(karpathy))
    read = {name: [(e.image_id, os.path.basename(e.path), e.captions) for e in split.examples]
            for name, split in splits.items()}
    assert read == {
        "train": [(0, "2513260012_03d33305cf.jpg", tuple(s["raw"] for s in entries[0]["sentences"])),
                  (1, "2903617548_d3e38d7f88.jpg", ("A little baby plays croquet .",
                                                    "A little girl plays croquet next to a truck ."))],
        "val": [(2, "3338291921_fe7ae0c8f8.jpg", ("A brown dog in the snow has something hot pink in its mouth .",))],
        "test": [(3, "488416045_1c6d903fe0.jpg", ("A brown dog is running after the black dog .",
                                                  "Two dogs run across the grass ."))]}


def test_the_derived_split_is_pinned():
    """The derived split (SHA-1 order of the file names, test first, then val) names these images: written out
    literally, so that a change of rule, which would move images between train and test, is seen."""
    names = ["1000092795.jpg", "10002456.jpg", "1000268201.jpg", "1000344755.jpg", "1000366164.jpg",
             "1000523639.jpg", "1000919630.jpg", "10010052.jpg", "1001465944.jpg", "1001545525.jpg",
             "1001573224.jpg", "1001633352.jpg", "1001773457.jpg", "1001896054.jpg", "100197432.jpg",
             "100207720.jpg", "1002674143.jpg", "1003163366.jpg", "1003420127.jpg", "1003428081.jpg",
             "2199200615.jpg"]
    for ordered in (names, names[::-1]):  # the order the captions come in does not matter
        split = flickr.derived_split(ordered, flickr.LAYOUTS["flickr30k"].derived_sizes)
        assert split["test"] == ["100207720.jpg", "1001773457.jpg"]
        assert split["val"] == ["100197432.jpg", "2199200615.jpg"]
        assert sorted(split["train"]) == sorted(set(names) - {"100207720.jpg", "1001773457.jpg", "100197432.jpg",
                                                                "2199200615.jpg"})
    many = [f"{1000000000 + 7919 * i}.jpg" for i in range(12000)]
    for dataset, val in (("flickr30k", 1014), ("flickr8k", 1000)):
        split = flickr.derived_split(many, flickr.LAYOUTS[dataset].derived_sizes)
        assert (len(split["test"]), len(split["val"]), len(split["train"])) == (1000, val, 12000 - 1000 - val)
        assert split["test"][:3] == ["1037829063.jpg", "1058458058.jpg", "1023852028.jpg"]
        assert split["val"][:3] == ["1058378868.jpg", "1078627751.jpg", "1023939137.jpg"]
