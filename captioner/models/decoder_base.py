"""What every caption decoder provides: teacher forcing and one next-token interface.

Samplers (`captioner.decoding`) drive any decoder through three calls:

    memory = decoder.prepare(features)             # per image, computed once
    state = decoder.initial_state(memory)
    logits, state, attention = decoder.next_token(tokens, state, memory)

with `features [N, P, D]`, `tokens [N]` (the previous word), `logits [N, V]`
and `attention [N, P]`. `memory` and `state` are dicts of tensors with the
batch first, so a sampler can tile them over beams and reorder them.
"""

import keras
import tensorflow as tf


class CaptionDecoder(keras.layers.Layer):
    """Base of the decoders: teacher-forced `call` over one or K captions per image.

    `call(tokens [B, T] or [B, K, T], features [B, P, D]) -> logits [B, (K,) T, V]`.
    With K captions per image the per-image memory is computed once and
    repeated K times, so the encoder and memory projections never run per caption.

    Args:
        vocabulary_size: int, V.
        max_length: int, longest caption in words (without start/end).
    """

    def __init__(self, vocabulary_size, max_length=30, **kwargs):
        super().__init__(**kwargs)
        self.vocabulary_size = vocabulary_size
        self.max_length = max_length

    @property
    def longest_caption(self):
        """The most words `next_token` can decode, or None for no limit."""
        return None

    def prepare(self, features):
        raise NotImplementedError

    def initial_state(self, memory):
        raise NotImplementedError

    def next_token(self, tokens, state, memory):
        raise NotImplementedError

    def decode_sequence(self, tokens, memory, training=None):
        """Teacher forcing over `tokens [N, T]`: returns `(logits [N, T, V], attention [N, T, P])`."""
        raise NotImplementedError

    def call(self, tokens, features, training=None):
        memory = self.prepare(features)
        if tokens.shape.rank == 2:
            return self.decode_sequence(tokens, memory, training=training)[0]
        shape = tf.shape(tokens)
        per_image = shape[1]
        flat = tf.reshape(tokens, [-1, shape[2]])
        memory = tf.nest.map_structure(lambda m: _repeat_rows(m, per_image), memory)
        logits, _ = self.decode_sequence(flat, memory, training=training)
        return tf.reshape(logits, tf.concat([shape, [self.vocabulary_size]], 0))

    def compute_output_shape(self, tokens_shape, features_shape):
        return tuple(tokens_shape) + (self.vocabulary_size,)

    def get_config(self):
        return {**super().get_config(), "vocabulary_size": self.vocabulary_size, "max_length": self.max_length}


def _repeat_rows(tensor, count):
    """`[B, ...]` -> `[B * count, ...]`, each row repeated `count` times in place.

    A tile and a reshape rather than `tf.repeat`, whose output shape XLA cannot infer.
    """
    tiled = tf.tile(tensor[:, None], tf.concat([[1, count], tf.ones([tf.rank(tensor) - 1], tf.int32)], 0))
    return tf.reshape(tiled, tf.concat([[-1], tf.shape(tensor)[1:]], 0))
