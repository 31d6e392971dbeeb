"""Typed experiment config, named presets, and command-line overrides.

One flat dataclass holds every field a run needs; a preset is a set of
overrides of its defaults. The resolved config is written into the run folder
as `config.json`, and `Config.from_json` reads it back, rejecting unknown keys.
"""

import argparse
import dataclasses
import difflib
import json
import re
import typing

# The datasets `--dataset` names (read by `captioner.data.datasets.read_splits`).
DATASETS = ("shapes", "coco", "flickr8k", "flickr30k", "imagefolder")


# Greedy validation figures a run can keep its checkpoint on (`Config.checkpoint_metric`).
CHECKPOINT_METRICS = ("cider_d", "nltk_bleu_4")
# Image encoders `--encoder` names (`captioner.models.encoders.BACKBONES` builds them): the from-scratch CNN
# of Shapes, then keras.applications backbones.
ENCODERS = ("small_cnn", "MobileNetV3Small", "MobileNetV3Large", "EfficientNetB0", "EfficientNetV2B0",
            "EfficientNetV2B3", "EfficientNetV2S", "ConvNeXtTiny", "ConvNeXtSmall", "ResNet50", "ResNet152V2",
            "InceptionV3")
DECODERS = ("lstm", "transformer")
PRECISIONS = ("float32", "mixed", "mixed_float16", "mixed_bfloat16")


@dataclasses.dataclass
class Config:
    """Everything that determines a training run.

    Args:
        preset: str, the preset these values started from.
        dataset: str, "shapes", "coco", "flickr8k", "flickr30k" or "imagefolder" (your own captioned images; see
            `captioner.data.datasets`).
        data_root: str or None, dataset root; None writes/reuses Shapes at its default place.
        karpathy_json: str or None, path of Karpathy's split file of the dataset (`dataset_coco.json`,
            `dataset_flickr8k.json`, `dataset_flickr30k.json`).
        captions: str or None, imagefolder: a CSV, TSV or JSONL file of image and caption columns (paths relative
            to it, or absolute) instead of the data root's metadata.jsonl / metadata.csv.
        image_column: str or None, imagefolder: the column of image paths (None: the first of file_name, image,
            image_path, filename, path).
        caption_column: str or None, imagefolder: the column of captions (None: the first of text, caption,
            captions, sentence).
        separator: str or None, imagefolder: the CSV separator, one character (";") or "tab" (None: ",", a tab
            for .tsv files).
        splits_file: str or None, imagefolder: a splits.json that fixes each split's images, as a run writes
            into its folder (None: a training run derives or reads the split and writes RUN/splits.json).
        skip_missing_images: bool, drop captions whose image file is missing instead of failing.
        skip_bad_images: bool, leave out images whose file cannot be decoded (counted in the log and metrics)
            instead of stopping with their names before any training.
        shapes_seed: int, seed of the generated Shapes data.
        shapes_splits: tuple of 3 ints, Shapes train/val/test sizes.
        image_size: int, side of the square encoder input in pixels.
        captions_per_image: int, captions used per image and step; the encoder runs once per image.
        max_length: int, longest caption in tokens (without start/end); longer ones are cut.
        min_count: int, a word needs this many training occurrences to enter the vocabulary.
        cache_images: bool, keep decoded images in memory after the first epoch.
        encoder: str, "small_cnn" or a keras.applications name (e.g. "MobileNetV3Small").
        encoder_weights: str or None, "imagenet", the path of a local weights file of the backbone
            (a keras.applications `.h5` / `.weights.h5` file without its top, for machines without
            internet), or None (random initialisation).
        train_encoder: bool, fine-tune the encoder (True) or keep it frozen.
        feature_dim: int, width D of the region features `[B, P, D]`.
        decoder: str, "lstm" (Show-Attend-Tell) or "transformer".
        embed_dim: int, word embedding width.
        hidden_dim: int, LSTM state width.
        model_dim: int, Transformer width (attention and embeddings; feed-forward is 4x).
        attention_dim: int, width of the LSTM's additive attention.
        num_layers: int, Transformer decoder layers.
        num_heads: int, Transformer attention heads.
        dropout: float, dropout rate in the decoder.
        attention_reg: float, weight of the doubly-stochastic attention penalty (LSTM).
        batch_size: int, images per step (each with `captions_per_image` captions).
        epochs: int, maximum number of epochs.
        steps_per_epoch: int or None, cap on steps per epoch (None: the whole split).
        learning_rate: float, peak Adam learning rate.
        warmup_steps: int, linear warm-up steps before cosine decay.
        clipnorm: float, gradient norm clipping.
        patience: int, epochs without a gain of the validation figure before early stopping.
        checkpoint_metric: str, the greedy validation figure that keeps the best checkpoint and stops training
            early: "cider_d" (CIDEr-D, what self-critical training optimises) or "nltk_bleu_4".
        seed: int, seed of weights, shuffling and caption sampling.
        jit_compile: bool, compile the train step with XLA.
        precision: str, "float32", or a mixed-precision policy: "mixed" (float16 on a GPU,
            bfloat16 otherwise), "mixed_float16" or "mixed_bfloat16". Variables and logits stay float32.
        feature_cache: bool, with a frozen encoder, compute its region grids once, write them to
            TFRecord shards and train from those instead of images.
        feature_cache_dir: str or None, where feature caches live (None: `$CAPTIONER_DATA/feature-cache`,
            default `./data/feature-cache`).
        backup_steps: int, back the training state up every this many steps (and at each epoch end);
            0 backs up at epoch ends only.
        eval_batch_size: int, images per step when generating captions.
        val_images: int, validation uses the first this many images of the val split (its loss, and the
            greedy captions scored each epoch for early stopping): bounds an epoch's validation cost.
        search_images: int, validation images on which the decoding default (beam size, length
            penalty) is chosen by CIDEr-D at the end of training; 0 keeps greedy decoding.
    """

    preset: str = "shapes"
    dataset: str = "shapes"
    data_root: typing.Optional[str] = None
    karpathy_json: typing.Optional[str] = None
    captions: typing.Optional[str] = None
    image_column: typing.Optional[str] = None
    caption_column: typing.Optional[str] = None
    separator: typing.Optional[str] = None
    splits_file: typing.Optional[str] = None
    skip_missing_images: bool = False
    skip_bad_images: bool = False
    shapes_seed: int = 0
    shapes_splits: typing.Tuple[int, int, int] = (8000, 500, 500)
    image_size: int = 96
    captions_per_image: int = 5
    max_length: int = 30
    min_count: int = 1
    cache_images: bool = True
    encoder: str = "small_cnn"
    encoder_weights: typing.Optional[str] = None
    train_encoder: bool = True
    feature_dim: int = 128
    decoder: str = "lstm"
    embed_dim: int = 128
    hidden_dim: int = 256
    model_dim: int = 128
    attention_dim: int = 128
    num_layers: int = 2
    num_heads: int = 4
    dropout: float = 0.1
    attention_reg: float = 1.0
    batch_size: int = 32
    epochs: int = 8
    steps_per_epoch: typing.Optional[int] = None
    learning_rate: float = 2e-3
    warmup_steps: int = 200
    clipnorm: float = 5.0
    patience: int = 3
    checkpoint_metric: str = "cider_d"
    seed: int = 0
    jit_compile: bool = False
    precision: str = "float32"
    feature_cache: bool = False
    feature_cache_dir: typing.Optional[str] = None
    backup_steps: int = 100
    eval_batch_size: int = 100
    val_images: int = 1000
    search_images: int = 500

    def to_json(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, payload):
        if not isinstance(payload, dict):
            raise ValueError(f"a config is a JSON object of settings ({{\"epochs\": 8, ...}}), not a "
                             f"{type(payload).__name__}")
        unknown = sorted(set(payload) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"Unknown config keys: {', '.join(unknown)}")
        values = {}
        for field in dataclasses.fields(cls):
            if field.name in payload:
                values[field.name] = _coerce(field, payload[field.name])
        return cls(**values).validated()

    def replace(self, **changes):
        return dataclasses.replace(self, **changes).validated()

    def validated(self):
        choices = {"dataset": DATASETS, "decoder": DECODERS, "checkpoint_metric": CHECKPOINT_METRICS,
                   "precision": PRECISIONS, "encoder": ENCODERS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        positive = ("image_size", "captions_per_image", "max_length", "min_count", "feature_dim",
                    "embed_dim", "hidden_dim", "model_dim", "attention_dim", "num_layers", "num_heads",
                    "batch_size", "epochs", "eval_batch_size", "val_images")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be at least 1 (or none: the whole split), got {self.steps_per_epoch}")
        for name in ("learning_rate", "clipnorm"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be above 0, got {getattr(self, name)}")
        for name in ("patience", "warmup_steps", "shapes_seed", "seed"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 or more, got {getattr(self, name)}")
        if len(self.shapes_splits) != 3 or min(self.shapes_splits) < 1:
            raise ValueError(f"shapes_splits must be 3 counts of at least 1 (train, val, test), got "
                             f"{' '.join(map(str, self.shapes_splits))}")
        if self.model_dim % self.num_heads:
            raise ValueError(f"model_dim ({self.model_dim}) must be divisible by num_heads ({self.num_heads})")
        if self.encoder_weights is not None and not isinstance(self.encoder_weights, str):
            raise ValueError(f"encoder_weights must be 'imagenet', a weights file or None, got {self.encoder_weights!r}")
        if self.encoder_weights not in (None, "imagenet") and not self.encoder_weights.endswith(".h5"):
            raise ValueError(f"encoder_weights must be 'imagenet', none, or the path of a .h5 weights file, got "
                             f"{self.encoder_weights!r}")
        if self.search_images < 0:
            raise ValueError(f"search_images must be 0 (keep greedy) or more, got {self.search_images}")
        if self.backup_steps < 0:
            raise ValueError(f"backup_steps must be 0 (epoch ends only) or more, got {self.backup_steps}")
        if self.feature_cache and self.train_encoder:
            raise ValueError("feature_cache needs a frozen encoder (--no-train-encoder): "
                             "a fine-tuned encoder's features change every step")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.dataset == "coco" and not self.data_root:
            raise ValueError("dataset 'coco' needs --data-root, the folder holding train2014/ and annotations/")
        if self.dataset.startswith("flickr") and not self.data_root:
            raise ValueError(f"dataset {self.dataset!r} needs --data-root, the folder its images and caption "
                             f"files were unpacked into (see data/README.md)")
        imagefolder = ("captions", "image_column", "caption_column", "separator", "splits_file")
        if self.dataset == "imagefolder" and not (self.data_root or self.captions):
            raise ValueError("dataset 'imagefolder' needs --data-root (a folder with metadata.jsonl or metadata.csv) "
                             "or --captions (a CSV, TSV or JSONL of image and caption columns)")
        given = [name for name in imagefolder if getattr(self, name) is not None]
        if given and self.dataset != "imagefolder":
            raise ValueError(f"{', '.join('--' + n.replace('_', '-') for n in given)} only go with dataset "
                             f"'imagefolder', not {self.dataset!r}")
        if self.separator is not None and not (len(self.separator) == 1 or self.separator.lower() == "tab"):
            raise ValueError(f"separator must be one character (',', ';', '|') or 'tab', got {self.separator!r}")
        return self


def _coerce(field, value):
    """Checks a JSON value against a field's type, turning lists into tuples."""
    kind = field.type
    optional = typing.get_origin(kind) is typing.Union
    if optional:
        if value is None:
            return None
        kind = [t for t in typing.get_args(kind) if t is not type(None)][0]
    if typing.get_origin(kind) is tuple:
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, int) for v in value):
            raise ValueError(f"{field.name} must be a list of integers, got {value!r}")
        return tuple(value)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"{field.name} must be of type {kind.__name__}, got {value!r}")
    return value


# `tf.distribute` strategies `captioner.train --distribute` offers (see `captioner.training.distribute.make_strategy`).
STRATEGIES = ("none", "mirrored", "multi-worker", "tpu")

PRESETS = {
    # The default: Shapes at 96 px, a small CNN trained from scratch. No doubly-stochastic
    # penalty: it asks all 36 regions for attention while a caption names at most 3 objects;
    # 5-epoch LSTM runs scored attention pointing 0.29 (1.0, 8 epochs), 0.48 (0.1), 0.56 (0.0)
    # at equal BLEU-4.
    "shapes": dict(attention_reg=0.0),
    # A smoke test in about a minute. 500 steps: with ~100 the model is still a language model
    # that says the same thing about every image.
    "tiny": dict(shapes_splits=(2000, 100, 100), image_size=64, feature_dim=64, embed_dim=48,
                 hidden_dim=96, model_dim=64, attention_dim=64, num_layers=1, num_heads=2, batch_size=16,
                 epochs=4, patience=4, learning_rate=3e-3, warmup_steps=50, eval_batch_size=100,
                 attention_reg=0.0, search_images=30),
    # MS COCO with an ImageNet MobileNetV3 encoder (frozen) and the attention LSTM.
    "coco-lstm": dict(dataset="coco", image_size=224, encoder="MobileNetV3Large", encoder_weights="imagenet",
                      train_encoder=False, feature_dim=512, embed_dim=512, hidden_dim=512, attention_dim=512,
                      min_count=5, max_length=30, cache_images=False, feature_cache=True, backup_steps=1000,
                      batch_size=64, epochs=20, learning_rate=4e-4, warmup_steps=1000, dropout=0.5,
                      attention_reg=1.0, eval_batch_size=64),
    # MS COCO with the Transformer decoder.
    "coco-transformer": dict(dataset="coco", decoder="transformer", image_size=224, encoder="MobileNetV3Large",
                             encoder_weights="imagenet", train_encoder=False, feature_dim=512,
                             model_dim=512, num_layers=3, num_heads=8, min_count=5, max_length=30,
                             cache_images=False, feature_cache=True, backup_steps=1000, batch_size=64,
                             epochs=20, learning_rate=3e-4, warmup_steps=4000, dropout=0.1, eval_batch_size=64),
    # Flickr8k (6,000 training images) from a frozen ImageNet MobileNetV3 through the feature cache:
    # narrower than the COCO presets and more dropout, as 30,000 captions overfit a 512-wide decoder.
    "flickr8k-lstm": dict(dataset="flickr8k", image_size=224, encoder="MobileNetV3Large", encoder_weights="imagenet",
                          train_encoder=False, feature_dim=256, embed_dim=256, hidden_dim=512, attention_dim=256,
                          min_count=5, max_length=30, cache_images=False, feature_cache=True, backup_steps=200,
                          batch_size=64, epochs=20, patience=4, learning_rate=4e-4, warmup_steps=200,
                          dropout=0.5, attention_reg=1.0, eval_batch_size=64),
    # Flickr8k with a 2-layer Transformer decoder, 256 wide.
    "flickr8k-transformer": dict(dataset="flickr8k", decoder="transformer", image_size=224,
                                 encoder="MobileNetV3Large", encoder_weights="imagenet", train_encoder=False,
                                 feature_dim=256, model_dim=256, num_layers=2, num_heads=4, min_count=5,
                                 max_length=30, cache_images=False, feature_cache=True, backup_steps=200,
                                 batch_size=64, epochs=20, patience=4, learning_rate=3e-4, warmup_steps=500,
                                 dropout=0.3, eval_batch_size=64),
    # Your own captioned images (hundreds to tens of thousands; `--data-root DIR` or `--captions FILE`): the
    # frozen ImageNet MobileNetV3 through the feature cache, narrower than Flickr8k's and more dropout, words
    # seen twice, early stopping after 5 epochs without a gain; batch 32 so that a few hundred images still
    # make several steps an epoch.
    "imagefolder-lstm": dict(dataset="imagefolder", image_size=224, encoder="MobileNetV3Large",
                             encoder_weights="imagenet", train_encoder=False, feature_dim=192, embed_dim=192,
                             hidden_dim=256, attention_dim=192, min_count=2, max_length=30, cache_images=False,
                             feature_cache=True, backup_steps=200, batch_size=32, epochs=30, patience=5,
                             learning_rate=4e-4, warmup_steps=100, dropout=0.6, attention_reg=1.0,
                             eval_batch_size=64),
    # The same with a 2-layer Transformer decoder, 128 wide.
    "imagefolder-transformer": dict(dataset="imagefolder", decoder="transformer", image_size=224,
                                    encoder="MobileNetV3Large", encoder_weights="imagenet", train_encoder=False,
                                    feature_dim=128, model_dim=128, num_layers=2, num_heads=4, min_count=2,
                                    max_length=30, cache_images=False, feature_cache=True, backup_steps=200,
                                    batch_size=32, epochs=30, patience=5, learning_rate=3e-4, warmup_steps=200,
                                    dropout=0.4, eval_batch_size=64),
}


def preset(name, **overrides):
    if name not in PRESETS:
        raise ValueError(f"Unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return Config(preset=name, **{**PRESETS[name], **overrides}).validated()


# Fields whose flags take one of a fixed list of values (encoder names are matched ignoring case).
CHOICES = {"dataset": DATASETS, "encoder": ENCODERS, "decoder": DECODERS, "precision": PRECISIONS,
           "checkpoint_metric": CHECKPOINT_METRICS}


def field_help():
    """Each field's description, from the `Config` docstring's `Args:` (one source for docs and `--help`)."""
    helps, name = {}, None
    for line in Config.__doc__.split("Args:", 1)[1].splitlines():
        match = re.match(r"\s{8}(\w+): (.*)", line)
        if match:
            name, text = match.groups()
            helps[name] = re.sub(r"^(?:str|int|float|bool|tuple of 3 ints)(?: or None)?, ", "", text)
        elif name and line.strip():
            helps[name] += " " + line.strip()
    return {key: text.rstrip(".") for key, text in helps.items()}


def preset_defaults(name):
    """`default: X` for a field's flag: the default preset's value, and where other presets differ."""
    default = getattr(Config(**PRESETS["shapes"]), name)
    others = {}
    for preset_name in PRESETS:
        value = getattr(Config(**PRESETS[preset_name]), name)
        if preset_name != "shapes" and value != default:
            others.setdefault(repr(value), []).append(preset_name)
    text = f"default: {default!r}"
    if others:
        text += "; " + "; ".join(f"{value} in {', '.join(names)}" for value, names in others.items())
    return text


def choice(allowed, name):
    """An argparse type taking one of `allowed`, ignoring case, with a "did you mean" for a typo."""
    def parse(text):
        for value in allowed:
            if value.lower() == text.lower():
                return value
        close = difflib.get_close_matches(text.lower(), [v.lower() for v in allowed], n=1, cutoff=0.5)
        hint = f"; did you mean {next(v for v in allowed if v.lower() == close[0])}?" if close else ""
        raise argparse.ArgumentTypeError(f"unknown {name} {text!r}{hint} (choose from {', '.join(allowed)})")

    parse.__name__ = name
    return parse


def add_arguments(parser):
    """Adds `--preset` and one `--field-name` flag per config field, described from `Config`'s docstring.

    A flag that is not given leaves no attribute on the parsed namespace
    (`argparse.SUPPRESS`), so a flag given as `none` sets its field to None
    instead of counting as absent. Only optional fields accept `none`.
    """
    parser.add_argument("--preset", default="shapes", choices=list(PRESETS),
                        help="named starting config (default: shapes)")
    helps = field_help()
    group = parser.add_argument_group("config fields (each overrides the preset's value)")
    for field in dataclasses.fields(Config):
        if field.name == "preset":
            continue
        flag = "--" + field.name.replace("_", "-")
        kind, optional = field.type, typing.get_origin(field.type) is typing.Union
        if optional:
            kind = [t for t in typing.get_args(kind) if t is not type(None)][0]
        text = f"{helps.get(field.name, '')} ({preset_defaults(field.name)}" + ("; 'none' for None)" if optional else ")")
        common = dict(dest=field.name, default=argparse.SUPPRESS, help=text.replace("%", "%%"))
        if field.name in CHOICES:
            group.add_argument(flag, type=choice(CHOICES[field.name], field.name.replace("_", " ")),
                               metavar="{" + ",".join(CHOICES[field.name]) + "}", **common)
        elif kind is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, **common)
        elif typing.get_origin(kind) is tuple:
            group.add_argument(flag, type=int, nargs=len(typing.get_args(kind)), **common)
        else:
            group.add_argument(flag, type=_parse_optional(kind) if optional else kind, **common)


def field_names():
    return [f.name for f in dataclasses.fields(Config) if f.name != "preset"]


def _parse_optional(kind):
    def parse(text):
        return None if text.lower() == "none" else kind(text)

    parse.__name__ = kind.__name__
    return parse


def from_arguments(args, base=None):
    """The config of `--preset` (or `base`, a `Config`) with every flag that was given applied."""
    overrides = {}
    for field in dataclasses.fields(Config):
        if field.name != "preset" and hasattr(args, field.name):
            value = getattr(args, field.name)
            overrides[field.name] = tuple(value) if isinstance(value, list) else value
    if base is not None:
        return base.replace(**overrides)
    return preset(args.preset, **overrides)


def save(config, path):
    with open(path, "w") as handle:
        json.dump(config.to_json(), handle, indent=2)


def load(path):
    with open(path) as handle:
        return Config.from_json(json.load(handle))
