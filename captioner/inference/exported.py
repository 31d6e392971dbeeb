"""Exported models behind one interface: `load_exported(path)` for a SavedModel, a LiteRT or an ONNX export.

    from captioner.inference.exported import load_exported

    exported = load_exported("exports/shapes-litert")    # the export folder, or the model file in it
    exported.image_size                                   # S: callers resize (see below)
    captions, scores = exported.caption_batch(pixels)     # uint8 [B, S, S, 3] RGB -> B strs, float32 [B]

`python -m captioner.export RUN OUT --format savedmodel|litert|onnx` writes the
folder OUT. Every format's folder holds `export.json`, which says what it is
(format, quantisation, image size, the decoding inside, the run's weights
fingerprint, inputs and outputs); LiteRT and ONNX folders hold one model file,
`model.tflite` or `model.onnx`, and the vocabulary `vocab.txt` beside it (one
token a line, line i is token id i; ids 0-3 are `<pad> <unk> <start> <end>`).

LiteRT and ONNX files take `pixels`, uint8 `[B, S, S, 3]` RGB at the model's
image size, and return `tokens` int32 `[B, L]` (the best caption's ids, the end
token included, 0 after it) and `scores` float32 `[B]` (its log-probability,
length-normalised under beam search with alpha > 0); with more than one caption
an image also `nbest_tokens [B, N, L]`, `nbest_scores [B, N]` and
`nbest_log_probs [B, N]`. Normalisation, the encoder and the decoding search
(greedy or beam, with its constraints) run inside; resizing and turning ids
into words (`detokenize`, with `vocab.txt`) are the caller's. Images are
resized as `captioner.data.pipeline.resize_image` does (bilinear with
antialiasing, then rounded to uint8 here): `pixels_for_export` does both.

A SavedModel folder (no `vocab.txt`: it takes encoded image bytes and returns
words) is run here on PNG bytes of the same uint8 pixels, so all three formats
answer the same question. See docs/serving.md for apps.
"""

import hashlib
import json
import os

import numpy as np

INFO = "export.json"
VOCABULARY = "vocab.txt"
FORMATS = ("savedmodel", "litert", "onnx")
MODEL_FILES = {"litert": "model.tflite", "onnx": "model.onnx"}
QUANTIZATIONS = ("float16", "dynamic-int8")
NAMES = {"savedmodel": "SavedModel", "litert": "LiteRT", "onnx": "ONNX"}
PAD_ID, UNK_ID, START_ID, END_ID = range(4)  # captioner.data.tokenizer's, fixed


class ExportError(ValueError):
    """An export that cannot be written (a decoding the format cannot carry) or read; the message says why."""


# ---------------------------------------------------------------- what a format can carry


def unsupported(format_name, decoding, quantize=None):
    """Why `format_name` cannot carry `decoding` (a `Decoding`) or `quantize`, or None when it can.

    What converts was found by converting (see docs/serving.md): greedy and beam search with every
    constraint (min length, no repeated n-grams, repetition penalty, banned words) and n-best convert to
    LiteRT's built-in ops and to ONNX. Sampling is refused: it draws from TensorFlow's random generators,
    which neither runtime reproduces, and a seeded draw needs the Flex delegate in LiteRT. Whatever else
    the converter itself refuses (diverse beam search in LiteRT) is reported by the export, with its ops.
    """
    if format_name not in FORMATS:
        return f"unknown format {format_name!r}; choose one of {', '.join(FORMATS)}"
    if quantize is not None:
        if format_name != "litert":
            return f"--quantize is for --format litert; a {NAMES[format_name]} export keeps float32 weights"
        if quantize not in QUANTIZATIONS:
            return f"unknown quantisation {quantize!r}; choose one of {', '.join(QUANTIZATIONS)}"
    if format_name != "savedmodel" and decoding.sample:
        runtime = ("LiteRT does not reproduce (and a seeded draw, tf.StatelessMultinomial, is no built-in LiteRT "
                   "op)" if format_name == "litert" else "ONNX Runtime does not reproduce")
        return (f"{'an' if format_name == 'onnx' else 'a'} {NAMES[format_name]} export cannot carry sampling "
                f"({decoding.describe()}): its draws come from TensorFlow's random generators, which {runtime}, so "
                "its captions could not be checked against captioner.caption's; export a search (greedy or "
                "--beam-size) instead, or a SavedModel")
    return None


# ---------------------------------------------------------------- the graph the files hold


class _IdsOnly:
    """A tokenizer's words without its string tables: `decode` runs unchanged and no string op reaches the graph.

    `decode` turns ids into captions at its end; with this stand-in those captions are placeholders that
    no output uses, so the converters prune them (the tokenizer's hash table and string ops would need
    LiteRT's Flex delegate, and tf2onnx cannot freeze its captured word list).
    """

    def __init__(self, tokenizer):
        self.words = tokenizer.words
        self.vocabulary_size = tokenizer.vocabulary_size

    def detokenize(self, ids):
        import tensorflow as tf

        return tf.zeros(tf.shape(ids)[:1], tf.int32)


def pixels_function(model, decoding, max_length=None):
    """The `tf.function` the LiteRT and ONNX files hold: `pixels` uint8 `[B, S, S, 3]` -> a dict of ids and scores.

    The same search as every other caption path (`captioner.decoding.decode.decode`, through the model's
    decoder), with normalisation and the encoder in front; see the module docstring for the outputs.
    """
    import tensorflow as tf

    from captioner.data.pipeline import normalize_image
    from captioner.decoding import decode as decode_lib
    from captioner.models.captioner import check_decoding

    max_length = model.decoder.max_length if max_length is None else int(max_length)
    check_decoding(model.decoder, max_length, decoding)
    tokenizer = _IdsOnly(model.tokenizer)
    decode_lib.banned_ids(tokenizer, decoding.ban_words)  # unknown words refused before anything is traced
    size, mode = model.image_size, model.normalization
    keys = ("tokens", "scores") + (("nbest_tokens", "nbest_scores", "nbest_log_probs")
                                   if decoding.num_captions > 1 else ())

    @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.uint8, name="pixels")])
    def serving_default(pixels):
        features = model.encoder(normalize_image(tf.cast(pixels, tf.float32), mode), training=False)
        result = decode_lib.decode(model.decoder, tokenizer, features, decoding, max_length + 1)
        return {key: result[key] for key in keys}

    return serving_default


def make_partial_folder(out_dir):
    """A new empty folder beside `out_dir` to build the export in (renamed to `out_dir` when complete), with
    the permissions a new folder gets (`tempfile.mkdtemp` makes it private)."""
    import tempfile

    parent = os.path.dirname(os.path.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    partial = tempfile.mkdtemp(prefix=f".{os.path.basename(os.path.abspath(out_dir))}.partial-", dir=parent)
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(partial, 0o777 & ~mask)
    return partial


class quiet_tensorflow_warnings:
    """A block in which TensorFlow's Python logger says only errors: freezing a function of a model with a
    tokenizer warns that its table initialiser cannot be serialised, which does not matter here (the
    table is pruned)."""

    def __enter__(self):
        import tensorflow as tf

        self.logger = tf.get_logger()
        self.level = self.logger.level
        self.logger.setLevel("ERROR")

    def __exit__(self, *exc):
        self.logger.setLevel(self.level)


def write_info(out_dir, model, format_name, decoding, max_length=None, quantize=None, **extra):
    """Writes `export.json` into `out_dir`: what the export is, for `load_exported` and for people."""
    from captioner import __version__
    from captioner.inference.captioning import model_fingerprint

    max_length = model.decoder.max_length if max_length is None else int(max_length)
    size = model.image_size
    info = {
        "format": format_name,
        "quantize": quantize,
        "model_file": MODEL_FILES.get(format_name),
        "vocabulary": VOCABULARY if format_name in MODEL_FILES else None,
        "image_size": size,
        "normalization": model.normalization,
        "decoding": {"beam_size": decoding.beam_size, "alpha": decoding.alpha, **decoding.to_json()},
        "decoding_described": decoding.describe(),
        "max_length": max_length,
        "model": model_fingerprint(model),
        "trained_on": model.trained_on,
        "captioner_version": __version__,
    }
    if format_name in MODEL_FILES:
        info["inputs"] = {"pixels": {"dtype": "uint8", "shape": [None, size, size, 3],
                                     "meaning": f"RGB pixels 0-255, resized to {size}x{size} by the caller"}}
        info["outputs"] = {"tokens": {"dtype": "int32", "shape": [None, max_length + 1],
                                      "meaning": "the best caption's token ids, the end token included, 0 after"},
                           "scores": {"dtype": "float32", "shape": [None],
                                      "meaning": "its log-probability (length-normalised under beam search)"}}
        if decoding.num_captions > 1:
            count = decoding.num_captions
            info["outputs"].update({
                "nbest_tokens": {"dtype": "int32", "shape": [None, count, max_length + 1],
                                 "meaning": "the n best distinct captions' ids, best first"},
                "nbest_scores": {"dtype": "float32", "shape": [None, count], "meaning": "their scores"},
                "nbest_log_probs": {"dtype": "float32", "shape": [None, count],
                                    "meaning": "their log-probabilities"}})
        info["special_tokens"] = {"<pad>": PAD_ID, "<unk>": UNK_ID, "<start>": START_ID, "<end>": END_ID}
    info.update(extra)
    with open(os.path.join(out_dir, INFO), "w") as handle:
        json.dump(info, handle, indent=2)
    return info


# ---------------------------------------------------------------- reading an export


def detokenize(tokens, words):
    """Token ids `[..., L]` -> captions `[...]` (str), as `CaptionTokenizer.detokenize` makes them in graph.

    Cut at the first end token; padding and the start token dropped; an unknown word stays `<unk>`.
    """
    tokens = np.asarray(tokens)
    flat = tokens.reshape(-1, tokens.shape[-1])
    captions = []
    for row in flat:
        kept = []
        for token in row.tolist():
            if token == END_ID:
                break
            if token > END_ID or token == UNK_ID:
                kept.append(words[token])
        captions.append(" ".join(kept))
    return np.array(captions, dtype=object).reshape(tokens.shape[:-1])


def read_vocabulary(path):
    """The tokens of `vocab.txt`, line i being token id i."""
    with open(path, encoding="utf-8") as handle:
        words = [line.rstrip("\n") for line in handle if line.strip()]
    if words[:4] != ["<pad>", "<unk>", "<start>", "<end>"]:
        raise ExportError(f"{path} is not a captioner vocabulary (its first lines are not <pad> <unk> <start> <end>)")
    return words


def pixels_for_export(resized):
    """Resized float pixels `[..., S, S, 3]` in 0..255 (`captioner.data.pipeline.resize_image`) -> uint8, rounded."""
    return np.rint(np.clip(np.asarray(resized, np.float32), 0, 255)).astype(np.uint8)


def read_info(folder):
    """`(info, problem)`: the folder's `export.json` as a dict (`{}` where there is none), or None and why it
    cannot be read (every export.json names its format)."""
    path = os.path.join(folder, INFO)
    if not os.path.exists(path):
        return {}, None
    try:
        with open(path) as handle:
            info = json.load(handle)
        info["format"]
        return info, None
    except (OSError, ValueError, KeyError, TypeError) as error:
        return None, f"{type(error).__name__}: {error}"


def locate(path):
    """`(format, folder, model_path)` of an export given as its folder or its model file, or None if `path` is none.

    A folder is an export when it holds `export.json`, `saved_model.pb`, `model.tflite` or `model.onnx`;
    a file when it ends in `.tflite` or `.onnx` (or is a `saved_model.pb`).
    """
    if os.path.isfile(path):
        name = os.path.basename(path)
        folder = os.path.dirname(os.path.abspath(path))
        if name.endswith(".tflite"):
            return "litert", folder, path
        if name.endswith(".onnx"):
            return "onnx", folder, path
        if name == "saved_model.pb":
            return "savedmodel", folder, folder
        return None
    if not os.path.isdir(path):
        return None
    info, _ = read_info(path)  # a damaged one: found by its model file below, and refused by problem_with
    if info:
        format_name = info["format"]
        if format_name in MODEL_FILES:
            return format_name, path, os.path.join(path, info.get("model_file") or MODEL_FILES[format_name])
        return format_name, path, path
    if os.path.exists(os.path.join(path, "saved_model.pb")):
        return "savedmodel", path, path
    for format_name, name in MODEL_FILES.items():
        if os.path.exists(os.path.join(path, name)):
            return format_name, path, os.path.join(path, name)
    return None


def is_export(path):
    return locate(path) is not None


def problem_with(path, args=None):
    """What is wrong with captioning with the export at `path` (and the command's `args`), or None.

    The decoding is fixed inside an export, so the decoding flags are refused, and an export returns no
    attention, so `--attention-plots` is too.
    """
    found = locate(path)
    if found is None:
        return f"{path} is not an export of python -m captioner.export"
    format_name, folder, model_path = found
    info, damaged = read_info(folder)
    if damaged:
        return (f"{os.path.join(folder, INFO)} is damaged ({damaged}): it records the decoding and image size of "
                "the export; export again (python -m captioner.export)")
    if format_name not in FORMATS:
        return f"{os.path.join(folder, INFO)} names an unknown format {format_name!r}"
    if not os.path.exists(model_path):
        return f"{model_path}: no such file"
    if format_name in MODEL_FILES and not os.path.exists(os.path.join(folder, VOCABULARY)):
        return f"{path}: its vocabulary {os.path.join(folder, VOCABULARY)} is missing (it is written beside the model)"
    if format_name == "savedmodel" and not info:
        return (f"{folder} is a SavedModel without {INFO} (exported before it was written), so its image size is "
                "not known: export it again with python -m captioner.export")
    if args is not None:
        from captioner.decoding import arguments as decoding_arguments

        given = [f"--{name.replace('_', '-')}" for name in ("beam_size", "alpha", "max_length")
                 if getattr(args, name, None) is not None]
        given += [f"--{name.replace('_', '-')}" for name in decoding_arguments.controls(args)]
        if given:
            described = info.get("decoding_described") or "see its export.json"
            return (f"{', '.join(given)}: an export's decoding is fixed inside it ({described}); export the "
                    "run again with those flags, or caption with the run folder")
        if getattr(args, "attention_plots", None):
            return "--attention-plots needs a run folder: an export returns captions and scores, not attention"
    return None


def load_exported(path, num_threads=None):
    """The export at `path` (its folder, or its model file) as an `ExportedCaptioner`.

    Raises ExportError when it is not one or its runtime is missing (LiteRT: `ai-edge-litert`; ONNX:
    `onnxruntime`; both in the `export` extra: `pip install -e ".[export]"`).
    """
    problem = problem_with(path)
    if problem:
        raise ExportError(problem)
    format_name, folder, model_path = locate(path)
    if format_name == "litert":
        from captioner.inference.litert import LiteRTCaptioner as kind
    elif format_name == "onnx":
        from captioner.inference.onnx_export import ONNXCaptioner as kind
    else:
        kind = SavedModelCaptioner
    return kind(folder, model_path, num_threads=num_threads)


class ExportedCaptioner:
    """An export, captioning uint8 pixels. Subclasses run one format (`_run`: pixels -> dict of arrays).

    Attributes:
        format: "savedmodel", "litert" or "onnx".
        path: the model file (LiteRT, ONNX) or folder (SavedModel).
        info: `export.json` (a LiteRT or ONNX file without it is read from the file and `vocab.txt` alone).
        image_size: S of the `[B, S, S, 3]` pixels.
        decoding: the `Decoding` inside (from `export.json`; greedy assumed without it).
        num_captions: N captions an image.
    """

    format = None

    def __init__(self, folder, path, num_threads=None):
        from captioner.decoding.settings import Decoding

        self.folder, self.path, self.num_threads = folder, path, num_threads
        self.info, damaged = read_info(folder)
        if damaged:  # load_exported has said so already; a caller of the class directly
            raise ExportError(f"{os.path.join(folder, INFO)} is damaged ({damaged}): export again")
        self.decoding_recorded = bool(self.info.get("decoding"))
        self.decoding = Decoding.from_json(self.info.get("decoding") or {})
        self.words = read_vocabulary(os.path.join(folder, VOCABULARY)) if self.format in MODEL_FILES else None
        try:
            self._open()
        except ExportError:
            raise
        except Exception as error:  # a truncated or damaged file: the runtimes raise their own kinds
            raise ExportError(f"{path} cannot be read as a {NAMES[self.format]} export ({type(error).__name__}: "
                              f"{str(error).strip().splitlines()[0] if str(error).strip() else 'no detail'}); "
                              "it may be truncated or damaged: export again (python -m captioner.export)") from None
        self.image_size = self.info.get("image_size") or self._input_size()
        self.max_length = self.info.get("max_length")
        self.normalization = self.info.get("normalization")  # applied inside: callers give uint8 pixels

    def _open(self):
        raise NotImplementedError

    def _input_size(self):
        raise NotImplementedError

    def _run(self, pixels):
        raise NotImplementedError

    @property
    def num_captions(self):
        return self.decoding.num_captions

    def describe(self):
        """"LiteRT export (float16) /x/model.tflite, beam 3, length penalty alpha 0.6"."""
        quantize = self.info.get("quantize")
        return (f"{NAMES[self.format]} export{f' ({quantize})' if quantize else ''} {self.path}, "
                f"{self.info.get('decoding_described') or 'decoding not recorded'}")

    def check_pixels(self, pixels):
        """`pixels` as a uint8 `[B, S, S, 3]` array, or ValueError saying what is expected."""
        pixels = np.asarray(pixels)
        size = self.image_size
        if pixels.dtype != np.uint8 or pixels.ndim != 4 or pixels.shape[1:] != (size, size, 3):
            raise ValueError(f"pixels of {pixels.dtype} {list(pixels.shape)}: this export takes uint8 [B, {size}, "
                             f"{size}, 3] RGB 0-255, resized by the caller (exported.pixels_for_export("
                             f"captioner.data.pipeline.resize_image(image, {size})))")
        return pixels

    def generate(self, pixels, max_length=None, decoding=None):
        """`Captioner.generate`'s dict for uint8 pixels, as NumPy: `captions [B]` (UTF-8 bytes), `scores [B]`,
        with n-best `nbest_captions [B, N]`, `nbest_scores`, `nbest_log_probs`. The decoding and length are the
        export's: another `max_length` or `decoding` is refused (ValueError)."""
        if max_length not in (None, self.max_length):
            raise ValueError(f"this export decodes at most {self.max_length} words; export again for another length")
        if decoding not in (None, self.decoding):
            raise ValueError(f"this export decodes with {self.decoding.describe()}; export again for another decoding")
        pixels = self.check_pixels(pixels)
        if not len(pixels):
            return {"captions": np.zeros([0], object), "scores": np.zeros([0], np.float32)}
        return self._run(pixels)

    def decoding_settings(self, beam_size=None, alpha=None, **controls):
        """The decoding inside the export (`Captioner.decoding_settings` without changes); changes are refused."""
        if beam_size is not None or alpha is not None or any(v is not None for v in controls.values()):
            raise ValueError(f"this export decodes with {self.decoding.describe()}; export again for another decoding")
        return self.decoding

    def caption_batch(self, pixels):
        """`(captions, scores)`: the best caption (str) and its score of each image of uint8 `[B, S, S, 3]` pixels."""
        result = self.generate(pixels)
        return [c.decode("utf-8") for c in result["captions"]], np.asarray(result["scores"], np.float32)

    def _from_tokens(self, outputs):
        """The `generate` dict of a LiteRT or ONNX file's outputs (ids made words with `vocab.txt`)."""
        encode = np.vectorize(lambda text: text.encode("utf-8"), otypes=[object])
        result = {"tokens": outputs["tokens"], "scores": np.asarray(outputs["scores"], np.float32),
                  "captions": encode(detokenize(outputs["tokens"], self.words))}
        if "nbest_tokens" in outputs:
            result["nbest_captions"] = encode(detokenize(outputs["nbest_tokens"], self.words))
            result["nbest_scores"] = np.asarray(outputs["nbest_scores"], np.float32)
            result["nbest_log_probs"] = np.asarray(outputs["nbest_log_probs"], np.float32)
        return result

    def source(self):
        """What determines its captions, for a results file's `OUTPUT.source.json` (see `captioning.describe_source`).

        The run's weights fingerprint with the format and quantisation: results of the run and of its exports are
        not resumed one with another (a resume compares the keys the new source has, and "model" differs).
        """
        decoding = self.decoding
        quantize = self.info.get("quantize")
        model = f"{self.info.get('model') or _file_digest(self.path)} {self.format}{f' {quantize}' if quantize else ''}"
        if not self.decoding_recorded:  # a file copied without export.json: its decoding is not known here
            return {"model": model, "format": self.format, "quantize": quantize, "decoding": "not recorded"}
        return {"model": model, "format": self.format, "quantize": quantize, "beam_size": decoding.beam_size,
                "alpha": decoding.alpha, "max_length": self.max_length, **decoding.to_json()}


def _file_digest(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


class SavedModelCaptioner(ExportedCaptioner):
    """A SavedModel of `captioner.inference.savedmodel`, fed PNG bytes of the pixels (decoded and resized to the
    same size inside, which leaves them as they are)."""

    format = "savedmodel"

    def _open(self):
        import tensorflow as tf

        self._serve = tf.saved_model.load(self.path).signatures["serving_default"]

    def _input_size(self):
        raise ExportError(f"{self.folder} has no {INFO}: its image size is not known")

    def _run(self, pixels):
        import tensorflow as tf

        data = tf.stack([tf.io.encode_png(image) for image in pixels])
        return {key: value.numpy() for key, value in self._serve(images=data).items()}
