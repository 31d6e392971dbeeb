"""The Captioner: image encoder + caption decoder + tokenizer, as one Keras model."""

import keras
import tensorflow as tf

from captioner import decoding
from captioner.training.distribute import is_multi_worker
from captioner.data import tokenizer as tokenizer_lib
from captioner.models.encoders import ImageEncoder
from captioner.models.lstm_decoder import LSTMDecoder
from captioner.models.transformer_decoder import TransformerDecoder


class DistributedFitMixin:
    """Lets `fit()` and `evaluate()` run under `MultiWorkerMirroredStrategy` in Keras 3.

    Two Keras 3 defects (present in 3.15; keras-team/keras#20329, #20585) stop
    any `(x, y)` dataset from training on several workers:

    - before the first step, Keras reduces the whole nested first batch with one
      `strategy.reduce`, which rejects nests. Only shapes and dtypes matter to
      that build, so it is built from the first local replica's share instead;
    - across workers Keras averages each step's scalar logs with
      `strategy.reduce("MEAN", v, axis=0)`, which fails on scalars. The logs
      are given a leading axis of 1, so the same reduction averages them.
    """

    def _reducible_logs(self, logs):
        if not is_multi_worker(getattr(self, "_distribute_strategy", None)):
            return logs
        return {k: tf.reshape(v, [1]) if tf.is_tensor(v) and v.shape.rank == 0 else v for k, v in logs.items()}

    def train_step(self, data):
        return self._reducible_logs(super().train_step(data))

    def test_step(self, data):
        return self._reducible_logs(super().test_step(data))

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = getattr(self, "_distribute_strategy", None)
        if strategy is None or iterator is None:
            return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)
        for _, _, it in iterator:
            data_batch = next(it)
            break
        local = tf.nest.map_structure(
            lambda v: strategy.experimental_local_results(v)[0]
            if isinstance(v, tf.distribute.DistributedValues) else v, data_batch)
        with strategy.scope():
            self._symbolic_build(data_batch=local)


@keras.saving.register_keras_serializable(package="captioner")
class RegionCaptioner(DistributedFitMixin, keras.Model):
    """A functional model over backbone regions; see `Captioner.region_model`."""


@keras.saving.register_keras_serializable(package="captioner")
class Captioner(DistributedFitMixin, keras.Model):
    """A functional model `{"images": [B, S, S, 3], "tokens": [B, K, T]} -> logits [B, K, T, V]`.

    Trained with teacher forcing by stock `fit()` on `(x, y, sample_weight)`
    from `captioner.data.pipeline.caption_dataset`. The encoder runs once per
    image; its regions serve the image's K captions. `generate` decodes
    captions for a batch of images in graph.

    Args:
        encoder: `ImageEncoder`.
        decoder: a `CaptionDecoder` (`LSTMDecoder` or `TransformerDecoder`).
        tokenizer: `CaptionTokenizer`, saved with the model.
        decoding: dict or None, the decoding `generate` uses when not told: `{"beam_size": int,
            "alpha": float}` (see `captioner.training.decoding_search`; None: greedy), saved with the model.
    """

    def __init__(self, encoder, decoder, tokenizer, decoding=None, **kwargs):
        size = encoder.image_size
        images = keras.Input((size, size, 3), name="images")
        tokens = keras.Input((None, None), dtype="int32", name="tokens")
        logits = decoder(tokens, encoder(images))
        super().__init__(inputs={"images": images, "tokens": tokens}, outputs=logits, **kwargs)
        self.encoder = encoder
        self.decoder = decoder
        self.tokenizer = tokenizer
        self._default_decoding = normalize_decoding(decoding)
        self.decoding_recorded = decoding is not None  # False for models saved before defaults were chosen
        self._generate_fn = None

    def region_model(self):
        """The same model fed backbone regions instead of images, for training from a feature cache.

        A functional model `{"regions": [B, P, C], "tokens": [B, K, T]} -> logits [B, K, T, V]`
        built from this model's own layers: training it trains this model (minus the frozen backbone).
        """
        regions = keras.Input((self.encoder.num_regions, self.encoder.region_channels), name="regions")
        tokens = keras.Input((None, None), dtype="int32", name="tokens")
        logits = self.decoder(tokens, self.encoder.head(regions))
        return RegionCaptioner({"regions": regions, "tokens": tokens}, logits, name=f"{self.name}_from_regions")

    @property
    def image_size(self):
        return self.encoder.image_size

    @property
    def normalization(self):
        return self.encoder.normalization

    def decode(self, images, beam_size=1, max_length=None, alpha=0.0):
        """Captions for normalised `images [B, S, S, 3]`, in graph.

        Greedy for `beam_size` 1, batched beam search otherwise (`alpha` >= 0:
        length penalty). `max_length` (words) defaults to the trained one; the
        Transformer cannot decode past it (see `check_decoding`). Returns `tokens [B, L]`, `captions [B]`, `scores [B]`,
        `lengths [B]` and `attention [B, L, P]` of the best caption; beam search
        adds the n-best `beam_tokens [B, K, L]`, `beam_captions [B, K]` and
        `beam_scores [B, K]`.
        """
        max_length = self.decoder.max_length if max_length is None else max_length
        check_decoding(self.decoder, max_length, alpha)
        length = max_length + 1  # room for the end token
        memory = self.decoder.prepare(self.encoder(images, training=False))
        state = self.decoder.initial_state(memory)
        batch = tf.shape(images)[0]
        # Decoding never emits padding or the start token, so caption word i is step i.
        ids = dict(start_id=tokenizer_lib.START_ID, end_id=tokenizer_lib.END_ID,
                   banned_ids=(tokenizer_lib.PAD_ID, tokenizer_lib.START_ID))
        if beam_size == 1:
            result = decoding.greedy_search(self.decoder.next_token, memory, state, batch, length, **ids)
        else:
            beams = decoding.beam_search(self.decoder.next_token, memory, state, batch, beam_size, length,
                                         alpha=alpha, **ids)
            result = {key: beams[key][:, 0] for key in ("tokens", "scores", "lengths", "attention")}
            result["beam_tokens"] = beams["tokens"]
            result["beam_scores"] = beams["scores"]
            flat = tf.reshape(beams["tokens"], [-1, length])
            result["beam_captions"] = tf.reshape(self.tokenizer.detokenize(flat), [batch, beam_size])
        result["captions"] = self.tokenizer.detokenize(result["tokens"])
        return result

    @property
    def default_decoding(self):
        """`{"beam_size", "alpha"}` that `generate` uses when not told (greedy unless one was recorded)."""
        return dict(self._default_decoding)

    @default_decoding.setter
    def default_decoding(self, setting):
        self._default_decoding = normalize_decoding(setting)
        self.decoding_recorded = True

    def decoding_settings(self, beam_size=None, alpha=None):
        """`(beam_size, alpha)` to decode with.

        Neither given: the model's default (`default_decoding`). A beam size
        given without alpha means no length penalty (alpha 0), not the default's
        alpha, which was chosen for the default's beam size; an alpha given
        alone applies to the default's beam size. Greedy decoding has no alpha.
        """
        if beam_size is None:
            beam_size = self.default_decoding["beam_size"]
            alpha = self.default_decoding["alpha"] if alpha is None else float(alpha)
        else:
            beam_size, alpha = int(beam_size), 0.0 if alpha is None else float(alpha)
        if beam_size < 1:
            raise ValueError(f"beam_size must be at least 1, got {beam_size}")
        return beam_size, (alpha if beam_size > 1 else 0.0)

    def decoding_source(self, beam_size=None, alpha=None):
        """Where `decoding_settings(beam_size, alpha)` came from, for printouts and metrics."""
        if beam_size is not None or alpha is not None:
            return "as given"
        if self.decoding_recorded:
            return "the model's recorded default"
        return "greedy: the model records no default (trained before defaults were chosen on validation data)"

    def generate(self, images, beam_size=None, max_length=None, alpha=None):
        """`decode`, compiled once per model and setting (`tf.function`).

        `beam_size` and `alpha` default to the model's recorded decoding
        (`default_decoding`, chosen on validation data when it was trained);
        see `decoding_settings`.
        """
        beam_size, alpha = self.decoding_settings(beam_size, alpha)
        check_decoding(self.decoder, self.decoder.max_length if max_length is None else max_length, alpha)
        if self._generate_fn is None:
            self._generate_fn = tf.function(self.decode, reduce_retracing=True)
        # alpha as a tensor: one trace serves every length penalty (the decoding search tries several).
        return self._generate_fn(tf.convert_to_tensor(images, tf.float32), beam_size, max_length,
                                 tf.constant(alpha, tf.float32))

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "encoder": keras.saving.serialize_keras_object(self.encoder),
            "decoder": keras.saving.serialize_keras_object(self.decoder),
            "tokenizer": keras.saving.serialize_keras_object(self.tokenizer),
            "decoding": dict(self.default_decoding),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("encoder", "decoder", "tokenizer"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)


def normalize_decoding(setting):
    """A decoding setting as `{"beam_size": int, "alpha": float}`; None is greedy."""
    setting = dict(setting or {})
    unknown = set(setting) - {"beam_size", "alpha"}
    if unknown:
        raise ValueError(f"unknown decoding settings {sorted(unknown)}; expected beam_size and alpha")
    result = {"beam_size": int(setting.get("beam_size", 1)), "alpha": float(setting.get("alpha", 0.0))}
    if result["beam_size"] < 1:
        raise ValueError(f"beam_size must be at least 1, got {result['beam_size']}")
    decoding.check_alpha(result["alpha"])
    return result


def describe_decoding(beam_size, alpha):
    return "greedy" if beam_size == 1 else f"beam {beam_size}, length penalty alpha {alpha:g}"


def check_decoding(decoder, max_length, alpha=0.0):
    """Refuses decoding settings a decoder cannot honour, with the reason (ValueError)."""
    if max_length < 1:
        raise ValueError(f"max_length must be at least 1 word, got {max_length}")
    if decoder.longest_caption is not None and max_length > decoder.longest_caption:
        raise ValueError(f"this {type(decoder).__name__} was built for captions of at most {decoder.longest_caption} "
                         f"words (its position embedding and key/value cache end there); max_length {max_length} "
                         "is longer")
    decoding.check_alpha(alpha)


def build_captioner(config, vocabulary, decoding=None):
    """A `Captioner` for a `captioner.config.Config` and a vocabulary (list of words)."""
    tokenizer = tokenizer_lib.CaptionTokenizer(vocabulary, name="tokenizer")
    encoder = ImageEncoder(config.encoder, config.image_size, config.feature_dim, config.encoder_weights,
                           config.train_encoder, name="encoder")
    common = dict(vocabulary_size=tokenizer.vocabulary_size, max_length=config.max_length, name="decoder")
    if config.decoder == "lstm":
        decoder = LSTMDecoder(embed_dim=config.embed_dim, hidden_dim=config.hidden_dim,
                              attention_dim=config.attention_dim, dropout=config.dropout,
                              attention_reg=config.attention_reg, **common)
    else:
        decoder = TransformerDecoder(model_dim=config.model_dim, num_layers=config.num_layers,
                                     num_heads=config.num_heads, dropout=config.dropout, **common)
    return Captioner(encoder, decoder, tokenizer, decoding=decoding, name=f"captioner_{config.decoder}")
