"""The FCN computed exactly, with less work, over the reference model's own layers and variables.

:func:`fast_fcn` is what an :class:`fcn_keras.models.FCN` over VGG16 runs when
called (``predict``, ``fit``, exports). It reads the same layers by name and
computes the same values; only the arithmetic differs:

- blocks 1-3 skip conv1_1's constant 100-pixel margin (:mod:`.margin`);
- wide 3x3 convolutions use Winograd's F(4x4, 3x3) where it pays
  (:func:`.convolutions.winograd_pays`);
- fc6 is one matrix product over 7x7x512 patches;
- fixed, channel-diagonal bilinear upsampling runs per channel.

No layer is created or called symbolically here, so the model's graph, summary
and saved file are the reference's alone.
"""

from __future__ import annotations

from typing import Callable

import keras
from keras import ops

from fcn_keras.models.backbones import REFERENCE_PAD, VGG16_BLOCKS
from fcn_keras.models.fast.convolutions import diagonal_conv_transpose, patch_matmul_conv, winograd_conv, winograd_pays
from fcn_keras.models.fast.margin import constant_border, margin_proxy, paste_core
from fcn_keras.models.heads import fcn_head

MARGIN_BLOCKS = 3
"""Blocks computed without the pad's constant margin; after them the core is pasted into the background."""
PROXY_SIZE = 72


def fast_fcn(model, inputs, training=None):
    """``model(inputs)`` for an FCN over the reference VGG16 trunk, by the fast formulation.

    Example:
        >>> import numpy as np
        >>> from fcn_keras.models import fcn32s
        >>> model = fcn32s(num_classes=2)
        >>> tuple(fast_fcn(model, np.zeros((1, 30, 41, 3), "float32")).shape)
        (1, 30, 41, 2)
    """
    if isinstance(inputs, dict):
        inputs = inputs[model.input_names[0]] if hasattr(model, "input_names") else next(iter(inputs.values()))
    elif isinstance(inputs, (list, tuple)):
        (inputs,) = inputs
    image = ops.cast(inputs, model.inputs[0].dtype)
    layer = model.get_layer
    x = layer("preprocessing")(image) if model.include_preprocessing else image
    features = vgg16_trunk(layer, x, training)
    return fcn_head(model.head, features, image, lambda name: _fast(layer(name)), reference=True)


def vgg16_trunk(layer: Callable, x, training=None) -> dict:
    """The reference trunk's features by stride, from the layers ``layer(name)``, skipping the margin.

    Example:
        >>> import numpy as np
        >>> from fcn_keras.models import fcn32s
        >>> features = vgg16_trunk(fcn32s(num_classes=2).get_layer, np.zeros((1, 64, 80, 3), "float32"))
        >>> [tuple(features[s].shape[1:3]) for s in (8, 16, 32)]
        [(33, 35), (17, 18), (3, 3)]
    """
    conv1_1 = layer("conv1_1")
    # The background of blocks 1-3 comes from a small zero proxy; the image's part
    # starts with the two pad pixels conv1_1 reads next to it.
    proxy = margin_proxy(x, REFERENCE_PAD, period=2 ** (MARGIN_BLOCKS - 1), size=PROXY_SIZE,
                         dtype=conv1_1.compute_dtype)
    image = x
    x = ops.pad(x, [[0, 0], [2, 2], [2, 2], [0, 0]])
    offset = REFERENCE_PAD - 2  # of the core within the full map, at the current stride
    features = {}
    for block, (_, convs) in enumerate(VGG16_BLOCKS, start=1):
        in_margin = block <= MARGIN_BLOCKS
        for i in range(1, convs + 1):
            conv = layer(f"conv{block}_{i}")
            run = conv if (block, i) == (1, 1) else _conv3x3(conv)
            if in_margin and (block, i) != (1, 1):
                # Bordered by 2 constant pixels, the "same" convolution's outer ring read its
                # zero padding instead of the map: cropped, the core grows by one pixel a side.
                x = run(constant_border(x, proxy, 2, 2))[:, 1:-1, 1:-1, :]
                offset -= 1
            else:
                x = run(x)
            if in_margin:
                proxy = run(proxy)
        pool = layer(f"pool{block}")
        if in_margin and block < MARGIN_BLOCKS:
            # Whole 2x2 windows aligned with the full map's grid: border to an even start and size.
            x = pool(constant_border(x, proxy, offset % 2, 0, multiple=2))
            proxy = pool(proxy)
            offset //= 2
        else:
            if in_margin:
                x = paste_core(x, proxy, image, offset, REFERENCE_PAD, shrink=2, pools=block - 1)
            x = pool(x)
        features[2**block] = x
    x = _apply(layer("fc6"), x, patch_matmul_conv)
    x = layer("drop6")(x, training=training)
    x = layer("fc7")(x)
    x = layer("drop7")(x, training=training)
    return {8: features[8], 16: features[16], 32: x}


def _apply(layer, x, convolution):
    """``layer(x)`` with its convolution computed by ``convolution(x, kernel)``."""
    x = ops.cast(x, layer.compute_dtype)
    y = convolution(x, ops.cast(layer.kernel, x.dtype))
    if layer.use_bias:
        y = y + ops.cast(layer.bias, x.dtype)
    return layer.activation(y) if layer.activation is not None else y


def _conv3x3(conv):
    def run(x):
        if winograd_pays(x.shape[-1], conv.filters, conv.compute_dtype):
            return _apply(conv, x, winograd_conv)
        return conv(x)

    return run


def _fast(layer):
    """The fast computation of a head layer: per-channel fixed upsampling; every other layer as it is."""
    if not isinstance(layer, keras.layers.Conv2DTranspose) or layer.trainable or layer.padding != "valid" \
            or layer.data_format != "channels_last" or tuple(layer.dilation_rate) != (1, 1) \
            or layer.output_padding is not None or layer.kernel.shape[2] != layer.kernel.shape[3]:
        return layer  # the reference geometry only; a trainable kernel trains in full

    def run(x):
        def dense():
            return ops.conv_transpose(x, kernel, layer.strides, padding="valid")

        x = ops.cast(x, layer.compute_dtype)
        kernel = ops.cast(layer.kernel, x.dtype)
        y = diagonal_conv_transpose(x, kernel, tuple(layer.strides), fallback=dense)
        if layer.use_bias:
            y = y + ops.cast(layer.bias, y.dtype)
        return layer.activation(y) if layer.activation is not None else y

    return run
