"""One entry point to every dataset's splits: Shapes and MS COCO (COCO layouts), Flickr8k and Flickr30k.

Training, evaluation and the notebooks read data through `read_splits`; each
reader returns `coco.Split`s, so nothing after it knows where captions came from.
"""

from captioner.config import DATASETS
from captioner.data import coco, flickr


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
