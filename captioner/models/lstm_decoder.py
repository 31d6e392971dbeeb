"""Attention LSTM decoder in the Show, Attend and Tell style (Xu et al., 2015)."""

import keras
import tensorflow as tf

from captioner.layers.attention import AdditiveAttention
from captioner.models.decoder_base import CaptionDecoder


@keras.saving.register_keras_serializable(package="captioner")
class LSTMDecoder(CaptionDecoder):
    """At each step: additive attention over regions with `h_{t-1}`, a gating
    scalar `beta = sigmoid(f(h_{t-1}))` on the context, an LSTM fed the previous
    word and the gated context, and a deep output layer
    `logits = W(E y_{t-1} + L_h h_t + L_z z_t)`. The state starts from the mean
    region feature. Training adds the doubly-stochastic penalty
    `attention_reg * mean_p (1 - sum_t alpha_tp)^2`.

    Args:
        vocabulary_size: int, V.
        max_length: int, longest caption in words (without start/end).
        embed_dim: int, word embedding width E.
        hidden_dim: int, LSTM state width H.
        attention_dim: int, additive attention width A.
        dropout: float, dropout before the output layer.
        attention_reg: float, weight of the doubly-stochastic attention penalty.
    """

    def __init__(self, vocabulary_size, max_length=30, embed_dim=128, hidden_dim=256, attention_dim=128,
                 dropout=0.1, attention_reg=1.0, **kwargs):
        super().__init__(vocabulary_size, max_length, **kwargs)
        self.embed_dim = embed_dim
        self.hidden_dim = hidden_dim
        self.attention_dim = attention_dim
        self.dropout = dropout
        self.attention_reg = attention_reg
        self.embedding = keras.layers.Embedding(vocabulary_size, embed_dim, name="embedding")
        self.init_h = keras.layers.Dense(hidden_dim, activation="tanh", name="init_h")
        self.init_c = keras.layers.Dense(hidden_dim, activation="tanh", name="init_c")
        self.attention = AdditiveAttention(attention_dim, name="attention")
        self.gate = keras.layers.Dense(1, activation="sigmoid", name="gate")
        # Word-input gates are computed for all steps at once; only context and state recur.
        self.input_gates = keras.layers.Dense(4 * hidden_dim, name="input_gates")
        self.recurrent_gates = keras.layers.Dense(4 * hidden_dim, use_bias=False, name="recurrent_gates")
        self.deep_output = keras.layers.Dense(embed_dim, use_bias=False, name="deep_output")
        self.output_dropout = keras.layers.Dropout(dropout)
        self.logits = keras.layers.Dense(vocabulary_size, name="logits", dtype="float32")

    def build(self, tokens_shape, features_shape):
        feature_dim = features_shape[-1]
        self.embedding.build(None)
        self.init_h.build((None, feature_dim))
        self.init_c.build((None, feature_dim))
        self.attention.build((None, None, feature_dim), (None, self.hidden_dim))
        self.gate.build((None, self.hidden_dim))
        self.input_gates.build((None, None, self.embed_dim))
        self.recurrent_gates.build((None, feature_dim + self.hidden_dim))
        self.deep_output.build((None, None, self.hidden_dim + feature_dim))
        self.logits.build((None, None, self.embed_dim))

    def prepare(self, features):
        return {"features": features, "keys": self.attention.project_features(features)}

    def initial_state(self, memory):
        mean = tf.reduce_mean(memory["features"], axis=1)
        return {"h": self.init_h(mean), "c": self.init_c(mean)}

    def _step(self, word_gates, state, memory):
        """One LSTM step from precomputed word gates `[N, 4H]`; returns `(state, z, alpha)`."""
        h, c = state["h"], state["c"]
        context, alpha = self.attention.attend(memory["keys"], memory["features"], h)
        z = self.gate(h) * context
        gates = word_gates + self.recurrent_gates(tf.concat([z, h], axis=-1))
        i, f, g, o = tf.split(gates, 4, axis=-1)
        c = tf.sigmoid(f + 1.0) * c + tf.sigmoid(i) * tf.tanh(g)  # +1: forget-gate bias, as is usual
        h = tf.sigmoid(o) * tf.tanh(c)
        return {"h": h, "c": c}, z, alpha

    def _output(self, embedded, h, z, training=None):
        hidden = embedded + self.deep_output(tf.concat([h, z], axis=-1))
        return self.logits(self.output_dropout(hidden, training=training))

    def next_token(self, tokens, state, memory):
        embedded = self.embedding(tokens)
        state, z, alpha = self._step(self.input_gates(embedded), state, memory)
        return self._output(embedded, state["h"], z), state, alpha

    def decode_sequence(self, tokens, memory, training=None):
        embedded = self.embedding(tokens)
        word_gates = tf.transpose(self.input_gates(embedded), [1, 0, 2])  # [T, N, 4H]

        def step(carry, gates_t):
            state, _, _ = carry
            return self._step(gates_t, state, memory)

        state = self.initial_state(memory)
        num_regions = tf.shape(memory["features"])[1]
        first = (state, tf.zeros_like(memory["features"][:, 0]),
                 tf.zeros(tf.stack([tf.shape(tokens)[0], num_regions]), tf.float32))  # attention is float32
        states, z, alpha = tf.scan(step, word_gates, initializer=first)
        h = tf.transpose(states["h"], [1, 0, 2])
        z = tf.transpose(z, [1, 0, 2])
        alpha = tf.transpose(alpha, [1, 0, 2])  # [N, T, P]
        if self.attention_reg:
            self.add_loss(self.attention_reg * self._attention_penalty(alpha, tokens))
        return self._output(embedded, h, z, training=training), alpha

    @staticmethod
    def _attention_penalty(alpha, tokens):
        """Doubly-stochastic penalty, averaged over real captions (not padding)."""
        mask = tf.cast(tokens != 0, alpha.dtype)
        coverage = tf.reduce_sum(alpha * mask[..., None], axis=1)  # [N, P]
        per_caption = tf.reduce_mean(tf.square(1.0 - coverage), axis=-1)
        real = tf.cast(tokens[:, 0] != 0, alpha.dtype)
        return tf.math.divide_no_nan(tf.reduce_sum(per_caption * real), tf.reduce_sum(real))

    def get_config(self):
        return {**super().get_config(), "embed_dim": self.embed_dim, "hidden_dim": self.hidden_dim,
                "attention_dim": self.attention_dim, "dropout": self.dropout,
                "attention_reg": self.attention_reg}
