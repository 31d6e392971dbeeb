"""Config flags (every optional field can be set to none) and encoder weights (local files, failed downloads)."""

import argparse
import dataclasses
import typing
import urllib.error

import keras
import numpy as np
import pytest

from captioner import config as config_lib
from captioner import train
from captioner.models import encoders


def parse(*flags):
    parser = argparse.ArgumentParser()
    config_lib.add_arguments(parser)
    return config_lib.from_arguments(parser.parse_args(list(flags)))


def test_a_flag_given_as_none_sets_its_field_to_none():
    # The coco presets default to ImageNet weights; "none" must win over the preset.
    assert parse("--preset", "coco-lstm", "--data-root", "/coco").encoder_weights == "imagenet"
    assert parse("--preset", "coco-lstm", "--data-root", "/coco", "--encoder-weights", "none").encoder_weights is None
    assert parse("--preset", "coco-lstm", "--data-root", "/coco", "--encoder-weights", "None").encoder_weights is None
    values = {"data_root": "/data", "karpathy_json": "/coco/dataset_coco.json", "encoder_weights": "imagenet",
              "steps_per_epoch": 7, "feature_cache_dir": "/cache", "captions": "/photos/captions.csv",
              "image_column": "file", "caption_column": "text", "separator": ";", "splits_file": "/runs/a/splits.json"}
    optional = {f.name for f in dataclasses.fields(config_lib.Config) if typing.get_origin(f.type) is typing.Union}
    assert optional == set(values)
    folder_fields = ("captions", "image_column", "caption_column", "separator", "splits_file")
    for name, value in values.items():
        parser = argparse.ArgumentParser()
        config_lib.add_arguments(parser)
        folder = {"dataset": "imagefolder", "data_root": "/photos"} if name in folder_fields else {}
        base = config_lib.preset("shapes", **folder).replace(**{name: value})
        flags = parser.parse_args(["--" + name.replace("_", "-"), "none"])
        assert getattr(config_lib.from_arguments(flags, base=base), name) is None, name


def test_flags_not_given_keep_the_preset_and_required_fields_refuse_none(capsys):
    config = parse("--preset", "tiny", "--epochs", "2")
    assert config == config_lib.preset("tiny", epochs=2)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        parse("--epochs", "none")
    assert exit_info.value.code == 2 and "--epochs" in capsys.readouterr().err
    with pytest.raises(ValueError, match="encoder_weights"):
        config_lib.preset("tiny", encoder_weights="resnet")


def test_encoder_weights_from_a_local_file(tmp_path):
    keras.utils.set_random_seed(3)
    saved = encoders.build_backbone("MobileNetV3Small", 32)
    path = str(tmp_path / "mobilenet_v3_small_notop.weights.h5")
    saved.save_weights(path)
    keras.utils.set_random_seed(4)  # another initialisation, which the file must replace
    encoder = encoders.ImageEncoder("MobileNetV3Small", 32, 8, weights=path, trainable_backbone=False)
    assert len(saved.weights) == len(encoder.backbone.weights)
    for a, b in zip(saved.weights, encoder.backbone.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    config = config_lib.preset("tiny", encoder="MobileNetV3Small", encoder_weights=path, train_encoder=False)
    assert config.encoder_weights == path
    with pytest.raises(encoders.EncoderWeightsError, match="does not exist"):
        encoders.build_backbone("MobileNetV3Small", 32, str(tmp_path / "missing.h5"))


def test_a_failed_weights_download_ends_in_a_clear_error(tmp_path, small_shapes, monkeypatch, capsys):
    from keras.src.backend import config as keras_config
    from keras.src.utils import file_utils

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(keras_config, "_KERAS_DIR", str(tmp_path / "keras-home"))  # no cached weights
    monkeypatch.setattr(file_utils, "urlretrieve", offline)
    status = train.main(["--preset", "tiny", "--data-root", small_shapes, "--encoder", "MobileNetV3Small",
                         "--encoder-weights", "imagenet", "--no-train-encoder", "--run-dir", str(tmp_path / "run")])
    error = capsys.readouterr().err
    assert status == 2
    assert "Could not download the ImageNet weights of MobileNetV3Small" in error
    assert "--encoder-weights none" in error and "--encoder-weights FILE" in error
    assert "Traceback" not in error
    # Nothing was written, so the suggested `--encoder-weights none` can use the same run folder.
    assert not (tmp_path / "run").exists()


def test_default_run_folders_name_the_preset_and_its_decoder_once():
    from captioner import runs

    def name(preset, **more):
        return runs.default_name(config_lib.Config(**{**config_lib.PRESETS[preset], "preset": preset, **more}))

    assert name("shapes") == "shapes-lstm" and name("tiny", decoder="transformer") == "tiny-transformer"
    assert name("coco-lstm") == "coco-lstm" and name("imagefolder-transformer") == "imagefolder-transformer"
    assert name("coco-lstm", decoder="transformer") == "coco-lstm-transformer"  # the flag changed the decoder


def test_a_config_that_is_a_folder_or_not_an_object_is_a_usage_error(tmp_path, capsys):
    from captioner import train
    from conftest import exit_status

    assert exit_status(train.main, ["--config", str(tmp_path)]) == 2
    assert "is a folder; give a config.json" in capsys.readouterr().err
    listed = tmp_path / "list.json"
    listed.write_text("[{\"epochs\": 2}]")
    assert exit_status(train.main, ["--config", str(listed)]) == 2
    assert "a config is a JSON object of settings" in capsys.readouterr().err
