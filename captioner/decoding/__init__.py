"""Samplers over a decoder's next-token callback, batched and in graph.

A sampler knows nothing about the model. It calls

    next_fn(tokens [N], state, memory) -> (logits [N, V], state, attention [N, P])

where `state` and `memory` are dicts of batch-first tensors. Shapes are static
(buffers of `max_length` steps), and the loop stops once every sequence has
produced the end token. One file per strategy:

    greedy.py      greedy_search
    beam.py        beam_search (length penalty, n-best)
    sampling.py    sample (self-critical training's draws)
    base.py        what they share: log_probabilities, length_penalty, check_alpha
    arguments.py   the decoding flags of the commands (no TensorFlow: `--help` stays instant)

The samplers are loaded on first use (`captioner.decoding.beam_search`), so
that importing `captioner.decoding.arguments` does not import TensorFlow.
"""

import importlib

_HOMES = {"beam_search": "beam", "greedy_search": "greedy", "sample": "sampling", "check_alpha": "base",
          "length_penalty": "base", "log_probabilities": "base"}

__all__ = sorted(_HOMES)


def __getattr__(name):
    if name in _HOMES:
        return getattr(importlib.import_module(f"captioner.decoding.{_HOMES[name]}"), name)
    raise AttributeError(f"module 'captioner.decoding' has no attribute {name!r}")
