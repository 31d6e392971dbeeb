"""Tiny models: shapes, the next-token interface, serialisation and loading in safe mode."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from captioner import config as config_lib
from captioner import decoding
from captioner.data import tokenizer as tk
from captioner.data.pipeline import normalize_image
from captioner.decoding.settings import Decoding
from captioner.models.captioner import Captioner, build_captioner
from captioner.models.encoders import ImageEncoder

VOCABULARY = ["a", "red", "blue", "circle", "square", "on", "the", "left"]


def tiny(decoder, **overrides):
    config = config_lib.preset("tiny", decoder=decoder, image_size=32, feature_dim=8, embed_dim=8, hidden_dim=16,
                               model_dim=8, attention_dim=8, num_heads=2, num_layers=2, max_length=6, dropout=0.0,
                               **overrides)
    keras.utils.set_random_seed(0)
    return build_captioner(config, VOCABULARY)


def batch(batch_size=3, captions=2, length=5):
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, (batch_size, 32, 32, 3)).astype("float32")
    tokens = rng.integers(4, 4 + len(VOCABULARY), (batch_size, captions, length)).astype("int32")
    tokens[..., 0] = tk.START_ID
    tokens[0, 1, 3:] = 0  # a short caption
    return {"images": images, "tokens": tokens}


@pytest.mark.parametrize("decoder", ["lstm", "transformer"])
def test_output_shape_and_region_grid(decoder):
    model = tiny(decoder)
    x = batch()
    logits = model(x)
    assert logits.shape == (3, 2, 5, 4 + len(VOCABULARY))
    features = model.encoder(x["images"])
    assert features.shape == (3, 4, 8)  # 32 px / 16 -> 2 x 2 regions of width 8


@pytest.mark.parametrize("decoder", ["lstm", "transformer"])
def test_next_token_reproduces_teacher_forcing(decoder):
    """Stepping the next-token interface (the Transformer through its cache) gives the same logits."""
    model = tiny(decoder)
    x = batch()
    tokens = x["tokens"][:, 0]
    memory = model.decoder.prepare(model.encoder(x["images"]))
    forced, forced_attention = model.decoder.decode_sequence(tokens, memory)
    state = model.decoder.initial_state(memory)
    for step in range(tokens.shape[1]):
        logits, state, attention = model.decoder.next_token(tokens[:, step], state, memory)
        np.testing.assert_allclose(logits, forced[:, step], atol=1e-4)
        np.testing.assert_allclose(attention, forced_attention[:, step], atol=1e-5)
        np.testing.assert_allclose(tf.reduce_sum(attention, -1), 1.0, atol=1e-5)


def test_lstm_adds_the_doubly_stochastic_penalty():
    x = batch()
    y = np.where(x["tokens"] > 0, 5, 0)
    losses = {}
    for weight in (0.0, 10.0):
        model = tiny("lstm", attention_reg=weight)
        model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        losses[weight] = model.evaluate(x, y, verbose=0)
        model(x)  # eagerly, to read the penalty of this call
        assert len(model.losses) == (1 if weight else 0)
        if weight:
            assert float(model.losses[0]) > 0
    assert losses[10.0] > losses[0.0] + 1e-3


@pytest.mark.parametrize("decoder", ["lstm", pytest.param("transformer", marks=pytest.mark.slow)])
def test_config_round_trip_and_safe_mode_load(decoder, tmp_path):
    model = tiny(decoder)
    x = batch()
    clone = Captioner.from_config(model.get_config())
    assert clone.count_params() == model.count_params()
    assert clone.decoder.get_config() == model.decoder.get_config()
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)
    assert loaded.tokenizer.words == model.tokenizer.words
    np.testing.assert_array_equal(loaded.generate(x["images"])["tokens"], model.generate(x["images"])["tokens"])


@pytest.mark.parametrize("decoder", ["lstm", pytest.param("transformer", marks=pytest.mark.slow)])
def test_predict_and_fit_over_tf_data(decoder):
    model = tiny(decoder)
    x = batch(batch_size=8)
    y = np.where(x["tokens"] > 0, np.roll(x["tokens"], -1, axis=-1), 0)
    weights = (y > 0).astype("float32")
    dataset = tf.data.Dataset.from_tensor_slices((x, y, weights)).batch(4)
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(
        from_logits=True, reduction="mean_with_sample_weight"))
    history = model.fit(dataset, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert model.predict(dataset.map(lambda x, y, w: x), verbose=0).shape == (8, 2, 5, 12)


@pytest.mark.parametrize("decoder", ["lstm", "transformer"])
def test_generate_returns_captions_and_attention(decoder):
    model = tiny(decoder)
    result = model.generate(batch()["images"])
    assert result["tokens"].shape == (3, 7)  # max_length words + the end token
    assert result["attention"].shape == (3, 7, 4)
    assert result["captions"].shape == (3,)
    for caption in result["captions"].numpy():
        assert set(caption.decode().split()) <= set(VOCABULARY)


def test_frozen_keras_application_encoder():
    encoder = ImageEncoder("MobileNetV3Small", image_size=64, feature_dim=8, weights=None, trainable_backbone=False)
    features = encoder(tf.zeros([2, 64, 64, 3]))
    assert features.shape == (2, 4, 8)
    assert not encoder.backbone.trainable_weights and encoder.projection.trainable_weights
    clone = ImageEncoder.from_config(encoder.get_config())
    assert clone.normalization == "raw" and clone.num_regions == 4
    with pytest.raises(ValueError, match="Unknown encoder"):
        ImageEncoder("NoSuchNet")


@pytest.mark.parametrize("backbone, normalization, channels", [
    pytest.param("EfficientNetV2B0", "raw", 1280, marks=pytest.mark.slow), pytest.param("ConvNeXtTiny", "raw", 768, marks=pytest.mark.slow),
    pytest.param("ResNet152V2", "tf", 2048, marks=pytest.mark.slow)])
def test_stronger_keras_application_encoders(backbone, normalization, channels):
    # Built without weights at 64 px: a 2 x 2 region grid (stride 32), run on images normalised its way.
    encoder = ImageEncoder(backbone, image_size=64, feature_dim=8, weights=None, trainable_backbone=False)
    assert encoder.normalization == normalization
    assert (encoder.grid_shape, encoder.region_channels) == ((2, 2), channels)
    images = normalize_image(tf.random.stateless_uniform([2, 64, 64, 3], (1, 2), 0, 255), normalization)
    assert encoder(images).shape == (2, 4, 8)
    assert np.isfinite(encoder.regions(images).numpy()).all()
    clone = ImageEncoder.from_config(encoder.get_config())
    assert (clone.backbone_name, clone.num_regions, clone.region_channels) == (backbone, 4, channels)


@pytest.mark.parametrize("decoder", ["lstm", "transformer"])
def test_beam_decoding_through_the_model(decoder):
    model = tiny(decoder)
    images = batch()["images"]
    result = model.generate(images, beam_size=3)
    assert result["beam_tokens"].shape == (3, 3, 7) and result["attention"].shape == (3, 7, 4)
    scores = np.asarray(result["beam_scores"])
    assert np.all(np.diff(scores, axis=1) <= 1e-6)  # best first
    np.testing.assert_array_equal(result["beam_captions"][:, 0], result["captions"])
    np.testing.assert_allclose(result["scores"], scores[:, 0])
    # The model's own log-probability of its best beam: rescored by teacher forcing, it matches.
    tokens = np.asarray(result["tokens"])
    inputs = np.concatenate([np.full((3, 1), tk.START_ID), tokens[:, :-1]], axis=1)
    inputs = np.where(np.cumsum(tokens == tk.END_ID, axis=1) - (tokens == tk.END_ID) > 0, 0, inputs)
    memory = model.decoder.prepare(model.encoder(images))
    logits, _ = model.decoder.decode_sequence(tf.constant(inputs, tf.int32), memory)
    # Scores are log-probabilities over the words decoding may emit (never padding or start); after max_length
    # words only the end token may come, so there its log-probability is 0.
    allowed = decoding.log_probabilities(logits, (tk.PAD_ID, tk.START_ID))
    log_probs = tf.gather(allowed, tokens, batch_dims=2).numpy()
    log_probs[:, model.decoder.max_length] = 0.0
    rescored = (log_probs * (inputs != 0)).sum(1)
    np.testing.assert_allclose(rescored, scores[:, 0], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("decoder", ["lstm", pytest.param("transformer", marks=pytest.mark.slow)])
def test_decoding_never_emits_padding_or_start_and_keeps_unknown_words_in_place(decoder):
    model = tiny(decoder)
    # Logits that prefer padding and start above all, then the unknown word, then the end.
    bias = np.zeros(model.tokenizer.vocabulary_size, np.float32)
    bias[[tk.PAD_ID, tk.START_ID]], bias[tk.UNK_ID], bias[tk.END_ID] = 60.0, 50.0, 40.0
    bias[model.tokenizer.words.index("red")] = 45.0
    model.decoder.logits.bias.assign(bias)
    model.decoder.logits.kernel.assign(np.zeros(model.decoder.logits.kernel.shape, np.float32))
    for beam_size in (1, 2):
        result = model.generate(batch()["images"], beam_size=beam_size)
        tokens = np.asarray(result["tokens"])
        assert not np.isin(tokens, [tk.START_ID]).any()
        # Every step the best allowed word, <unk>, up to max_length words; then the end token, the only one left.
        assert np.all(tokens[:, :-1] == tk.UNK_ID) and np.all(tokens[:, -1] == tk.END_ID), tokens
        for caption in result["captions"].numpy():
            # Word i of the caption is step i: the attention figures and pointing pair them so.
            assert caption.decode().split() == ["<unk>"] * model.decoder.max_length


def test_detokenize_keeps_unknown_words_and_drops_padding_and_start():
    tokenizer = tk.CaptionTokenizer(VOCABULARY)
    red, circle = tokenizer.words.index("red"), tokenizer.words.index("circle")
    ids = tf.constant([[tk.START_ID, red, tk.UNK_ID, circle, tk.END_ID, red], [red, 0, circle, 0, 0, 0]])
    assert tokenizer.detokenize(ids).numpy().tolist() == [b"red <unk> circle", b"red circle"]


def test_the_transformer_refuses_to_decode_past_its_trained_length():
    model = tiny("transformer")  # max_length 6: positions and cache slots for 6 words and the end token
    images = batch()["images"]
    assert model.generate(images, max_length=6)["tokens"].shape == (3, 7)
    assert model.generate(images, max_length=3)["tokens"].shape == (3, 4)
    for longer in (7, 8, 20):
        with pytest.raises(ValueError, match="at most 6 words"):
            model.generate(images, max_length=longer)
    # The LSTM has no such limit.
    assert tiny("lstm").generate(images, max_length=9)["tokens"].shape == (3, 10)


def test_a_negative_length_penalty_is_refused():
    model = tiny("lstm")
    with pytest.raises(ValueError, match="alpha must be 0 or more"):
        model.generate(batch()["images"], beam_size=2, alpha=-0.5)
    with pytest.raises(ValueError, match="alpha must be 0 or more"):
        decoding.beam_search(lambda t, s, m: (None, s, None), {}, {}, 1, 2, 3, tk.START_ID, tk.END_ID, alpha=-1.0)


@pytest.mark.slow
@pytest.mark.parametrize("decoder", ["lstm", "transformer"])
def test_a_batch_of_one_image_decodes(decoder):
    model = tiny(decoder)
    image = batch(batch_size=1)["images"]
    for beam_size in (1, 3):  # traced first on a batch of one, then used on three
        assert model.generate(image, beam_size=beam_size)["captions"].shape == (1,)
        assert model.generate(batch()["images"], beam_size=beam_size)["captions"].shape == (3,)


def test_the_decoding_default_is_saved_with_the_model_and_used_by_generate(tmp_path):
    model = tiny("lstm")
    images = batch()["images"]
    greedy = model.generate(images)
    assert model.default_decoding == Decoding() and "beam_tokens" not in greedy
    model.default_decoding = {"beam_size": 2, "alpha": 0.6}
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert loaded.default_decoding == Decoding(2, 0.6)
    by_default = loaded.generate(images)
    told = loaded.generate(images, beam_size=2, alpha=0.6)
    assert by_default["beam_tokens"].shape[1] == 2
    np.testing.assert_array_equal(by_default["tokens"].numpy(), told["tokens"].numpy())
    # A model saved before decoding defaults existed (no "decoding" in its config) decodes greedily.
    config = model.get_config()
    del config["decoding"]
    assert Captioner.from_config(config).default_decoding == Decoding()
    with pytest.raises(ValueError, match="alpha"):
        Captioner.from_config({**config, "decoding": {"beam_size": 3, "alpha": -1.0}})


def test_a_beam_size_given_alone_keeps_the_recorded_alpha_only_for_the_recorded_beam_size():
    model = tiny("lstm")
    assert model.decoding_source().startswith("greedy: the model records no default")
    model.default_decoding = {"beam_size": 5, "alpha": 1.0}
    assert model.decoding_settings() == Decoding(5, 1.0) and model.decoding_source() == "the model's recorded default"
    assert model.decoding_settings(beam_size=5) == Decoding(5, 1.0)  # the recorded setting, named
    assert model.decoding_source(beam_size=5) == "beam size as given, alpha the model's recorded one for it"
    assert model.decoding_settings(beam_size=3) == Decoding(3, 0.0)  # alpha 1.0 was chosen for beam 5, not 3
    assert "no length penalty" in model.decoding_source(beam_size=3)
    assert model.decoding_settings(alpha=0.6) == Decoding(5, 0.6)
    assert model.decoding_settings(beam_size=1, alpha=0.0) == Decoding()
    with pytest.raises(ValueError, match="greedy"):  # greedy has no length penalty: not silently dropped
        model.decoding_settings(beam_size=1, alpha=0.6)
    assert model.decoding_source(beam_size=3, alpha=0.0) == "as given"


def test_decodings_that_differ_are_labelled_apart():
    """Evaluation folders are named by `label()`: two settings that decode differently never share one."""
    settings = [Decoding(), Decoding(3), Decoding(3, 0.6), Decoding(4, beam_groups=2, diversity_strength=0.5),
                Decoding(4, beam_groups=2, diversity_strength=1.0), Decoding(3, num_captions=3),
                Decoding(sample=True, seed=1), Decoding(sample=True, seed=2), Decoding(sample=True, top_k=5),
                Decoding(3, ban_words=("red",)), Decoding(3, ban_words=("blue",)), Decoding(3, min_length=2),
                Decoding(3, no_repeat_ngram_size=3), Decoding(3, repetition_penalty=1.2)]
    labels = [setting.label() for setting in settings]
    assert len(set(labels)) == len(labels), labels
    assert Decoding(3, ban_words=("a", "b")).label() == Decoding(3, ban_words=("b", "a")).label()
    assert all(label.replace("-", "").replace(".", "").isalnum() for label in labels)  # safe in a folder name
