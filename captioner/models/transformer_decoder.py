"""Transformer caption decoder: causal self-attention, cross-attention over regions."""

import keras
import tensorflow as tf

from captioner.layers.attention import MultiHeadAttention
from captioner.layers.position import PositionEmbedding
from captioner.models.decoder_base import CaptionDecoder


@keras.saving.register_keras_serializable(package="captioner")
class TransformerDecoderBlock(keras.layers.Layer):
    """Pre-norm block: causal self-attention, cross-attention, feed-forward.

    Args:
        model_dim: int, width D.
        num_heads: int, heads h.
        dropout: float, dropout on attention weights and residual branches.
    """

    def __init__(self, model_dim, num_heads, dropout=0.1, **kwargs):
        super().__init__(**kwargs)
        self.model_dim = model_dim
        self.num_heads = num_heads
        self.dropout = dropout
        self.self_attention = MultiHeadAttention(num_heads, model_dim, dropout, name="self_attention")
        self.cross_attention = MultiHeadAttention(num_heads, model_dim, dropout, name="cross_attention")
        self.norm1 = keras.layers.LayerNormalization(name="norm1")
        self.norm2 = keras.layers.LayerNormalization(name="norm2")
        self.norm3 = keras.layers.LayerNormalization(name="norm3")
        self.ffn_in = keras.layers.Dense(4 * model_dim, activation="gelu", name="ffn_in")
        self.ffn_out = keras.layers.Dense(model_dim, name="ffn_out")
        self.residual_dropout = keras.layers.Dropout(dropout)

    def build(self, inputs_shape):
        shape = (None, None, self.model_dim)
        for layer in (self.norm1, self.norm2, self.norm3, self.ffn_in):
            layer.build(shape)
        self.self_attention.build(shape, shape)
        self.cross_attention.build(shape, shape)
        self.ffn_out.build((None, None, 4 * self.model_dim))

    def call(self, inputs, self_keys, self_values, self_mask, cross_keys, cross_values, training=None):
        """One block over `inputs [N, T, D]` attending to given self keys/values.

        The caller supplies the self-attention keys/values (the whole sequence in
        training, the cache when decoding), so one code path serves both.
        Returns `(outputs [N, T, D], cross weights [N, h, T, P])`.
        """
        drop = lambda x: self.residual_dropout(x, training=training)  # noqa: E731
        attended, _ = self.self_attention.attend(self.norm1(inputs), self_keys, self_values, self_mask, training)
        x = inputs + drop(attended)
        attended, cross = self.cross_attention.attend(self.norm2(x), cross_keys, cross_values, None, training)
        x = x + drop(attended)
        x = x + drop(self.ffn_out(self.ffn_in(self.norm3(x))))
        return x, cross

    def get_config(self):
        return {**super().get_config(), "model_dim": self.model_dim, "num_heads": self.num_heads,
                "dropout": self.dropout}


@keras.saving.register_keras_serializable(package="captioner")
class TransformerDecoder(CaptionDecoder):
    """A stack of pre-norm decoder blocks over word and position embeddings.

    Decoding one token at a time keeps each block's self-attention keys and
    values in a cache `[N, L, h, D/h]` of static length `L = max_length + 1`,
    so a step costs one position, not the whole prefix. The returned attention
    is the last block's cross-attention, averaged over heads.

    Args:
        vocabulary_size: int, V.
        max_length: int, longest caption in words (without start/end).
        model_dim: int, width D.
        num_layers: int, number of blocks.
        num_heads: int, attention heads.
        dropout: float, dropout rate.
    """

    def __init__(self, vocabulary_size, max_length=30, model_dim=256, num_layers=2, num_heads=4, dropout=0.1,
                 **kwargs):
        super().__init__(vocabulary_size, max_length, **kwargs)
        self.model_dim = model_dim
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.dropout = dropout
        self.embedding = keras.layers.Embedding(vocabulary_size, model_dim, name="embedding")
        self.positions = PositionEmbedding(max_length + 2, name="positions")
        self.memory_projection = keras.layers.Dense(model_dim, name="memory_projection")
        self.embedding_dropout = keras.layers.Dropout(dropout)
        self.blocks = [TransformerDecoderBlock(model_dim, num_heads, dropout, name=f"block_{i}")
                       for i in range(num_layers)]
        self.final_norm = keras.layers.LayerNormalization(name="final_norm")
        self.logits = keras.layers.Dense(vocabulary_size, name="logits", dtype="float32")

    @property
    def longest_caption(self):
        return self.max_length  # positions and cache slots beyond it do not exist

    @property
    def cache_length(self):
        return self.max_length + 1

    def build(self, tokens_shape, features_shape):
        shape = (None, None, self.model_dim)
        self.embedding.build(None)
        self.positions.build(shape)
        self.memory_projection.build((None, None, features_shape[-1]))
        for block in self.blocks:
            block.build(shape)
        self.final_norm.build(shape)
        self.logits.build(shape)

    def prepare(self, features):
        memory = self.memory_projection(features)
        keys, values = zip(*[block.cross_attention.project_memory(memory) for block in self.blocks])
        return {"keys": tf.stack(keys, 1), "values": tf.stack(values, 1)}  # [N, layers, P, h, D/h]

    def _embed(self, tokens, start, training=None):
        x = self.embedding(tokens) * (self.model_dim ** 0.5)
        return self.embedding_dropout(self.positions(x, start=start), training=training)

    def decode_sequence(self, tokens, memory, training=None):
        x = self._embed(tokens, 0, training)
        length = tf.shape(tokens)[1]
        causal = tf.linalg.band_part(tf.ones([length, length], tf.bool), -1, 0)[None]
        cross = None
        for layer, block in enumerate(self.blocks):
            keys, values = block.self_attention.project_memory(block.norm1(x))
            x, cross = block(x, keys, values, causal, memory["keys"][:, layer],
                             memory["values"][:, layer], training=training)
        logits = self.logits(self.final_norm(x))
        return logits, tf.reduce_mean(cross, axis=1)

    def initial_state(self, memory):
        batch = tf.shape(memory["keys"])[0]
        head_dim = self.model_dim // self.num_heads
        shape = [batch, self.num_layers, self.cache_length, self.num_heads, head_dim]
        zeros = tf.zeros(shape, memory["keys"].dtype)
        return {"keys": zeros, "values": zeros, "index": tf.zeros([batch], tf.int32)}

    def next_token(self, tokens, state, memory):
        # All sequences in a batch advance together, so one index serves all.
        index = state["index"][0]
        x = self._embed(tokens[:, None], index)
        slot = tf.one_hot(index, self.cache_length, dtype=x.dtype)[None, :, None, None]  # [1, L, 1, 1]
        visible = (tf.range(self.cache_length) <= index)[None, None, :]  # [1, 1, L]
        cache_keys, cache_values, cross = [], [], None
        for layer, block in enumerate(self.blocks):
            new_keys, new_values = block.self_attention.project_memory(block.norm1(x))
            # Each slot is written once, from zeros, so adding writes it.
            keys = state["keys"][:, layer] + slot * new_keys
            values = state["values"][:, layer] + slot * new_values
            cache_keys.append(keys)
            cache_values.append(values)
            x, cross = block(x, keys, values, visible, memory["keys"][:, layer], memory["values"][:, layer])
        logits = self.logits(self.final_norm(x))[:, 0]
        state = {"keys": tf.stack(cache_keys, 1), "values": tf.stack(cache_values, 1), "index": state["index"] + 1}
        return logits, state, tf.reduce_mean(cross, axis=1)[:, 0]

    def get_config(self):
        return {**super().get_config(), "model_dim": self.model_dim, "num_layers": self.num_layers,
                "num_heads": self.num_heads, "dropout": self.dropout}
