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
from captioner import caption, captioning, evaluation
from captioner.data import coco
from captioner.data import images as images_lib


@pytest.fixture()
def upright(small_shapes):
    return np.asarray(Image.open(coco.read_split(small_shapes, "test").examples[0].path).convert("RGB"))


SHAPES_IMAGES = 1000


@pytest.fixture()
def awkward_folder(tiny_shapes, tmp_path, upright):
    """1000 Shapes images plus every awkward kind of file the caption command must survive."""
    folder = tmp_path / "photos"
    folder.mkdir()
    examples = coco.read_split(tiny_shapes, "train").examples[:SHAPES_IMAGES]
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
    assert images_lib.read_image(str(awkward_folder / "empty.jpg"))[1] == "empty file"


def test_caption_command_survives_awkward_files(trained_run, awkward_folder, tmp_path, capsys):
    output = tmp_path / "captions.jsonl"
    status = caption.main([trained_run, str(awkward_folder), "-o", str(output), "--batch-size", "64", "--quiet"])
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
    assert f"{SHAPES_IMAGES + 8} captioned, 5 failed" in capsys.readouterr().out

    # Running again onto the same output skips what was captioned and retries only the failures.
    status = caption.main([trained_run, str(awkward_folder), "-o", str(output), "--quiet"])
    assert status == 1
    again = [json.loads(line) for line in output.read_text().splitlines()]
    assert len(again) == len(entries) + len(UNREADABLE)
    assert f"0 captioned, 5 failed, {SHAPES_IMAGES + 8} already" in capsys.readouterr().out


def test_csv_and_coco_outputs_and_attention_figures(trained_run, small_shapes, tmp_path):
    folder = tmp_path / "few"
    folder.mkdir()
    examples = coco.read_split(small_shapes, "val").examples[:6]
    for example in examples:
        with open(example.path, "rb") as source, open(folder / os.path.basename(example.path), "wb") as out:
            out.write(source.read())
    csv_path, coco_path, figures = tmp_path / "out.csv", tmp_path / "out.json", tmp_path / "figures"
    assert caption.main([trained_run, str(folder), "-o", str(csv_path), "--beam-size", "1", "--quiet",
                         "--attention-plots", str(figures)]) == 0
    rows = list(csv.DictReader(open(csv_path)))
    assert len(rows) == 6 and all(r["caption"] for r in rows)
    assert len(os.listdir(figures)) == 6
    with Image.open(figures / sorted(os.listdir(figures))[0]) as figure:
        assert figure.size[0] > 300
    assert caption.main([trained_run, str(folder), "-o", str(coco_path), "--quiet"]) == 0
    results = json.load(open(coco_path))
    assert sorted(r["image_id"] for r in results) == sorted(int(os.path.splitext(n)[0]) for n in os.listdir(folder))
    assert not os.path.exists(f"{coco_path}.partial.jsonl")
    # Running again onto a finished COCO results file skips everything and keeps the list whole.
    assert caption.main([trained_run, str(folder), "-o", str(coco_path), "--quiet"]) == 0
    assert json.load(open(coco_path)) == results
    # Greedy captions through the folder path equal those of the evaluation path (shared ops).
    greedy = {os.path.basename(r["path"]): r["caption"] for r in rows}
    model = captioner.load(trained_run)
    evaluated = evaluation.caption_examples(model, examples, batch_size=4, progress=False)
    assert [greedy[os.path.basename(e.path)] for e in examples] == [o["caption"] for o in evaluated]


def test_bad_arguments_exit_2(trained_run, tmp_path):
    for argv in ([trained_run, str(tmp_path / "missing")],
                 [str(tmp_path), str(tmp_path)],
                 [trained_run, str(tmp_path), "-o", str(tmp_path / "out.txt")],
                 [trained_run, str(tmp_path), "--beam-size", "0"]):
        with pytest.raises(SystemExit) as exit_info:
            caption.main(argv)
        assert exit_info.value.code == 2
    assert captioning.image_id_for("/x/COCO_val2014_000000000042.jpg", 7) == 42
    assert captioning.image_id_for("/x/holiday.jpg", 7) == 7
