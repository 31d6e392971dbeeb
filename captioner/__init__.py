"""captioner: image captioning with Keras 3 and TensorFlow."""

__version__ = "0.1.0"


def load(run_dir):
    """Rebuilds the trained `Captioner` of a run folder in any process (safe mode)."""
    from captioner import runs

    return runs.load(run_dir)
