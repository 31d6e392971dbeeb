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
