"""Mixed precision and XLA: numerics kept in float32 where they must be, and training that works."""

import csv
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from captioner import config as config_lib
from captioner import runs
from captioner.training import cross_entropy
from captioner.data import coco, pipeline
from captioner.data import tokenizer as tk
from captioner.evaluation import metrics as metrics_lib
from captioner.models.captioner import build_captioner

VOCABULARY = ["a", "red", "blue", "square", "circle", "left", "of", "the"]


def batch(size=4, captions=5, length=7, image_size=64):
    keras.utils.set_random_seed(0)
    x = {"images": tf.random.uniform([size, image_size, image_size, 3]),
         "tokens": tf.random.uniform([size, captions, length], 2, 12, tf.int32)}
    y = tf.random.uniform([size, captions, length], 3, 12, tf.int32)
    return x, y, tf.ones([size, captions, length])


@pytest.mark.slow
@pytest.mark.parametrize("decoder", ["lstm", "transformer"])
@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_policies_keep_variables_attention_and_logits_in_float32(decoder, policy):
    config = config_lib.preset("tiny", decoder=decoder, precision=policy)
    with cross_entropy.dtype_policy(policy):
        model = build_captioner(config, VOCABULARY)
    assert keras.config.dtype_policy().name == "float32"  # restored after building
    assert model.decoder.compute_dtype == policy.split("_")[1]
    assert all(v.dtype == "float32" for v in model.trainable_variables)
    cross_entropy.compile_model(model, config, 10)
    x, y, w = batch()
    assert model(x).dtype == "float32"
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer) == (policy == "mixed_float16")
    history = model.fit(tf.data.Dataset.from_tensors((x, y, w)).repeat(3), verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    out = model.generate(x["images"], beam_size=2)
    assert out["attention"].dtype == "float32" and out["scores"].dtype == "float32"
    np.testing.assert_allclose(tf.reduce_sum(out["attention"][:, 0], -1), 1.0, atol=1e-3)


@pytest.mark.slow
@pytest.mark.parametrize("decoder", ["lstm", "transformer"])
def test_training_step_compiles_with_xla_and_matches(decoder):
    """Forward and gradient under XLA, traced with unknown batch and caption sizes, equal the plain ones."""
    model = build_captioner(config_lib.preset("tiny", decoder=decoder, dropout=0.0), VOCABULARY)
    x, y, _ = batch()

    def step(x):
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True))
        return loss, tape.gradient(loss, model.trainable_variables)

    signature = [{"images": tf.TensorSpec([None, 64, 64, 3]), "tokens": tf.TensorSpec([None, None, None], tf.int32)}]
    loss, grads = tf.function(step)(x)
    xla_loss, xla_grads = tf.function(step, jit_compile=True, input_signature=signature)(x)
    np.testing.assert_allclose(xla_loss, loss, rtol=1e-4)
    for a, b in zip(grads, xla_grads):
        np.testing.assert_allclose(tf.convert_to_tensor(b), tf.convert_to_tensor(a), rtol=2e-3, atol=2e-5)


def test_static_shapes_pad_every_batch_to_the_same_shape(small_shapes):
    examples = coco.read_split(small_shapes, "val").examples
    tokenizer = tk.CaptionTokenizer(tk.build_vocabulary([c for e in examples for c in e.captions]))
    dataset = pipeline.caption_dataset(examples, tokenizer, 64, "unit", 8, 5, max_length=20, training=False,
                                       static_shapes=True)
    shapes = {(tuple(x["tokens"].shape), tuple(y.shape), tuple(w.shape)) for x, y, w in dataset}
    assert shapes == {((8, 5, 21), (8, 5, 21), (8, 5, 21))}  # 30 images: the last 6 are dropped
    plain = pipeline.caption_dataset(examples, tokenizer, 64, "unit", 8, 5, max_length=20, training=False)
    x, y, w = next(iter(plain))
    xs, ys, ws = next(iter(dataset))
    length = x["tokens"].shape[-1]
    np.testing.assert_array_equal(xs["tokens"][..., :length], x["tokens"])
    assert float(tf.reduce_sum(ws)) == float(tf.reduce_sum(w)) and not np.any(xs["tokens"][..., length:])


def train_tiny(run_dir, data_root, **flags):
    config = config_lib.preset("tiny", data_root=data_root, epochs=3, warmup_steps=10, search_images=0, **flags)
    metrics = cross_entropy.train(config, run_dir, verbose=0)
    with open(os.path.join(run_dir, "log.csv")) as handle:
        return metrics, [float(r["loss"]) for r in csv.DictReader(handle)]


@pytest.fixture(scope="module")
def float32_losses(tmp_path_factory, small_shapes):
    return train_tiny(str(tmp_path_factory.mktemp("float32") / "run"), small_shapes)[1]


@pytest.mark.slow
@pytest.mark.parametrize("flags", [dict(precision="mixed"), dict(jit_compile=True)])
def test_tiny_trains_with_mixed_precision_or_xla(tmp_path, small_shapes, flags, float32_losses):
    run_dir = str(tmp_path / "run")
    metrics, losses = train_tiny(run_dir, small_shapes, **flags)
    assert np.isfinite(losses).all() and losses[-1] < 0.8 * losses[0], losses
    # As good as float32 without XLA, to within the noise of a short run.
    assert abs(losses[-1] - float32_losses[-1]) < 0.1 * float32_losses[-1], (losses, float32_losses)
    # The reported figures are those of the test captions it wrote, recomputed here.
    predictions = runs.read_json(os.path.join(run_dir, "predictions_test.json"))
    references = {e.image_id: list(e.captions) for e in coco.read_split(small_shapes, "test").examples}
    again = metrics_lib.nltk_corpus_bleu([references[p["image_id"]] for p in predictions],
                                         [p["caption"] for p in predictions])
    assert metrics["nltk_bleu_4"] == pytest.approx(again["nltk_bleu_4"], abs=1e-12)
    model = runs.load(run_dir)  # saved in float32, loads and decodes anywhere
    assert model.dtype_policy.name == "float32" and model.decoder.compute_dtype == "float32"
