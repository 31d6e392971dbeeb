"""The Python API and the `captioner` command: what a user types first."""

import importlib.metadata
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import captioner
from captioner.data import coco
from captioner.data.pipeline import normalize_image, resize_image


def test_load_says_what_the_model_knows_and_caption_takes_what_people_have(quick_run, small_shapes, capsys):
    model = captioner.load(quick_run)
    assert "Model trained on shapes (200 training images" in capsys.readouterr().err
    path = coco.read_split(small_shapes, "test").examples[0].path
    picture = Image.open(path)
    pixels = np.asarray(picture.convert("RGB"))
    one = model.caption(path, beam_size=1)
    assert set(one) == {"caption", "score"} and isinstance(one["caption"], str) and one["score"] <= 0
    several = model.caption([path, picture, pixels, pixels[..., 0]], beam_size=1)
    assert [r["caption"] for r in several[:3]] == [one["caption"]] * 3  # a file, a PIL image, an array: the same
    assert len(several) == 4 and isinstance(several[3]["caption"], str)  # grey [H, W] is made RGB
    # generate() takes images normalised as the encoder expects, and says so when given 0-255 pixels.
    batch = resize_image(pixels[None], model.image_size).numpy()
    with pytest.raises(ValueError, match=r"normalised to 0\.\.1 \('unit'"):
        model.generate(batch, beam_size=1)
    normalised = normalize_image(batch, model.normalization)
    assert model.generate(normalised, beam_size=1)["captions"][0].numpy().decode() == one["caption"]
    # Decoding controls as the commands have them, and the n-best list.
    nbest = model.caption(path, beam_size=3, num_captions=3)
    texts = [c["caption"] for c in nbest["captions"]]
    assert len(set(texts)) == 3 and texts[0] == nbest["caption"] and nbest["captions"][0]["score"] == nbest["score"]
    assert [c["score"] for c in nbest["captions"]] == sorted((c["score"] for c in nbest["captions"]), reverse=True)
    drawn = [model.caption(path, sample=True, seed=5, num_captions=2) for _ in range(2)]
    assert drawn[0] == drawn[1] and len(drawn[0]["captions"]) == 2
    assert model.caption([]) == []
    with pytest.raises(ValueError, match="greedy"):
        model.caption(path, beam_size=1, alpha=0.6)
    with pytest.raises(ValueError, match="caption\\(\\) takes uint8 pixels"):
        model.caption(pixels.astype(np.float32))
    with pytest.raises(ValueError, match="no-such.jpg"):
        model.caption("no-such.jpg")


def test_python_m_captioner_lists_the_commands():
    listed = subprocess.run([sys.executable, "-m", "captioner"], capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0
    for command in ("check", "train", "caption", "evaluate", "report", "export"):
        assert f"\n  {command} " in listed.stdout
    unknown = subprocess.run([sys.executable, "-m", "captioner", "trian"], capture_output=True, text=True, timeout=60)
    assert unknown.returncode == 2 and "unknown command 'trian'" in unknown.stderr and "'train'" in unknown.stderr
    helped = subprocess.run([sys.executable, "-m", "captioner", "caption", "--help"], capture_output=True, text=True,
                            timeout=60)
    assert helped.returncode == 0 and "--beam-size" in helped.stdout and "(default: None)" not in helped.stdout


def test_the_captioner_command_is_installed():
    scripts = importlib.metadata.entry_points(group="console_scripts")
    assert any(s.name == "captioner" and s.value == "captioner.__main__:main" for s in scripts)


def test_encoder_names_are_matched_ignoring_case_and_typos_get_a_suggestion(capsys):
    from captioner import config as config_lib
    from captioner import train
    from conftest import exit_status

    assert exit_status(train.main, ["--preset", "tiny", "--encoder", "mobilenetv3smal"]) == 2
    error = capsys.readouterr().err
    assert "unknown encoder 'mobilenetv3smal'; did you mean MobileNetV3Small?" in error
    parser = __import__("argparse").ArgumentParser()
    config_lib.add_arguments(parser)
    assert parser.parse_args(["--encoder", "mobilenetv3small"]).encoder == "MobileNetV3Small"
    text = parser.format_help()
    assert "--decoder {lstm,transformer}" in text and "--precision {float32,mixed" in text
    assert "attention penalty (LSTM) (default: 0.0; 1.0 in coco-lstm," in " ".join(text.split())  # the preset's, true
    assert "images per step" in text and "(default: None) (default: None)" not in text
