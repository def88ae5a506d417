"""FCN-32s, FCN-16s, FCN-8s and FCN-8s at-once, as in the reference's net.py.

The four models differ only in their heads, described by :data:`HEADS`: which
pooled features are scored and fused (with their crop offsets), and the final
upsampling. One builder turns a head and a backbone into a functional model.

Example:
    >>> import numpy as np
    >>> model = fcn8s(num_classes=21)
    >>> model.count_params()
    134489759
    >>> model.predict(np.zeros((1, 37, 50, 3)), verbose=0).shape
    (1, 37, 50, 21)
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
from keras import layers

from fcn_keras.models import backbones
from fcn_keras.models.fast_convolutions import DiagonalConv2DTranspose
from fcn_keras.models.layers import BilinearUpsamplingInitializer, CropToReference, Preprocessing, Scale


@dataclass(frozen=True)
class Skip:
    """A skip from a finer feature: score it, crop it to the upsampled coarser scores, sum."""

    score: str  # the 1x1 score layer, named after its source: "score_pool4" scores pool4
    stride: int  # stride of the source feature
    upsample: str  # the 2x upsampling applied to the coarser scores first
    offset: int  # reference crop offset of the scores against the upsampled ones
    scale: float | None = None  # at-once: fixed scaling of the source before scoring

    @property
    def source(self) -> str:
        return self.score.removeprefix("score_")


@dataclass(frozen=True)
class Head:
    skips: tuple[Skip, ...]
    upsample: str  # the final upsampling
    factor: int  # its stride (kernel 2 * factor)
    offset: int  # reference crop offset against the input


_POOL4 = Skip("score_pool4", 16, "upscore2", 5)
_POOL3 = Skip("score_pool3", 8, "upscore_pool4", 9)

HEADS: dict[str, Head] = {
    "fcn32s": Head((), "upscore", 32, 19),
    "fcn16s": Head((_POOL4,), "upscore16", 16, 27),
    "fcn8s": Head((_POOL4, _POOL3), "upscore8", 8, 31),
    "fcn8s_atonce": Head((Skip(**{**_POOL4.__dict__, "scale": 0.01}), Skip(**{**_POOL3.__dict__, "scale": 1e-4})),
                         "upscore8", 8, 31),
}


def _upsampling(name: str, num_classes: int, factor: int, padding: str, trainable: bool, fast: bool) -> layers.Layer:
    # Bilinear, channel-diagonal, no bias; fixed (lr_mult 0) in the reference. While fixed
    # and diagonal it runs per channel (C times less arithmetic than the dense C x C form).
    return (DiagonalConv2DTranspose if fast else layers.Conv2DTranspose)(
        num_classes, 2 * factor, strides=factor, padding=padding, use_bias=False,
        kernel_initializer=BilinearUpsamplingInitializer(), trainable=trainable, name=name,
    )


def _score(name: str, num_classes: int) -> layers.Layer:
    return layers.Conv2D(num_classes, 1, kernel_initializer="zeros", bias_initializer="zeros", name=name)


def build_fcn(
    architecture: str,
    num_classes: int = 21,
    input_shape: tuple = (None, None, 3),
    include_preprocessing: bool = False,
    trainable_upsampling: bool = False,
    weights: str | None = None,
    backbone: str = "vgg16",
    name: str | None = None,
    *,
    fast: bool = True,
) -> keras.Model:
    """Builds any FCN of :data:`HEADS` over any backbone of :data:`backbones.BACKBONES`.

    Arguments are those of :func:`fcn8s`; ``architecture`` is a key of ``HEADS``.
    ``fast=False`` builds the plain layer-by-layer network (same weights, same
    outputs to float rounding, more arithmetic): for checking and measuring the
    exact fast formulations, or for a runtime that brings its own.

    Example:
        >>> build_fcn("fcn16s", num_classes=5, backbone="mobilenet_v2").output_shape
        (None, None, None, 5)
    """
    if architecture not in HEADS:
        raise ValueError(f"Unknown architecture={architecture!r}; choose one of {sorted(HEADS)}")
    head = HEADS[architecture]
    spec = backbones.get_backbone(backbone)
    _check_arguments(num_classes, input_shape, weights)
    if keras.config.image_data_format() != "channels_last":
        raise ValueError("fcn_keras models are channels_last; set keras.config.set_image_data_format('channels_last')")

    inputs = keras.Input(tuple(input_shape), name="image")
    x = Preprocessing(spec.preprocessing, name="preprocessing")(inputs) if include_preprocessing else inputs
    if spec.reference:
        features = backbones.vgg16_trunk(x, fast=fast)
        padding = "valid"
    else:
        features = backbones.application_trunk(spec, x, weights)
        padding = "same"  # input padded to a multiple of 32: every upsampling is exact

    scores = _score("score_fr", num_classes)(features[32])
    for skip in head.skips:
        upsampled = _upsampling(skip.upsample, num_classes, 2, padding, trainable_upsampling, fast)(scores)
        source = features[skip.stride]
        if skip.scale is not None:
            source = Scale(skip.scale, name=f"scale_{skip.source}")(source)
        skip_scores = _score(skip.score, num_classes)(source)
        if spec.reference:
            skip_scores = CropToReference(skip.offset, name=f"{skip.score}c")([skip_scores, upsampled])
        scores = layers.Add(name=f"fuse_{skip.source}")([upsampled, skip_scores])
    upsampled = _upsampling(head.upsample, num_classes, head.factor, padding, trainable_upsampling, fast)(scores)
    # The final crop also removes the non-reference backbones' bottom/right padding,
    # and returns float32 logits under any mixed-precision policy.
    offset = head.offset if spec.reference else 0
    outputs = CropToReference(offset, dtype="float32", name="score")([upsampled, inputs])
    model = keras.Model(inputs, outputs, name=name or (architecture if spec.reference else f"{architecture}_{backbone}"))

    if weights is not None and spec.reference:
        backbones.load_vgg16_weights(model, weights)
    return model


def _check_arguments(num_classes, input_shape, weights) -> None:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be an integer >= 1, got {num_classes!r}")
    if input_shape is None or len(input_shape) != 3 or input_shape[-1] != 3:
        raise ValueError(f"input_shape must be (height, width, 3) for RGB images, got {input_shape!r}")
    for size in input_shape[:2]:
        if size is not None and (int(size) != size or size < 1):
            raise ValueError(f"input_shape sizes must be positive integers or None, got {input_shape!r}")
    if weights is not None and not isinstance(weights, str):
        raise ValueError(f"weights must be None, 'imagenet' or a file path, got {weights!r}")


def _builder(architecture: str):
    def build(
        num_classes: int = 21,
        input_shape: tuple = (None, None, 3),
        include_preprocessing: bool = False,
        trainable_upsampling: bool = False,
        weights: str | None = None,
        backbone: str = "vgg16",
        name: str | None = None,
    ) -> keras.Model:
        return build_fcn(architecture, num_classes, input_shape, include_preprocessing,
                         trainable_upsampling, weights, backbone, name)

    build.__name__ = build.__qualname__ = architecture
    return build


_BUILDER_DOC = """Builds {title}: {summary}

    Args:
        num_classes: number of classes (21 for PASCAL VOC: background + 20).
        input_shape: ``(height, width, 3)``; ``None`` sizes accept any image size.
        include_preprocessing: take RGB images with values 0-255 and preprocess
            inside the model (for VGG16: RGB->BGR and the reference mean).
        trainable_upsampling: learn the bilinear-initialised upsampling (the
            paper's variant); fixed by default, as in the reference code.
        weights: ``None`` (score layers zero, the rest Keras' default init),
            ``"imagenet"``, or the path of a keras.applications VGG16 weights
            file with top, converted Dense->Conv into conv1_1 ... fc7.
        backbone: ``"vgg16"`` (the reference) or ``"mobilenet_v2"``/``"resnet50"``.
        name: model name; defaults to the architecture's.

    Returns:
        A ``keras.Model`` mapping ``(N, H, W, 3)`` images to float32 logits
        ``(N, H, W, num_classes)`` of exactly the input's size.

    Example:
        >>> model = {arch}(num_classes=21)
        >>> model.output_shape
        (None, None, None, 21)
    """

fcn32s = _builder("fcn32s")
fcn16s = _builder("fcn16s")
fcn8s = _builder("fcn8s")
fcn8s_atonce = _builder("fcn8s_atonce")
for _fn, _title, _summary in (
    (fcn32s, "FCN-32s", "scores at stride 32, upsampled 32x (voc-fcn32s)."),
    (fcn16s, "FCN-16s", "stride-32 scores fused with pool4's, upsampled 16x (voc-fcn16s)."),
    (fcn8s, "FCN-8s", "scores fused with pool4's and pool3's, upsampled 8x (voc-fcn8s)."),
    (fcn8s_atonce, "FCN-8s at-once", "FCN-8s with pool4 scaled by 0.01 and pool3 by 0.0001, "
                                     "trained in one stage (voc-fcn8s-atonce)."),
):
    _fn.__doc__ = _BUILDER_DOC.format(title=_title, summary=_summary, arch=_fn.__name__)
