"""Sampling captions word by word from the model's distribution, batched and in graph."""

import tensorflow as tf

from captioner.decoding.base import same_shapes
from captioner.decoding.constraints import NEG_INF, Constraints


def truncate(log_probs, top_k=0, top_p=1.0):
    """`[N, V]` log-probabilities with all but the `top_k` most likely words, then all but the smallest set
    whose probability reaches `top_p` (nucleus sampling, Holtzman et al. 2020), made impossible."""
    if top_k:
        k = tf.minimum(top_k, tf.shape(log_probs)[-1])  # a K above the vocabulary keeps every word
        kth = tf.math.top_k(log_probs, k=k).values[:, -1:]
        log_probs = tf.where(log_probs < kth, tf.constant(NEG_INF, log_probs.dtype), log_probs)
    if top_p < 1.0:
        order = tf.argsort(log_probs, axis=-1, direction="DESCENDING")
        sorted_probs = tf.exp(tf.gather(log_probs, order, batch_dims=1))
        before = tf.cumsum(sorted_probs, axis=-1, exclusive=True)  # mass of the more likely words
        drop_sorted = before >= top_p  # the first word always stays
        drop = tf.scatter_nd(tf.stack([tf.repeat(tf.range(tf.shape(order)[0]), tf.shape(order)[1]),
                                       tf.reshape(order, [-1])], -1), tf.reshape(drop_sorted, [-1]),
                             tf.shape(order))
        log_probs = tf.where(drop, tf.constant(NEG_INF, log_probs.dtype), log_probs)
    return log_probs


def sample(next_fn, memory, state, batch_size, max_length, start_id, end_id, banned_ids=(), temperature=1.0,
           seed=None, constraints=None, top_k=0, top_p=1.0):
    """Captions drawn word by word from the model's distribution.

    Self-critical training's samples, and `--sample` decoding. Arguments as
    `greedy_search`; each word is drawn from the constrained distribution
    (`constraints`) divided by `temperature`, cut to its `top_k` words and to its
    `top_p` nucleus. With `seed` (an int) the draws are stateless and repeat
    exactly for the same seed, inputs and batch; without, they use TensorFlow's
    global generator. No gradient flows through the draw: `captioner.training.scst`
    recomputes the samples' log-probabilities with teacher forcing.

    Returns:
        dict with `tokens [N, L]` (end token included where drawn, 0 after), `lengths [N]` (words before the
        end token), `attention [N, L, P]` and `log_probs [N]`: each caption's log-probability under the
        constrained model distribution (temperature 1, not truncated), the confidence to rank samples by.
    """
    steps = tf.range(max_length)
    constraints = constraints or Constraints(end_id, banned_ids)

    def draw(logits, weights, output, attention, finished, total, step):
        log_probs = constraints.log_probs(logits, output, step)
        tempered = log_probs / temperature if temperature != 1.0 else log_probs
        if top_k or top_p < 1.0:
            tempered = truncate(tf.nn.log_softmax(tempered), top_k, top_p)
        if seed is None:
            chosen = tf.random.categorical(tempered, 1, dtype=tf.int32)[:, 0]
        else:
            chosen = tf.random.stateless_categorical(tempered, 1, seed=tf.stack([seed, step]),
                                                     dtype=tf.int32)[:, 0]
        total = total + tf.where(finished, 0.0, tf.gather(log_probs, chosen, batch_dims=1))
        chosen = tf.where(finished, 0, chosen)
        here = tf.equal(steps, step)[None, :]
        output = tf.where(here, chosen[:, None], output)
        attention = tf.where(here[..., None] & ~finished[:, None, None], weights[:, None, :], attention)
        return chosen, output, attention, finished | tf.equal(chosen, end_id), total

    logits, state, weights = next_fn(tf.fill([batch_size], start_id), state, memory)
    output = tf.zeros([batch_size, max_length], tf.int32)
    attention = tf.zeros(tf.concat([[batch_size, max_length], tf.shape(weights)[1:]], 0), weights.dtype)
    tokens, output, attention, finished, total = draw(logits, weights, output, attention,
                                                      tf.zeros([batch_size], tf.bool), tf.zeros([batch_size]), 0)

    def cond(step, tokens, state, output, attention, finished, total):
        return (step < max_length) & ~tf.reduce_all(finished)

    def body(step, tokens, state, output, attention, finished, total):
        logits, new_state, weights = next_fn(tokens, state, memory)
        tokens, output, attention, finished, total = draw(logits, weights, output, attention, finished, total, step)
        return step + 1, tokens, same_shapes(new_state, state), output, attention, finished, total

    _, _, _, output, attention, _, total = tf.while_loop(
        cond, body, (tf.constant(1), tokens, state, output, attention, finished, total),
        maximum_iterations=max_length - 1)
    lengths = tf.reduce_sum(tf.cast((output != 0) & (output != end_id), tf.int32), axis=-1)
    return {"tokens": output, "lengths": lengths, "log_probs": total, "attention": attention}
