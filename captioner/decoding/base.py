"""What every sampler shares: log-probabilities with banned words, the length penalty, loop shapes."""

import tensorflow as tf


def log_probabilities(logits, banned_ids=()):
    """`logits [N, V]` -> float32 log-probabilities, words in `banned_ids` made impossible.

    Banned words (padding, the start token) are removed before the softmax, so
    the others' probabilities still sum to one.
    """
    logits = tf.cast(logits, tf.float32)
    if banned_ids:
        vocabulary = tf.shape(logits)[-1]
        banned = tf.reduce_any(tf.equal(tf.range(vocabulary)[:, None], tf.constant(list(banned_ids))[None]), -1)
        logits = tf.where(banned[None], tf.constant(-1e9, tf.float32), logits)
    return tf.nn.log_softmax(logits)


def check_alpha(alpha):
    """Refuses a negative length penalty: the early-stop bound (and "longer is not worse") need alpha >= 0."""
    if not tf.is_tensor(alpha) and alpha < 0:
        raise ValueError(f"the length penalty alpha must be 0 or more, got {alpha}")


def length_penalty(length, alpha):
    """GNMT length penalty `((5 + length) / 6) ** alpha`; alpha = 0 turns it off."""
    return tf.pow((5.0 + tf.cast(length, tf.float32)) / 6.0, alpha)


def same_shapes(new, old):
    """`new` with the static shapes of `old`: gathers lose a static batch size the loop started with."""
    return tf.nest.map_structure(lambda n, o: tf.ensure_shape(n, o.shape), new, old)
