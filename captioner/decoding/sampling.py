"""Sampling captions word by word from the model's distribution, batched and in graph."""

import tensorflow as tf

from captioner.decoding.base import log_probabilities, same_shapes


def sample(next_fn, memory, state, batch_size, max_length, start_id, end_id, banned_ids=(), temperature=1.0,
           seed=None):
    """Captions drawn word by word from the model's distribution (self-critical training's samples).

    Arguments as `greedy_search`; each word is drawn from
    `softmax(log_probs / temperature)` (`tf.random.categorical`, with `seed`).
    No gradient flows through the draw: `captioner.training.scst` recomputes the
    samples' log-probabilities with teacher forcing.

    Returns:
        dict with `tokens [N, L]` (end token included where drawn, 0 after) and
        `lengths [N]` (words before the end token).
    """
    steps = tf.range(max_length)

    def draw(logits, output, finished, step):
        log_probs = log_probabilities(logits, banned_ids)
        if temperature != 1.0:
            log_probs = log_probs / temperature
        chosen = tf.random.categorical(log_probs, 1, dtype=tf.int32, seed=seed)[:, 0]
        chosen = tf.where(finished, 0, chosen)
        output = tf.where(tf.equal(steps, step)[None, :], chosen[:, None], output)
        return chosen, output, finished | tf.equal(chosen, end_id)

    logits, state, _ = next_fn(tf.fill([batch_size], start_id), state, memory)
    output = tf.zeros([batch_size, max_length], tf.int32)
    tokens, output, finished = draw(logits, output, tf.zeros([batch_size], tf.bool), 0)

    def cond(step, tokens, state, output, finished):
        return (step < max_length) & ~tf.reduce_all(finished)

    def body(step, tokens, state, output, finished):
        logits, new_state, _ = next_fn(tokens, state, memory)
        tokens, output, finished = draw(logits, output, finished, step)
        return step + 1, tokens, same_shapes(new_state, state), output, finished

    _, _, _, output, _ = tf.while_loop(cond, body, (tf.constant(1), tokens, state, output, finished),
                                       maximum_iterations=max_length - 1)
    lengths = tf.reduce_sum(tf.cast((output != 0) & (output != end_id), tf.int32), axis=-1)
    return {"tokens": output, "lengths": lengths}
