"""One entry point to every dataset's splits: Shapes and MS COCO (COCO layouts), Flickr8k and Flickr30k, and
people's own captioned images (imagefolder).

Training, evaluation and the notebooks read data through `read_splits`; each
reader returns `coco.Split`s, so nothing after it knows where captions came from.
"""

import dataclasses
import os

from captioner.config import DATASETS
from captioner.console import log
from captioner.data import coco, feature_cache_home, flickr, image_check, imagefolder
from captioner.data.synthetic import shapes


def read_splits(dataset, root, names, karpathy_json=None, skip_missing_images=False, optional=(), options=None):
    """Reads splits of a dataset root, each dataset's files parsed once.

    Args:
        dataset: str, one of `DATASETS`.
        root: str, the dataset root.
        names: tuple of split names ("train", "val", "test").
        karpathy_json: str or None, Karpathy's split file of the dataset.
        skip_missing_images: bool, drop captioned images whose file is missing instead of failing.
        optional: split names that may be absent (a `coco.MissingSplitError` leaves them out).
        options: `imagefolder.Options` (captions file, columns, separator, splits file) of an imagefolder
            dataset, whose images with a missing or undecodable file are skipped and counted whatever
            `skip_missing_images` says; `imagefolder.Options.of(config)` makes them.

    Returns:
        dict split name -> `coco.Split`.
    """
    if dataset not in DATASETS:
        raise ValueError(f"Unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    if dataset == "imagefolder":
        return imagefolder.read_splits(root, names, options)
    if dataset in flickr.LAYOUTS:
        return flickr.read_splits(root, dataset, names, karpathy_json, skip_missing_images)
    splits = {}
    payload = None
    if karpathy_json and os.path.isdir(root):
        payload = coco.load_json(karpathy_json, "Karpathy split file")  # once for every split
    for name in names:
        try:
            splits[name] = coco.read_split(root, name, karpathy_json, skip_missing_images, payload)
        except coco.MissingSplitError:
            if name not in optional:
                raise
    return splits


def read_split(dataset, root, name, karpathy_json=None, skip_missing_images=False, options=None):
    """One split (see `read_splits`)."""
    return read_splits(dataset, root, (name,), karpathy_json, skip_missing_images, options=options)[name]


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


def with_absolute_paths(config, run_dir=None):
    """`config` with its data root, Karpathy file, captions and splits files, feature cache folder and weights
    file as absolute paths.

    A run's `config.json` stores them so, so that a self-critical stage or an
    evaluation started from any folder finds the same data and cache. An unset
    data root of Shapes becomes its default place, of an imagefolder `--captions` file its folder, an unset
    cache folder the default one. For a training run of an imagefolder dataset (`run_dir`), an unset splits
    file becomes `RUN/splits.json`, which the run writes when it starts (the stage and evaluation read it).
    """
    def absolute(path):
        return None if path is None else os.path.abspath(os.path.expanduser(path))

    root = config.data_root
    if root is None and config.dataset == "shapes":
        root = shapes.default_root(_shapes_params(config))
    if root is None and config.dataset == "imagefolder" and config.captions:
        root = imagefolder.root_of(config.captions)
    splits_file = config.splits_file
    if splits_file is None and config.dataset == "imagefolder" and run_dir:
        splits_file = os.path.join(run_dir, imagefolder.SPLITS_FILE)
    config = config.replace(captions=absolute(config.captions), splits_file=absolute(splits_file))
    weights = config.encoder_weights
    return config.replace(data_root=absolute(root), karpathy_json=absolute(config.karpathy_json),
                          feature_cache_dir=absolute(config.feature_cache_dir) or feature_cache_home(),
                          encoder_weights=weights if weights in (None, "imagenet") else absolute(weights))


def data_root(config):
    """The dataset root of `config`; for Shapes, written first if it is not there yet (training only)."""
    root = config.data_root
    if root is None and config.dataset == "imagefolder" and config.captions:
        root = imagefolder.root_of(config.captions)
    if config.dataset == "shapes":
        params = _shapes_params(config)
        default = shapes.default_root(params)
        if root is None or os.path.abspath(root) == default:
            root = shapes.ensure(default, params)  # shared by every run of these parameters
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
    if root is None and config.dataset == "imagefolder" and config.captions:
        root = imagefolder.root_of(config.captions)
    if root is None or not os.path.isdir(root):
        fix = "pass --data-root"
        if config.dataset == "shapes":
            params = _shapes_params(config)
            fix = (f"write it with `python -m captioner.data.synthetic.shapes {root} --seed {params.seed} --image-size "
                   f"{params.image_size} --splits {' '.join(map(str, params.split_sizes))}`, or pass --data-root")
        raise coco.DatasetError(f"The run's data is not at {root}: {fix}")
    return root


def load_data(config, run_dir=None):
    """Reads train/val/test for `config`, writing Shapes first if it is not there yet.

    `run_dir`: a training run's folder; its `splits.json`, where it is there, pins an imagefolder dataset's split
    (`imagefolder.Options.of`; `imagefolder.write_run_splits` writes it when the run starts).
    """
    root = data_root(config)
    splits = read_splits(config.dataset, root, ("train", "val", "test"), config.karpathy_json,
                                  config.skip_missing_images, optional=("test",),
                                  options=imagefolder.Options.of(config, run_dir))
    train, val = splits["train"], splits["val"]
    test = splits.get("test")
    if test is None:
        log(f"No test split (no captions file for it in {root}); the final metrics are computed on the val split, "
            "labelled val (the split that also chose the checkpoint, so they are optimistic)")
        test = val
    for split in (train, val, test):
        if split.skipped:
            log(f"Skipped {split.skipped} {split.name} images whose files are missing")
    # Every image decoded once before hours of work (answers cached), broken files named.
    train, val, test = image_check.checked_splits([train, val, test], config.skip_bad_images)
    return Data(root, train, val, test)
