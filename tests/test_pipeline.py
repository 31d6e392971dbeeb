"""Tokenizer and tf.data ops: each op runs eagerly and inside `Dataset.map`, with equal results."""

import numpy as np
import pytest
import tensorflow as tf

from captioner.data import coco, pipeline
from captioner.data import tokenizer as tk


@pytest.fixture(scope="module")
def tokenizer():
    return tk.CaptionTokenizer(tk.build_vocabulary(
        ["A red circle.", "a Blue square, on the left!", "a red square"], min_count=1))


def in_map(fn, *inputs):
    dataset = tf.data.Dataset.from_tensors(inputs).map(fn)
    return next(iter(dataset))


def test_vocabulary_counts_and_special_tokens():
    words = tk.build_vocabulary(["a red circle", "A red square", "a dog"], min_count=2)
    assert words == ["a", "red"]
    tokenizer = tk.CaptionTokenizer(words)
    assert tokenizer.words[:4] == ["<pad>", "<unk>", "<start>", "<end>"]
    assert tokenizer.vocabulary_size == 6


def test_tokenize_detokenize_eager_and_in_graph(tokenizer):
    captions = tf.constant(["A RED circle!!", "a zebra on the left"])
    eager = tokenizer.tokenize(captions)
    mapped = in_map(tokenizer.tokenize, captions)
    assert eager.to_list() == mapped.to_list()
    red = tokenizer.words.index("red")
    assert eager.to_list()[0] == [tokenizer.words.index("a"), red, tokenizer.words.index("circle")]
    assert eager.to_list()[1][1] == tk.UNK_ID
    ids = tf.constant([[tk.START_ID, 4, red, tk.END_ID, red], [4, 4, 0, 0, 0]])
    assert tokenizer.detokenize(ids).numpy().tolist() == [b"a red", b"a a"]
    assert in_map(tokenizer.detokenize, ids).numpy().tolist() == [b"a red", b"a a"]


def test_tokenize_captions_shifts_and_masks(tokenizer):
    captions = tf.constant([["a red circle", "a square", ""]])
    for inputs, targets, weights in (pipeline.tokenize_captions(tokenizer, captions, max_length=2),
                                     in_map(lambda c: pipeline.tokenize_captions(tokenizer, c, 2), captions)):
        a, red, square = (tokenizer.words.index(w) for w in ("a", "red", "square"))
        np.testing.assert_array_equal(inputs[0], [[tk.START_ID, a, red], [tk.START_ID, a, square], [0, 0, 0]])
        np.testing.assert_array_equal(targets[0], [[a, red, tk.END_ID], [a, square, tk.END_ID], [0, 0, 0]])
        np.testing.assert_array_equal(weights[0], [[1, 1, 1], [1, 1, 1], [0, 0, 0]])


def test_sample_captions_pads_and_shuffles():
    captions = tf.constant(["one", "two", "three"])
    padded = pipeline.sample_captions(captions, 5, shuffle=False)
    assert padded.numpy().tolist() == [b"one", b"two", b"three", b"", b""]
    assert in_map(lambda c: pipeline.sample_captions(c, 5, shuffle=False), captions).numpy().tolist() == \
        padded.numpy().tolist()
    picked = pipeline.sample_captions(captions, 2, seed=1)
    assert set(picked.numpy().tolist()) <= {b"one", b"two", b"three"} and len(set(picked.numpy())) == 2


@pytest.mark.parametrize("mode", pipeline.NORMALIZATIONS)
def test_image_ops_eager_equals_mapped(small_shapes, mode):
    path = coco.read_split(small_shapes, "test").examples[0].path
    data = tf.io.read_file(path)
    eager = pipeline.preprocess_image(data, 32, mode)
    mapped = in_map(lambda d: pipeline.preprocess_image(d, 32, mode), data)
    assert eager.shape == (32, 32, 3) and eager.dtype == tf.float32
    np.testing.assert_allclose(eager, mapped, atol=1e-5)


def test_normalization_ranges():
    white = tf.fill([1, 2, 2, 3], 255.0)
    assert float(tf.reduce_max(pipeline.normalize_image(white, "unit"))) == 1.0
    assert float(tf.reduce_max(pipeline.normalize_image(white, "tf"))) == 1.0
    caffe = pipeline.normalize_image(white, "caffe")[0, 0, 0].numpy()
    np.testing.assert_allclose(caffe, [255 - 103.939, 255 - 116.779, 255 - 123.68], rtol=1e-6)
    with pytest.raises(ValueError, match="Unknown normalization"):
        pipeline.normalize_image(white, "bogus")


def test_caption_dataset_batches(small_shapes, tokenizer):
    examples = coco.read_split(small_shapes, "train").examples
    words = tk.build_vocabulary([c for e in examples for c in e.captions])
    shapes_tokenizer = tk.CaptionTokenizer(words)
    dataset = pipeline.caption_dataset(examples, shapes_tokenizer, 64, "unit", batch_size=16,
                                       captions_per_image=5, max_length=30, training=True, cache_images=True)
    x, y, w = next(iter(dataset))
    assert x["images"].shape == (16, 64, 64, 3) and x["tokens"].shape[:2] == (16, 5)
    assert y.shape == x["tokens"].shape == w.shape
    assert 0.0 <= float(tf.reduce_min(x["images"])) and float(tf.reduce_max(x["images"])) <= 1.0
    # Targets are the inputs shifted by one; every image has its five real captions.
    np.testing.assert_array_equal(x["tokens"][..., 1:], tf.where(y[..., :-1] == tk.END_ID, 0, y[..., :-1]))
    assert np.all(np.asarray(x["tokens"][..., 0]) == tk.START_ID)
    # An epoch sees every image once; a shuffled epoch differs from the next.
    first = [tuple(b[0]["tokens"][:, 0, 1].numpy()) for b in dataset]
    second = [tuple(b[0]["tokens"][:, 0, 1].numpy()) for b in dataset]
    assert sum(len(b) for b in first) == 200
    assert first != second


def test_cached_images_are_kept_as_uint8_and_a_cache_too_large_is_refused(small_shapes, tokenizer):
    examples = coco.read_split(small_shapes, "val").examples
    words = tk.build_vocabulary([c for e in examples for c in e.captions])
    cached = pipeline.caption_dataset(examples, tk.CaptionTokenizer(words), 64, "raw", batch_size=8, training=False,
                                      cache_images=True)
    plain = pipeline.caption_dataset(examples, tk.CaptionTokenizer(words), 64, "raw", batch_size=8, training=False)
    (x, _, _), (y, _, _) = next(iter(cached)), next(iter(plain))
    images = x["images"].numpy()
    assert images.dtype == np.float32 and np.array_equal(images, np.round(images))  # whole levels: uint8 underneath
    np.testing.assert_allclose(images, y["images"].numpy(), atol=0.5)  # the same pixels, rounded
    # 113,287 MS COCO images at 224 px are 15.9 GiB of uint8: refused on a 24 GiB machine before any reading.
    with pytest.raises(ValueError, match=r"15.9 GiB of uint8 pixels\) with 24.0 GiB available: pass --no-cache-images"):
        pipeline.check_image_cache(113_287, 224, available=24 * 2**30)
    pipeline.check_image_cache(8000, 96, available=24 * 2**30)  # Shapes: 0.2 GiB
