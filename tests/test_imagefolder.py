"""People's own captioned images (`--dataset imagefolder`): trees written here from Shapes in each layout people use."""

import json
import os
import shutil

import pytest

from captioner import config as config_lib
from captioner.data import datasets, imagefolder
from captioner.data import imagefolder_splits as pinning
from captioner.data.coco import DatasetError
from captioner.data.synthetic import imagefolder_tree

SIZES = (40, 4, 4)
CAPTIONS_FILE = {"csv-split": "captions.csv", "tsv": "captions.tsv", "jsonl-lists": "captions.jsonl",
                 "excel": "captions.csv"}
# The derived split of the 48 images of a tree without split information (keys images/img_0001.jpg ...): 5% of 48
# rounded is 2 each, chosen by the SHA-1 of the keys. Written out so that a change to the rule shows here.
DERIVED_VAL = ["images/img_0005.jpg", "images/img_0046.jpg"]
DERIVED_TEST = ["images/img_0008.jpg", "images/img_0021.jpg"]


@pytest.fixture(scope="module")
def trees(small_shapes, tmp_path_factory):
    """`{layout: (root, found)}`: a tree per layout of `imagefolder_tree`, and what a reader should find in it."""
    base = tmp_path_factory.mktemp("imagefolder")
    return {layout: (str(base / layout), imagefolder_tree.write(str(base / layout), small_shapes, layout, SIZES, 3))
            for layout in imagefolder_tree.LAYOUTS}


def options_of(layout, root, **more):
    captions = CAPTIONS_FILE.get(layout)
    return imagefolder.Options(captions=os.path.join(root, captions) if captions else None, **more)


def by_name(split):
    return {os.path.basename(e.path): e.captions for e in split.examples}


@pytest.mark.parametrize("layout", imagefolder_tree.LAYOUTS)
def test_each_layout_reads_its_images_captions_and_splits(trees, layout):
    root, found = trees[layout]
    reading = imagefolder.read(root, options=options_of(layout, root))
    splits = reading.splits
    assert not reading.skipped and not reading.uncaptioned and not reading.broken
    if None in found:  # no split information: derived, 44/2/2
        written = {os.path.basename(n): tuple(c) for n, c in found[None]}
        assert [len(splits[s].examples) for s in ("train", "val", "test")] == [44, 2, 2]
        assert reading.split_from.startswith("split derived")
        assert {**by_name(splits["train"]), **by_name(splits["val"]), **by_name(splits["test"])} == written
    else:
        for name, size in zip(("train", "val", "test"), SIZES):
            assert len(splits[name].examples) == size
            assert by_name(splits[name]) == {os.path.basename(n): tuple(c) for n, c in found[name]}
    # Several captions per image (1 to 3 here: repeated rows, or a list), in file order; the COCO index holds them.
    counts = {len(e.captions) for s in splits.values() for e in s.examples}
    assert counts == {2, 3}
    for split in splits.values():
        assert len(split.coco.getAnnIds()) == sum(len(e.captions) for e in split.examples)
        assert split.annotation_file is None
        assert [e.image_id for e in split.examples] == sorted(e.image_id for e in split.examples)


def test_excel_csv_bom_crlf_semicolons_quotes_and_line_breaks(trees):
    root, found = trees["excel"]
    raw = open(os.path.join(root, "captions.csv"), "rb").read()
    assert raw.startswith(b"\xef\xbb\xbfImage;Caption\r\n")
    assert b'"a big yellow square; seen ""here"",\r\nat last"' in raw
    for separator in (";", None):  # given, or found in the header
        splits = imagefolder.read(root, options=options_of("excel", root, separator=separator)).splits
        captions = dict(c for s in splits.values() for c in by_name(s).items())
        assert captions["img_0038.jpg"] == ('a big yellow square; seen "here", at last', "a yellow square on the left")
    with pytest.raises(DatasetError, match=r"no image column: expected one of file_name, image, image_path, filename, "
                                           r"path \(or name it with --image-column\); its columns are 'Image;Caption'"):
        imagefolder.read(root, options=options_of("excel", root, separator=","))


def test_ids_are_stable_and_independent_of_the_splits_read(trees):
    root, _ = trees["hf-jsonl"]
    everything = imagefolder.read(root).splits
    ids = {e.path: e.image_id for s in everything.values() for e in s.examples}
    only_test = imagefolder.read(root, ("test",)).splits
    assert set(only_test) == {"test"}
    assert [(e.path, e.image_id) for e in only_test["test"].examples] == \
        [(e.path, ids[e.path]) for e in everything["test"].examples]
    # 1 + the first 48 bits of the SHA-1 of the image's path under the root: the same in any layout and on any machine.
    assert ids[os.path.join(root, "images", "img_0001.jpg")] == 242421260428493
    excel, _ = trees["excel"]
    excel_splits = imagefolder.read(excel, options=options_of("excel", excel)).splits
    excel_ids = {os.path.relpath(e.path, excel): e.image_id for s in excel_splits.values() for e in s.examples}
    assert excel_ids == {os.path.relpath(p, root): i for p, i in ids.items()}


def test_derived_split_is_pinned_and_the_same_across_layouts(trees):
    for layout in ("hf-jsonl", "excel"):  # both name their images images/img_NNNN.jpg
        root, _ = trees[layout]
        splits = imagefolder.read(root, options=options_of(layout, root)).splits
        for name, expected in (("val", DERIVED_VAL), ("test", DERIVED_TEST)):
            assert sorted(os.path.relpath(e.path, root) for e in splits[name].examples) == expected


def test_a_run_split_stays_when_files_are_added(trees, tmp_path):
    root = str(tmp_path / "tree")
    shutil.copytree(trees["hf-jsonl"][0], root)
    before = imagefolder.read(root).splits
    pinned = str(tmp_path / "splits.json")
    pinning.write_pinned(pinned, root, before)
    assert json.load(open(pinned))["splits"]["test"] == DERIVED_TEST
    with open(os.path.join(root, "metadata.jsonl"), "a") as handle:  # 12 new images: the derived split moves
        for k in range(12):
            shutil.copy(os.path.join(root, "images", "img_0001.jpg"), os.path.join(root, "images", f"new_{k}.jpg"))
            handle.write(json.dumps({"file_name": f"images/new_{k}.jpg", "text": "a new picture"}) + "\n")
    moved = imagefolder.read(root).splits
    assert sorted(os.path.relpath(e.path, root) for e in moved["test"].examples) == \
        ["images/img_0005.jpg", "images/img_0008.jpg", "images/img_0021.jpg"]
    reading = imagefolder.read(root, options=imagefolder.Options(splits_file=pinned))
    for name in ("train", "val", "test"):
        assert [e.path for e in reading.splits[name].examples] == [e.path for e in before[name].examples]
    assert reading.split_from == f"split pinned by {pinned}"
    assert any(note.startswith("12 captioned images are not in") for note in reading.notes)


def test_config_fields_and_presets():
    config = config_lib.preset("imagefolder-lstm", data_root="/photos")
    assert (config.dataset, config.min_count, config.encoder_weights, config.train_encoder, config.feature_cache) == \
        ("imagefolder", 2, "imagenet", False, True)
    assert config_lib.preset("imagefolder-transformer", captions="/photos/c.csv").decoder == "transformer"
    with pytest.raises(ValueError, match="needs --data-root .* or --captions"):
        config_lib.preset("imagefolder-lstm")
    with pytest.raises(ValueError, match="--captions, --separator only go with dataset 'imagefolder'"):
        config_lib.preset("shapes", captions="c.csv", separator=";")
    with pytest.raises(ValueError, match="separator must be one character"):
        config_lib.preset("imagefolder-lstm", data_root="/photos", separator=";;")
    # Paths made absolute; the captions file's folder is the root; a training run's split file is its own.
    config = datasets.with_absolute_paths(config_lib.preset("tiny", dataset="imagefolder", captions="d/c.csv"), "run")
    assert (config.captions, config.data_root, config.splits_file) == \
        (os.path.abspath("d/c.csv"), os.path.abspath("d"), os.path.abspath("run/splits.json"))


def write_rows(path, text):
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write(text)


def test_columns_named_separators_and_a_missing_column(trees, tmp_path):
    root, found = trees["tsv"]
    lines = open(os.path.join(root, "captions.tsv")).read().replace("filename\tcaption", "Picture\tDescription")
    write_rows(os.path.join(root, "renamed.txt"), lines)
    options = imagefolder.Options(captions=os.path.join(root, "renamed.txt"), separator="tab",
                                  image_column="picture", caption_column=" DESCRIPTION ")
    assert sum(len(s.examples) for s in imagefolder.read(None, options=options).splits.values()) == 48
    with pytest.raises(DatasetError, match=r"renamed.txt: no caption column 'text' \(--caption-column\); its columns "
                                           r"are 'Picture', 'Description'"):
        imagefolder.read(root, options=dataclass_replace(options, caption_column="text"))
    with pytest.raises(DatasetError, match="no caption column: expected one of text, caption, captions, sentence"):
        imagefolder.read(root, options=dataclass_replace(options, caption_column=None))


def dataclass_replace(options, **changes):
    import dataclasses
    return dataclasses.replace(options, **changes)


def test_text_that_is_not_utf8_names_its_line(tmp_path):
    write_rows(str(tmp_path / "c.csv"), "")
    with open(tmp_path / "c.csv", "wb") as handle:
        handle.write("image,caption\na.jpg,a café\n".encode("cp1252"))
    with pytest.raises(DatasetError, match=r"c.csv is not UTF-8 text: line 2 .*Save As 'CSV UTF-8'"):
        imagefolder.read(None, options=imagefolder.Options(captions=str(tmp_path / "c.csv")))


def defect_tree(source_root, out):
    """A `csv-split` tree (12 / 3 / 3 images, 27 rows on lines 2-28) with one row of each defect after them, two
    images without a caption and two broken files. Returns `{reason: line numbers}` of the rows a reader skips."""
    imagefolder_tree.write(out, source_root, "csv-split", (12, 3, 3), 2)
    photos = os.path.join(out, "photos")
    first = open(os.path.join(out, "captions.csv")).read().splitlines()[3].split(",")[1]  # img_0002's caption
    jpeg = open(os.path.join(photos, "img_0001.jpg"), "rb").read()
    with open(os.path.join(photos, "truncated.jpg"), "wb") as handle:  # new files: the images are hard links
        handle.write(jpeg[:len(jpeg) * 6 // 10])
    with open(os.path.join(photos, "notes.jpg"), "w") as handle:
        handle.write("not a picture\n")
    for name in ("extra_1.jpg", "extra_2.jpg", "scan.tiff"):
        shutil.copyfile(os.path.join(photos, "img_0001.jpg"), os.path.join(photos, name))
    with open(os.path.join(out, "captions.csv"), "a", newline="") as handle:
        handle.write("photos/img_0001.jpg,,train\n"                                   # 29
                     ",a caption without an image,train\n"                            # 30
                     "photos/gone.jpg,a missing picture,train\n"                      # 31
                     "https://example.com/a.jpg,an image on the web,train\n"          # 32
                     "photos/scan.tiff,a tiff scan,train\n"                           # 33
                     f"photos/img_0002.jpg,{first},Train\n"                           # 34
                     "photos/img_0003.jpg,another caption,test\n"                     # 35
                     "photos/img_0004.jpg,a caption,holdout\n"                        # 36
                     "photos/img_0005.jpg,a caption,\n"                               # 37
                     "photos/truncated.jpg,a truncated picture,train\n"               # 38
                     "photos/notes.jpg,a text file named jpg,train\n"                 # 39
                     'photos/img_0006.jpg,"a caption whose quotes never close,train\n'  # 40
                     'photos/img_0007.jpg,"a caption with ""quotes"", a comma\n'      # 41
                     'and a line break",train\n'                                      # 42
                     'photos/img_0008.jpg,"[""a first listed caption"", ""a second one""]",train\n'  # 43
                     "photos/img_0009.jpg,a caption,train,extra\n")                   # 44
    return {"rows whose quotes do not close (or hold text after a closing quote)": [40],
            "rows with an empty caption": [29],
            "rows without an image name": [30],
            "rows whose image file is missing": [31],
            "rows whose image is a URL, not a file": [32],
            "rows whose image is not a JPEG, PNG, GIF, BMP or WebP file": [33],
            "repeated rows (same image and caption)": [34],
            "rows with an unknown split value (train, val, validation, test)": [36],
            "rows without a split value": [37],
            "rows with more fields than the header": [44],
            "rows of an image given in two splits": [5, 6, 35],
            "rows whose image cannot be decoded": [38, 39]}


def test_rows_that_cannot_be_used_are_skipped_and_counted_by_reason(small_shapes, tmp_path, capsys):
    root = str(tmp_path / "defects")
    expected = defect_tree(small_shapes, root)
    splits = datasets.read_splits("imagefolder", root, ("train", "val", "test"),
                                  options=imagefolder.Options(captions=os.path.join(root, "captions.csv")))
    log = capsys.readouterr().err
    reading = imagefolder.read(root, options=imagefolder.Options(captions=os.path.join(root, "captions.csv")))
    (source,) = reading.sources
    assert source.skipped.lines == expected
    assert reading.rows == 42 and reading.skipped == 15
    assert [os.path.basename(p) for p in reading.uncaptioned] == ["extra_1.jpg", "extra_2.jpg"]
    assert sorted(os.path.basename(p.path) for p in reading.broken) == ["notes.jpg", "truncated.jpg"]
    assert [len(splits[s].examples) for s in ("train", "val", "test")] == [11, 3, 3]
    assert splits["train"].bad_images == 2
    captions = by_name(splits["train"])
    assert captions["img_0007.jpg"][-1] == 'a caption with "quotes", a comma and a line break'
    assert captions["img_0008.jpg"][-2:] == ("a first listed caption", "a second one")
    assert "img_0003.jpg" not in captions
    assert "skipped 15 of the rows of captions.csv: 1 rows whose quotes do not close" in log
    assert "3 rows of an image given in two splits (lines 5, 6, 35)" in log
    assert ("2 images in its folders have no caption and are ignored, first: photos/extra_1.jpg, "
            "photos/extra_2.jpg") in log


def test_more_than_half_of_the_rows_unusable_is_refused(trees, tmp_path):
    root = str(tmp_path / "tree")
    os.makedirs(root)
    rows = "".join(f"pictures/img_{k:04d}.jpg,a caption {k}\n" for k in range(1, 11))
    write_rows(os.path.join(root, "captions.csv"), "image,caption\n" + rows)  # the images are one folder down
    with pytest.raises(DatasetError, match=r"10 of the 10 rows cannot be used, more than half: captions.csv: 10 "
                                           r"rows whose image file is missing \(lines 2, 3, 4, \.\.\.\)\. Image paths "
                                           r"are read relative to the folder of the file that names them: line 2 "
                                           r"names 'pictures/img_0001.jpg'"):
        imagefolder.read(None, options=imagefolder.Options(captions=os.path.join(root, "captions.csv")))


def test_layouts_that_cannot_be_read_say_what_was_expected(trees, tmp_path):
    with pytest.raises(DatasetError, match=r"No captions in .*: expected metadata.jsonl or metadata.csv .* "
                                           r"\(captions.tsv is there: pass --captions .*captions.tsv\?\)"):
        imagefolder.read(trees["tsv"][0])
    root = str(tmp_path / "both")
    shutil.copytree(trees["hf-splits"][0], root)
    shutil.copy(os.path.join(root, "train", "metadata.csv"), os.path.join(root, "metadata.csv"))
    with pytest.raises(DatasetError, match="has both .*metadata.csv and per-split metadata files"):
        imagefolder.read(root)
    # HF's train/ and test/ only: val is taken from train, 5% (2 of 40).
    shutil.rmtree(os.path.join(root, "validation"))
    os.remove(os.path.join(root, "metadata.csv"))
    reading = imagefolder.read(root)
    assert [len(reading.splits[s].examples) for s in ("train", "val", "test")] == [38, 2, 4]
    assert "no val split in the metadata: 2 of the train images" in reading.notes[0]


def test_the_caption_commands_records_score_against_the_folders_split(trees, tmp_path, capsys):
    """The caption command numbers a folder's files itself and writes their paths as given; evaluate finds
    the split's own ids (hashed keys here) by path, and leaves out files that are not in the split."""
    from captioner import evaluate

    root, _ = trees["hf-jsonl"]
    split = imagefolder.read(root).splits["test"]
    assert sorted(os.path.relpath(e.path, root) for e in split.examples) == DERIVED_TEST
    reference = {os.path.basename(e.path): e.captions[0] for e in split.examples}
    names = sorted(os.listdir(os.path.join(root, "images")))
    results = tmp_path / "captions.jsonl"
    with open(results, "w") as handle:  # as `python -m captioner.caption tree/images captions.jsonl` writes
        for number, name in enumerate(names, 1):
            caption = reference.get(name, "a picture") if name != "img_0021.jpg" else "nothing like it at all"
            handle.write(json.dumps({"path": f"tree/images/{name}", "image_id": number, "caption": caption}) + "\n")
        handle.write(json.dumps({"path": "tree/images/broken.jpg", "image_id": 99, "caption": "",
                                 "error": "empty file (0 bytes)"}) + "\n")
    assert evaluate.main(["--results", str(results), "--dataset", "imagefolder", "--data-root", root,
                          "--no-java"]) == 0
    err = capsys.readouterr().err
    assert f"{len(names) - 2} captioned files are not images of the test split: left out" in err
    assert "1 records of files that could not be captioned are left out" in err
    written = tmp_path / "captions.jsonl-eval"
    metrics = json.load(open(written / "metrics.json"))
    assert metrics["images"] == 2 and metrics["left_out_outside_split"] == len(names) - 2
    ids = pinning.image_ids(DERIVED_TEST)
    scores = {entry["image_id"]: entry["coco_cider_d"] for entry in json.load(open(written / "per_image.json"))}
    assert set(scores) == set(ids.values())
    assert scores[ids["images/img_0008.jpg"]] > scores[ids["images/img_0021.jpg"]] == 0  # its own reference


@pytest.mark.slow
def test_train_evaluate_and_a_self_critical_step_on_a_folder(trees, tmp_path, capsys):
    """One training step with the imagefolder preset (small_cnn, frozen, through the feature cache) writes
    RUN/splits.json; evaluation and the self-critical stage read the run's split even after files are added."""
    from captioner import evaluate, train

    root = str(tmp_path / "tree")
    shutil.copytree(trees["hf-jsonl"][0], root)
    run_dir = str(tmp_path / "run")
    small = ["--encoder", "small_cnn", "--encoder-weights", "none", "--image-size", "64", "--feature-dim", "32",
             "--embed-dim", "32", "--hidden-dim", "32", "--attention-dim", "32", "--batch-size", "8",
             "--eval-batch-size", "16", "--val-images", "4"]
    assert train.main(["--preset", "imagefolder-lstm", "--data-root", root, *small, "--epochs", "1",
                       "--steps-per-epoch", "1", "--search-images", "0", "--run-dir", run_dir, "--quiet"]) == 0
    pinned = json.load(open(os.path.join(run_dir, "splits.json")))
    assert (pinned["splits"]["val"], pinned["splits"]["test"]) == (DERIVED_VAL, DERIVED_TEST)
    assert json.load(open(os.path.join(run_dir, "config.json")))["splits_file"] == os.path.join(run_dir, "splits.json")
    with open(os.path.join(root, "metadata.jsonl"), "a") as handle:  # files added after training moved the split
        for k in range(12):
            shutil.copy(os.path.join(root, "images", "img_0001.jpg"), os.path.join(root, "images", f"new_{k}.jpg"))
            handle.write(json.dumps({"file_name": f"images/new_{k}.jpg", "text": "a new picture"}) + "\n")
    capsys.readouterr()
    assert evaluate.main([run_dir, "--no-java", "--output-dir", str(tmp_path / "eval")]) == 0
    per_image = json.load(open(tmp_path / "eval" / "per_image.json"))
    ids = pinning.image_ids(DERIVED_TEST)
    assert sorted(entry["image_id"] for entry in per_image) == sorted(ids.values())
    metrics = json.load(open(tmp_path / "eval" / "metrics.json"))
    assert "chair_left_out" in metrics and "CHAIR left out" in capsys.readouterr().err
    # Any results file against the run's split of the folder, with the flags of training.
    results = str(tmp_path / "results.json")
    json.dump([{"image_id": i, "caption": "a small red circle"} for i in ids.values()], open(results, "w"))
    assert evaluate.main(["--results", results, "--dataset", "imagefolder", "--data-root", root, "--splits-file",
                          os.path.join(run_dir, "splits.json"), "--no-java"]) == 0
    assert json.load(open(tmp_path / "results.json-eval" / "metrics.json"))["images"] == 2
    assert train.main(["--scst-from", run_dir, "--epochs", "1", "--steps-per-epoch", "1", "--search-images", "0",
                       "--batch-size", "8", "--quiet"]) == 0
    stage = json.load(open(run_dir + "-scst/metrics.json"))
    assert stage["images"] == 2  # the parent's test split, not the 3 images a fresh derivation gives now


@pytest.mark.slow
def test_data_exploration_reads_an_imagefolder(trees, tmp_path, monkeypatch):
    from test_notebooks import NOTEBOOKS, execute, headless, images

    root, _ = trees["excel"]
    headless(monkeypatch)
    monkeypatch.setenv("CAPTIONER_NOTEBOOK_DATASET", "imagefolder")
    monkeypatch.setenv("CAPTIONER_NOTEBOOK_CAPTIONS", os.path.join(root, "captions.csv"))
    monkeypatch.setenv("CAPTIONER_NOTEBOOK_SEPARATOR", ";")
    outputs = execute([p for p in NOTEBOOKS if p.endswith("01_explore_data.ipynb")][0], str(tmp_path))
    printed = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert "{'train': 44, 'val': 2, 'test': 2} images per split" in printed
    assert len(images(outputs)) >= 2


def test_a_hand_edited_splits_file_with_other_than_names_is_refused(tmp_path):
    from captioner.data import imagefolder_splits
    from captioner.data.coco import DatasetError

    path = tmp_path / "splits.json"
    path.write_text(json.dumps({"splits": {"train": ["a.jpg", {"file": "b.jpg"}], "val": [], "test": []}}))
    with pytest.raises(DatasetError, match="is not a splits file"):
        imagefolder_splits.read_pinned(str(path))
    path.write_text(json.dumps({"splits": {"train": ["a.jpg"], "val": [], "test": ["c.jpg"]}}))
    assert imagefolder_splits.read_pinned(str(path)) == {"a.jpg": "train", "c.jpg": "test"}
