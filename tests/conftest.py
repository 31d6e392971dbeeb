import os

import pytest

from captioner.data import shapes

# Keep TensorFlow's C++ logging out of test output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def small_shapes(tmp_path_factory):
    """A small Shapes dataset at 64 px (200 / 30 / 30 images), written once per session."""
    root = tmp_path_factory.mktemp("data") / "shapes-small"
    return shapes.generate(str(root), shapes.ShapesParams(seed=11, image_size=64, split_sizes=(200, 30, 30)),
                           progress=None)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, small_shapes):
    """A run folder of the tiny preset trained 2 epochs on `small_shapes` (LSTM)."""
    from captioner import config as config_lib
    from captioner import training

    run_dir = str(tmp_path_factory.mktemp("run") / "tiny-lstm")
    training.train(config_lib.preset("tiny", data_root=small_shapes, epochs=2), run_dir, verbose=0)
    return run_dir
