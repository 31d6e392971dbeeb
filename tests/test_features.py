"""Feature cache: regions computed once, written to TFRecord shards, read back by training."""

import os
import threading
import time

import keras
import numpy as np
import pytest

from captioner import config as config_lib
from captioner import runs
from captioner.training import cross_entropy
from captioner.data import datasets
from captioner.data import coco, features, pipeline
from captioner.data import tokenizer as tk
from captioner.evaluation import metrics as metrics_lib
from captioner.models.captioner import build_captioner
from captioner.models.encoders import ImageEncoder


@pytest.fixture(scope="module")
def train_split(small_shapes):
    return coco.read_split(small_shapes, "train")


def frozen_encoder(seed=0, image_size=64):
    keras.utils.set_random_seed(seed)
    return ImageEncoder("MobileNetV3Small", image_size, 32, weights=None, trainable_backbone=False)


def test_cache_holds_the_backbone_regions_in_order_and_is_reused(tmp_path, train_split, monkeypatch):
    monkeypatch.setattr(features, "RECORDS_PER_SHARD", 64)  # several shards from 200 images
    encoder = frozen_encoder()
    examples = train_split.examples
    cache, built = features.ensure(encoder, examples, str(tmp_path), batch_size=32, progress=None)
    assert built and cache.count == 200 and len(cache.files) == 4
    assert (cache.num_regions, cache.channels) == (4, 576)  # MobileNetV3Small at 64 px: a 2x2 grid

    images = next(iter(pipeline.image_dataset([e.path for e in examples[:50]], 64, encoder.normalization, 50)))
    expected = encoder.regions(images, training=False).numpy()
    indices, regions = zip(*[(int(i), r.numpy()) for i, r in cache.regions()])
    assert list(indices) == list(range(200))
    # A randomly initialised MobileNetV3's regions are about 1e-9, zeros in float16: stored as float32.
    assert np.abs(expected).max() < 1e-6 and cache.dtype == "float32"
    np.testing.assert_allclose(np.stack(regions[:50]), expected, rtol=1e-3, atol=1e-4 * np.abs(expected).max())
    assert_each_image_its_own(np.stack(regions[:50]), expected)

    # Training order is shuffled anew each pass and still covers every image once.
    shuffled = cache.regions(training=True, seed=1)
    first, second = ([int(i) for i, _ in shuffled] for _ in range(2))
    assert sorted(first) == list(range(200)) and first != list(range(200)) and first != second

    again, built = features.ensure(encoder, examples, str(tmp_path), progress=None)
    assert not built and again.directory == cache.directory


@pytest.mark.slow
def test_cache_key_changes_with_encoder_image_size_and_data(tmp_path, train_split):
    examples = train_split.examples[:20]
    key = features.cache_key(frozen_encoder(0), examples)
    assert features.cache_key(frozen_encoder(0), examples) == key
    assert features.cache_key(frozen_encoder(1), examples) != key  # other weights
    assert features.cache_key(frozen_encoder(0, image_size=96), examples) != key
    assert features.cache_key(frozen_encoder(0), examples[:19]) != key
    # A changed image file (here, its modification time) invalidates the cache.
    copied = tmp_path / "image.jpg"
    copied.write_bytes(open(examples[0].path, "rb").read())
    moved = [coco.Example(examples[0].image_id, str(copied), examples[0].captions)] + examples[1:]
    before = features.cache_key(frozen_encoder(0), moved)
    os.utime(copied, ns=(0, 0))
    assert features.cache_key(frozen_encoder(0), moved) != before


@pytest.mark.slow
def test_an_interrupted_build_is_not_taken_for_a_cache_and_resumes(tmp_path, train_split, monkeypatch):
    monkeypatch.setattr(features, "RECORDS_PER_SHARD", 16)
    encoder = frozen_encoder()
    examples = train_split.examples[:56]  # shards of 16, 16, 16, 8
    reports = []

    def crash_after_two_shards(done, total):
        reports.append(done)
        if done >= 40:
            raise KeyboardInterrupt()

    with pytest.raises(KeyboardInterrupt):
        features.ensure(encoder, examples, str(tmp_path), batch_size=8, progress=crash_after_two_shards)
    assert reports[0] == 0 and reports[-1] == 40
    partial = [name for name in os.listdir(tmp_path) if name.endswith(".partial")]
    assert len(partial) == 1 and features.open_cache(str(tmp_path / partial[0]).removesuffix(".partial")) is None
    # Two shards complete under their names; the third, cut at 8 of 16 records, only under its temporary one.
    assert sorted(os.listdir(tmp_path / partial[0])) == [
        "shard-00000-of-00004.tfrecord", "shard-00001-of-00004.tfrecord", "shard-00002-of-00004.tfrecord.partial",
        "storage.json"]

    reports.clear()
    cache, built = features.ensure(encoder, examples, str(tmp_path), batch_size=8, 
                                   progress=lambda done, total: reports.append(done))
    assert built and cache.count == 56 and reports[0] == 32 and reports[-1] == 56  # resumed at shard 2
    indices, regions = zip(*[(int(i), r.numpy()) for i, r in cache.regions()])
    assert list(indices) == list(range(56))
    fresh, _ = features.ensure(encoder, examples, str(tmp_path / "fresh"), batch_size=8, progress=None)
    np.testing.assert_array_equal(np.stack(regions), np.stack([r.numpy() for _, r in fresh.regions()]))


def test_regions_are_stored_as_float16_where_that_keeps_them(tmp_path, train_split):
    """Regions of an ordinary size take half the bytes as float16, to float16's precision."""
    keras.utils.set_random_seed(0)
    encoder = ImageEncoder("small_cnn", 64, 32, trainable_backbone=False)
    examples = train_split.examples[:24]
    cache, _ = features.ensure(encoder, examples, str(tmp_path), batch_size=8, progress=None)
    images = next(iter(pipeline.image_dataset([e.path for e in examples], 64, encoder.normalization, 24)))
    expected = encoder.regions(images, training=False).numpy()
    regions = np.stack([r.numpy() for _, r in cache.regions()])
    assert cache.dtype == "float16" and 0.1 < np.sqrt(np.mean(expected ** 2)) < 100
    np.testing.assert_allclose(regions, expected, rtol=1e-3, atol=1e-3 * np.abs(expected).max())
    rng = np.random.default_rng(0)
    assert features.storage_dtype(rng.normal(0, 3, (4, 9, 16))) == "float16"
    assert features.storage_dtype(rng.normal(0, 1e-11, (4, 9, 16))) == "float32"  # underflows float16
    assert features.storage_dtype(rng.normal(0, 1e5, (4, 9, 16))) == "float32"  # overflows it
    assert features.storage_dtype(np.zeros((4, 9, 16))) == "float16"


@pytest.mark.slow
def test_a_second_builder_waits_for_the_first_and_reads_its_cache(tmp_path, train_split, capsys):
    # Two builders of one cache (the workers of a multi-worker run): the second waits on the lock, then finds
    # the cache complete and computes nothing.
    encoder = frozen_encoder()
    examples = train_split.examples[:16]
    inside, proceed, results = threading.Event(), threading.Event(), {}

    def first_builder():
        def progress(done, total):
            inside.set()  # the lock is held
            proceed.wait(60)
        results["first"] = features.ensure(encoder, examples, str(tmp_path), batch_size=8, progress=progress)

    thread = threading.Thread(target=first_builder)
    thread.start()
    assert inside.wait(60)
    second = threading.Thread(target=lambda: results.update(second=features.ensure(
        encoder, examples, str(tmp_path), batch_size=8, progress=lambda done, total: results.update(computed=1))))
    second.start()
    time.sleep(1.0)
    assert "second" not in results  # waiting
    proceed.set()
    thread.join(60)
    second.join(60)
    assert results["first"][1] is True and results["second"][1] is False and "computed" not in results
    assert results["second"][0].directory == results["first"][0].directory and results["second"][0].count == 16
    assert "another process is building" in capsys.readouterr().err


def assert_each_image_its_own(cached, expected):
    """`cached [N, P, C]` regions are `expected`'s, image by image, to a tolerance relative to their scale (a
    random frozen MobileNetV3's regions are about 1e-9: an absolute tolerance would accept zeros), and each image's
    are nearer its own expected regions than another image's are (not one image's regions written for all)."""
    scale = np.abs(expected).max()
    assert scale > 0 and np.abs(cached).max() > 0
    np.testing.assert_allclose(cached, expected, rtol=1e-3, atol=1e-3 * scale)
    cached, expected = cached.reshape(len(cached), -1), expected.reshape(len(expected), -1)
    distance = np.sqrt(((cached[:, None] - expected[None]) ** 2).sum(-1))  # [cached image, expected image]
    own = np.diag(distance).copy()
    np.fill_diagonal(distance, np.inf)
    assert (own * 10 < distance.min(axis=1)).all(), (own, distance.min(axis=1))


@pytest.mark.slow
def test_region_batches_match_image_batches(tmp_path, train_split):
    encoder = frozen_encoder()
    examples = train_split.examples[:32]
    tokenizer = tk.CaptionTokenizer(tk.build_vocabulary([c for e in examples for c in e.captions]))
    cache, _ = features.ensure(encoder, examples, str(tmp_path), progress=None)
    from_regions = pipeline.region_caption_dataset(cache.regions(), examples, tokenizer, 16, training=False)
    from_images = pipeline.caption_dataset(examples, tokenizer, 64, encoder.normalization, 16, training=False)
    cached, expected = [], []
    for (xr, yr, wr), (xi, yi, wi) in zip(from_regions, from_images):
        assert xr["regions"].shape == (16, 4, 576)
        np.testing.assert_array_equal(xr["tokens"], xi["tokens"])
        np.testing.assert_array_equal(yr, yi)
        np.testing.assert_array_equal(wr, wi)
        cached.append(xr["regions"].numpy())
        expected.append(encoder.regions(xi["images"], training=False).numpy())
    assert len(cached) == 2
    assert_each_image_its_own(np.concatenate(cached), np.concatenate(expected))


@pytest.mark.slow
def test_training_from_the_cache(tmp_path, small_shapes):
    config = config_lib.preset("tiny", data_root=small_shapes, encoder="MobileNetV3Small", train_encoder=False,
                               search_images=0, feature_cache=True, feature_cache_dir=str(tmp_path / "cache"), epochs=1)
    metrics = cross_entropy.train(config, str(tmp_path / "run"), verbose=0)
    # The test figures are those of the written predictions against the test references.
    predictions = runs.read_json(str(tmp_path / "run" / "predictions_test.json"))
    test = coco.read_split(small_shapes, "test").examples
    assert [p["image_id"] for p in predictions] == [e.image_id for e in test]
    captions, references = [p["caption"] for p in predictions], [list(e.captions) for e in test]
    afresh = metrics_lib.nltk_corpus_bleu(references, captions)
    assert afresh["nltk_bleu_1"] > 0
    for name, value in afresh.items():
        assert metrics[name] == pytest.approx(value, abs=1e-12), name
    assert metrics["cider_d"] == pytest.approx(
        metrics_lib.cider_d(references, [c or "<empty>" for c in captions])[0], abs=1e-12)
    caches = [name for name in os.listdir(tmp_path / "cache") if not name.endswith(".lock")]  # a lock each
    assert len(caches) == 2 and all(name.startswith("MobileNetV3Small-64px-") for name in caches)  # train, val

    # The saved model captions from images with the weights trained from regions.
    model = runs.load(str(tmp_path / "run"))
    vocabulary = model.tokenizer.words
    rebuilt = build_captioner(config, vocabulary)
    rebuilt.set_weights(model.get_weights())
    examples = coco.read_split(small_shapes, "val").examples[:8]
    x, _, _ = next(iter(pipeline.caption_dataset(examples, model.tokenizer, 64, "raw", 8, training=False)))
    regions = rebuilt.encoder.regions(x["images"])
    np.testing.assert_allclose(rebuilt.region_model()({"regions": regions, "tokens": x["tokens"]}),
                               model(x), rtol=1e-4, atol=1e-4)
    # A rerun would reuse both caches: the same config builds the same encoder, whose key names them.
    keras.utils.set_random_seed(config.seed)
    again, _ = cross_entropy.build_models(config, model.tokenizer.words)
    data = datasets.load_data(config)
    val = data.val.examples[:config.val_images]
    keys = {f"MobileNetV3Small-64px-{features.cache_key(again.encoder, s)}" for s in (data.train.examples, val)}
    assert keys == set(caches)


def test_feature_cache_needs_a_frozen_encoder():
    with pytest.raises(ValueError, match="frozen encoder"):
        config_lib.preset("tiny", feature_cache=True)
