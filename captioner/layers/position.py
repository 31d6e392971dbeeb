"""Learned position embeddings for token sequences and region grids."""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="captioner")
class PositionEmbedding(keras.layers.Layer):
    """Adds a learned embedding of each position along axis -2.

    For region grids `[B, P, D]` this tells the decoder where a region is; for
    tokens `[B, T, D]`, the word position.

    Args:
        max_positions: int, the number of positions that can be embedded.
    """

    def __init__(self, max_positions, **kwargs):
        super().__init__(**kwargs)
        self.max_positions = max_positions

    def build(self, input_shape):
        self.embeddings = self.add_weight(
            name="embeddings", shape=(self.max_positions, input_shape[-1]),
            initializer=keras.initializers.RandomNormal(stddev=0.02))

    def call(self, inputs, start=0):
        length = tf.shape(inputs)[-2]
        positions = tf.slice(tf.convert_to_tensor(self.embeddings), [start, 0], [length, -1])
        return inputs + tf.cast(positions, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "max_positions": self.max_positions}
