"""Captioning a folder of people's own images: awkward files, formats, resuming, attention figures."""

import csv
import io
import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

import captioner
from captioner import caption
from captioner.decoding.settings import Decoding
from captioner.inference import captioning, results_file
from captioner.evaluation import coco_eval
from captioner.evaluation import scoring
from captioner.data import coco
from captioner.data import images as images_lib
from conftest import exit_status


@pytest.fixture()
def upright(small_shapes):
    return np.asarray(Image.open(coco.read_split(small_shapes, "test").examples[0].path).convert("RGB"))


SHAPES_IMAGES = 100


@pytest.fixture()
def awkward_folder(small_shapes, tmp_path, upright):
    """100 Shapes images plus every awkward kind of file the caption command must survive."""
    folder = tmp_path / "photos"
    folder.mkdir()
    examples = coco.read_split(small_shapes, "train").examples[:SHAPES_IMAGES]
    for example in examples:
        shutil.copy(example.path, folder / os.path.basename(example.path))
    jpeg = open(examples[0].path, "rb").read()
    png = io.BytesIO()
    Image.fromarray(upright).save(png, format="PNG")
    (folder / "corrupt.jpg").write_bytes(jpeg[:20] + bytes(range(256)) * 8)
    (folder / "truncated.png").write_bytes(png.getvalue()[: len(png.getvalue()) // 2])
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.jpg").write_text("this is not an image\n")
    Image.fromarray(upright).convert("RGBA").save(folder / "rgba.png")
    Image.fromarray(upright).convert("L").save(folder / "grey.jpg", quality=95)
    Image.fromarray(upright).convert("CMYK").save(folder / "cmyk.jpg", quality=95)
    Image.fromarray((upright[..., 0].astype(np.uint16) * 257)).save(folder / "sixteen.png")
    rotated = Image.fromarray(upright).transpose(Image.ROTATE_90)  # stored turned; EXIF says turn it back
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated.save(folder / "exif_rotated.jpg", quality=95, exif=exif)
    Image.fromarray(upright).save(folder / "frames.gif", save_all=True,
                                  append_images=[Image.fromarray(255 - upright)])
    Image.fromarray(upright).save(folder / "picture.webp", lossless=True)
    Image.fromarray(upright).save(folder / "bitmap.bmp")
    Image.new("1", (12000, 12000)).save(folder / "huge.png")
    (folder / "album.jpg").mkdir()  # a directory named like an image
    return folder


UNREADABLE = {"corrupt.jpg", "truncated.png", "empty.jpg", "notes.jpg", "huge.png"}


def test_reader_orients_and_converts(awkward_folder, upright):
    for name in ("rgba.png", "grey.jpg", "cmyk.jpg", "sixteen.png", "exif_rotated.jpg", "frames.gif",
                 "picture.webp", "bitmap.bmp"):
        pixels, reason = images_lib.read_image(str(awkward_folder / name))
        assert reason is None, (name, reason)
        assert pixels.dtype == np.uint8 and pixels.shape == upright.shape, name
    rotated, _ = images_lib.read_image(str(awkward_folder / "exif_rotated.jpg"))
    assert np.abs(rotated.astype(int) - upright).mean() < 4  # upright again, up to JPEG loss
    gif, _ = images_lib.read_image(str(awkward_folder / "frames.gif"))
    assert np.abs(gif.astype(int) - upright).mean() < 12  # the first frame (palette-quantised), not the second
    sixteen, _ = images_lib.read_image(str(awkward_folder / "sixteen.png"))
    np.testing.assert_array_equal(sixteen[..., 0], upright[..., 0])
    for name in UNREADABLE:
        pixels, reason = images_lib.read_image(str(awkward_folder / name))
        assert pixels is None and reason, name
    assert "too large" in images_lib.read_image(str(awkward_folder / "huge.png"))[1]
    assert images_lib.read_image(str(awkward_folder / "empty.jpg"))[1] == "empty file (0 bytes)"


def test_caption_command_survives_awkward_files(quick_run, awkward_folder, tmp_path, capsys):
    output = tmp_path / "captions.jsonl"
    status = caption.main([quick_run, str(awkward_folder), "-o", str(output), "--batch-size", "64", "--quiet"])
    assert status == 1
    entries = [json.loads(line) for line in output.read_text().splitlines()]
    by_name = {os.path.basename(e["path"]): e for e in entries}
    assert len(entries) == len(by_name) == SHAPES_IMAGES + 8 + len(UNREADABLE)
    assert "album.jpg" not in by_name
    for name, entry in by_name.items():
        if name in UNREADABLE:
            assert entry["caption"] == "" and entry["error"], name
        else:
            assert entry["caption"] and "error" not in entry, name
    printed = capsys.readouterr()
    assert f"{SHAPES_IMAGES + 8} captioned, 5 failed" in printed.out
    # The files that failed are named on the terminal with their reasons, not only in the output file.
    assert "Could not caption 5 files:" in printed.err
    for name in UNREADABLE:
        assert f"{awkward_folder / name}: {by_name[name]['error']}" in printed.err

    # Running again onto the same output skips what was captioned and retries only the failures;
    # the file keeps one record per image.
    status = caption.main([quick_run, str(awkward_folder), "-o", str(output), "--batch-size", "64", "--quiet"])
    assert status == 1
    again = [json.loads(line) for line in output.read_text().splitlines()]
    assert again == entries
    assert f"0 captioned, 5 failed, {SHAPES_IMAGES + 8} already" in capsys.readouterr().out


def test_csv_and_coco_outputs_and_attention_figures(quick_run, small_shapes, tmp_path):
    folder = tmp_path / "few"
    folder.mkdir()
    examples = coco.read_split(small_shapes, "val").examples[:6]
    for example in examples:
        with open(example.path, "rb") as source, open(folder / os.path.basename(example.path), "wb") as out:
            out.write(source.read())
    csv_path, coco_path, figures = tmp_path / "out.csv", tmp_path / "out.json", tmp_path / "figures"
    assert caption.main([quick_run, str(folder), "-o", str(csv_path), "--beam-size", "1", "--quiet",
                         "--attention-plots", str(figures)]) == 0
    rows = list(csv.DictReader(open(csv_path)))
    assert len(rows) == 6 and all(r["caption"] for r in rows)
    assert len(os.listdir(figures)) == 6
    with Image.open(figures / sorted(os.listdir(figures))[0]) as figure:
        assert figure.size[0] > 300
    assert caption.main([quick_run, str(folder), "-o", str(coco_path), "--quiet"]) == 0
    results = json.load(open(coco_path))
    assert sorted(r["image_id"] for r in results) == sorted(int(os.path.splitext(n)[0]) for n in os.listdir(folder))
    assert not os.path.exists(f"{coco_path}.partial.jsonl")
    # Running again onto a finished COCO results file skips everything and keeps the list whole.
    assert caption.main([quick_run, str(folder), "-o", str(coco_path), "--quiet"]) == 0
    assert json.load(open(coco_path)) == results
    # Greedy captions through the folder path equal those of the evaluation path (shared ops).
    greedy = {os.path.basename(r["path"]): r["caption"] for r in rows}
    model = captioner.load(quick_run)
    evaluated = scoring.caption_examples(model, examples, batch_size=4, beam_size=1, progress=False)
    assert [greedy[os.path.basename(e.path)] for e in examples] == [o["caption"] for o in evaluated]


def test_bad_arguments_exit_2(quick_run, small_shapes, tmp_path):
    for argv in ([quick_run, str(tmp_path / "missing")],
                 [str(tmp_path), str(tmp_path)],
                 [quick_run, str(tmp_path), "-o", str(tmp_path / "out.txt")],
                 [quick_run, str(tmp_path), "--beam-size", "0"]):
        with pytest.raises(SystemExit) as exit_info:
            caption.main(argv)
        assert exit_info.value.code == 2
    assert results_file.numeric_id("/x/COCO_val2014_000000000042.jpg") == 42
    assert results_file.numeric_id("/x/000000000042.png") == 42
    assert results_file.numeric_id("/x/holiday.jpg") is None and results_file.numeric_id("/x/IMG_0001.jpg") is None
    images = os.path.dirname(coco.read_split(small_shapes, "test").examples[0].path)
    for argv in ([quick_run, str(tmp_path), "--alpha", "-1"],
                 [quick_run, images, "--beam-size", "1", "--alpha", "0.6"],  # greedy has no length penalty
                 [quick_run, images, "--ban-words", ","],
                 [quick_run, str(tmp_path), "--attention-plots", str(tmp_path)],
                 [quick_run, str(tmp_path), "--recursive", "--attention-plots", str(tmp_path / "figures")]):
        with pytest.raises(SystemExit) as exit_info:
            caption.main(argv)
        assert exit_info.value.code == 2


def copy_images(source_root, folder, names, split="val"):
    """Shapes images of `split` copied into `folder` under `names` (relative paths, any extension)."""
    examples = coco.read_split(source_root, split).examples
    for name, example in zip(names, examples):
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.open(example.path).convert("RGB").save(target)
    return folder


def records(path):
    if str(path).endswith(".csv"):
        return list(csv.DictReader(open(path, newline="")))
    if str(path).endswith(".json"):
        return json.load(open(path))
    return [json.loads(line) for line in open(path)]


@pytest.mark.parametrize("extension", ["jsonl", "csv", "json"])
def test_a_torn_last_record_is_dropped_and_redone(quick_run, small_shapes, tmp_path, extension):
    folder = copy_images(small_shapes, tmp_path / "photos", [f"{k:012d}.jpg" for k in range(1, 7)])
    whole = tmp_path / "whole.jsonl"
    assert caption.main([quick_run, str(folder), "-o", str(whole), "--beam-size", "1", "--quiet"]) == 0
    complete = [json.loads(line) for line in whole.read_text().splitlines()]
    output = tmp_path / f"out.{extension}"
    # What a process killed while writing its sixth record leaves behind.
    if extension == "csv":
        rows = ["path,image_id,caption,score,error"] + [
            f"{r['path']},{r['image_id']},{r['caption']},{r['score']}," for r in complete]
        text = "\r\n".join(rows)
    else:
        text = "\n".join(json.dumps(r) for r in complete)
    stream = tmp_path / ("out.json.partial.jsonl" if extension == "json" else f"out.{extension}")
    stream.write_text(text[:-12], newline="")  # the sixth record cut short, no final newline
    shutil.copy(f"{whole}.source.json", f"{output}.source.json")  # made by the same model and settings
    assert caption.main([quick_run, str(folder), "-o", str(output), "--beam-size", "1", "--quiet"]) == 0
    result = records(output)
    assert len(result) == 6
    key = "file_name" if extension == "json" else "path"
    assert sorted(r[key] for r in result) == sorted(r["path"] for r in complete)
    by_path = {r[key]: r["caption"] for r in result}
    assert by_path == {r["path"]: r["caption"] for r in complete}  # the cut caption is whole again
    assert not os.path.exists(tmp_path / "out.json.partial.jsonl")


def test_image_ids_are_unique_and_stable_across_reruns(quick_run, small_shapes, tmp_path):
    names = ["a.jpg", "p/IMG_0001.jpg", "q/IMG_0001.jpg", "000000000042.jpg", "sub/000000000042.jpg", "7.png"]
    folder = copy_images(small_shapes, tmp_path / "photos", names)
    output = tmp_path / "out.json"
    assert caption.main([quick_run, str(folder), "-o", str(output), "--recursive", "--quiet"]) == 0
    first = {r["file_name"]: r["image_id"] for r in records(output)}
    assert len(first) == 6 and len(set(first.values())) == 6
    assert first[str(folder / "000000000042.jpg")] == 42 and first[str(folder / "7.png")] == 7
    # New files in a later run get ids of their own; the earlier ones keep theirs.
    copy_images(small_shapes, folder, ["b.jpg", "c.jpg", "r/IMG_0001.jpg", "42.jpg"], split="test")
    assert caption.main([quick_run, str(folder), "-o", str(output), "--recursive", "--quiet"]) == 0
    second = {r["file_name"]: r["image_id"] for r in records(output)}
    assert len(second) == 10 and len(set(second.values())) == 10
    assert {path: second[path] for path in first} == first
    # The project's own results checker accepts the file.
    references = {i: ["a red circle"] for i in second.values()}
    assert set(coco_eval.check_results(records(output), references, str(output))) == set(second.values())


def test_attention_figures_never_collide_or_touch_the_images(quick_run, small_shapes, tmp_path):
    names = ["x.jpg", "x.png", "a/b.jpg", "a__b.jpg"]
    folder = copy_images(small_shapes, tmp_path / "photos", names)
    figures = tmp_path / "figures"
    assert caption.main([quick_run, str(folder), "-o", str(tmp_path / "out.jsonl"), "--recursive", "--quiet",
                         "--attention-plots", str(figures)]) == 0
    written = sorted(os.path.relpath(os.path.join(d, f), figures) for d, _, fs in os.walk(figures) for f in fs)
    assert written == sorted(name + ".png" for name in names)
    before = {name: (folder / name).read_bytes() for name in names}
    again = [quick_run, str(folder), "-o", str(tmp_path / "again.jsonl"), "--quiet"]
    for refused in (again + ["--attention-plots", str(folder)],  # the image folder itself
                    again + ["--recursive", "--attention-plots", str(folder / "a")]):  # inside it, recursive
        with pytest.raises(SystemExit) as exit_info:
            caption.main(refused)
        assert exit_info.value.code == 2
    assert {name: (folder / name).read_bytes() for name in names} == before
    assert sorted(os.listdir(folder)) == ["a", "a__b.jpg", "x.jpg", "x.png"]


def test_results_of_another_model_or_setting_are_not_mixed(quick_run, small_shapes, tmp_path, capsys):
    folder = copy_images(small_shapes, tmp_path / "photos", ["000000000001.jpg", "000000000002.jpg"])
    (folder / "000000000003.jpg").write_bytes(b"not yet an image")
    output = tmp_path / "out.csv"
    assert caption.main([quick_run, str(folder), "-o", str(output), "--beam-size", "1", "--quiet"]) == 1
    source = json.load(open(f"{output}.source.json"))
    assert source["beam_size"] == 1 and len(source["model"]) == 16
    assert caption.main([quick_run, str(folder), "-o", str(output), "--beam-size", "3", "--quiet"]) == 2
    assert "another model or other settings (beam_size 1 -> 3)" in capsys.readouterr().err
    # The failed file is mended: the rerun replaces its failure instead of adding a row beside it.
    copy_images(small_shapes, tmp_path / "fixed", ["000000000003.jpg"], split="test")
    shutil.copy(tmp_path / "fixed" / "000000000003.jpg", folder / "000000000003.jpg")
    assert caption.main([quick_run, str(folder), "-o", str(output), "--beam-size", "1", "--quiet"]) == 0
    rows = records(output)
    assert len(rows) == 3 and all(r["caption"] and not r["error"] for r in rows)
    # Another model (other weights) is refused too; --overwrite starts afresh.
    model = captioner.load(quick_run)
    model.decoder.logits.bias.assign(model.decoder.logits.bias.numpy() + 1.0)
    with pytest.raises(results_file.ResultsMismatchError, match="model"):
        captioning.caption_folder(model, str(folder), str(output), beam_size=1, progress=False)
    counts = captioning.caption_folder(model, str(folder), str(output), beam_size=1, progress=False, overwrite=True)
    assert counts == {"captioned": 3, "failed": 0, "skipped": 0, "failures": []} and len(records(output)) == 3
    # A file without a record of what made it is not resumed blindly.
    os.remove(f"{output}.source.json")
    with pytest.raises(results_file.ResultsMismatchError, match="without a record"):
        captioning.caption_folder(model, str(folder), str(output), beam_size=1, progress=False)


def test_decoded_pixels_in_flight_stay_within_the_memory_budget(tmp_path):
    """Readers reserve each image's decoded size before decoding: the bytes held never exceed the budget."""
    for k, side in enumerate([400, 300, 500, 200, 450, 350, 250, 480, 320, 380]):
        Image.new("RGB", (side, side), (k * 20, 0, 0)).save(tmp_path / f"{k}.png")
    Image.new("RGB", (900, 900)).save(tmp_path / "big.png")  # larger than the whole budget: goes alone
    budget = 3 * 400 * 400 * images_lib.BYTES_PER_PIXEL
    peaks = []
    original = images_lib.MemoryBudget.reserve

    def tracked(self, size):
        context = original(self, size)

        class Tracking:
            def __enter__(inner):
                context.__enter__()
                peaks.append(self.held)

            def __exit__(inner, *exc):
                return context.__exit__(*exc)

        return Tracking()

    paths = sorted(str(p) for p in tmp_path.iterdir())
    images_lib.MemoryBudget.reserve = tracked
    try:
        results = list(images_lib.read_images(paths, workers=4, prepare=lambda pixels: pixels.shape,
                                              memory_budget=budget))
    finally:
        images_lib.MemoryBudget.reserve = original
    assert [r[0] for r in results] == paths and all(r[2] is None for r in results)
    assert results[-1][1] == (900, 900, 3)  # prepare's result stands in for the pixels
    assert len(peaks) == len(paths) and max(peaks) <= budget


def test_a_second_run_on_the_same_output_is_refused_while_the_first_writes(quick_run, small_shapes, tmp_path):
    folder = copy_images(small_shapes, tmp_path / "photos", ["000000000001.jpg"])
    output = str(tmp_path / "out.json")
    model = captioner.load(quick_run)
    source = captioning.describe_source(model, Decoding())
    first = results_file.ResultsFile(output, source)
    with pytest.raises(results_file.ResultsInUseError, match=f"process {os.getpid()} on .* is writing"):
        captioning.caption_folder(model, str(folder), output, beam_size=1, progress=False)
    assert exit_status(caption.main, [quick_run, str(folder), "-o", output, "--quiet"]) == 2  # the command too
    first.write({"path": "x.jpg", "image_id": 5, "caption": "a red circle"})
    first.close()
    assert json.load(open(output)) == [{"image_id": 5, "caption": "a red circle", "file_name": "x.jpg"}]
    # Once the first is done, the next run goes ahead and keeps what the first wrote.
    counts = captioning.caption_folder(model, str(folder), output, beam_size=1, progress=False)
    assert counts["captioned"] == 1 and len(json.load(open(output))) == 2
    assert not os.path.exists(output + ".lock")  # the lock file lives only while a run holds it


@pytest.mark.parametrize("name", ["out.jsonl", "out.csv", "out.json"])
def test_an_empty_caption_is_a_result_and_a_failure_is_tried_again(tmp_path, name):
    """A model that ends a caption at once has still captioned the image: a rerun skips it (and a COCO list
    keeps it, to be scored as empty); only images that failed to load are tried again."""
    output, source = str(tmp_path / name), {"model": "abc", "beam_size": 1}
    first = results_file.ResultsFile(output, source)
    first.write({"path": "empty.jpg", "image_id": 1, "caption": "", "score": -0.5})
    first.write({"path": "broken.jpg", "image_id": 2, "caption": "", "error": "truncated JPEG"})
    first.write({"path": "fine.jpg", "image_id": 3, "caption": "a red circle", "score": -1.0})
    first.close()
    again = results_file.ResultsFile(output, source)
    try:
        assert again.done == {"empty.jpg", "fine.jpg"}
    finally:
        again.close()
    if name.endswith(".json"):
        assert [e["file_name"] for e in json.load(open(output))] == ["empty.jpg", "fine.jpg"]


def test_a_file_this_program_did_not_write_is_refused_untouched(quick_run, small_shapes, tmp_path, capsys):
    folder = copy_images(small_shapes, tmp_path / "photos", ["000000000001.jpg"])
    for name, text in (("mine.jsonl", '{"id": 1, "note": "keep me"}\n{"id": 2, "note": "no newline"}'),
                       ("mine.csv", "name,score\nholiday.jpg,3\n"), ("mine.json", '{"not": "a list"}')):
        path = tmp_path / name
        path.write_text(text)
        assert caption.main([quick_run, str(folder), "-o", str(path), "--quiet"]) == 2
        assert "without a record of what made them" in capsys.readouterr().err
        assert path.read_text() == text


def test_awkward_file_names_survive_csv_output_and_a_torn_record(quick_run, small_shapes, tmp_path):
    names = ["new\nline, with comma.jpg", 'quote ".jpg', os.fsdecode(b"bad\xffutf.jpg"), "plain.jpg"]
    folder = copy_images(small_shapes, tmp_path / "photos", names)
    output = tmp_path / "out.csv"
    assert caption.main([quick_run, str(folder), "-o", str(output), "--beam-size", "1", "--quiet"]) == 0
    complete = output.read_bytes()
    rows = list(csv.DictReader(open(output, newline="", errors="surrogateescape")))
    assert sorted(os.path.basename(r["path"]) for r in rows) == sorted(names)
    # Cut inside the quoted file name with a newline in it: that record is torn, the ones before stand.
    cut = complete.index(b"new\n") + 4
    output.write_bytes(complete[:cut])
    assert caption.main([quick_run, str(folder), "-o", str(output), "--beam-size", "1", "--quiet"]) == 0
    again = list(csv.DictReader(open(output, newline="", errors="surrogateescape")))
    assert sorted(os.path.basename(r["path"]) for r in again) == sorted(names)
    assert {r["path"]: r["caption"] for r in again} == {r["path"]: r["caption"] for r in rows}


def test_figures_of_long_names_and_a_figure_folder_around_the_images(quick_run, small_shapes, tmp_path):
    long_name = "x" * 250 + ".jpg"
    folder = copy_images(small_shapes, tmp_path / "photos", [long_name])
    figures = tmp_path / "figures"
    assert caption.main([quick_run, str(folder), "-o", str(tmp_path / "out.jsonl"), "--quiet",
                         "--attention-plots", str(figures)]) == 0
    (written,) = os.listdir(figures)
    assert written.startswith("x" * 200) and written.endswith(".png") and len(written) <= 255
    # The image folder inside the figure folder: figures of its subfolders would land among its images.
    with pytest.raises(SystemExit) as exit_info:
        caption.main([quick_run, str(folder), "-o", str(tmp_path / "again.jsonl"), "--quiet", "--recursive",
                      "--attention-plots", str(tmp_path)])
    assert exit_info.value.code == 2


def test_the_caption_command_says_what_it_does_and_what_went_wrong(quick_run, small_shapes, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert caption.main([quick_run, str(empty), "-o", str(tmp_path / "a.jsonl")]) == 1
    assert f"no images found in {empty}" in capsys.readouterr().err
    nested = copy_images(small_shapes, tmp_path / "nested", ["holiday/a.jpg", "holiday/b.png"])
    assert caption.main([quick_run, str(nested), "-o", str(tmp_path / "b.jsonl")]) == 1
    error = capsys.readouterr().err
    assert "its subfolders hold images" in error and "add --recursive" in error
    assert not os.path.exists(tmp_path / "a.jsonl") and not os.path.exists(tmp_path / "b.jsonl")
    # One image file is a folder of one; with -o - its record goes to standard output as a JSON line.
    single = str(nested / "holiday" / "a.jpg")
    assert caption.main([quick_run, single, "-o", "-", "--beam-size", "1"]) == 0
    printed = capsys.readouterr()
    record = json.loads(printed.out)
    assert record["path"] == single and record["caption"] and set(record) == {"path", "image_id", "caption", "score"}
    # What the model was trained on is said once, before any caption.
    assert printed.err.count("Model trained on shapes (200 training images, a vocabulary of") == 1
    assert "it knows only scenes of coloured shapes" in printed.err and "1 captioned" in printed.err
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".lock")]


@pytest.mark.slow
def test_decoding_controls_on_the_command_line(quick_run, small_shapes, tmp_path, capsys):
    folder = copy_images(small_shapes, tmp_path / "photos", [f"{k}.jpg" for k in range(4)])
    output = tmp_path / "nbest.jsonl"
    assert caption.main([quick_run, str(folder), "-o", str(output), "--beam-size", "3", "--num-captions", "3",
                         "--no-repeat-ngram-size", "2", "--quiet"]) == 0
    for record in records(output):
        ranked = record["captions"]
        assert len(ranked) == 3 and ranked[0]["caption"] == record["caption"]
        assert [r["score"] for r in ranked] == sorted((r["score"] for r in ranked), reverse=True)
        assert len({r["caption"] for r in ranked}) == 3  # distinct
        for entry in ranked:
            words = entry["caption"].split()
            assert len(set(zip(words, words[1:]))) == len(words) - 1  # no bigram twice
    csv_output = tmp_path / "nbest.csv"
    assert caption.main([quick_run, str(folder), "-o", str(csv_output), "--beam-size", "3", "--num-captions", "2",
                         "--quiet"]) == 0
    rows = records(csv_output)
    assert list(rows[0]) == ["path", "image_id", "caption", "score", "caption_2", "score_2", "error"]
    # Sampling with a seed repeats itself; the samples are ranked by score.
    first, again = tmp_path / "s1.jsonl", tmp_path / "s2.jsonl"
    for path in (first, again):
        assert caption.main([quick_run, str(folder), "-o", str(path), "--sample", "--top-p", "0.9", "--seed", "3",
                             "--num-captions", "2", "--quiet"]) == 0
    assert [r["captions"] for r in records(first)] == [r["captions"] for r in records(again)]
    capsys.readouterr()
    for argv, message in ((["--sample", "--top-p", "1.5"], "--top-p must be in (0, 1]"),
                          (["--beam-size", "2", "--num-captions", "3"], "--num-captions 3 is above --beam-size 2"),
                          (["--beam-size", "4", "--beam-groups", "3"], "--beam-groups 3 must divide --beam-size 4"),
                          (["--min-length", "9", "--max-length", "5"], "--min-length 9 is above --max-length 5"),
                          (["--top-k", "5"], "go with --sample"),
                          (["--ban-words", "zebra,red"], "'zebra' not in the model's vocabulary")):
        assert exit_status(caption.main, [quick_run, str(folder), "-o", str(tmp_path / "x.jsonl")] + argv) == 2
        error = capsys.readouterr().err
        assert message in error and error.count("error:") == 1, (argv, error)


def test_a_rerun_knows_its_files_however_their_path_is_spelled(quick_run, small_shapes, tmp_path, monkeypatch):
    """The folder given as an absolute path, then relative from elsewhere: the same files, not new ones with
    new ids (which a split's evaluation would score against other images' references)."""
    folder = copy_images(small_shapes, tmp_path / "photos", ["000000000001.jpg", "000000000002.jpg", "holiday.jpg"])
    output = str(tmp_path / "out.jsonl")
    model = captioner.load(quick_run)
    first = captioning.caption_folder(model, str(folder), output, beam_size=1, progress=False)
    assert first["captioned"] == 3
    monkeypatch.chdir(tmp_path)
    again = captioning.caption_folder(model, "photos", output, beam_size=1, progress=False)
    assert (again["captioned"], again["skipped"]) == (0, 3)
    records = [json.loads(line) for line in open(output)]
    assert len(records) == 3 and {r["path"] for r in records} == {str(folder / n) for n in
                                                                  ("000000000001.jpg", "000000000002.jpg", "holiday.jpg")}
    # Only the files of this input count as already there.
    single = captioning.caption_folder(model, "photos/holiday.jpg", output, beam_size=1, progress=False)
    assert (single["captioned"], single["skipped"]) == (0, 1)
