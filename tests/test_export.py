"""The exported SavedModel: image bytes in, the same captions as `captioner.caption` out, without captioner."""

import json
import os
import shutil
import subprocess
import sys

import pytest

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


def test_saved_model_captions_equal_the_caption_command(trained_run, small_shapes, tmp_path):
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


def test_export_refuses_bad_arguments(trained_run, tmp_path):
    for argv in ([trained_run, str(tmp_path)], [str(tmp_path / "none"), str(tmp_path / "out")],
                 [trained_run, str(tmp_path / "out"), "--beam-size", "0"]):
        with pytest.raises(SystemExit) as exit_info:
            export.main(argv)
        assert exit_info.value.code == 2
