"""Graph image reading: each op eagerly and inside `Dataset.map`, pixel for pixel what `read_image` (Pillow) gives."""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageOps

from captioner.data import images as images_lib
from captioner.data import photo_ops


def both(fn, *columns):
    """`fn` over the rows of `columns` (lists), eagerly and inside one `Dataset.map`, checked equal.

    Returns the eager results as numpy, one per row.
    """
    numpy = lambda result: tf.nest.map_structure(lambda t: t.numpy(), result)  # noqa: E731
    eager = [numpy(fn(*(tf.constant(value) for value in row))) for row in zip(*columns)]
    mapped = [numpy(result) for result in tf.data.Dataset.from_tensor_slices(tuple(columns)).map(fn)]
    assert len(mapped) == len(eager)
    for one, other in zip(eager, mapped):
        tf.nest.map_structure(np.testing.assert_array_equal, one, other)
    return eager


def encode(image, kind, **options):
    buffer = io.BytesIO()
    image.save(buffer, format=kind, **options)
    return buffer.getvalue()


def with_orientation(orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif


@pytest.fixture(scope="module")
def picture():
    """A 40 x 56 RGB picture, smooth enough to be a plausible JPEG, different along every axis."""
    rows, columns = np.mgrid[0:40, 0:56]
    noise = np.random.default_rng(0).integers(0, 40, (40, 56, 3))
    return np.clip(np.stack([rows * 6, columns * 4, (rows * columns) % 200], -1) + noise, 0, 255).astype(np.uint8)


def read_image(tmp_path, data, name):
    path = tmp_path / name
    path.write_bytes(data)
    pixels, reason = images_lib.read_image(str(path))
    assert reason is None, reason
    return pixels


def test_image_dimensions_read_the_header_as_pillow_does(picture):
    image = Image.fromarray(picture)
    files = [encode(image, "JPEG"), encode(image.convert("L"), "JPEG"), encode(image, "PNG"),
             encode(image.convert("LA"), "PNG"), encode(image, "GIF"), encode(image, "BMP"),
             encode(image.convert("RGBA"), "BMP"), encode(image, "WEBP"), encode(image, "WEBP", lossless=True),
             encode(image.convert("RGBA"), "WEBP", exif=with_orientation(1))]  # lossy, lossless, extended
    bottom_up = encode(image, "BMP")
    height = int.from_bytes(bottom_up[22:26], "little", signed=True)
    files.append(bottom_up[:22] + (-height).to_bytes(4, "little", signed=True) + bottom_up[26:])  # rows top-down
    assert all(Image.open(io.BytesIO(data)).size == (56, 40) for data in files)
    assert both(photo_ops.image_dimensions, files) == [(40, 56)] * len(files)
    assert both(photo_ops.image_dimensions, [b"", b"not an image", b"GIF8"]) == [(0, 0)] * 3


def test_apply_orientation_turns_as_pillow_exif_transpose(picture):
    orientations = list(range(0, 11))
    turned = both(lambda orientation: photo_ops.apply_orientation(tf.constant(picture), orientation), orientations)
    for orientation, pixels in zip(orientations, turned):
        # PNG carries EXIF too, so Pillow can be asked directly.
        tagged = Image.open(io.BytesIO(encode(Image.fromarray(picture), "PNG", exif=with_orientation(orientation))))
        expected = np.asarray(ImageOps.exif_transpose(tagged))  # 1 and values outside 1..8: unchanged
        np.testing.assert_array_equal(pixels, expected, err_msg=f"orientation {orientation}")


def test_every_exif_orientation_decodes_as_read_image(picture, tmp_path):
    files, orientations = {}, {}
    for orientation in range(0, 10):
        for mode in ("RGB", "L"):
            name = f"{mode}{orientation}.jpg"
            files[name] = encode(Image.fromarray(picture).convert(mode), "JPEG", quality=90,
                                 exif=with_orientation(orientation))
            orientations[name] = orientation if 1 <= orientation <= 8 else 1  # Pillow ignores 0 and 9
    # Pillow writes big-endian SHORTs; cameras also write little-endian TIFF headers and the odd LONG.
    for order, kind, orientation in ((b"II", 3, 6), (b"II", 4, 8), (b"MM", 4, 3)):
        number = lambda value, size: value.to_bytes(size, "little" if order == b"II" else "big")  # noqa: E731
        tiff = (order + number(42, 2) + number(8, 4) + number(1, 2)
                + number(0x0112, 2) + number(kind, 2) + number(1, 4) + number(orientation, 2 if kind == 3 else 4)
                + b"\0\0" * (kind == 3) + number(0, 4))
        name = f"camera-{order.decode()}-{kind}-{orientation}.jpg"
        files[name] = encode(Image.fromarray(picture), "JPEG", exif=b"Exif\0\0" + tiff)
        orientations[name] = orientation
    files["plain.jpg"], orientations["plain.jpg"] = encode(Image.fromarray(picture), "JPEG"), 1
    files["exif.png"] = encode(Image.fromarray(picture), "PNG", exif=with_orientation(1))
    orientations["exif.png"] = 1  # only JPEG EXIF is read

    names = list(files)
    assert both(photo_ops.exif_orientation, [files[n] for n in names]) == [orientations[n] for n in names]
    # Exact: read_image decodes tagged JPEGs with Pillow (libjpeg's accurate IDCT) and plain ones with
    # TF's fast IDCT; decode_photo picks the same IDCT for each.
    for name, decoded in zip(names, both(photo_ops.decode_photo, [files[n] for n in names])):
        np.testing.assert_array_equal(decoded, read_image(tmp_path, files[name], name), err_msg=name)
        assert decoded.shape == ((56, 40, 3) if orientations[name] >= 5 else (40, 56, 3)), name


def test_transparency_grey_and_other_formats_decode_as_read_image(picture, tmp_path):
    rows, columns = np.mgrid[0:40, 0:56]
    alpha = np.where(columns < 8, 0, np.where(columns > 48, 255, (rows * 7 + columns * 3) % 256)).astype(np.uint8)
    rgba = Image.fromarray(np.dstack([picture, alpha]))
    palette = Image.fromarray(picture).quantize(32)
    files = {
        "rgba.png": encode(rgba, "PNG"),
        "la.png": encode(Image.fromarray(np.dstack([picture[..., 0], alpha]), "LA"), "PNG"),
        "palette_transparent.png": encode(palette, "PNG", transparency=3),
        "palette.png": encode(palette, "PNG"),
        "sixteen.png": encode(Image.fromarray(picture[..., 0].astype(np.uint16) * 250 + 17), "PNG"),
        "rgba16.png": tf.io.encode_png(np.dstack([picture, alpha]).astype(np.uint16) * 257 + 100).numpy(),
        "rgba.webp": encode(rgba, "WEBP", lossless=True),
        "opaque.gif": encode(Image.fromarray(picture), "GIF"),
        "rgba.bmp": encode(rgba, "BMP"),  # Pillow reads the fourth byte as padding, not alpha
        "grey.bmp": encode(Image.fromarray(picture[..., 0]), "BMP"),  # 8-bit, grey palette
        "grey.jpg": encode(Image.fromarray(picture).convert("L"), "JPEG"),
    }
    decoded = dict(zip(files, both(photo_ops.decode_photo, list(files.values()))))
    for name, data in files.items():
        np.testing.assert_array_equal(decoded[name], read_image(tmp_path, data, name), err_msg=name)
    assert (decoded["rgba.png"][:, :8] == 255).all()  # fully transparent: white
    np.testing.assert_array_equal(decoded["rgba.png"][:, 49:], picture[:, 49:])  # opaque: untouched


def test_too_many_pixels_fail_from_the_header_before_decoding(picture):
    huge = encode(Image.new("1", (12000, 12000)), "PNG")
    assert len(huge) < 100_000  # a tiny file of 144 million pixels
    header_only = huge[:33]  # signature and IHDR: no pixel data, so decoding it would fail differently
    for data in (huge, header_only):
        with pytest.raises(tf.errors.InvalidArgumentError, match="image too large"):
            photo_ops.decode_photo(tf.constant(data))
        with pytest.raises(tf.errors.InvalidArgumentError, match="image too large"):
            next(iter(tf.data.Dataset.from_tensors(data).map(photo_ops.decode_photo)))
    with pytest.raises(tf.errors.InvalidArgumentError, match="PNG"):
        tf.io.decode_image(header_only)  # what decoding first would have said
    data = encode(Image.fromarray(picture), "JPEG")
    assert both(lambda d: photo_ops.decode_photo(d, max_pixels=40 * 56), [data])[0].shape == (40, 56, 3)
    with pytest.raises(tf.errors.InvalidArgumentError, match="image too large"):
        photo_ops.decode_photo(tf.constant(data), max_pixels=40 * 56 - 1)


def test_malformed_exif_never_raises(picture):
    data = encode(Image.fromarray(picture), "JPEG", exif=with_orientation(6))
    tiff = data.index(b"Exif\0\0") + 6
    ifd0 = tiff + 8  # Pillow writes IFD0 straight after the TIFF header
    replace = lambda at, new: data[:at] + new + data[at + len(new):]  # noqa: E731
    variants = {  # bytes: orientation, as Pillow's getexif() reads it where it reads it at all
        replace(4, b"\xff\xff"): 1,  # first segment's length runs past the end (Pillow: OSError)
        replace(4, b"\x00\x00"): 1,  # a length of zero (Pillow skips junk bytes up to the EXIF and finds 6)
        replace(tiff, b"XX*\0"): 1,  # unknown byte order
        replace(tiff + 4, b"\xff\xff\xff\xff"): 1,  # IFD0 far past the end
        replace(ifd0, b"\xff\xff"): 6,  # 65535 entries: the first is still the orientation
        replace(ifd0 + 2 + 4, b"\x00\x00\x00\x00"): 1,  # orientation: no values
        replace(ifd0 + 2 + 4, b"\x05\x00\x00\x00"): 1,  # orientation: 83 million values, stored elsewhere
        replace(ifd0 + 2 + 2, b"\x0c\x00"): 1,  # orientation: an unknown type
        b"\xff\xd8\xff\xe1\x00\x08Exif\0\0": 1,  # an EXIF segment and nothing else
        b"\xff\xd8" + b"\xff" * 100: 1,  # fill bytes only
        b"\xff\xd8\xff": 1,
        data[:tiff + 10]: 1,
    }
    assert both(photo_ops.exif_orientation, list(variants)) == list(variants.values())
    damaged = [data[:length] for length in range(0, tiff + 40)]  # cut anywhere in the headers
    rng = np.random.default_rng(1)
    for _ in range(200):  # random bytes in the headers
        corrupt = bytearray(data)
        for at in rng.integers(2, tiff + 40, 4):
            corrupt[at] = rng.integers(0, 256)
        damaged.append(bytes(corrupt))
    dataset = tf.data.Dataset.from_tensor_slices(damaged).map(photo_ops.exif_orientation).batch(len(damaged))
    orientations = next(iter(dataset)).numpy()
    assert ((orientations >= 1) & (orientations <= 8)).all()
