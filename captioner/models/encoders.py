"""Image encoders: a CNN backbone turned into a grid of region features `[B, P, D]`."""

import os

import keras
import tensorflow as tf

from captioner.layers.position import PositionEmbedding

# name -> (keras.applications constructor name, pixel normalisation it expects). "raw" backbones take
# 0..255 pixels and normalise inside the model (MobileNetV3, EfficientNet(V2) and ConvNeXt carry their own
# rescaling / ImageNet normalisation layers); the others need the pipeline's `normalize_image` mode.
# Region grids at 224 px (P = h x w, C): MobileNetV3Large 7x7x960, EfficientNetV2B0 7x7x1280,
# EfficientNetV2S 7x7x1280, ConvNeXtTiny 7x7x768, ResNet152V2 7x7x2048, InceptionV3 5x5x2048.
BACKBONES = {  # the names of `captioner.config.ENCODERS`, in its order
    "small_cnn": (None, "unit"),
    "MobileNetV3Small": ("MobileNetV3Small", "raw"),
    "MobileNetV3Large": ("MobileNetV3Large", "raw"),
    "EfficientNetB0": ("EfficientNetB0", "raw"),
    "EfficientNetV2B0": ("EfficientNetV2B0", "raw"),
    "EfficientNetV2B3": ("EfficientNetV2B3", "raw"),
    "EfficientNetV2S": ("EfficientNetV2S", "raw"),
    "ConvNeXtTiny": ("ConvNeXtTiny", "raw"),
    "ConvNeXtSmall": ("ConvNeXtSmall", "raw"),
    "ResNet50": ("ResNet50", "caffe"),
    "ResNet152V2": ("ResNet152V2", "tf"),
    "InceptionV3": ("InceptionV3", "tf"),
}

# Constructors whose built-in preprocessing is optional: kept on, so they take 0..255 pixels ("raw").
_OWN_PREPROCESSING = ("MobileNetV3", "EfficientNetV2", "ConvNeXt")


def normalization_for(backbone):
    """The pixel normalisation (`captioner.data.pipeline.normalize_image` mode) of a backbone."""
    if backbone not in BACKBONES:
        raise ValueError(f"Unknown encoder {backbone!r}; choose one of {', '.join(BACKBONES)}")
    return BACKBONES[backbone][1]


def small_cnn(image_size, name="small_cnn"):
    """Four stride-2 conv blocks: `[B, S, S, 3]` -> `[B, S/16, S/16, 128]`, for Shapes.

    GroupNorm, not BatchNorm: with batch statistics this CNN learned features
    that its moving averages did not reproduce at inference (validation token
    accuracy 0.35 against 0.89 on the same weights), and captions should not
    depend on which images share a batch.
    """
    inputs = keras.Input((image_size, image_size, 3))
    x = inputs
    for filters in (32, 64, 96, 128):
        x = keras.layers.Conv2D(filters, 3, strides=2, padding="same", use_bias=False)(x)
        x = keras.layers.GroupNormalization(groups=8)(x)
        x = keras.layers.ReLU()(x)
    return keras.Model(inputs, x, name=name)


class EncoderWeightsError(ValueError):
    """Pretrained encoder weights that cannot be had; the message names the fix."""


def build_backbone(backbone, image_size, weights=None):
    """A CNN without its classifier, from `BACKBONES`.

    Args:
        weights: None, "imagenet" (downloaded by keras.applications on first use),
            or the path of a local weights file of the same backbone without its top.
    """
    constructor, _ = BACKBONES.get(backbone, (None, None))
    if backbone == "small_cnn":
        if weights is not None:
            raise ValueError("small_cnn is trained from scratch: it has no pretrained weights")
        return small_cnn(image_size)
    if constructor is None:
        raise ValueError(f"Unknown encoder {backbone!r}; choose one of {', '.join(BACKBONES)}")
    if weights not in (None, "imagenet") and not os.path.isfile(weights):
        raise EncoderWeightsError(f"Encoder weights file {weights} does not exist")
    kwargs = dict(include_top=False, weights=weights, input_shape=(image_size, image_size, 3))
    if backbone.startswith(_OWN_PREPROCESSING):
        kwargs["include_preprocessing"] = True
    try:
        return getattr(keras.applications, constructor)(**kwargs)
    except Exception as error:  # keras.utils.get_file raises a bare Exception on a failed download
        if weights != "imagenet" or not _is_download_failure(error):
            raise
        raise EncoderWeightsError(
            f"Could not download the ImageNet weights of {backbone} ({_first_line(error)}). Without internet, "
            f"pass --encoder-weights none (random initialisation) or --encoder-weights FILE, a {backbone} "
            "weights file without its top (the no-top .h5 file keras.applications downloads, or the .weights.h5 "
            "of a saved backbone), or put the downloaded file in Keras' cache folder, models/ under $KERAS_HOME "
            "(default ~/.keras)") from None


def check_weights(backbone, image_size, weights):
    """Fails now, before a run writes anything, if `weights` cannot be had (EncoderWeightsError).

    "imagenet" is fetched into Keras' cache by building the backbone once;
    a file must exist. The backbone built here is thrown away.
    """
    if weights is not None and backbone != "small_cnn":
        build_backbone(backbone, image_size, weights)


def _is_download_failure(error):
    import urllib.error

    return isinstance(error, (urllib.error.URLError, ConnectionError, TimeoutError)) or "URL fetch failure" in str(error)


def _first_line(error):
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:200]


@keras.saving.register_keras_serializable(package="captioner")
class ImageEncoder(keras.layers.Layer):
    """`[B, S, S, 3]` normalised images -> region features `[B, P, D]`.

    The backbone's last feature map `[B, h, w, C]` is flattened to `P = h * w`
    regions, projected to `D`, layer-normalised, and given a learned position
    embedding so that decoders know where each region is.

    Args:
        backbone: str, a key of `BACKBONES`.
        image_size: int, input side S.
        feature_dim: int, output width D.
        weights: str or None, "imagenet" or a local weights file to start from pretrained weights. Only
            used when the encoder is first built; a saved model carries its own.
        trainable_backbone: bool, fine-tune the backbone (False keeps it frozen,
            batch-norm statistics included).
    """

    def __init__(self, backbone="small_cnn", image_size=96, feature_dim=128, weights=None,
                 trainable_backbone=True, **kwargs):
        super().__init__(**kwargs)
        self.backbone_name = backbone
        self.image_size = image_size
        self.feature_dim = feature_dim
        self.trainable_backbone = trainable_backbone
        self.normalization = normalization_for(backbone)
        self.backbone = build_backbone(backbone, image_size, weights)
        self.backbone.trainable = trainable_backbone
        grid = self.backbone.output_shape
        self.grid_shape = (grid[1], grid[2])
        self.num_regions = grid[1] * grid[2]
        self.projection = keras.layers.Dense(feature_dim, name="projection")
        self.norm = keras.layers.LayerNormalization(name="norm")
        self.positions = PositionEmbedding(self.num_regions, name="region_positions")

    def build(self, input_shape):
        self.projection.build((None, self.num_regions, self.region_channels))
        self.norm.build((None, self.num_regions, self.feature_dim))
        self.positions.build((None, self.num_regions, self.feature_dim))

    @property
    def region_channels(self):
        """C, the width of the backbone's regions (what a feature cache stores)."""
        return self.backbone.output_shape[-1]

    def regions(self, images, training=None):
        """The backbone's last feature map as regions: `[B, S, S, 3]` -> `[B, P, C]`."""
        grid = self.backbone(images, training=training if self.trainable_backbone else False)
        return tf.reshape(grid, [-1, self.num_regions, grid.shape[-1]])

    def head(self, regions):
        """Backbone regions `[B, P, C]` -> region features `[B, P, D]` (projection, norm, positions)."""
        return self.positions(self.norm(self.projection(regions)))

    def call(self, images, training=None):
        return self.head(self.regions(images, training=training))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_regions, self.feature_dim)

    def get_config(self):
        return {**super().get_config(), "backbone": self.backbone_name, "image_size": self.image_size,
                "feature_dim": self.feature_dim, "weights": None, "trainable_backbone": self.trainable_backbone}
