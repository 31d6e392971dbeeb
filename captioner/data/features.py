"""Feature cache for frozen encoders: backbone regions computed once, then read from TFRecord shards.

With a frozen backbone, every epoch would recompute the same `[P, C]` regions
for every image. The cache computes them once per split and writes

    CACHE_ROOT/<key>/
      shard-00000-of-00008.tfrecord   records {"index": int64, "regions": float16 bytes [P * C]}
      ...
      manifest.json                   what the key covers, counts and shapes

where `index` is the example's position in its split. The key is a hash of
everything the regions depend on: the backbone's name and weight values, the
image size, the pixel normalisation, the storage format, and every image
file's path, size and modification time, in order. A change to any of them
gives a new key, so a stale cache is never read. A cache is written into
`<key>.partial/`, a shard at a time (each under a temporary name until
closed), and renamed into place when complete, so an interrupted build is
never mistaken for a cache, and rerunning resumes it after its last complete
shard instead of starting over. Concurrent builders (several workers) take
turns on `<key>.lock`: the first builds, the others then find it built.

Regions are stored as float16 (half the bytes) where that keeps them: the
first batch decides, by the error of its float16 round trip, and a cache whose
regions overflow float16 or underflow it (a randomly initialised MobileNetV3's
are about 1e-11, all zeros in float16) is stored as float32. The manifest names
the dtype; regions are read back as float32.
"""

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import sys

import keras
import numpy as np
import tensorflow as tf

from captioner import files
from captioner.console import Progress
from captioner.data import feature_cache_home
from captioner.data.pipeline import AUTOTUNE, image_dataset

# 2: the storage dtype is chosen per cache (version 1 stored float16 always, zeros for regions that underflow
# it); the version is part of the key, so no version-1 cache is read again.
FORMAT_VERSION = 2
STORAGE_DTYPE = "float16"  # the default; float32 where float16 would lose the regions (`storage_dtype`)
STORAGE_FILE = "storage.json"  # the dtype chosen for a build, kept in `<key>.partial/` so a resume keeps it
FLOAT16_TOLERANCE = 1e-2  # largest relative RMS error of a float16 round trip that keeps float16
MANIFEST = "manifest.json"
RECORDS_PER_SHARD = 1024


def default_root():
    """`$CAPTIONER_DATA` (default `./data`)`/feature-cache`, beside the generated datasets."""
    return feature_cache_home()


@dataclasses.dataclass
class FeatureCache:
    """A complete cache on disk.

    Args:
        directory: str, the cache folder.
        count: int, number of images (records).
        num_regions: int, P.
        channels: int, C.
        files: list of str, the shard files in index order.
        dtype: str, how regions are stored ("float16" or "float32").
    """

    directory: str
    count: int
    num_regions: int
    channels: int
    files: list
    dtype: str = STORAGE_DTYPE

    def regions(self, training=False, seed=0, shuffle_buffer=4096):
        """A dataset of `(index, regions [P, C] float32)`.

        In index order, or, when `training`, shuffled anew every pass: shard order, interleaving of four shards,
        and a buffer of `shuffle_buffer` serialised records.
        """
        files = tf.data.Dataset.from_tensor_slices(self.files)
        if training:
            files = files.shuffle(len(self.files), seed=seed, reshuffle_each_iteration=True)
            records = files.interleave(tf.data.TFRecordDataset, cycle_length=min(4, len(self.files)),
                                       num_parallel_calls=AUTOTUNE, deterministic=True)
            records = records.shuffle(min(self.count, shuffle_buffer), seed=seed, reshuffle_each_iteration=True)
        else:
            records = tf.data.TFRecordDataset(files)
        shape, dtype = [self.num_regions, self.channels], tf.as_dtype(self.dtype)

        def parse(record):
            parsed = tf.io.parse_single_example(record, {
                "index": tf.io.FixedLenFeature([], tf.int64),
                "regions": tf.io.FixedLenFeature([], tf.string)})
            grid = tf.reshape(tf.io.decode_raw(parsed["regions"], dtype), shape)
            return tf.cast(parsed["index"], tf.int32), tf.cast(grid, tf.float32)

        # The count is known: telling tf.data lets fit() know an epoch's length.
        return records.map(parse, num_parallel_calls=AUTOTUNE).apply(
            tf.data.experimental.assert_cardinality(self.count))


def cache_key(encoder, examples):
    """Hex digest of everything an encoder's cached regions of `examples` depend on."""
    digest = hashlib.sha256()
    header = {"version": FORMAT_VERSION, "dtype": STORAGE_DTYPE, "backbone": encoder.backbone_name,
              "image_size": encoder.image_size, "normalization": encoder.normalization}
    digest.update(json.dumps(header, sort_keys=True).encode())
    for variable in encoder.backbone.weights:
        value = np.ascontiguousarray(keras.ops.convert_to_numpy(variable))
        digest.update(f"{variable.path}:{value.shape}:{value.dtype}".encode())
        digest.update(value.tobytes())
    for example in examples:
        try:
            stat = os.stat(example.path)
            digest.update(f"{example.path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{example.path}\0missing\n".encode())
    return digest.hexdigest()[:24]


def _serialize(index, regions):
    return tf.train.Example(features=tf.train.Features(feature={
        "index": tf.train.Feature(int64_list=tf.train.Int64List(value=[index])),
        "regions": tf.train.Feature(bytes_list=tf.train.BytesList(value=[regions.tobytes()])),
    })).SerializeToString()


def _shard_names(count):
    num_shards = max(1, -(-count // RECORDS_PER_SHARD))
    return [f"shard-{i:05d}-of-{num_shards:05d}.tfrecord" for i in range(num_shards)]


def _completed_shards(partial, names):
    """How many shards, from the first, an earlier build left complete in `partial`.

    A shard is written under a temporary name and renamed when closed, so a shard under its own
    name is whole.
    """
    done = 0
    while done < len(names) and os.path.exists(os.path.join(partial, names[done])):
        done += 1
    return done


@contextlib.contextmanager
def _build_lock(directory):
    """Holds `directory.lock` while this process builds: a second builder (another worker) waits.

    Returns once the lock is held; the file stays (it is empty), the lock dies with the process.
    """
    with open(f"{directory}.lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"Feature cache: another process is building {directory}; waiting for it", file=sys.stderr,
                  flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build(encoder, examples, directory, batch_size=64, progress=True):
    """The cache of `examples` at `directory`, computed now unless another process completed it first.

    See `build_or_wait`, which also says whether this process computed it.
    """
    return build_or_wait(encoder, examples, directory, batch_size, progress)[0]


def build_or_wait(encoder, examples, directory, batch_size=64, progress=True):
    """Computes the regions of `examples` with `encoder`'s backbone and writes a cache at `directory`.

    Writes into `directory.partial`, one shard of `RECORDS_PER_SHARD` images at a time, and renames
    it to `directory` when complete. An interrupted build resumes after its last complete shard
    (the folder's name is the cache key, so what it holds was computed from the same backbone and
    images). One process builds at a time (`directory.lock`); one that waited finds the cache built.

    Args:
        progress: callable `(done, total)` called after each batch, True for a `Progress` line on stderr,
            or None for silence.

    Returns:
        `(FeatureCache, built)`: `built` is False when another process had completed it.
    """
    if not examples:
        raise ValueError("A feature cache needs at least one image")
    with _build_lock(directory):
        cache = open_cache(directory)
        if cache is not None:
            return cache, False
        partial = f"{directory}.partial"
        os.makedirs(partial, exist_ok=True)
        count, names = len(examples), _shard_names(len(examples))
        start = _completed_shards(partial, names) * RECORDS_PER_SHARD
        if start:
            print(f"Feature cache: resuming an interrupted build at image {start} of {count}", file=sys.stderr,
                  flush=True)
        dtype = _read_storage(partial) if start else None
        if progress is True:
            bar = Progress(count, "Feature cache", initial=start)
            progress = lambda done, total: bar.update(done)  # noqa: E731
        if start < count:
            dtype = _write_shards(encoder, examples, partial, names, start, batch_size, progress, dtype)
        manifest = {"version": FORMAT_VERSION, "count": count, "num_regions": encoder.num_regions,
                    "channels": encoder.region_channels, "dtype": dtype, "shards": names,
                    "backbone": encoder.backbone_name, "image_size": encoder.image_size,
                    "normalization": encoder.normalization, "first_image": examples[0].path}
        with files.replacing(os.path.join(partial, MANIFEST)) as temporary, open(temporary, "w") as handle:
            json.dump(manifest, handle, indent=2)
        files.publish_folder(partial, directory, MANIFEST)
    return open_cache(directory), True


def storage_dtype(grids):
    """"float16" if a float16 round trip keeps `grids` (relative RMS error under `FLOAT16_TOLERANCE`), else
    "float32": regions beyond float16's range, or so small that they underflow it."""
    grids = np.asarray(grids, np.float32)
    scale = float(np.sqrt(np.mean(np.square(grids)))) if grids.size else 0.0
    if scale == 0.0:
        return "float16"
    with np.errstate(over="ignore", invalid="ignore"):
        error = float(np.sqrt(np.mean(np.square(grids.astype(np.float16).astype(np.float32) - grids)))) / scale
    return "float16" if error < FLOAT16_TOLERANCE else "float32"


def _read_storage(partial):
    path = os.path.join(partial, STORAGE_FILE)
    if not os.path.exists(path):
        return STORAGE_DTYPE  # a build begun before the dtype was chosen per cache
    with open(path) as handle:
        return json.load(handle)["dtype"]


def _write_shards(encoder, examples, partial, names, start, batch_size, progress, dtype=None):
    """Writes the shards holding images `start`.. of `examples` (`start` begins a shard).

    `dtype` is the storage of the shards already written, or None to choose it on the first batch (and
    record it in the partial folder). Returns the dtype.
    """
    compute = tf.function(lambda images: encoder.regions(images, training=False))
    count = len(examples)
    images = image_dataset([e.path for e in examples[start:]], encoder.image_size, encoder.normalization, batch_size)
    index, writer, shard_path = start, None, None
    if progress:
        progress(index, count)
    try:
        for batch in images:
            grids = compute(batch).numpy()
            if not np.all(np.isfinite(grids)):
                raise ValueError(f"{encoder.backbone_name} gives non-finite regions for images {index}.."
                                 f"{index + len(grids) - 1}: they cannot be cached or trained on")
            if dtype is None:
                dtype = storage_dtype(grids)
                if dtype != STORAGE_DTYPE:
                    print(f"Feature cache: {encoder.backbone_name} regions (RMS {np.sqrt(np.mean(grids ** 2)):.3g}, "
                          f"peak {np.max(np.abs(grids)):.3g}) do not survive float16: stored as {dtype}",
                          file=sys.stderr, flush=True)
                with files.replacing(os.path.join(partial, STORAGE_FILE)) as temporary, \
                        open(temporary, "w") as handle:
                    json.dump({"dtype": dtype}, handle)
            elif dtype == "float16" and storage_dtype(grids) != "float16":
                raise ValueError(f"{encoder.backbone_name} regions of images {index}..{index + len(grids) - 1} do "
                                 f"not survive float16, which the cache's first images chose; delete {partial} "
                                 "to rebuild it")
            for grid in grids.astype(dtype):
                if writer is None:
                    shard_path = os.path.join(partial, names[index // RECORDS_PER_SHARD])
                    writer = tf.io.TFRecordWriter(files.partial_name(shard_path))
                writer.write(_serialize(index, grid))
                index += 1
                if index % RECORDS_PER_SHARD == 0 or index == count:
                    writer.close()
                    writer = None
                    files.commit(files.partial_name(shard_path), shard_path)
            if progress:
                progress(index, count)
    finally:
        if writer is not None:
            writer.close()
    return dtype


def open_cache(directory):
    """The complete cache at `directory`, or None if there is none."""
    path = os.path.join(directory, MANIFEST)
    if not os.path.exists(path):
        return None
    with open(path) as handle:
        manifest = json.load(handle)
    files = [os.path.join(directory, name) for name in manifest["shards"]]
    missing = [f for f in files if not os.path.exists(f)]
    if missing:
        raise ValueError(f"Feature cache {directory} is damaged ({len(missing)} shards missing, e.g. "
                         f"{missing[0]}); delete the folder to rebuild it")
    return FeatureCache(directory, manifest["count"], manifest["num_regions"], manifest["channels"], files,
                        manifest.get("dtype", STORAGE_DTYPE))


def directory_of(encoder, examples, root=None):
    """Where the cache of `encoder`'s backbone over `examples` lives (under `root`, default `default_root()`)."""
    root = root or default_root()
    return os.path.join(root, f"{encoder.backbone_name}-{encoder.image_size}px-{cache_key(encoder, examples)}")


def find(encoder, examples, root=None):
    """The complete cache of `encoder` over exactly `examples` if one exists, else None (never builds)."""
    cache = open_cache(directory_of(encoder, examples, root))
    return cache if cache is not None and cache.count == len(examples) else None


def ensure(encoder, examples, root=None, batch_size=64, progress=True):
    """The cache of `encoder` over `examples` under `root`: reused if complete, else built.

    Returns:
        `(FeatureCache, built)`, `built` True if it was computed now.
    """
    root = root or default_root()
    directory = directory_of(encoder, examples, root)
    cache = open_cache(directory)
    if cache is not None:
        if cache.count != len(examples):
            raise ValueError(f"Feature cache {directory} holds {cache.count} images, not {len(examples)}; "
                             "delete the folder to rebuild it")
        return cache, False
    os.makedirs(root, exist_ok=True)
    return build_or_wait(encoder, examples, directory, batch_size, progress)


def ensure_split(encoder, name, examples, root=None, batch_size=64):
    """`ensure` for one split, saying on stderr where its cache is and whether it was built now."""
    cache, built = ensure(encoder, examples, root, batch_size)
    print(f"Feature cache of {name} ({len(examples)} images): {cache.directory} ({'built now' if built else 'reused'})",
          file=sys.stderr, flush=True)
    return cache
