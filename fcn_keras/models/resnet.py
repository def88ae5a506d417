"""PSPNet's encoder: ResNet50 dilated to output stride 8, as the authors release it (pspnet50_ADE20K_473.prototxt).

Residual units are bottlenecks (1x1 reduce, 3x3, 1x1 increase, each
convolution without bias and followed by batch normalization; a 1x1
projection shortcut in each stage's first unit), 3, 4, 6 and 3 units in
stages conv2 ... conv5, with the stride of conv3 on its 1x1 convolutions (the
original ResNet's layout, also keras.applications'). conv4 and conv5 keep
stride 1 and dilate their 3x3 convolutions by 2 and 4 instead, so conv3, conv4
and conv5 all have stride 8.

Two stems:
- ``"deep"`` (the authors'): three 3x3 convolutions, 64 (stride 2), 64 and 128
  channels, each with BN + ReLU, then 3x3/2 max pooling: the "deep base"
  network of the release, whose ImageNet weights are the authors' own.
- ``"standard"``: ResNet50's 7x7/2 convolution with 64 channels + BN + ReLU,
  then the same pooling: keras.applications ResNet50, whose ImageNet weights
  load exactly (:func:`copy_keras_resnet50_weights`).

Layer names are the prototxt's with ``/`` (which Keras refuses) written ``_``:
``conv1_1_3x3_s2``, ``conv1_1_3x3_s2_bn``, ``conv1_1_3x3_s2_relu``, ...,
``conv2_1_1x1_reduce``, ``conv2_1_3x3``, ``conv2_1_1x1_increase``,
``conv2_1_1x1_proj`` (each with ``_bn``), the sum ``conv2_1`` and
``conv2_1_relu``, ... ``conv5_3_relu``; the standard stem is ``conv1_7x7_s2``.
"""

from __future__ import annotations

import os

import numpy as np
import keras
from keras import layers

from fcn_keras.models.family_model import width

STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    # stage, units, bottleneck channels, stride of the first unit, dilation
    (2, 3, 64, 1, 1), (3, 4, 128, 2, 1), (4, 6, 256, 1, 2), (5, 3, 512, 1, 4),
)
STEMS = ("deep", "standard")
BN_EPSILON = 1e-5
"""The release's BN ``eps`` (caffe.proto's default); keras.applications uses 1.001e-5 (folded in on loading)."""


def check_stem(stem: str) -> str:
    """``stem`` if it is ``"deep"`` or ``"standard"``, else a ``ValueError`` naming the argument.

    Example:
        >>> check_stem("deep")
        'deep'
    """
    if stem not in STEMS:
        raise ValueError(f"stem must be one of {list(STEMS)}, got {stem!r}")
    return stem


def conv_bn(x, filters: int, kernel: int, name: str, strides: int = 1, dilation: int = 1, relu: bool = True):
    """Caffe's ``Convolution`` (no bias) + ``BN`` (+ ``ReLU``): layers ``name``, ``name_bn`` (, ``name_relu``).

    3x3 convolutions pad by their dilation (``padding="same"`` at stride 1);
    strided ones are only 1x1 here, which need no padding.
    """
    x = layers.Conv2D(filters, kernel, strides=strides, dilation_rate=dilation,
                      padding="same" if strides == 1 else "valid", use_bias=False,
                      kernel_initializer="he_normal", name=name)(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x) if relu else x


def _stem(x, stem: str, alpha: float):
    if stem == "deep":
        # Caffe pads before the stride-2 convolution (pad 1): an explicit pad keeps that alignment at even sizes.
        x = layers.ZeroPadding2D(1, name="conv1_1_3x3_s2_pad")(x)
        x = layers.Conv2D(width(64, alpha), 3, strides=2, use_bias=False, kernel_initializer="he_normal",
                          name="conv1_1_3x3_s2")(x)
        x = layers.ReLU(name="conv1_1_3x3_s2_relu")(
            layers.BatchNormalization(epsilon=BN_EPSILON, name="conv1_1_3x3_s2_bn")(x))
        x = conv_bn(x, width(64, alpha), 3, "conv1_2_3x3")
        x = conv_bn(x, width(128, alpha), 3, "conv1_3_3x3")
    else:
        x = layers.ZeroPadding2D(3, name="conv1_7x7_s2_pad")(x)
        x = layers.Conv2D(width(64, alpha), 7, strides=2, use_bias=False, kernel_initializer="he_normal",
                          name="conv1_7x7_s2")(x)
        x = layers.ReLU(name="conv1_7x7_s2_relu")(
            layers.BatchNormalization(epsilon=BN_EPSILON, name="conv1_7x7_s2_bn")(x))
    # Caffe's 3x3/2 pooling with pad 1 rounds up: one more zero row/column below/right than above/left gives its
    # windows and count at every size (zeros never win: the inputs are ReLU outputs).
    x = layers.ZeroPadding2D(((1, 2), (1, 2)), name="pool1_3x3_s2_pad")(x)
    return layers.MaxPooling2D(3, 2, name="pool1_3x3_s2")(x)


def dilated_resnet50(x, stem: str = "deep", alpha: float = 1.0) -> dict[str, object]:
    """The encoder applied to ``x``; returns the outputs of stages ``"conv3"``, ``"conv4"`` and ``"conv5"`` (stride 8).

    ``alpha`` scales every channel count (:func:`~fcn_keras.models.family_model.width`).
    An input ``8k + 1`` pixels high gives maps ``k + 1`` high.

    Example:
        >>> features = dilated_resnet50(keras.Input((473, 473, 3)), alpha=1 / 16)
        >>> tuple(features["conv5"].shape[1:]), tuple(features["conv4"].shape[1:])
        ((60, 60, 128), (60, 60, 64))
    """
    check_stem(stem)
    x = _stem(x, stem, alpha)
    features = {}
    for stage, units, channels, stride, dilation in STAGES:
        for unit in range(1, units + 1):
            name = f"conv{stage}_{unit}"
            s = stride if unit == 1 else 1
            y = conv_bn(x, width(channels, alpha), 1, f"{name}_1x1_reduce", strides=s)
            y = conv_bn(y, width(channels, alpha), 3, f"{name}_3x3", dilation=dilation)
            y = conv_bn(y, width(4 * channels, alpha), 1, f"{name}_1x1_increase", relu=False)
            shortcut = conv_bn(x, width(4 * channels, alpha), 1, f"{name}_1x1_proj", strides=s, relu=False) \
                if unit == 1 else x
            x = layers.ReLU(name=f"{name}_relu")(layers.Add(name=name)([shortcut, y]))
        features[f"conv{stage}"] = x
    return {key: features[key] for key in ("conv3", "conv4", "conv5")}


_RESNET50_NOTOP_FILE = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"


def keras_resnet50_names() -> dict[str, str]:
    """keras.applications ResNet50 layer -> our layer, for every layer with weights (standard stem).

    Example:
        >>> names = keras_resnet50_names()
        >>> names["conv1_conv"], names["conv4_block1_0_bn"], names["conv5_block3_2_conv"]
        ('conv1_7x7_s2', 'conv4_1_1x1_proj_bn', 'conv5_3_3x3')
    """
    names = {"conv1_conv": "conv1_7x7_s2", "conv1_bn": "conv1_7x7_s2_bn"}
    parts = {"0": "1x1_proj", "1": "1x1_reduce", "2": "3x3", "3": "1x1_increase"}
    for stage, units, *_ in STAGES:
        for unit in range(1, units + 1):
            for index, part in parts.items():
                if index == "0" and unit != 1:
                    continue
                for kind in ("conv", "bn"):
                    ours = f"conv{stage}_{unit}_{part}" + ("_bn" if kind == "bn" else "")
                    names[f"conv{stage}_block{unit}_{index}_{kind}"] = ours
    return names


def keras_resnet50(weights: str) -> keras.Model:
    """keras.applications ResNet50 (no top) with ``weights``: ``"imagenet"`` or the path of its ``.h5`` file.

    ``"imagenet"`` downloads ``resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5``
    (keras.applications); a path may hold the file with or without top. Offline
    or for a file that does not fit, one error says which and what to do.
    """
    from fcn_keras.models.backbones import _load_checked, keras_cache_dir

    if weights == "imagenet":
        try:
            return keras.applications.ResNet50(include_top=False, weights="imagenet")
        except Exception as exc:  # get_file raises a bare Exception on network errors
            raise RuntimeError(
                f"Could not download the ImageNet ResNet50 weights ({_RESNET50_NOTOP_FILE}, fetched by "
                f"keras.applications.ResNet50): {exc}. Offline, copy that file into Keras' cache "
                f"({keras_cache_dir()}) "
                "or pass its path: weights=<path>."
            ) from exc
    if not os.path.isfile(weights):
        raise FileNotFoundError(f"weights file {weights!r} does not exist")
    app = keras.applications.ResNet50(include_top=False, weights=None)
    _load_checked(app, weights)
    return app


def copy_keras_resnet50_weights(app: keras.Model, model: keras.Model) -> None:
    """Copies keras.applications ResNet50 ``app``'s weights into a standard-stem encoder in ``model``, exactly.

    keras.applications' convolutions have biases and its BN ``epsilon`` is
    1.001e-5; ours (the authors') have no bias and ``eps`` 1e-5. Each
    convolution is followed by BN, so both fold into the BN statistics
    (``moving_mean - bias``, ``moving_variance + 1.001e-5 - 1e-5``): the same
    function in inference mode, to float32 rounding; in training mode the
    batch mean absorbs the bias anyway.
    """
    epsilon = app.get_layer("conv1_bn").epsilon
    for source, target in keras_resnet50_names().items():
        if not source.endswith("_conv"):
            continue
        kernel, bias = (keras.ops.convert_to_numpy(w) for w in app.get_layer(source).weights)
        model.get_layer(target).set_weights([kernel])
        bn = model.get_layer(f"{target}_bn")
        bn_source = app.get_layer(source[: -len("_conv")] + "_bn")
        gamma, beta, mean, variance = (keras.ops.convert_to_numpy(w).astype(np.float64) for w in bn_source.weights)
        bn.set_weights([v.astype(np.float32) for v in (gamma, beta, mean - bias, variance + epsilon - bn.epsilon)])
