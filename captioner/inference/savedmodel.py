"""A trained model as a servable SavedModel (`python -m captioner.export RUN_DIR OUT_DIR`).

The `serving_default` signature takes `images`, a batch of encoded image
bytes (JPEG, PNG, GIF, BMP, WebP) `[B]` string, and returns `captions [B]` string and
`scores [B]` float32 (the caption's log-probability, length-normalised when
`--alpha` > 0). Decoding, resizing, normalisation, beam search and
detokenisation all run inside the graph, so the SavedModel needs only
TensorFlow to load and serve (TensorFlow Serving included):

    import tensorflow as tf
    serve = tf.saved_model.load(OUT_DIR).signatures["serving_default"]
    serve(images=tf.constant([open("photo.jpg", "rb").read()]))["captions"]

Images are read as `python -m captioner.caption` reads files
(`captioner.data.photo_ops.decode_photo`, pixel for pixel): JPEGs are turned
upright by their EXIF orientation; transparent areas (RGBA, grey+alpha and
palette PNGs, WebP) are composited onto white; greyscale becomes RGB and
16-bit PNGs 8-bit; GIFs and animated WebPs give their first frame. An image of more than
`captioner.data.images.MAX_PIXELS` pixels by its header fails the call with
`InvalidArgumentError` ("image too large") before it is decoded, as does any
undecodable image: one bad image fails its whole batch, where
`captioner.caption` reports it and goes on.

Where the pixels still differ from `captioner.caption` (which uses Pillow):

- EXIF orientation is read from JPEG only: PNG (eXIf) and WebP orientation,
  and XMP-only orientation, are ignored; a JPEG whose markers are corrupt
  before the EXIF segment is not turned, where Pillow may skip the junk.
- GIF transparency: transparent pixels come out black, not white.
- CMYK JPEG: TensorFlow's CMYK-to-RGB conversion differs from Pillow's by up
  to 8 levels.
- BMP: colour-mapped 8-bit BMPs come out as their palette indices in grey,
  1- and 4-bit BMPs do not decode, and a 32-bit BMP's fourth byte is always
  ignored (Pillow reads it as alpha, or other channel orders, when the file
  has bit masks saying so).
- 16-bit greyscale PNGs with a transparent grey level (tRNS).
- Formats other than these five (TIFF, ...) do not decode.
"""

import keras
import tensorflow as tf

from captioner.data.photo_ops import decode_photo
from captioner.data.pipeline import normalize_image, resize_image
from captioner.decoding import decode as decode_lib
from captioner.models.captioner import check_decoding


def export(model, out_dir, beam_size=None, max_length=None, alpha=None, decoding=None):
    """Writes `model` with an image-bytes-to-captions serving signature to `out_dir`.

    Decoding is `decoding` (a `Decoding`), else the model's recorded default
    with `beam_size` and `alpha` where given. The signature returns `captions [B]`
    and `scores [B]` of the best caption; with more than one caption an image
    also `nbest_captions [B, N]`, `nbest_scores [B, N]` and `nbest_log_probs [B, N]`.

    Settings the model cannot decode with (a Transformer's `max_length` past
    its trained one, a negative `alpha`) raise ValueError before anything is written.
    """
    decoding = decoding or model.decoding_settings(beam_size, alpha)
    check_decoding(model.decoder, model.decoder.max_length if max_length is None else max_length, decoding)
    decode_lib.banned_ids(model.tokenizer, decoding.ban_words)  # unknown words refused before anything is written

    size, mode = model.image_size, model.normalization

    def serve(images):
        # The pixels captioner.caption reads (orientation, transparency, pixel limit), then the shared ops.
        pixels = tf.map_fn(lambda data: normalize_image(resize_image(decode_photo(data), size), mode), images,
                           fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32))
        result = model.decode(pixels, decoding, max_length=max_length)
        outputs = {"captions": result["captions"], "scores": result["scores"]}
        if decoding.num_captions > 1:
            outputs.update({key: result[key] for key in ("nbest_captions", "nbest_scores", "nbest_log_probs")})
        return outputs

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(name="serving_default", fn=serve,
                         input_signature=[tf.TensorSpec([None], tf.string, name="images")])
    archive.write_out(out_dir, verbose=False)
    return out_dir
