"""DeepLab over VGG16: v1 LargeFOV (Chen et al., ICLR 2015) and v2 ASPP-L (Chen et al., PAMI 2017).

Both follow the authors' released Caffe definitions layer for layer (the
deeplab-public ``DeepLab-LargeFOV/train.prototxt`` and ``test.prototxt``; for
v2, the four-branch VGG16 ASPP of deeplab-public-ver2): VGG16 whose pool1-pool3
are 3x3 stride 2 pad 1, pool4/pool5 3x3 stride 1 pad 1, conv5 dilated by 2,
then LargeFOV's ``pool5a`` (3x3 average, stride 1, pad 1), fc6 (3x3, 1024,
dilation 12), fc7 (1x1, 1024) and fc8, or ASPP's four fc6_i/fc7_i/fc8_i
branches (dilations 6/12/18/24) summed. The scores, at stride 8, are
upsampled as Caffe's ``Interp`` with ``zoom_factor: 8`` does (``fc8_interp``).

Exact geometry with builtin layers (docs/family/deeplab.md):

- Caffe's pooling has ``out = ceil((n + 2 pad - k) / s) + 1`` (then one less if
  the last window would start in the padding). For 3x3/2/pad 1 that is
  ``n // 2 + 1``; a zero pad of 1 before and 2 after, then a valid pooling,
  gives the same windows. Zeros in place of Caffe's clipped windows are exact
  because every input is a ReLU output (>= 0) and every window holds at least
  one real pixel. 3x3/1/pad 1 max pooling is ``padding="same"`` (which ignores
  the padding); pool5a's 3x3/1/pad 1 average counts the padding, as Caffe's
  does (its divisor stays 9 because no window reaches past the pad), so it is
  a zero pad of 1 and a valid average pooling.
- ``Interp`` with zoom 8 maps ``h`` scores to ``8 (h - 1) + 1`` pixels, aligning
  the corners: pixel ``y`` is the linear interpolation of scores
  ``floor(y / 8)`` and ``floor(y / 8) + 1`` with weight ``(y mod 8) / 8``. That
  is exactly a stride-8 transposed convolution with the 15x15 bilinear kernel,
  cropped at offset 7. For an input of ``n`` pixels the stride-8 map has
  ``(n + 6) // 8 + 1`` pixels, so the interpolated map has
  ``8 ((n + 6) // 8) + 1 >= n``: every pixel lies between score pixels, and the
  top-left ``n`` are kept (DeepLab's own test code likewise cuts its 513x513
  canvas back to the image). Every input size is accepted.

Example:
    >>> import numpy as np
    >>> model = deeplab_largefov(num_classes=3, alpha=1 / 16)
    >>> model.predict(np.zeros((1, 37, 50, 3)), verbose=0).shape
    (1, 37, 50, 3)
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import keras
from keras import layers

from fcn_keras.models.backbones import VGG16_BLOCKS
from fcn_keras.models.family_model import FamilyModel, check_alpha, check_weights, width
from fcn_keras.models.layers import BilinearUpsamplingInitializer, CropToReference
from fcn_keras.palette import IGNORE_LABEL

OUTPUT_STRIDE = 8
ASPP_L_RATES: tuple[int, ...] = (6, 12, 18, 24)
"""ASPP-L's fc6 dilations (PAMI 2017, Table 3); ASPP-S is (2, 4, 8, 12)."""
FC_CHANNELS = 1024
"""fc6/fc7 width: 1,024 of VGG16's 4,096 filters (the released vgg16_20M init)."""


def output_size(size: int) -> int:
    """The stride-8 score map's size for an input of ``size`` pixels (three Caffe 3x3/2/pad 1 poolings).

    Example:
        >>> [output_size(n) for n in (321, 513, 320, 37)]
        [41, 65, 41, 6]
    """
    for _ in range(3):
        size = size // 2 + 1
    return size


def interp_size(size: int) -> int:
    """The size Caffe's ``Interp`` (``zoom_factor: 8``) makes of an input of ``size`` pixels: ``>= size``.

    Example:
        >>> [interp_size(n) for n in (321, 513, 320, 37)]
        [321, 513, 321, 41]
    """
    return OUTPUT_STRIDE * (output_size(size) - 1) + 1


def _vgg16_dilated(x, alpha: float):
    """conv1_1 ... pool5 of DeepLab's VGG16: stride 8, conv5 dilated 2."""
    for block, (filters, convs) in enumerate(VGG16_BLOCKS, start=1):
        dilation = 2 if block == 5 else 1
        for i in range(1, convs + 1):
            x = layers.Conv2D(width(filters, alpha), 3, padding="same", dilation_rate=dilation, activation="relu",
                              name=f"conv{block}_{i}")(x)
        if block <= 3:
            # Caffe 3x3/2/pad 1 (ceil mode): n -> n // 2 + 1 windows; zeros are exact after a ReLU.
            x = layers.ZeroPadding2D(((1, 2), (1, 2)), name=f"pool{block}_pad")(x)
            x = layers.MaxPooling2D(3, 2, padding="valid", name=f"pool{block}")(x)
        else:
            x = layers.MaxPooling2D(3, 1, padding="same", name=f"pool{block}")(x)
    return x


def _interp(scores, image, num_classes: int):
    """Caffe ``Interp`` zoom 8 (align corners), cut to the image: fixed bilinear deconvolution + crop."""
    up = layers.Conv2DTranspose(num_classes, 2 * OUTPUT_STRIDE - 1, strides=OUTPUT_STRIDE, padding="valid",
                                use_bias=False, kernel_initializer=BilinearUpsamplingInitializer(), trainable=False,
                                name="fc8_interp")(scores)
    return CropToReference(OUTPUT_STRIDE - 1, dtype="float32", name="score")([up, image])


def _branch(x, num_classes: int, alpha: float, rate: int, suffix: str):
    """fc6 (3x3, dilation ``rate``) -> drop6 -> fc7 (1x1) -> drop7 -> fc8: one LargeFOV head."""
    channels = width(FC_CHANNELS, alpha)
    x = layers.Conv2D(channels, 3, padding="same", dilation_rate=rate, activation="relu", name=f"fc6{suffix}")(x)
    x = layers.Dropout(0.5, name=f"drop6{suffix}")(x)
    x = layers.Conv2D(channels, 1, activation="relu", name=f"fc7{suffix}")(x)
    x = layers.Dropout(0.5, name=f"drop7{suffix}")(x)
    # The prototxt's fc8 filler: gaussian std 0.01, bias 0.
    return layers.Conv2D(num_classes, 1, kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
                         name=f"fc8{suffix}")(x)


@keras.saving.register_keras_serializable(package="fcn_keras")
class DeepLabLargeFOV(FamilyModel):
    """DeepLab-LargeFOV (v1): see :func:`deeplab_largefov`."""

    ARCHITECTURE, BACKBONE, DEFAULT_NUM_CLASSES, PREPROCESSING = "deeplab_largefov", "vgg16", 21, "deeplab"
    OPTIONS = {"alpha": 1.0}

    @classmethod
    def graph(cls, x, image, num_classes: int, alpha: float):
        alpha = check_alpha(alpha)
        x = _vgg16_dilated(x, alpha)
        x = layers.ZeroPadding2D(1, name="pool5a_pad")(x)
        x = layers.AveragePooling2D(3, 1, padding="valid", name="pool5a")(x)
        return _interp(_branch(x, num_classes, alpha, 12, ""), image, num_classes)


@keras.saving.register_keras_serializable(package="fcn_keras")
class DeepLabASPP(FamilyModel):
    """DeepLab v2 ASPP over VGG16: see :func:`deeplab_aspp`."""

    ARCHITECTURE, BACKBONE, DEFAULT_NUM_CLASSES, PREPROCESSING = "deeplab_aspp", "vgg16", 21, "deeplab"
    OPTIONS = {"alpha": 1.0, "rates": list(ASPP_L_RATES)}

    @classmethod
    def graph(cls, x, image, num_classes: int, alpha: float, rates):
        alpha = check_alpha(alpha)
        rates = check_rates(rates)
        features = _vgg16_dilated(x, alpha)
        scores = [_branch(features, num_classes, alpha, rate, f"_{i}") for i, rate in enumerate(rates, start=1)]
        fused = layers.Add(name="fc8")(scores) if len(scores) > 1 else scores[0]
        return _interp(fused, image, num_classes)


def check_rates(rates) -> list[int]:
    """ASPP's fc6 dilations as a list of positive integers, else a ``ValueError`` naming ``rates``.

    Example:
        >>> check_rates((2, 4, 8, 12))
        [2, 4, 8, 12]
    """
    try:
        values = [int(r) for r in rates]
    except (TypeError, ValueError):
        values = None
    if not values or values != list(rates) or any(isinstance(r, bool) or r < 1 for r in rates):
        raise ValueError(f"rates (the ASPP branches' fc6 dilations) must be a non-empty list of positive integers, "
                         f"got {rates!r}")
    return values


def deeplab_largefov(
    num_classes: int | None = 21,
    input_shape: tuple = (None, None, 3),
    include_preprocessing: bool = False,
    weights: str | None = None,
    alpha: float = 1.0,
    name: str | None = None,
    *,
    class_names: Sequence[str] | None = None,
    palette=None,
    ignore_label: int = IGNORE_LABEL,
    preprocessing: str | None = None,
    card: dict | None = None,
) -> DeepLabLargeFOV:
    """Builds DeepLab-LargeFOV (Chen et al., ICLR 2015; deeplab-public ``DeepLab-LargeFOV/train.prototxt``).

    VGG16 at output stride 8 (pool4/pool5 3x3 stride 1, conv5 dilation 2),
    ``pool5a`` 3x3 average pooling, fc6 3x3 dilation 12 with 1,024 channels,
    fc7 1x1 1,024, dropout 0.5 after both, fc8 to the classes, and Caffe's
    bilinear ``Interp`` by 8 cut to the input size. 20,505,429 trainable
    parameters with 21 classes (the paper's 20.5 M), plus the fixed upsampling
    kernel. Any input size is accepted (module docstring).

    Args:
        num_classes: classes (21 for PASCAL VOC), or the length of ``class_names``.
        input_shape: ``(height, width, 3)``; ``None`` sizes accept any image.
        include_preprocessing: take RGB 0-255 images and subtract the BGR mean
            inside the model (DeepLab's BGR mean 104.008/116.669/122.675, mode ``"deeplab"``).
        weights: ``None``, ``"imagenet"`` or the path of a keras.applications VGG16
            weights file with top: conv1_1 ... conv5_3 copied, fc6/fc7 subsampled
            from VGG16's fc6/fc7 as the authors' init did (:func:`load_imagenet_weights`);
            needs ``alpha=1``.
        alpha: width multiplier of every hidden layer (1 is the authors' network).
        name: model name (default ``"deeplab_largefov"``).
        class_names, palette, ignore_label, preprocessing, card: the model's identity.

    Returns:
        A :class:`DeepLabLargeFOV` mapping ``(N, H, W, 3)`` to float32 logits ``(N, H, W, num_classes)``.

    Example:
        >>> model = deeplab_largefov(num_classes=21, alpha=1 / 16)
        >>> [layer.name for layer in model.layers[-8:]]
        ['pool5a', 'fc6', 'drop6', 'fc7', 'drop7', 'fc8', 'fc8_interp', 'score']
    """
    check_weights(weights, alpha, "deeplab_largefov")
    model = DeepLabLargeFOV(num_classes, class_names=class_names, palette=palette, ignore_label=ignore_label,
                            input_shape=input_shape, include_preprocessing=include_preprocessing,
                            preprocessing=preprocessing, card=card, name=name, alpha=alpha)
    if weights is not None:
        load_imagenet_weights(model, weights)
    return model


def deeplab_aspp(
    num_classes: int | None = 21,
    input_shape: tuple = (None, None, 3),
    include_preprocessing: bool = False,
    weights: str | None = None,
    alpha: float = 1.0,
    name: str | None = None,
    *,
    rates: Sequence[int] = ASPP_L_RATES,
    class_names: Sequence[str] | None = None,
    palette=None,
    ignore_label: int = IGNORE_LABEL,
    preprocessing: str | None = None,
    card: dict | None = None,
) -> DeepLabASPP:
    """Builds DeepLab v2 ASPP-L over VGG16 (Chen et al., PAMI 2017, Fig. 7b; deeplab-public-ver2).

    The LargeFOV trunk without ``pool5a``; on pool5, four parallel branches
    fc6_i (3x3, 1,024, dilation ``rates[i]``) -> fc7_i (1x1, 1,024) -> fc8_i,
    with dropout 0.5, whose scores are summed (``fc8``) and upsampled by
    Caffe's bilinear ``Interp`` by 8, cut to the input size. 37,877,652
    trainable parameters with 21 classes (the paper gives no count). ``rates``
    (2, 4, 8, 12) is the paper's ASPP-S.

    Args:
        num_classes, input_shape, include_preprocessing, weights, alpha, name: as
            :func:`deeplab_largefov`; ``weights`` initialises every branch's fc6_i/fc7_i alike.
        rates: the branches' fc6 dilations (default ASPP-L's 6, 12, 18, 24).
        class_names, palette, ignore_label, preprocessing, card: the model's identity.

    Returns:
        A :class:`DeepLabASPP` mapping ``(N, H, W, 3)`` to float32 logits ``(N, H, W, num_classes)``.

    Example:
        >>> model = deeplab_aspp(num_classes=21, alpha=1 / 16)
        >>> model.get_layer("fc6_4").dilation_rate, model.options["rates"]
        ((24, 24), [6, 12, 18, 24])
    """
    check_weights(weights, alpha, "deeplab_aspp")
    model = DeepLabASPP(num_classes, class_names=class_names, palette=palette, ignore_label=ignore_label,
                        input_shape=input_shape, include_preprocessing=include_preprocessing,
                        preprocessing=preprocessing, card=card, name=name, alpha=alpha, rates=check_rates(rates))
    if weights is not None:
        load_imagenet_weights(model, weights)
    return model


FC_SUBSET_STEP = 4
"""Keep VGG16 fc6/fc7 filters 0, 4, 8, ...: 1,024 of 4,096 (the authors kept a random subset)."""
FC6_TAPS = (0, 3, 6)
"""Rows/columns of VGG16's 7x7 fc6 kept for the 3x3 fc6: a decimation by 3 (the dilation absorbs the gaps)."""


def subsample_fc(fc6: tuple[np.ndarray, np.ndarray], fc7: tuple[np.ndarray, np.ndarray]):
    """DeepLab's fc6/fc7 ``(kernel, bias)`` from VGG16's convolutional fc6 (7x7x512x4096) and fc7 (1x1x4096x4096).

    fc6 keeps kernel rows/columns :data:`FC6_TAPS` and every
    :data:`FC_SUBSET_STEP`-th filter; fc7 keeps the same filters, on both its
    input and its output side, so fc7 reads the fc6 filters that remain.

    Example:
        >>> fc6 = (np.zeros((7, 7, 2, 16), "float32"), np.arange(16, dtype="float32"))  # VGG16: (7, 7, 512, 4096)
        >>> fc7 = (np.zeros((1, 1, 16, 16), "float32"), np.zeros(16, "float32"))
        >>> (k6, b6), (k7, b7) = subsample_fc(fc6, fc7)
        >>> k6.shape, k7.shape, b6.tolist()
        ((3, 3, 2, 4), (1, 1, 4, 4), [0.0, 4.0, 8.0, 12.0])
    """
    keep = np.arange(0, fc6[0].shape[-1], FC_SUBSET_STEP)
    taps = np.asarray(FC6_TAPS)
    kernel6 = fc6[0][taps][:, taps][..., keep]
    kernel7 = fc7[0][:, :, keep][..., keep]
    return (np.ascontiguousarray(kernel6), fc6[1][keep]), (np.ascontiguousarray(kernel7), fc7[1][keep])


def load_imagenet_weights(model: keras.Model, weights: str) -> None:
    """Initialises a DeepLab's conv1_1 ... conv5_3, fc6 and fc7 (every ASPP branch's) from ImageNet VGG16.

    ``weights`` is what :func:`fcn_keras.models.backbones.load_vgg16_weights`
    takes (``"imagenet"`` or a keras.applications VGG16 file with top); that
    loader reads it, with its errors (offline: one message saying where to put
    the file). The convolutions are copied; fc6/fc7 are subsampled by
    :func:`subsample_fc`. fc8 keeps its Gaussian initialisation.
    """
    from fcn_keras.models.backbones import load_vgg16_weights, vgg16_trunk

    source = keras.Model(*_trunk_io(vgg16_trunk), name="vgg16_reference")
    load_vgg16_weights(source, weights)
    for block, (_, convs) in enumerate(VGG16_BLOCKS, start=1):
        for i in range(1, convs + 1):
            name = f"conv{block}_{i}"
            model.get_layer(name).set_weights(source.get_layer(name).get_weights())
    fc6, fc7 = subsample_fc(source.get_layer("fc6").get_weights(), source.get_layer("fc7").get_weights())
    suffixes = [""] if isinstance(model, DeepLabLargeFOV) else [f"_{i}" for i in range(1, len(model.options["rates"]) + 1)]
    for suffix in suffixes:
        model.get_layer(f"fc6{suffix}").set_weights(list(fc6))
        model.get_layer(f"fc7{suffix}").set_weights(list(fc7))


def _trunk_io(trunk):
    inputs = keras.Input((None, None, 3))
    return inputs, trunk(inputs)[32]
