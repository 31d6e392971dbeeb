"""Training stages: cross-entropy `fit()`, the self-critical stage, and what both share.

    cross_entropy.py    teacher forcing with stock fit(): data, vocabulary, model, optimizer (`train`)
    scst.py             self-critical sequence training from a finished run (`train`)
    run.py              a run's life around fit(): the folder, resuming, finishing and testing
    callbacks.py        validation figures, epoch times, best checkpoint, atomic backups
    decoding_search.py  the decoding default, chosen on validation CIDEr-D at the end of training
    distribute.py       tf.distribute strategies, the chief, sharing its figures

Nothing is imported here, so that `captioner.models` can use `distribute` without a cycle.
"""
