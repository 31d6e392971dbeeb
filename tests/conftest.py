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
def tiny_shapes(tmp_path_factory):
    """The tiny preset's Shapes data (2000 / 100 / 100 images at 64 px)."""
    from captioner import config as config_lib
    from captioner import training

    root = str(tmp_path_factory.mktemp("tiny") / "shapes")
    training.load_data(config_lib.preset("tiny", data_root=root))
    return root


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_shapes):
    """`(config, run_dir, metrics)` of the tiny preset trained as `python -m captioner.train --preset tiny`."""
    from captioner import config as config_lib
    from captioner import training

    config = config_lib.preset("tiny", data_root=tiny_shapes)
    run_dir = str(tmp_path_factory.mktemp("run") / "tiny-lstm")
    return config, run_dir, training.train(config, run_dir, verbose=0)


@pytest.fixture(scope="session")
def trained_run(tiny_run):
    return tiny_run[1]
