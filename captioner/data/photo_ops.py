"""Graph ops that read image bytes the way `captioner.data.images.read_image` does with Pillow.

An exported SavedModel runs on TensorFlow alone, so these ops give, in graph
(eagerly, in `tf.function` and in `Dataset.map`), what `read_image` gives:

    image_dimensions   (height, width) from the header, before any pixel is decoded
    exif_orientation   the JPEG's EXIF Orientation tag, 1..8
    apply_orientation  pixels turned as `PIL.ImageOps.exif_transpose` turns them
    decode_photo       all of it: pixel limit, decode, alpha onto white, grey to RGB, orientation

Pixels equal `read_image`'s bit for bit on JPEG (any orientation, colour or
grey), PNG (8- and 16-bit, grey, grey+alpha, RGB, RGBA, palette with or
without transparency), WebP, opaque GIF and 24- or 32-bit BMP; see
`captioner.export` for where they differ.
"""

import tensorflow as tf

from captioner.data.images import MAX_PIXELS

_JPEG, _PNG, _GIF, _BMP, _WEBP, _OTHER = range(6)
_HEADER_BYTES = 32  # every format's dimensions lie in the first 30 bytes
_EXIF = b"Exif\0\0"
_ORIENTATION_TAG = 0x0112
_MAX_JPEG_SEGMENTS = 64  # JPEGs reach their EXIF (or image data) within a dozen segments; bad files stay cheap
_MAX_IFD_ENTRIES = 64  # IFD0 tags are sorted and Orientation (0x0112) comes among the first


def _bytes(data, length=None):
    """The first `length` bytes of the scalar string `data` as uint8 `[length]`, zero-padded.

    With `length` None, all of them and one zero more `[N + 1]`, so reads past
    the end (clamped to the last byte, see `_window`) read zeros.
    """
    if length is not None:
        data = tf.strings.substr(data, 0, length)  # shorter when data is
    values = tf.io.decode_raw(data, tf.uint8)
    if length is None:
        return tf.pad(values, [[0, 1]])
    return tf.reshape(tf.pad(values, [[0, length - tf.size(values)]]), [length])  # a static length for slicing


def _window(values, start, length):
    """`length` bytes from int64 `start` of `values` (from `_bytes`) as int64 `[length]`, clamped to its ends."""
    index = tf.clip_by_value(start + tf.range(length, dtype=tf.int64), 0, tf.size(values, tf.int64) - 1)
    return tf.cast(tf.gather(values, index), tf.int64)


def _number(window, little_endian):
    """Unsigned integers int64 `[...]` of int64 bytes `[..., k]`, little- or big-endian (bool, may be a tensor)."""
    weights = 256 ** tf.range(window.shape[-1], dtype=tf.int64)
    return tf.reduce_sum(window * tf.where(little_endian, weights, weights[::-1]), axis=-1)


def _is(window, signature):
    """Whether int64 bytes `[k]` are `signature` (bytes of length k)."""
    return tf.reduce_all(window == tf.constant(list(signature), tf.int64))


def _where(condition, x, y):
    """`tf.where` over int64 values that may be Python ints."""
    return tf.where(condition, tf.cast(x, tf.int64), tf.cast(y, tf.int64))


def _header(data):
    """`(head, kind)`: the first 32 bytes int64 `[32]` (zero-padded) and one of _JPEG ... _OTHER by magic bytes."""
    head = tf.cast(_bytes(data, _HEADER_BYTES), tf.int64)
    kinds = [(_JPEG, _is(head[:3], b"\xff\xd8\xff")),
             (_PNG, _is(head[:8], b"\x89PNG\r\n\x1a\n")),
             (_GIF, _is(head[:4], b"GIF8")),
             (_BMP, _is(head[:2], b"BM")),
             (_WEBP, _is(head[:4], b"RIFF") & _is(head[8:12], b"WEBP"))]
    kind = tf.constant(_OTHER)
    for value, found in reversed(kinds):
        kind = tf.where(found, value, kind)
    return head, kind


def _dimensions(data, head, kind):
    """`image_dimensions` given `_header(data)`."""
    little, big = True, False

    def jpeg():
        shape = tf.image.extract_jpeg_shape(data, output_type=tf.int64)
        return shape[0], shape[1]

    def bmp():
        signed = lambda value: tf.abs(tf.where(value >= 2 ** 31, value - 2 ** 32, value))  # noqa: E731
        return signed(_number(head[22:26], little)), signed(_number(head[18:22], little))  # height < 0: top-down

    def webp():
        extended, lossless = _is(head[12:16], b"VP8X"), _is(head[12:16], b"VP8L")
        bits = _number(head[21:25], little)  # lossless: two 14-bit sizes minus one
        height = tf.where(extended, _number(head[27:30], little) + 1,  # extended: 24-bit sizes minus one
                          tf.where(lossless, bits // 2 ** 14 % 2 ** 14 + 1, _number(head[28:30], little) % 2 ** 14))
        width = tf.where(extended, _number(head[24:27], little) + 1,
                         tf.where(lossless, bits % 2 ** 14 + 1, _number(head[26:28], little) % 2 ** 14))
        return height, width

    def others():
        # PNG IHDR (big-endian), GIF logical screen, BMP and WebP; (0, 0) for anything else.
        sizes = [(kind == _PNG, (_number(head[20:24], big), _number(head[16:20], big))),
                 (kind == _GIF, (_number(head[8:10], little), _number(head[6:8], little))),
                 (kind == _BMP, bmp()),
                 (kind == _WEBP, webp())]
        height, width = tf.constant(0, tf.int64), tf.constant(0, tf.int64)
        for found, (h, w) in sizes:
            height, width = tf.where(found, h, height), tf.where(found, w, width)
        return height, width

    return tf.cond(kind == _JPEG, jpeg, others)


def image_dimensions(data):
    """`(height, width)` int64 scalars of encoded image bytes, read from the header only.

    JPEG, PNG, GIF, BMP and WebP (the formats `tf.io.decode_image` decodes), as
    their TensorFlow decoders read them; `(0, 0)` for other bytes. A JPEG whose
    header cannot be parsed raises `InvalidArgumentError`.
    """
    return _dimensions(data, *_header(data))


def _exif_offset(values):
    """Where the TIFF header of a JPEG's first APP1 "Exif" segment starts in `values` (`_bytes`), or -1.

    Walks the marker segments from SOI to SOS, as Pillow does: FF xx, then a
    big-endian length that counts itself. Few ops per step: a JPEG without
    EXIF takes about ten steps, for every image served.
    """
    one, two, missing = (tf.constant(value, tf.int64) for value in (1, 2, -1))

    def step(position, tiff, done):
        window = _window(values, position, 10)
        marker = window[1]
        stop = (window[0] != 0xFF) | (marker == 0xDA) | (marker == 0xD9)  # past the end reads zeros
        is_exif = ~stop & (marker == 0xE1) & _is(window[4:10], _EXIF)
        standalone = (marker == 0x01) | ((marker >= 0xD0) & (marker <= 0xD7))  # no length field
        advance = tf.where(marker == 0xFF, one, tf.where(standalone, two, window[2] * 256 + window[3] + 2))
        return position + advance, tf.where(is_exif, position + 10, tiff), stop | is_exif

    _, tiff, _ = tf.while_loop(lambda position, tiff, done: ~done, step, (two, missing, tf.constant(False)),
                               maximum_iterations=_MAX_JPEG_SEGMENTS)
    return tiff


def _tiff_orientation(values, tiff):
    """Orientation in IFD0 of the TIFF structure at `tiff` (int64, >= 0) in `values`, as `_jpeg_orientation_tag`."""
    tiff = _where(_is(_window(values, tiff, 6), _EXIF), tiff + 6, tiff)  # Pillow drops a repeated prefix too
    header = _window(values, tiff, 8)
    little = _is(header[:4], b"II*\0")
    valid = little | _is(header[:4], b"MM\0*")

    # IFD0: a count, then 12-byte entries (tag, type, count, value); offsets count from the TIFF header.
    ifd = _window(values, tiff + _number(header[4:8], little), 2 + 12 * _MAX_IFD_ENTRIES)
    entries = tf.reshape(ifd[2:], [_MAX_IFD_ENTRIES, 12])
    is_tag = ((_number(entries[:, 0:2], little) == _ORIENTATION_TAG)
              & (tf.range(_MAX_IFD_ENTRIES, dtype=tf.int64) < _number(ifd[:2], little)))
    entry = entries[tf.argmax(tf.cast(is_tag, tf.int32))]  # the first, as Pillow keeps the first
    kind, count = _number(entry[2:4], little), _number(entry[4:8], little)
    value = tf.where(kind == 3, _number(entry[8:10], little), _number(entry[8:12], little))  # SHORT or LONG
    value = _where(((kind == 3) | (kind == 4)) & (count == 1), value, 0)
    return _where(valid & tf.reduce_any(is_tag), value, 1)


def _jpeg_orientation_tag(data):
    """The Orientation tag of a JPEG's first APP1 "Exif" segment, as Pillow's `getexif()` reads it.

    Returns an int64 scalar: 1 when there is no EXIF, no tag or no readable
    TIFF header; the value when the tag is one SHORT or LONG; 0 for any other
    tag (a count or type Pillow does not turn into an orientation).
    """
    values = _bytes(data)
    tiff = _exif_offset(values)
    return tf.cond(tiff >= 0, lambda: _tiff_orientation(values, tiff), lambda: tf.constant(1, tf.int64))


def _orientation_tag(data, kind):
    """`_jpeg_orientation_tag` for JPEG bytes, 1 for any other bytes.

    A JPEG without the bytes "Exif\0\0" anywhere has no EXIF segment: one
    substring scan (no UTF-8 decoding, a few GB/s) spares most served images
    the segment walk, which costs about as much as decoding a small image.
    """
    has_exif = tf.size(tf.strings.split(data, sep=_EXIF)) > 1
    return tf.cond((kind == _JPEG) & has_exif, lambda: _jpeg_orientation_tag(data),
                   lambda: tf.constant(1, tf.int64))


def exif_orientation(data):
    """The EXIF Orientation (int32 scalar, 1..8) of encoded image bytes.

    Read from a JPEG's APP1 "Exif" segment, without decoding pixels; 1 when the
    bytes are not a JPEG, carry no orientation, carry a value outside 1..8
    (Pillow ignores those too) or are malformed. Never raises on bad bytes.
    """
    tag = _orientation_tag(data, _header(data)[1])
    return tf.cast(_where((tag >= 1) & (tag <= 8), tag, 1), tf.int32)


def apply_orientation(image, orientation):
    """Turns `[H, W, C]` pixels upright as `PIL.ImageOps.exif_transpose` does for EXIF `orientation` 1..8.

    Returns `[H, W, C]`, or `[W, H, C]` for orientations 5 to 8; other values leave the image as it is.
    """
    transpose = lambda x: tf.transpose(x, [1, 0, 2])  # noqa: E731
    branches = [lambda: image,
                lambda: image[:, ::-1],  # 2: mirrored
                lambda: image[::-1, ::-1],  # 3: upside down
                lambda: image[::-1],  # 4: flipped
                lambda: transpose(image),  # 5: transposed
                lambda: tf.image.rot90(image, 3),  # 6: stored turned left, turned clockwise back
                lambda: transpose(image[::-1, ::-1]),  # 7: transverse
                lambda: tf.image.rot90(image, 1)]  # 8: stored turned right, turned anticlockwise back
    orientation = tf.cast(orientation, tf.int32)
    index = tf.where((orientation >= 1) & (orientation <= 8), orientation - 1, 0)
    return tf.switch_case(index, branches)


def _on_white(image):
    """`[H, W, C]` uint8 whose last channel is alpha -> `[H, W, C - 1]` composited onto opaque white.

    Pillow's `Image.alpha_composite(white, image)` gives round((c * a + 255 * (255 - a)) / 255)
    for colour c and alpha a (checked for all 65536 pairs). Written as
    (65025 + 127 - a * (255 - c)) // 255 it stays within uint16: half the memory of int32.
    """
    colour, alpha = tf.cast(image[..., :-1], tf.uint16), tf.cast(image[..., -1:], tf.uint16)
    return tf.cast((65025 + 127 - alpha * (255 - colour)) // 255, tf.uint8)


def decode_photo(data, max_pixels=MAX_PIXELS):
    """Encoded image bytes (scalar string) -> `[H, W, 3]` uint8, the pixels `read_image` gives for the same file.

    Refuses images of more than `max_pixels` pixels from their header, before
    decoding (`InvalidArgumentError`, "image too large"); takes the first frame;
    composites alpha onto white; makes greyscale RGB; turns JPEGs upright by
    their EXIF orientation.
    """
    head, kind = _header(data)
    height, width = _dimensions(data, head, kind)
    # PNG dimensions are 32-bit unsigned; capped, their product cannot overflow int64.
    pixels = tf.minimum(height, 2 ** 31) * tf.minimum(width, 2 ** 31)
    check = tf.debugging.assert_less_equal(pixels, tf.constant(max_pixels, tf.int64),
                                           message=f"image too large (more than {max_pixels} pixels)")
    tag = _orientation_tag(data, kind)
    # read_image hands JPEGs with any orientation tag to Pillow, which decodes with libjpeg's accurate
    # integer IDCT; TF's default is the fast one, which read_image uses for the others.
    accurate_jpeg = (kind == _JPEG) & (tag != 1)
    # Pillow reads 16-bit grey PNGs as 16-bit and read_image divides by 257; TF's 8-bit decode keeps the high byte.
    grey16 = (kind == _PNG) & _is(head[24:26], b"\x10\x00")  # IHDR bit depth 16, grey
    with tf.control_dependencies([check] if check is not None else []):  # None when eager: it has run
        image = tf.switch_case(tf.where(accurate_jpeg, 1, tf.where(grey16, 2, 0)), [
            lambda: tf.io.decode_image(data, channels=0, expand_animations=False),
            lambda: tf.io.decode_jpeg(data, channels=0, dct_method="INTEGER_ACCURATE"),
            lambda: tf.cast(tf.io.decode_png(data, channels=0, dtype=tf.uint16) // 257, tf.uint8)])
    channels = tf.shape(image)[-1]
    image = tf.switch_case(tf.where((kind == _BMP) & (channels == 4), 2, channels - 1), [  # grey, grey+alpha, RGB, RGBA
        lambda: tf.tile(image, [1, 1, 3]),
        lambda: tf.tile(_on_white(image), [1, 1, 3]),
        lambda: image[..., :3],  # Pillow reads a 32-bit BMP's fourth byte as padding, not alpha
        lambda: _on_white(image)])
    image = tf.ensure_shape(image, [None, None, 3])
    return apply_orientation(image, _where((tag >= 1) & (tag <= 8), tag, 1))
