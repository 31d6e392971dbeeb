"""The exported SavedModel: image bytes in, the same captions as `captioner.caption` out, without captioner."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from captioner import caption, export
from captioner.data import coco

SERVE = """
import json, sys
import tensorflow as tf
serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
paths = json.loads(sys.argv[2])
captions = []
for start in range(0, len(paths), 32):
    data = [open(p, "rb").read() for p in paths[start:start + 32]]
    captions += [c.decode() for c in serve(images=tf.constant(data))["captions"].numpy()]
assert "captioner" not in sys.modules
print(json.dumps(captions))
"""


@pytest.mark.slow
def test_saved_model_captions_equal_the_caption_command(trained_run, small_shapes, tmp_path):
    """A trained run (a model that says different things about different images; the twelve-step quick run
    says one caption of everything)."""
    folder = tmp_path / "images"
    folder.mkdir()
    examples = coco.read_split(small_shapes, "train").examples[:100]
    for example in examples:
        shutil.copy(example.path, folder / os.path.basename(example.path))
    output = tmp_path / "captions.jsonl"
    assert caption.main([trained_run, str(folder), "-o", str(output), "--beam-size", "3", "--quiet"]) == 0
    expected = {json.loads(line)["path"]: json.loads(line)["caption"] for line in output.read_text().splitlines()}
    assert len(set(expected.values())) >= 10  # a model that says different things about different images

    saved = str(tmp_path / "saved")
    assert export.main([trained_run, saved, "--beam-size", "3"]) == 0
    paths = sorted(expected)
    served = subprocess.run([sys.executable, "-c", SERVE, saved, json.dumps(paths)], capture_output=True, text=True,
                            check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
                            cwd=str(tmp_path))  # not the repository: `captioner` must not be importable by path
    assert json.loads(served.stdout.strip().splitlines()[-1]) == [expected[p] for p in paths]


SERVE_EACH = """
import json, sys
import tensorflow as tf
serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
results = {}
for path in json.loads(sys.argv[2]):
    try:
        results[path] = serve(images=tf.constant([open(path, "rb").read()]))["captions"].numpy()[0].decode()
    except tf.errors.InvalidArgumentError as error:
        results[path] = "error: " + error.message
assert "captioner" not in sys.modules
print(json.dumps(results))
"""


def test_saved_model_reads_photos_as_the_caption_command(quick_run, small_shapes, tmp_path):
    """EXIF-rotated JPEGs, transparency and greyscale caption alike; an image over the pixel limit is refused."""
    folder = tmp_path / "photos"
    folder.mkdir()
    pictures = [Image.open(e.path).convert("RGB") for e in coco.read_split(small_shapes, "test").examples[:8]]
    for orientation, stored, picture in ((3, Image.Transpose.ROTATE_180, pictures[0]),
                                         (6, Image.Transpose.ROTATE_90, pictures[1]),
                                         (8, Image.Transpose.ROTATE_270, pictures[2])):
        exif = Image.Exif()
        exif[0x0112] = orientation  # stored turned; EXIF says how to turn it back
        picture.transpose(stored).save(folder / f"rotated{orientation}.jpg", quality=90, exif=exif)
    rows, columns = np.mgrid[0:64, 0:64]
    alpha = np.where(columns < 16, 0, np.where(rows < 32, 255, 128)).astype(np.uint8)
    Image.fromarray(np.dstack([np.asarray(pictures[3]), alpha])).save(folder / "transparent.png")
    pictures[4].convert("L").save(folder / "grey.jpg", quality=90)
    pictures[5].save(folder / "plain.jpg", quality=90)
    output = tmp_path / "captions.jsonl"
    assert caption.main([quick_run, str(folder), "-o", str(output), "--beam-size", "3", "--quiet"]) == 0
    expected = {json.loads(line)["path"]: json.loads(line)["caption"] for line in output.read_text().splitlines()}
    assert len(expected) == 6 and all(expected.values())

    huge = str(tmp_path / "huge.png")
    Image.new("1", (12000, 12000)).save(huge)  # a few kilobytes, 144 million pixels
    saved = str(tmp_path / "saved")
    assert export.main([quick_run, saved, "--beam-size", "3"]) == 0
    served = subprocess.run([sys.executable, "-c", SERVE_EACH, saved, json.dumps(sorted(expected) + [huge])],
                            capture_output=True, text=True, check=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, cwd=str(tmp_path))
    results = json.loads(served.stdout.strip().splitlines()[-1])
    assert "too large" in results.pop(huge)
    assert results == expected


def test_export_refuses_bad_arguments(quick_run, tmp_path, capsys):
    for argv in ([quick_run, str(tmp_path)], [str(tmp_path / "none"), str(tmp_path / "out")],
                 [quick_run, str(tmp_path / "out"), "--beam-size", "0"],
                 [quick_run, str(tmp_path / "out"), "--alpha", "-0.5"]):
        with pytest.raises(SystemExit) as exit_info:
            export.main(argv)
        assert exit_info.value.code == 2
    assert not os.path.exists(tmp_path / "out")


@pytest.mark.slow
def test_export_refuses_a_transformer_max_length_past_its_training(tmp_path, capsys):
    import keras

    from captioner import config as config_lib
    from captioner import runs
    from captioner.models.captioner import build_captioner

    config = config_lib.preset("tiny", decoder="transformer", image_size=32, max_length=6)
    keras.utils.set_random_seed(0)
    run_dir = tmp_path / "transformer-run"
    run_dir.mkdir()
    runs.save_model(build_captioner(config, ["a", "red", "circle"]), str(run_dir / runs.MODEL))
    with pytest.raises(SystemExit) as exit_info:
        export.main([str(run_dir), str(tmp_path / "out"), "--max-length", "7"])
    assert exit_info.value.code == 2 and "at most 6 words" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "out")
    assert export.main([str(run_dir), str(tmp_path / "out"), "--max-length", "6", "--beam-size", "2"]) == 0


SERVE_NBEST = """
import json, sys
import tensorflow as tf
serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
out = serve(images=tf.constant([open(p, "rb").read() for p in json.loads(sys.argv[2])]))
print(json.dumps({"captions": [[c.decode() for c in row] for row in out["nbest_captions"].numpy()],
                  "scores": out["nbest_scores"].numpy().tolist(), "best": [c.decode() for c in out["captions"].numpy()]}))
"""


@pytest.mark.slow
def test_a_saved_model_with_three_captions_an_image_equals_the_caption_command(quick_run, small_shapes, tmp_path):
    examples = coco.read_split(small_shapes, "val").examples[:6]
    folder = tmp_path / "photos"
    folder.mkdir()
    for example in examples:
        shutil.copy(example.path, folder / os.path.basename(example.path))
    output = tmp_path / "captions.jsonl"
    flags = ["--beam-size", "3", "--num-captions", "3", "--alpha", "0.6"]
    assert caption.main([quick_run, str(folder), "-o", str(output), "--quiet", *flags]) == 0
    records = sorted((json.loads(line) for line in output.read_text().splitlines()), key=lambda r: r["path"])
    saved = str(tmp_path / "saved")
    assert export.main([quick_run, saved, "--quiet", *flags]) == 0
    served = subprocess.run([sys.executable, "-c", SERVE_NBEST, saved, json.dumps([r["path"] for r in records])],
                            capture_output=True, text=True, check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    result = json.loads(served.stdout.strip().splitlines()[-1])
    assert result["captions"] == [[c["caption"] for c in r["captions"]] for r in records]
    assert result["best"] == [r["caption"] for r in records]
    np.testing.assert_allclose(result["scores"], [[c["score"] for c in r["captions"]] for r in records], atol=1e-5)
    assert all(len(row) == 3 for row in result["captions"])
