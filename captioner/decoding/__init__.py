"""Samplers over a decoder's next-token callback, batched and in graph.

A sampler knows nothing about the model. It calls

    next_fn(tokens [N], state, memory) -> (logits [N, V], state, attention [N, P])

where `state` and `memory` are dicts of batch-first tensors. Shapes are static
(buffers of `max_length` steps), and the loop stops once every sequence has
produced the end token. One file per strategy:

    greedy.py     greedy_search
    beam.py       beam_search (length penalty, n-best)
    sampling.py   sample (self-critical training's draws)
    base.py       what they share: log_probabilities, length_penalty, check_alpha
"""

from captioner.decoding.base import check_alpha, length_penalty, log_probabilities
from captioner.decoding.beam import beam_search
from captioner.decoding.greedy import greedy_search
from captioner.decoding.sampling import sample

__all__ = ["beam_search", "check_alpha", "greedy_search", "length_penalty", "log_probabilities", "sample"]
