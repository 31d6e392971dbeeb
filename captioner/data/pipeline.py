"""The `tf.data` input pipeline, built from small named ops over tensors.

Training, evaluation, captioning and export share these ops:

    read_file | decode_image | resize_image | normalize_image      (images)
    sample_captions | tokenize_captions                            (captions)

A training element is one image with `K` captions, so the encoder runs once
per image and its region grid is shared by the image's `K` captions:

    x = {"images": [B, S, S, 3] float32, "tokens": [B, K, T] int32}   start + words
    y = [B, K, T] int32                                               words + end
    sample_weight = [B, K, T] float32                                 1 on real targets

`T` is the longest caption of the batch (at most `max_length + 1`).
"""

import tensorflow as tf

from captioner.data import tokenizer as tokenizer_lib

AUTOTUNE = tf.data.AUTOTUNE

# How each encoder expects its pixels (see `captioner.models.encoders`).
NORMALIZATIONS = ("raw", "unit", "caffe", "tf", "torch")


def decode_image(data):
    """Encoded JPEG/PNG/GIF/BMP bytes -> `[H, W, 3]` uint8 (first frame, RGB)."""
    image = tf.io.decode_image(data, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def resize_image(image, image_size):
    """`[H, W, 3]` or `[B, H, W, 3]` -> float32 `[..., S, S, 3]` in 0..255."""
    resized = tf.image.resize(tf.cast(image, tf.float32), [image_size, image_size], antialias=True)
    return tf.clip_by_value(resized, 0.0, 255.0)


_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def normalize_image(image, mode):
    """Pixels in 0..255 -> the value range the encoder was trained on.

    Args:
        image: float32 `[..., 3]` in 0..255.
        mode: str, "raw" (0..255, the model normalises itself), "unit" (0..1),
            "tf" (-1..1), "torch" (ImageNet mean/std) or "caffe" (BGR, mean subtracted).
    """
    image = tf.cast(image, tf.float32)
    if mode == "raw":
        return image
    if mode == "unit":
        return image / 255.0
    if mode == "tf":
        return image / 127.5 - 1.0
    if mode == "torch":
        return (image / 255.0 - _IMAGENET_MEAN) / _IMAGENET_STD
    if mode == "caffe":
        return image[..., ::-1] - _CAFFE_MEAN_BGR
    raise ValueError(f"Unknown normalization {mode!r}; expected one of {NORMALIZATIONS}")


# What `normalize_image` makes of 0..255 pixels, per mode: (lowest, highest), with a little room.
PIXEL_RANGES = {"raw": (0.0, 255.0), "unit": (0.0, 1.0), "tf": (-1.0, 1.0), "torch": (-2.2, 2.7),
                "caffe": (-123.7, 151.1)}


def check_normalised(images, mode):
    """Refuses (ValueError) images outside the value range `normalize_image(.., mode)` gives, saying how to fix.

    The common mistake is 0-255 pixels where the encoder takes 0-1 ("unit") or -1..1 ("tf"): the model
    would caption noise without a word. `images` is an array (not a graph tensor).
    """
    low, high = PIXEL_RANGES[mode]
    values = tf.convert_to_tensor(images, tf.float32)
    least, most = float(tf.reduce_min(values)), float(tf.reduce_max(values))
    margin = 0.02 * (high - low)
    if least < low - margin or most > high + margin:
        raise ValueError(
            f"images in {least:.3g}..{most:.3g}, where this model's encoder takes pixels normalised to "
            f"{low:g}..{high:g} ({mode!r}: `captioner.data.pipeline.normalize_image(pixels, {mode!r})` of 0-255 "
            "pixels); or give files, PIL images or uint8 arrays to `caption()`, which normalises them")


def load_image(path, image_size):
    """Image file -> float32 `[S, S, 3]` in 0..255."""
    return resize_image(decode_image(tf.io.read_file(path)), image_size)


def preprocess_image(data, image_size, mode):
    """Encoded image bytes -> normalised float32 `[S, S, 3]`: the one image path."""
    return normalize_image(resize_image(decode_image(data), image_size), mode)


def sample_captions(captions, count, seed=None, shuffle=True):
    """Picks `count` of an image's captions: `[n]` strings -> `[count]`, "" where n < count."""
    if shuffle:
        captions = tf.random.shuffle(captions, seed=seed)
    captions = captions[:count]
    return tf.pad(captions, [[0, count - tf.shape(captions)[0]]], constant_values="")


def tokenize_captions(tokenizer, captions, max_length):
    """`[..., K]` strings -> `(inputs, targets, weights)`, each `[..., K, T]`.

    Inputs are `<start> w1 .. wn`, targets `w1 .. wn <end>`; an empty caption
    (padding for images with fewer than K captions) gets zero weight.
    """
    ids = tokenizer.tokenize(captions)[..., :max_length]
    markers = tf.ones_like(ids[..., :1])
    inputs = tf.concat([markers * tokenizer_lib.START_ID, ids], axis=-1).to_tensor(tokenizer_lib.PAD_ID)
    targets = tf.concat([ids, markers * tokenizer_lib.END_ID], axis=-1).to_tensor(tokenizer_lib.PAD_ID)
    # Padding captions stay all-pad so they carry no weight.
    empty = tf.logical_not(tf.reduce_any(inputs[..., 1:] != tokenizer_lib.PAD_ID, axis=-1, keepdims=True))
    inputs = tf.where(empty, tokenizer_lib.PAD_ID, inputs)
    targets = tf.where(empty, tokenizer_lib.PAD_ID, targets)
    weights = tf.cast(targets != tokenizer_lib.PAD_ID, tf.float32)
    return inputs, targets, weights


def pad_length(tensor, length):
    """Pads the last axis of `[..., T]` with zeros to `length` (T <= length) and fixes its static size."""
    padded = tf.pad(tensor, tf.concat([tf.zeros([tf.rank(tensor) - 1, 2], tf.int32),
                                       [[0, length - tf.shape(tensor)[-1]]]], 0))
    return tf.ensure_shape(padded, tensor.shape[:-1].concatenate([length]))


def captions_tensor(examples):
    """The examples' captions as a ragged `[N, (n)]` string tensor.

    Built from one flat list and the row lengths (0.1 s for 113k images here;
    `tf.ragged.constant` walks the nested lists in Python, about 20 times slower).
    """
    flat = [caption for e in examples for caption in e.captions]
    lengths = [len(e.captions) for e in examples]
    return tf.RaggedTensor.from_row_lengths(tf.constant(flat, tf.string), tf.constant(lengths, tf.int64))


def caption_dataset(examples, tokenizer, image_size, normalization, batch_size, captions_per_image=5,
                    max_length=30, training=True, cache_images=False, seed=0, drop_remainder=False,
                    static_shapes=False):
    """Batches of `(x, y, sample_weight)` for `fit()` and `evaluate()`.

    Args:
        examples: list of `captioner.data.coco.Example`.
        tokenizer: `CaptionTokenizer`.
        image_size: int, side S of the encoder input.
        normalization: str, the encoder's pixel normalisation (see `normalize_image`).
        batch_size: int, images per batch.
        captions_per_image: int, K captions per image (sampled anew each epoch when training).
        max_length: int, longest caption in words; longer ones are cut.
        training: bool, shuffle images every epoch and sample captions at random.
        cache_images: bool, keep decoded, resized images in memory (uint8) after the first pass; refused
            before anything is read when they would not fit (`check_image_cache`).
        seed: int, seed of shuffling and caption sampling.
        drop_remainder: bool, drop the last partial batch (static batch shapes).
        static_shapes: bool, drop the last partial batch and pad every caption to
            `max_length + 1`, so each batch has the same shape (for XLA and TPUs).
    """
    if not examples:
        raise ValueError("caption_dataset needs at least one example")
    paths = tf.constant([e.path for e in examples])
    captions = captions_tensor(examples)
    dataset = tf.data.Dataset.from_tensor_slices((paths, captions))
    shuffle = lambda ds: ds.shuffle(len(examples), seed=seed, reshuffle_each_iteration=True)  # noqa: E731
    if training and not cache_images:
        # Shuffling file names is cheap; images are read after.
        dataset = shuffle(dataset)
    if cache_images:
        check_image_cache(len(examples), image_size)
        # Kept as uint8: a quarter of float32's memory (8,000 Shapes images at 96 px: 221 MB, not 885 MB).
        load = lambda path: tf.cast(tf.round(load_image(path, image_size)), tf.uint8)  # noqa: E731
    else:
        load = lambda path: load_image(path, image_size)  # noqa: E731
    dataset = dataset.map(lambda path, caps: (load(path), caps), num_parallel_calls=AUTOTUNE)
    if cache_images:
        dataset = dataset.cache()
        if training:
            dataset = shuffle(dataset)
    return _caption_batches(dataset, "images", lambda images: normalize_image(images, normalization), tokenizer,
                            batch_size, captions_per_image, max_length, training, seed, drop_remainder,
                            static_shapes)


# The share of the memory available when training starts that cached images may take.
IMAGE_CACHE_SHARE = 0.5


def available_memory():
    """Bytes of memory available to a new allocation (`MemAvailable` of /proc/meminfo), or None if unknown."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def check_image_cache(count, image_size, available=None):
    """Refuses (ValueError, before training) an image cache that would not fit in memory.

    `count` images of `image_size`^2 x 3 uint8 pixels may take at most `IMAGE_CACHE_SHARE` of the available memory.
    """
    needed = count * image_size * image_size * 3
    available = available_memory() if available is None else available
    if available is not None and needed > IMAGE_CACHE_SHARE * available:
        raise ValueError(
            f"--cache-images would keep {count} images of {image_size} x {image_size} pixels in memory "
            f"({needed / 2**30:.1f} GiB of uint8 pixels) with {available / 2**30:.1f} GiB available: pass "
            "--no-cache-images to read the images from disk every epoch, or, with a frozen encoder, "
            "--feature-cache to read its regions from disk")


def region_caption_dataset(regions, examples, tokenizer, batch_size, captions_per_image=5, max_length=30,
                           training=True, seed=0, drop_remainder=False, static_shapes=False):
    """`caption_dataset` over cached backbone regions instead of images.

    Args:
        regions: a dataset of `(index, regions [P, C])`, `index` the position in
            `examples` (see `captioner.data.features`); already shuffled when training.
        examples: list of `captioner.data.coco.Example`, the captions.
        Other arguments as in `caption_dataset`.

    Yields `({"regions": [B, P, C] float32, "tokens": [B, K, T]}, targets, weights)`.
    """
    if not examples:
        raise ValueError("region_caption_dataset needs at least one example")
    captions = captions_tensor(examples)
    dataset = regions.map(lambda index, grid: (grid, captions[index]), num_parallel_calls=AUTOTUNE)
    return _caption_batches(dataset, "regions", lambda grid: grid, tokenizer, batch_size, captions_per_image,
                            max_length, training, seed, drop_remainder, static_shapes)


def _caption_batches(dataset, key, prepare, tokenizer, batch_size, captions_per_image, max_length, training, seed,
                     drop_remainder, static_shapes):
    """`(pixels or regions, captions)` elements -> model batches: the caption ops shared by both inputs."""
    dataset = dataset.map(
        lambda inputs, caps: (inputs, sample_captions(caps, captions_per_image, seed, shuffle=training)),
        num_parallel_calls=AUTOTUNE)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder or static_shapes, num_parallel_calls=AUTOTUNE)

    def to_model_inputs(inputs, caps):
        tokens, targets, weights = tokenize_captions(tokenizer, caps, max_length)
        if static_shapes:
            tokens, targets, weights = (pad_length(t, max_length + 1) for t in (tokens, targets, weights))
        return {key: prepare(inputs), "tokens": tokens}, targets, weights

    dataset = dataset.map(to_model_inputs, num_parallel_calls=AUTOTUNE)
    return dataset.prefetch(AUTOTUNE)


def image_dataset(paths, image_size, normalization, batch_size):
    """Batches of normalised images `[B, S, S, 3]` read from `paths`, in order."""
    dataset = tf.data.Dataset.from_tensor_slices(tf.constant(list(paths), tf.string))
    dataset = dataset.map(
        lambda path: normalize_image(load_image(path, image_size), normalization), num_parallel_calls=AUTOTUNE)
    return dataset.batch(batch_size, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)
