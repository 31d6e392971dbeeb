"""Attention layers: additive (Show-Attend-Tell) and multi-head with a key/value cache."""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="captioner")
class AdditiveAttention(keras.layers.Layer):
    """Bahdanau attention of a query over image regions.

    `scores = v . tanh(W_f features + W_h query)`; the feature projection is
    computed once per image by `project_features` and reused at every step.

    Args:
        units: int, width A of the attention MLP.
    """

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.feature_projection = keras.layers.Dense(units, name="feature_projection")
        self.query_projection = keras.layers.Dense(units, use_bias=False, name="query_projection")
        self.score = keras.layers.Dense(1, name="score")

    def build(self, features_shape, query_shape):
        self.feature_projection.build(features_shape)
        self.query_projection.build(query_shape)
        self.score.build(tuple(features_shape[:-1]) + (self.units,))

    def project_features(self, features):
        """`[B, P, D]` -> keys `[B, P, A]`."""
        return self.feature_projection(features)

    def attend(self, keys, features, query):
        """Returns `(context [B, D], weights [B, P])` for `query [B, H]`."""
        hidden = tf.tanh(keys + self.query_projection(query)[:, None, :])
        # The score layer's weights applied by einsum: Dense on `[B, P, A]` inside the decoder's loop
        # builds a tensordot whose gradient XLA cannot compile.
        kernel = tf.cast(self.score.kernel[:, 0], hidden.dtype)
        logits = tf.einsum("bpa,a->bp", hidden, kernel) + tf.cast(self.score.bias[0], hidden.dtype)
        # Softmax in float32 under mixed precision; the weights are returned in float32.
        weights = tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)
        context = tf.einsum("bp,bpd->bd", tf.cast(weights, features.dtype), features)
        return context, weights

    def call(self, features, query):
        return self.attend(self.project_features(features), features, query)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable(package="captioner")
class MultiHeadAttention(keras.layers.Layer):
    """Scaled dot-product attention with separate key/value projection, for caching.

    Args:
        num_heads: int, attention heads h.
        model_dim: int, input and output width D (each head has D / h).
        dropout: float, dropout on the attention weights.
    """

    def __init__(self, num_heads, model_dim, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.model_dim = model_dim
        self.dropout = dropout
        self.head_dim = model_dim // num_heads
        shape = (None, num_heads, self.head_dim)
        self.query_dense = keras.layers.EinsumDense("btd,dhk->bthk", shape, bias_axes="hk", name="query")
        self.key_dense = keras.layers.EinsumDense("btd,dhk->bthk", shape, bias_axes="hk", name="key")
        self.value_dense = keras.layers.EinsumDense("btd,dhk->bthk", shape, bias_axes="hk", name="value")
        self.output_dense = keras.layers.EinsumDense("bthk,hkd->btd", (None, model_dim), bias_axes="d",
                                                     name="output")
        self.weights_dropout = keras.layers.Dropout(dropout)

    def build(self, query_shape, memory_shape=None):
        memory_shape = memory_shape or query_shape
        self.query_dense.build(query_shape)
        self.key_dense.build(memory_shape)
        self.value_dense.build(memory_shape)
        self.output_dense.build(tuple(query_shape[:-1]) + (self.num_heads, self.head_dim))

    def project_memory(self, memory):
        """`[B, M, D]` -> `(keys, values)`, each `[B, M, h, D/h]`."""
        return self.key_dense(memory), self.value_dense(memory)

    def attend(self, query, keys, values, mask=None, training=None):
        """`query [B, T, D]` over `keys, values [B, M, h, D/h]`; `mask [B|1, T, M]` bool.

        Returns `(output [B, T, D], weights [B, h, T, M])`.
        """
        q = self.query_dense(query) * (self.head_dim ** -0.5)
        scores = tf.einsum("bthk,bmhk->bhtm", q, keys)
        if mask is not None:
            scores = tf.where(mask[:, None, :, :], scores, tf.cast(-1e9, scores.dtype))
        weights = tf.nn.softmax(tf.cast(scores, tf.float32), axis=-1)
        mixed = tf.einsum("bhtm,bmhk->bthk", self.weights_dropout(tf.cast(weights, values.dtype),
                                                                  training=training), values)
        return self.output_dense(mixed), weights

    def call(self, query, memory, mask=None, training=None):
        keys, values = self.project_memory(memory)
        return self.attend(query, keys, values, mask=mask, training=training)

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads, "model_dim": self.model_dim,
                "dropout": self.dropout}
