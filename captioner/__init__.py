"""captioner: image captioning with Keras 3 and TensorFlow.

    model = captioner.load("runs/shapes-lstm")          # any finished run folder
    model.caption("photo.jpg")                          # {"caption": ..., "score": ...}
    model.caption(["a.jpg", pil_image, uint8_array])    # one dict per image

`python -m captioner` lists the commands (check, train, caption, evaluate, report, demo, export).
"""

__version__ = "0.1.0"


def load(run_dir, quiet=False):
    """Rebuilds the trained `Captioner` of a run folder in any process (safe mode), and says on stderr, once,
    what it was trained on (a Shapes model knows only scenes of coloured shapes)."""
    from captioner import runs
    from captioner.console import log, quiet_tensorflow

    if not quiet:
        quiet_tensorflow()  # TensorFlow's start-up lines (CUDA probing on a CPU machine) are not the user's
    from captioner.models.captioner import describe_training

    model = runs.load(run_dir)
    if not quiet:
        log(describe_training(model) or f"{run_dir}: the model does not record what it was trained on (an older run)")
    return model
