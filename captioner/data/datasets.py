"""One entry point to every dataset's splits: Shapes and MS COCO (COCO layouts), Flickr8k and Flickr30k.

Training, evaluation and the notebooks read data through `read_splits`; each
reader returns `coco.Split`s, so nothing after it knows where captions came from.
"""

import dataclasses
import os

from captioner.config import DATASETS
from captioner.console import log
from captioner.data import coco, flickr
from captioner.data.synthetic import shapes


def read_splits(dataset, root, names, karpathy_json=None, skip_missing_images=False, optional=()):
    """Reads splits of a dataset root, each dataset's files parsed once.

    Args:
        dataset: str, one of `DATASETS`.
        root: str, the dataset root.
        names: tuple of split names ("train", "val", "test").
        karpathy_json: str or None, Karpathy's split file of the dataset.
        skip_missing_images: bool, drop captioned images whose file is missing instead of failing.
        optional: split names that may be absent (a `coco.MissingSplitError` leaves them out).

    Returns:
        dict split name -> `coco.Split`.
    """
    if dataset not in DATASETS:
        raise ValueError(f"Unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    if dataset in flickr.LAYOUTS:
        return flickr.read_splits(root, dataset, names, karpathy_json, skip_missing_images)
    splits = {}
    for name in names:
        try:
            splits[name] = coco.read_split(root, name, karpathy_json, skip_missing_images)
        except coco.MissingSplitError:
            if name not in optional:
                raise
    return splits


def read_split(dataset, root, name, karpathy_json=None, skip_missing_images=False):
    """One split (see `read_splits`)."""
    return read_splits(dataset, root, (name,), karpathy_json, skip_missing_images)[name]


@dataclasses.dataclass
class Data:
    """The three splits of a run.

    Args:
        root: str, the dataset root.
        train, val, test: `captioner.data.coco.Split`.
    """

    root: str
    train: coco.Split
    val: coco.Split
    test: coco.Split


def _shapes_params(config):
    return shapes.ShapesParams(config.shapes_seed, config.image_size, tuple(config.shapes_splits))


def data_root(config):
    """The dataset root of `config`; for Shapes, written first if it is not there yet (training only)."""
    root = config.data_root
    if config.dataset == "shapes":
        params = _shapes_params(config)
        if root is None:
            root = shapes.ensure(shapes.default_root(params), params)
        elif not os.path.exists(root):
            root = shapes.generate(root, params)
    return root


def existing_data_root(config):
    """The dataset root of `config` if it exists; never writes (evaluating someone's run folder must not).

    Raises `coco.DatasetError` naming the command that would write missing Shapes data.
    """
    root = config.data_root
    if config.dataset == "shapes" and root is None:
        root = shapes.default_root(_shapes_params(config))
    if root is None or not os.path.isdir(root):
        fix = "pass --data-root"
        if config.dataset == "shapes":
            params = _shapes_params(config)
            fix = (f"write it with `python -m captioner.data.synthetic.shapes {root} --seed {params.seed} --image-size "
                   f"{params.image_size} --splits {' '.join(map(str, params.split_sizes))}`, or pass --data-root")
        raise coco.DatasetError(f"The run's data is not at {root}: {fix}")
    return root


def load_data(config):
    """Reads train/val/test for `config`, writing Shapes first if it is not there yet."""
    root = data_root(config)
    splits = read_splits(config.dataset, root, ("train", "val", "test"), config.karpathy_json,
                                  config.skip_missing_images, optional=("test",))
    train, val = splits["train"], splits["val"]
    test = splits.get("test")
    if test is None:
        log(f"No test split (no captions file for it in {root}); the final metrics are computed on the val split, "
            "labelled val (the split that also chose the checkpoint, so they are optimistic)")
        test = val
    for split in (train, val, test):
        if split.skipped:
            log(f"Skipped {split.skipped} {split.name} images whose files are missing")
    return Data(root, train, val, test)
