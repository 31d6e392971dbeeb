"""Datasets and the input pipeline.

    readers      coco.py (COCO layouts, Karpathy), flickr.py + caption_files.py (Flickr8k/30k), datasets.py (all)
    pipeline     images.py, photo_ops.py, tokenizer.py, pipeline.py, features.py (tf.data ops and caches)
    synthetic/   the data the project generates (Shapes, the COCO rehearsal tree, Flickr-shaped trees)
"""

import os


def data_home():
    """Where generated data lives (Shapes, feature caches), as an absolute path: `$CAPTIONER_DATA`, default
    `./data` of the folder the process started in (a run's config.json stores the absolute path)."""
    return os.path.abspath(os.environ.get("CAPTIONER_DATA", "data"))


def feature_cache_home():
    """Where feature caches live unless a run says otherwise: `data_home()/feature-cache`."""
    return os.path.join(data_home(), "feature-cache")
