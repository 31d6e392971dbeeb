"""Greedy search: the most likely word at each step, batched and in graph."""

import tensorflow as tf

from captioner.decoding.base import same_shapes
from captioner.decoding.constraints import Constraints


def greedy_search(next_fn, memory, state, batch_size, max_length, start_id, end_id, banned_ids=(), constraints=None):
    """Most likely word at each step.

    Args:
        next_fn: the next-token callback.
        memory: dict of `[N, ...]` tensors, constant over steps.
        state: dict of `[N, ...]` tensors, the initial state.
        batch_size: int or scalar tensor, N.
        max_length: int, most words generated (the end token included).
        start_id: int, id fed at the first step.
        end_id: int, id that ends a sequence.
        banned_ids: ints, ids never emitted (padding, the start token), when `constraints` is not given.
        constraints: `captioner.decoding.constraints.Constraints`, or None (`banned_ids` only).

    Returns:
        dict with `tokens [N, L]` (end token included, 0 after it), `scores [N]` and `log_probs [N]`
        (sum of log-probabilities), `lengths [N]` (words before the end token)
        and `attention [N, L, P]`.
    """
    steps = tf.range(max_length)
    constraints = constraints or Constraints(end_id, banned_ids)

    def update(step, logits, weights, output, attention, scores, finished):
        log_probs = constraints.log_probs(logits, output, step)
        chosen = tf.where(finished, 0, tf.argmax(log_probs, axis=-1, output_type=tf.int32))
        scores = scores + tf.where(finished, 0.0, tf.gather(log_probs, chosen, batch_dims=1))
        here = tf.equal(steps, step)[None, :]
        output = tf.where(here, chosen[:, None], output)
        attention = tf.where(here[..., None] & ~finished[:, None, None], weights[:, None, :], attention)
        finished = finished | tf.equal(chosen, end_id)
        return chosen, output, attention, scores, finished

    # The first step runs outside the loop: its attention gives the buffer's shape.
    logits, state, weights = next_fn(tf.fill([batch_size], start_id), state, memory)
    output = tf.zeros([batch_size, max_length], tf.int32)
    attention = tf.zeros(tf.concat([[batch_size, max_length], tf.shape(weights)[1:]], 0), weights.dtype)
    scores = tf.zeros([batch_size], tf.float32)
    finished = tf.zeros([batch_size], tf.bool)
    tokens, output, attention, scores, finished = update(0, logits, weights, output, attention, scores, finished)

    def cond(step, tokens, state, output, attention, scores, finished):
        return (step < max_length) & ~tf.reduce_all(finished)

    def body(step, tokens, state, output, attention, scores, finished):
        logits, new_state, weights = next_fn(tokens, state, memory)
        tokens, output, attention, scores, finished = update(
            step, logits, weights, output, attention, scores, finished)
        return step + 1, tokens, same_shapes(new_state, state), output, attention, scores, finished

    _, _, _, output, attention, scores, finished = tf.while_loop(
        cond, body, (tf.constant(1), tokens, state, output, attention, scores, finished),
        maximum_iterations=max_length - 1)
    lengths = tf.reduce_sum(tf.cast((output != 0) & (output != end_id), tf.int32), axis=-1)
    return {"tokens": output, "scores": scores, "log_probs": scores, "lengths": lengths, "attention": attention}
