"""U-Net (Ronneberger, Fischer, Brox, MICCAI 2015), as released in u-net-release-2015-10-02 (phseg_v5-train.prototxt).

Contracting path: per level two 3x3 convolutions + ReLU (unpadded) and 2x2/2
max pooling, with 64, 128, 256, 512 and 1024 channels; dropout 0.5 after the
last two levels ("drop-out layers at the end of the contracting path", the
release's ``dropout_d3c`` and ``dropout_d4c``). Expanding path: per level a
2x2/2 up-convolution halving the channels (+ ReLU, as released), concatenation
with the contracting features centre-cropped to its size, and two 3x3
convolutions + ReLU. A 1x1 convolution gives the class scores. On a 572x572
tile the scores are 388x388; with 1 input channel and 2 classes the network
has 31,030,658 parameters.

The models take whole images and return scores of the image's size. With
``padding="valid"`` (the paper's network) they do what the paper does at the
borders, the overlap-tile strategy: the missing context is extrapolated by
mirroring the image (:class:`MirrorPadToValid`, 92 pixels on each side, plus at
the bottom/right what makes the tile size valid), and the scores are cropped
to the image. ``padding="same"`` pads every convolution instead (a common
variant, not the paper's): the image is zero-padded to a multiple of 16 and
the scores cropped back.

Layer names are the release's: ``conv_d0a-b``, ``conv_d0b-c``,
``pool_d0c-1a``, ..., ``dropout_d3c``, ``conv_d4a-b``, ``conv_d4b-c``,
``dropout_d4c``, ``upconv_d4c_u3a``, ``crop_d3c-d3cc``,
``concat_d3cc_u3a-b``, ``conv_u3b-c``, ``conv_u3c-d``, ``upconv_u3d_u2a``,
..., ``conv_u0c-d``, ``conv_u0d-score``.
"""

from __future__ import annotations

from typing import Sequence

import keras
from keras import layers, ops

from fcn_keras.models.family_model import FamilyModel, check_alpha, width
from fcn_keras.models.layers import CropToReference, PadToMultiple
from fcn_keras.palette import IGNORE_LABEL

CHANNELS: tuple[int, ...] = (64, 128, 256, 512, 1024)
"""Channels of the contracting path's levels 0 ... 4 (the expanding path mirrors 512 ... 64)."""
MARGIN = 92
"""Pixels the valid network loses on each side: 572 -> 388 is 2 x 92."""
VALID_REMAINDER = 4
"""A valid tile is ``16 k + 4 + 2 x 92`` pixels (k >= 0): every pooling sees an even size; its scores are ``16 k + 4``."""
CROP_OFFSETS: dict[int, int] = {3: 4, 2: 16, 1: 40, 0: 88}
"""Centre-crop offset of each level's contracting features (the same for every valid tile size)."""
PADDINGS = ("valid", "same")


def valid_tile_sizes(count: int = 4) -> list[tuple[int, int]]:
    """The first ``count`` valid ``(tile, scores)`` sizes of the unpadded network: ``(16k + 188, 16k + 4)``.

    Example:
        >>> valid_tile_sizes(3), (572, 388) in valid_tile_sizes(30)
        ([(188, 4), (204, 20), (220, 36)], True)
    """
    return [(16 * k + VALID_REMAINDER + 2 * MARGIN, 16 * k + VALID_REMAINDER) for k in range(count)]


@keras.saving.register_keras_serializable(package="fcn_keras")
class MirrorPadToValid(keras.layers.Layer):
    """Mirrors an image by ``margin`` pixels on each side and, at the bottom/right, up to a valid tile size.

    The output is ``H + 2 margin + e`` high, with ``e`` in ``[0, multiple)`` the
    least making ``H + e`` equal ``remainder`` modulo ``multiple`` (likewise the
    width). Mirroring is NumPy's ``"reflect"`` (the edge row is not repeated),
    applied periodically, so images smaller than the margin (down to 1 pixel)
    are extended too: row ``-i`` is row ``i``, row ``H - 1 + i`` is row ``H - 1 - i``,
    and so on. Implemented as a gather of computed row and column indices.

    Example:
        >>> import numpy as np
        >>> x = np.arange(3.0).reshape(1, 3, 1, 1)
        >>> keras.ops.convert_to_numpy(MirrorPadToValid(2, 4, 1)(x))[0, :, 0, 0].tolist()
        [2.0, 1.0, 0.0, 1.0, 2.0, 1.0, 0.0, 1.0, 2.0]
    """

    def __init__(self, margin: int = MARGIN, multiple: int = 16, remainder: int = VALID_REMAINDER, **kwargs):
        super().__init__(**kwargs)
        for key, value, low in (("margin", margin, 0), ("multiple", multiple, 1), ("remainder", remainder, 0)):
            if isinstance(value, bool) or int(value) != value or value < low:
                raise ValueError(f"MirrorPadToValid: {key} must be an integer >= {low}, got {value!r}")
        self.margin, self.multiple, self.remainder = int(margin), int(multiple), int(remainder) % int(multiple)

    def _indices(self, size):
        extra = (self.remainder - size % self.multiple + self.multiple) % self.multiple
        period = ops.maximum(2 * (size - 1), 1)
        index = ops.arange(-self.margin, size + self.margin + extra, dtype="int32")
        # Shifted by whole periods to be non-negative first: converters turn FloorMod into a truncating Mod.
        index = (index + period * (ops.floor_divide(self.margin, period) + 1)) % period
        return ops.where(index < size, index, period - index)

    def call(self, inputs):
        shape = ops.shape(inputs)
        # The sizes stay as ops.shape gives them: Python ints where static (JAX traces need them concrete).
        x = ops.take(inputs, self._indices(shape[1]), axis=1)
        return ops.take(x, self._indices(shape[2]), axis=2)

    def compute_output_shape(self, input_shape):
        def padded(size):
            if size is None:
                return None
            return size + 2 * self.margin + (self.remainder - size % self.multiple) % self.multiple

        return (input_shape[0], padded(input_shape[1]), padded(input_shape[2]), input_shape[3])

    def get_config(self):
        return {**super().get_config(), "margin": self.margin, "multiple": self.multiple, "remainder": self.remainder}


def check_padding(padding: str) -> str:
    """``padding`` if it is ``"valid"`` or ``"same"``, else a ``ValueError`` naming the argument.

    Example:
        >>> check_padding("valid")
        'valid'
    """
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {list(PADDINGS)}, got {padding!r}")
    return padding


def unet_tile(x, num_classes: int, alpha: float = 1.0, padding: str = "valid"):
    """The released network on ``x``: a tile (``(16k + 188)`` pixels for ``"valid"``) to its class scores.

    With ``padding="valid"`` the scores are 184 pixels smaller than ``x``
    (:func:`valid_tile_sizes`); with ``"same"``, ``x`` must be a multiple of 16
    and the scores have its size. This is the network alone, for any number of
    input channels (the paper's has 1); the models wrap it to take whole RGB images.

    Example:
        >>> tile = keras.Input((572, 572, 1))
        >>> tuple(unet_tile(tile, 2, alpha=1 / 16).shape)
        (None, 388, 388, 2)
    """
    check_padding(padding)

    def conv(y, filters, name):
        return layers.Conv2D(filters, 3, padding=padding, activation="relu", kernel_initializer="he_normal",
                             name=name)(y)

    features = []
    for level, channels in enumerate(CHANNELS):
        x = conv(x, width(channels, alpha), f"conv_d{level}a-b")
        x = conv(x, width(channels, alpha), f"conv_d{level}b-c")
        if level >= 3:
            x = layers.Dropout(0.5, name=f"dropout_d{level}c")(x)
        if level < len(CHANNELS) - 1:
            features.append(x)
            x = layers.MaxPooling2D(2, name=f"pool_d{level}c-{level + 1}a")(x)
    source = "d4c"
    for level in (3, 2, 1, 0):
        channels = width(CHANNELS[level], alpha)
        x = layers.Conv2DTranspose(channels, 2, strides=2, activation="relu", kernel_initializer="he_normal",
                                   name=f"upconv_{source}_u{level}a")(x)
        skip = features[level]
        if padding == "valid":
            skip = CropToReference(CROP_OFFSETS[level], name=f"crop_d{level}c-d{level}cc")([skip, x])
        x = layers.Concatenate(name=f"concat_d{level}cc_u{level}a-b")([x, skip])
        x = conv(x, channels, f"conv_u{level}b-c")
        x = conv(x, channels, f"conv_u{level}c-d")
        source = f"u{level}d"
    return layers.Conv2D(num_classes, 1, kernel_initializer="he_normal", name="conv_u0d-score")(x)


@keras.saving.register_keras_serializable(package="fcn_keras")
class UNet(FamilyModel):
    """U-Net over whole images: see the module docstring and :func:`unet`."""

    ARCHITECTURE = "unet"
    BACKBONE = "none"
    DEFAULT_NUM_CLASSES = 2
    PREPROCESSING = "tf"
    OPTIONS = {"alpha": 1.0, "padding": "valid"}

    @classmethod
    def graph(cls, x, image, num_classes, alpha, padding):
        alpha, padding = check_alpha(alpha), check_padding(padding)
        if padding == "valid":
            x = MirrorPadToValid(MARGIN, 16, VALID_REMAINDER, name="mirror")(x)
        else:
            x = PadToMultiple(16, name="pad_to_16")(x)
        x = unet_tile(x, num_classes, alpha, padding)
        # Valid: score (i, j) is image pixel (i, j) (the mirror adds 92 before it); same: padding is after the image.
        x = CropToReference(0, name="crop")([x, image])
        return layers.Activation("linear", dtype="float32", name="score")(x)


def unet(
    num_classes: int | None = None,
    input_shape: tuple = (None, None, 3),
    include_preprocessing: bool = False,
    weights: str | None = None,
    alpha: float = 1.0,
    name: str | None = None,
    *,
    padding: str = "valid",
    class_names: Sequence[str] | None = None,
    palette=None,
    ignore_label: int = IGNORE_LABEL,
    preprocessing: str | None = None,
    card: dict | None = None,
) -> UNet:
    """Builds U-Net (Ronneberger et al., MICCAI 2015; u-net-release phseg_v5-train.prototxt) for RGB images.

    Args:
        num_classes: number of classes (default 2, the paper's cell/background).
        input_shape: ``(height, width, 3)``; ``None`` sizes accept any size.
            Every size from 1 pixel up works in both paddings.
        include_preprocessing: take RGB 0-255 images and scale them to [-1, 1]
            inside the model (``"tf"``; the paper fixes no RGB normalisation).
        weights: must be ``None``: U-Net trains from scratch (the authors'
            weights are for 1-channel microscopy, in their Caffe release).
        alpha: width multiplier of every hidden layer (1: the paper's 64 ... 1024).
        name: model name (default ``"unet"``).
        padding: ``"valid"`` (the paper's unpadded convolutions; the image is
            mirrored by 92 pixels plus up to 15 at the bottom/right into a valid
            tile, the overlap-tile strategy) or ``"same"`` (padded convolutions
            on the image zero-padded to a multiple of 16).
        class_names, palette, ignore_label, preprocessing, card: the model's
            identity (see :class:`~fcn_keras.models.SegmentationModel`).

    Returns:
        A :class:`UNet` mapping ``(N, H, W, 3)`` to float32 logits ``(N, H, W, num_classes)``.

    Example:
        >>> import numpy as np
        >>> model = unet(alpha=1 / 16)
        >>> model.predict_on_batch(np.zeros((1, 37, 50, 3))).shape
        (1, 37, 50, 2)
    """
    if weights is not None:
        raise ValueError(f"unet has no pretrained weights to load (it trains from scratch); got weights={weights!r}")
    return UNet(num_classes, class_names=class_names, palette=palette, ignore_label=ignore_label,
                input_shape=input_shape, include_preprocessing=include_preprocessing, preprocessing=preprocessing,
                card=card, name=name, alpha=alpha, padding=padding)
