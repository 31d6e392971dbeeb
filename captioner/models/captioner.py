"""The Captioner: image encoder + caption decoder + tokenizer, as one Keras model."""

import dataclasses

import keras
import tensorflow as tf

from captioner.decoding import decode as decode_lib
from captioner.decoding.settings import GREEDY, Decoding
from captioner.training.distribute import is_multi_worker
from captioner.data import tokenizer as tokenizer_lib
from captioner.data.pipeline import check_normalised
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


DIVERSITY_STRENGTH = 0.5  # diverse beam search's lambda when groups are asked for without one (Vijayakumar et al.)


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
        trained_on: dict or None, what the model learned from: `{"dataset": str, "images": int}` (the
            training split), saved with the model so that every use of it can say so.
    """

    def __init__(self, encoder, decoder, tokenizer, decoding=None, trained_on=None, **kwargs):
        size = encoder.image_size
        images = keras.Input((size, size, 3), name="images")
        tokens = keras.Input((None, None), dtype="int32", name="tokens")
        logits = decoder(tokens, encoder(images))
        super().__init__(inputs={"images": images, "tokens": tokens}, outputs=logits, **kwargs)
        self.encoder = encoder
        self.decoder = decoder
        self.tokenizer = tokenizer
        self._default_decoding = as_decoding(decoding)
        self.trained_on = dict(trained_on) if trained_on else None
        self.decoding_recorded = decoding is not None  # False for models saved before defaults were chosen
        self._generate_fns, self._encode_fn, self._head_fn = {}, None, None

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

    def decode(self, images, decoding=None, max_length=None, alpha=None):
        """Captions for normalised `images [B, S, S, 3]`, in graph: `decode_features` of their encoding."""
        return self.decode_features(self.encoder(images, training=False), decoding, max_length, alpha)

    def decode_features(self, features, decoding=None, max_length=None, alpha=None):
        """Captions for region features `[B, P, D]` (the encoder's output), in graph.

        Args:
            features: `[B, P, D]`.
            decoding: `captioner.decoding.settings.Decoding` (greedy when None).
            max_length: int, most words (the trained one by default; the Transformer cannot decode past it).
            alpha: float or scalar tensor overriding `decoding.alpha`.

        Returns:
            `captioner.decoding.decode.decode`'s dict: the best caption's `tokens`, `captions`, `scores`,
            `log_probs`, `lengths`, `attention`, and the n-best `nbest_*`.
        """
        decoding = decoding or GREEDY
        max_length = self.decoder.max_length if max_length is None else max_length
        check_decoding(self.decoder, max_length, decoding)
        return decode_lib.decode(self.decoder, self.tokenizer, features, decoding, max_length + 1, alpha)

    @property
    def default_decoding(self):
        """The `Decoding` that `generate` uses when not told (greedy unless one was recorded)."""
        return self._default_decoding

    @default_decoding.setter
    def default_decoding(self, setting):
        self._default_decoding = as_decoding(setting)
        self.decoding_recorded = True

    def decoding_settings(self, beam_size=None, alpha=None, **controls):
        """The `Decoding` to decode with: the model's default, changed by what is given.

        Nothing given: the model's default (`default_decoding`). A beam size
        given without alpha keeps the default's alpha when it is the default's
        beam size, and means no length penalty (alpha 0) for any other, since the
        recorded alpha was chosen for the recorded beam size; an alpha given
        alone applies to the default's beam size. `controls` (`num_captions`,
        `min_length`, `no_repeat_ngram_size`, `sample`, ... of `Decoding`) replace
        the default's where given (not None); `sample` starts from greedy's beam.
        Raises ValueError for settings that do not go together.
        """
        default = self.default_decoding
        given_alpha = alpha
        controls = {key: value for key, value in controls.items() if value is not None}
        if controls.get("sample"):
            beam_size = 1 if beam_size is None else beam_size
        if beam_size is None:
            beam_size, alpha = default.beam_size, default.alpha if alpha is None else alpha
        elif alpha is None:
            alpha = default.alpha if int(beam_size) == default.beam_size else 0.0
        if int(beam_size) != default.beam_size and "beam_groups" not in controls:
            controls.setdefault("beam_groups", 1)
            controls.setdefault("diversity_strength", 0.0)
        if controls.get("beam_groups", 1) > 1 and "diversity_strength" not in controls and not default.diversity_strength:
            controls["diversity_strength"] = DIVERSITY_STRENGTH  # groups without a penalty would search alike
        if given_alpha and int(beam_size) == 1 and not controls.get("sample", default.sample):
            raise ValueError(f"--alpha {given_alpha:g} is beam search's length penalty, and this decoding is greedy "
                             "(beam size 1): give --beam-size 2 or more with it")
        setting = dataclasses.replace(default, beam_size=int(beam_size), alpha=float(alpha), **controls)
        return setting.validated(self.decoder.longest_caption)

    def decoding_source(self, beam_size=None, alpha=None, **controls):
        """Where `decoding_settings(beam_size, alpha, ...)` came from, for printouts and metrics."""
        source = self._decoding_source(beam_size, alpha, **controls)
        default = self.default_decoding
        kept = [f"{flag} {getattr(default, name):g} ({flag} {off:g} drops it)"
                for name, flag, off in (("min_length", "--min-length", 0),
                                        ("no_repeat_ngram_size", "--no-repeat-ngram-size", 0),
                                        ("repetition_penalty", "--repetition-penalty", 1))
                if controls.get(name) is None and getattr(default, name) != off]
        if default.ban_words and controls.get("ban_words") is None:
            kept.append("--ban-words " + ",".join(default.ban_words))
        if kept and (beam_size is not None or alpha is not None or any(v is not None for v in controls.values())):
            source += f"; kept from the recorded default: {', '.join(kept)}"
        return source

    def _decoding_source(self, beam_size=None, alpha=None, **controls):
        if any(value is not None for value in controls.values()):
            return "as given, over the model's recorded default" if self.decoding_recorded else "as given"
        if beam_size is not None and alpha is None and beam_size > 1:
            if self.decoding_recorded and int(beam_size) == self.default_decoding.beam_size:
                return "beam size as given, alpha the model's recorded one for it"
            recorded = self.default_decoding.beam_size
            return ("beam size as given, no length penalty (alpha 0: "
                    + ("the model's recorded default is greedy)" if recorded == 1 else
                       f"the model's recorded alpha is for beam {recorded})"))
        if beam_size is not None or alpha is not None:
            return "as given"
        if self.decoding_recorded:
            return "the model's recorded default"
        return "greedy: the model records no default (trained before defaults were chosen on validation data)"

    def generate(self, images, beam_size=None, max_length=None, alpha=None, decoding=None, **controls):
        """Captions for a batch of normalised images: `encode`, then `generate_from_features`.

        Args:
            images: float `[B, S, S, 3]` at the model's `image_size`, normalised as its encoder expects:
                `captioner.data.pipeline.normalize_image(pixels, model.normalization)` of 0-255 pixels (0-1
                for "unit", the Shapes encoder's; 0-255 for "raw", keras.applications' MobileNetV3 and
                EfficientNet). Values outside that range are refused. To caption files, PIL images or uint8
                arrays of any size, use `caption`.
            beam_size, alpha, controls: change the model's recorded decoding (`default_decoding`, chosen on
                validation data when it was trained); see `decoding_settings`. Or give a whole `decoding`.
            max_length: int, most words (the model's by default).

        Returns:
            dict of tensors: `captions [B]` (bytes), `scores [B]`, `log_probs [B]`, `tokens [B, L]`,
            `lengths [B]`, `attention [B, L, P]`; `nbest_captions [B, N]`, `nbest_scores [B, N]`, ... for
            `num_captions` N; beam search adds its whole beam (`beam_captions [B, K]`, ...).
        """
        if tf.executing_eagerly():
            check_normalised(images, self.normalization)
        return self.generate_from_features(self.encode(images), beam_size, max_length, alpha, decoding, **controls)

    def caption(self, images, beam_size=None, alpha=None, max_length=None, batch_size=32, decoding=None,
                **controls):
        """Captions of images as people have them: file paths, PIL images or uint8 arrays `[H, W, 3]`.

        Each is read as `python -m captioner.caption` reads files (EXIF
        orientation, transparency onto white, greyscale to RGB), resized and
        normalised for this model. One image gives one dict, a list a list.
        The decoding is the model's recorded default changed by `beam_size`,
        `alpha` and `controls` (`num_captions=3`, `no_repeat_ngram_size=3`,
        `sample=True, top_p=0.9, seed=1`, ...: see `decoding_settings`), or a
        whole `decoding` (`captioner.decoding.settings.Decoding`).

        Returns:
            `{"caption": str, "score": float}` per image (the score: the caption's log-probability,
            length-normalised under beam search with a length penalty); with `num_captions` above 1 also
            `"captions"`, the n-best `[{"caption", "score", "log_prob"}]`, best first.
        """
        from captioner.inference import pixels

        return pixels.caption(self, images, beam_size, alpha, max_length, batch_size, decoding, **controls)

    def encode(self, images=None, regions=None):
        """Region features `[B, P, D]` of normalised `images`, or of cached backbone `regions [B, P, C]`
        (`captioner.data.features`), compiled once. Decode them with `generate_from_features`, as often as
        there are settings to decode with: the encoder runs once."""
        if (images is None) == (regions is None):
            raise ValueError("encode takes images or regions")
        if images is not None:
            if self._encode_fn is None:
                self._encode_fn = tf.function(lambda x: self.encoder(x, training=False), reduce_retracing=True)
            return self._encode_fn(tf.convert_to_tensor(images, tf.float32))
        if self._head_fn is None:
            self._head_fn = tf.function(self.encoder.head, reduce_retracing=True)
        return self._head_fn(tf.convert_to_tensor(regions, tf.float32))

    def generate_from_features(self, features, beam_size=None, max_length=None, alpha=None, decoding=None,
                               **controls):
        """`decode_features`, compiled once per model, decoding (but alpha) and length (`tf.function`).

        The decoding is `decoding` if given, else `decoding_settings(beam_size, alpha, **controls)`.
        """
        if decoding is None:
            decoding = self.decoding_settings(beam_size, alpha, **controls)
        max_length = self.decoder.max_length if max_length is None else int(max_length)
        check_decoding(self.decoder, max_length, decoding)
        # One graph per decoding (alpha aside) and length, traced once: any batch size, and alpha a tensor, so
        # every length penalty of the decoding search shares it.
        key = (dataclasses.replace(decoding, alpha=0.0), max_length)
        dtype = tf.as_dtype(self.decoder.compute_dtype)  # float16 / bfloat16 under a mixed precision policy
        if key not in self._generate_fns:
            spec = tf.TensorSpec([None, self.encoder.num_regions, self.encoder.feature_dim], dtype)
            self._generate_fns[key] = tf.function(
                lambda features, alpha: self.decode_features(features, decoding, max_length, alpha),
                input_signature=[spec, tf.TensorSpec([], tf.float32)])
        return self._generate_fns[key](tf.cast(features, dtype), tf.constant(decoding.alpha, tf.float32))

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "encoder": keras.saving.serialize_keras_object(self.encoder),
            "decoder": keras.saving.serialize_keras_object(self.decoder),
            "tokenizer": keras.saving.serialize_keras_object(self.tokenizer),
            "decoding": {"beam_size": self.default_decoding.beam_size, "alpha": self.default_decoding.alpha,
                         **self.default_decoding.to_json()},
            "trained_on": self.trained_on,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("encoder", "decoder", "tokenizer"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)


def as_decoding(setting):
    """A `Decoding` of a recorded setting (a dict as `model.keras` and `decoding.json` store it), or greedy."""
    if isinstance(setting, Decoding):
        return setting.validated()
    return Decoding.from_json(setting).validated()


def describe_training(model):
    """What a model learned from, in one line for a person (the caveat matters: a Shapes model calls a
    landscape photo "a blue square"); None for models saved before it was recorded."""
    trained_on = model.trained_on
    if not trained_on:
        return None
    vocabulary = model.tokenizer.vocabulary_size - len(tokenizer_lib.SPECIAL_TOKENS)
    line = (f"Model trained on {trained_on['dataset']} ({trained_on['images']:,} training images, a vocabulary of "
            f"{vocabulary:,} words)")
    if trained_on["dataset"] == "shapes":
        line += ": it knows only scenes of coloured shapes and describes any picture as one"
    return line


def describe_decoding(decoding, alpha=None):
    """A decoding as a person reads it (a `Decoding`, or a beam size and alpha)."""
    if not isinstance(decoding, Decoding):
        decoding = Decoding(beam_size=decoding, alpha=alpha or 0.0)
    return decoding.describe()


def check_decoding(decoder, max_length, decoding=GREEDY):
    """Refuses decoding settings a decoder cannot honour, with the reason (ValueError)."""
    if max_length < 1:
        raise ValueError(f"max_length must be at least 1 word, got {max_length}")
    if decoder.longest_caption is not None and max_length > decoder.longest_caption:
        raise ValueError(f"this {type(decoder).__name__} was built for captions of at most {decoder.longest_caption} "
                         f"words (its position embedding and key/value cache end there); max_length {max_length} "
                         "is longer")
    if not isinstance(decoding, Decoding):  # an alpha, as callers before `Decoding` gave it
        decoding = Decoding(beam_size=2, alpha=decoding)
    decoding.validated(max_length)


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
