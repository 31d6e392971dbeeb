"""Datasets and the input pipeline."""

import os


def data_home():
    """Where generated data lives (Shapes, feature caches): `$CAPTIONER_DATA`, default `./data`."""
    return os.environ.get("CAPTIONER_DATA", "data")
