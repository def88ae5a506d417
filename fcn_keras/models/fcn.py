"""FCN-32s, FCN-16s, FCN-8s and FCN-8s at-once, as in the reference's net.py.

The four models differ only in their heads (:data:`fcn_keras.models.heads.HEADS`).
:class:`FCN` builds a head over a backbone as a functional model whose layers
and maps are the reference's; the builders (:func:`fcn8s`, ...) are its
keras.applications-style front door.

Example:
    >>> import numpy as np
    >>> model = fcn8s(num_classes=21)
    >>> model.count_params()
    134489759
    >>> model.predict(np.zeros((1, 37, 50, 3)), verbose=0).shape
    (1, 37, 50, 21)
"""

from __future__ import annotations

from typing import Sequence

import keras

from fcn_keras.models import backbones
from fcn_keras.models.fast.program import fast_fcn
from fcn_keras.models.family_model import check_channels_last, check_input_shape
from fcn_keras.models.heads import HEADS, Head, fcn_head, head_layers
from fcn_keras.models.layers import Preprocessing
from fcn_keras.models.segmentation_model import SegmentationModel, dtype_policy, resolve_identity
from fcn_keras.palette import IGNORE_LABEL


@keras.saving.register_keras_serializable(package="fcn_keras")
class FCN(SegmentationModel):
    """A fully convolutional network of :data:`HEADS` over a backbone of :data:`backbones.BACKBONES`.

    The functional graph is the reference network layer for layer: its layers,
    names and maps (``model.get_layer("conv2_2").output``, ``model.summary()``)
    are net.py's. Calling the model (``predict``, ``fit``, exports) runs the
    exact fast formulation of :mod:`fcn_keras.models.fast` over the same
    variables when ``fast=True`` (the default; VGG16 only); ``fast=False``, or
    :func:`fcn_keras.models.reference_graph`, runs the graph as it reads.

    Arguments are those of :func:`fcn8s`, plus ``architecture`` (a key of
    ``HEADS``), ``preprocessing`` (the mode, default the backbone's),
    ``ignore_label``, ``card`` (zoo provenance) and ``backbone_weights`` (passed
    to a keras.applications backbone at construction; not part of the config).

    Example:
        >>> model = FCN("fcn32s", class_names=["background", "person"], backbone="tiny_vgg")
        >>> model.num_classes, model.class_names[1], model.preprocessing
        (2, 'person', 'tf')
    """

    def __init__(
        self,
        architecture: str = "fcn8s",
        num_classes: int | None = None,
        *,
        class_names: Sequence[str] | None = None,
        palette=None,
        ignore_label: int = IGNORE_LABEL,
        backbone: str = "vgg16",
        input_shape: tuple = (None, None, 3),
        include_preprocessing: bool = False,
        preprocessing: str | None = None,
        trainable_upsampling: bool = False,
        fast: bool = True,
        card: dict | None = None,
        backbone_weights: str | None = None,
        name: str | None = None,
        **kwargs,
    ):
        if architecture not in HEADS:
            raise ValueError(f"Unknown architecture={architecture!r}; choose one of {sorted(HEADS)}")
        head = HEADS[architecture]
        spec = backbones.get_backbone(backbone)
        if num_classes is None and class_names is None:
            num_classes = 21
        num_classes, class_names, palette = resolve_identity(num_classes, class_names, palette)
        check_input_shape(input_shape)
        check_channels_last()
        preprocessing = preprocessing or spec.preprocessing

        with dtype_policy(kwargs.get("dtype")):
            inputs = keras.Input(tuple(input_shape), name="image")
            x = Preprocessing(preprocessing, name="preprocessing")(inputs) if include_preprocessing else inputs
            features = backbones.trunk(spec, x, backbone_weights)
            table = head_layers(head, num_classes, spec.reference, trainable_upsampling)
            outputs = fcn_head(head, features, inputs, table.__getitem__, spec.reference)
        super().__init__(
            inputs, outputs, architecture=architecture, backbone=backbone, class_names=class_names, palette=palette,
            ignore_label=ignore_label, preprocessing=preprocessing, include_preprocessing=include_preprocessing,
            card=card, name=name or (architecture if spec.reference else f"{architecture}_{backbone}"), **kwargs,
        )
        self._head = head
        self._reference_trunk = spec.reference
        self._input_shape_arg = tuple(input_shape)
        self._trainable_upsampling = bool(trainable_upsampling)
        self._fast = bool(fast)

    @property
    def fast(self) -> bool:
        """Whether calls run the exact fast formulation (VGG16 backbones; others always run the graph)."""
        return self._fast and self._reference_trunk

    @property
    def head(self) -> Head:
        """This architecture's entry of :data:`HEADS`."""
        return self._head

    def call(self, inputs, training=None, mask=None):
        if self.fast:
            return fast_fcn(self, inputs, training=training)
        return super().call(inputs, training=training, mask=mask)

    def get_config(self) -> dict:
        return {
            **self._identity_config(),
            "architecture": self.architecture, "num_classes": self.num_classes, "backbone": self.backbone,
            "input_shape": list(self._input_shape_arg), "trainable_upsampling": self._trainable_upsampling,
            "fast": self._fast,
        }


def build_fcn(
    architecture: str,
    num_classes: int | None = None,
    input_shape: tuple = (None, None, 3),
    include_preprocessing: bool = False,
    trainable_upsampling: bool = False,
    weights: str | None = None,
    backbone: str = "vgg16",
    name: str | None = None,
    *,
    class_names: Sequence[str] | None = None,
    palette=None,
    ignore_label: int = IGNORE_LABEL,
    preprocessing: str | None = None,
    card: dict | None = None,
    fast: bool = True,
) -> FCN:
    """Builds any FCN of :data:`HEADS` over any backbone of :data:`backbones.BACKBONES`.

    Arguments are those of :func:`fcn8s`; ``architecture`` is a key of ``HEADS``.
    ``fast=False`` makes calls run the plain layer-by-layer graph (same weights,
    same outputs to float rounding, more arithmetic): for checking and measuring
    the exact fast formulations.

    Example:
        >>> build_fcn("fcn16s", num_classes=5, backbone="mobilenet_v2").output_shape
        (None, None, None, 5)
    """
    if weights is not None and not isinstance(weights, str):
        raise ValueError(f"weights must be None, 'imagenet' or a file path, got {weights!r}")
    # The reference trunk is initialised after construction; keras.applications encoders load their own.
    reference = backbones.get_backbone(backbone).reference
    model = FCN(architecture, num_classes, class_names=class_names, palette=palette, ignore_label=ignore_label,
                backbone=backbone, input_shape=input_shape, include_preprocessing=include_preprocessing,
                preprocessing=preprocessing, trainable_upsampling=trainable_upsampling, fast=fast, card=card,
                backbone_weights=None if reference else weights, name=name)
    if weights is not None and reference:
        backbones.load_vgg16_weights(model, weights)
    return model


def _builder(architecture: str):
    def build(
        num_classes: int | None = None,
        input_shape: tuple = (None, None, 3),
        include_preprocessing: bool = False,
        trainable_upsampling: bool = False,
        weights: str | None = None,
        backbone: str = "vgg16",
        name: str | None = None,
        *,
        class_names: Sequence[str] | None = None,
        palette=None,
        ignore_label: int = IGNORE_LABEL,
        preprocessing: str | None = None,
        card: dict | None = None,
    ) -> FCN:
        return build_fcn(architecture, num_classes, input_shape, include_preprocessing, trainable_upsampling,
                         weights, backbone, name, class_names=class_names, palette=palette,
                         ignore_label=ignore_label, preprocessing=preprocessing, card=card)

    build.__name__ = build.__qualname__ = architecture
    return build


_BUILDER_DOC = """Builds {title}: {summary}

    Args:
        num_classes: number of classes (default 21 for PASCAL VOC, background +
            20, or the length of ``class_names``).
        input_shape: ``(height, width, 3)``; ``None`` sizes accept any image size.
        include_preprocessing: take RGB images with values 0-255 and preprocess
            inside the model (for VGG16: RGB->BGR and the reference mean).
        trainable_upsampling: learn the bilinear-initialised upsampling (the
            paper's variant); fixed by default, as in the reference code.
        weights: ``None`` (score layers zero, the rest Keras' default init),
            ``"imagenet"``, or the path of a keras.applications VGG16 weights
            file with top, converted Dense->Conv into conv1_1 ... fc7.
        backbone: ``"vgg16"`` (the reference), ``"mobilenet_v2"``, ``"resnet50"``
            or ``"tiny_vgg"``.
        name: model name; defaults to the architecture's.
        class_names: the class names (default ``"class 0"`` ... ``"class N-1"``).
        palette: ``(num_classes, 3)`` RGB colours (default: the VOC colour map).
        ignore_label: label value of void pixels (255).
        preprocessing: the input mode (default the backbone's; see
            :data:`fcn_keras.preprocessing.MODES`).
        card: zoo provenance to carry (name, source, checksum, published metrics).

    Returns:
        An :class:`FCN` mapping ``(N, H, W, 3)`` images to float32 logits
        ``(N, H, W, num_classes)`` of exactly the input's size.

    Example:
        >>> model = {arch}(num_classes=21)
        >>> model.output_shape, model.class_names[:2]
        ((None, None, None, 21), ('class 0', 'class 1'))
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
