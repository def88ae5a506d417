"""PSPNet (Zhao, Shi, Qi, Wang, Jia, CVPR 2017), as released in hszhao/PSPNet (pspnet50_ADE20K_473.prototxt).

The encoder is ResNet50 dilated to output stride 8 (:mod:`fcn_keras.models.resnet`;
the authors' "deep base" stem by default). The pyramid pooling module averages
``conv5_3`` into 1x1, 2x2, 3x3 and 6x6 bins (:class:`AdaptiveAveragePooling2D`;
the release's fixed 60/30/20/10 windows of its 60x60 map are these bins), reduces
each to a quarter of the channels (1x1 convolution + BN + ReLU), resizes them back
(:class:`Interp`, bilinear with aligned corners) and concatenates them with
``conv5_3``; then ``conv5_4`` (3x3, 512, BN, ReLU), dropout 0.1, ``conv6`` (1x1 to
the classes) and ``conv6_interp`` (x8). The auxiliary head of training (3x3, 256,
BN, ReLU, dropout 0.1, 1x1 to the classes on conv4's output, loss weight 0.4) is
optional (``aux=True``); the model's output stays the main logits, and
:func:`auxiliary_model` gives the two-output model to train.

Sizes: the release runs 473x473 crops (``8 x 59 + 1``): with aligned corners a
map ``k + 1`` wide upsamples x8 to exactly ``8k + 1`` pixels. The models accept
any size: like the authors' evaluation (``pre_img.m``, which pads each crop to
473 with the mean colour at the bottom/right and crops the scores), they
zero-pad the (mean-subtracted) image at the bottom/right to the next ``8k + 1``
and crop the logits back to the image.
"""

from __future__ import annotations

from typing import Sequence

import keras
from keras import layers, ops

from fcn_keras.models.family_model import FamilyModel, check_alpha, width
from fcn_keras.models.layers import CropToReference
from fcn_keras.models.pooling import AdaptiveAveragePooling2D, Interp
from fcn_keras.models.resnet import check_stem, conv_bn, copy_keras_resnet50_weights, dilated_resnet50, keras_resnet50
from fcn_keras.palette import IGNORE_LABEL

BINS: tuple[int, ...] = (6, 3, 2, 1)
"""Pyramid levels in the release's concatenation order (after conv5_3 itself)."""
AUX_LOSS_WEIGHTS: tuple[float, float] = (1.0, 0.4)
"""Loss weights of :func:`auxiliary_model`'s outputs (main, auxiliary), the paper's 0.4."""


@keras.saving.register_keras_serializable(package="fcn_keras")
class PadToStridePlusOne(keras.layers.Layer):
    """Zero-pads height and width at the bottom/right to the next ``stride * k + 1``.

    At these sizes a stride-``stride`` network's map of ``k + 1`` pixels
    upsamples with aligned corners onto the input's pixels exactly.

    Example:
        >>> import numpy as np
        >>> tuple(PadToStridePlusOne(8)(np.zeros((1, 10, 17, 3))).shape)
        (1, 17, 17, 3)
    """

    def __init__(self, stride: int = 8, **kwargs):
        super().__init__(**kwargs)
        if isinstance(stride, bool) or int(stride) != stride or stride < 1:
            raise ValueError(f"PadToStridePlusOne: stride must be a positive integer, got {stride!r}")
        self.stride = int(stride)

    def call(self, inputs):
        shape = ops.shape(inputs)
        s = self.stride
        # (s - (n - 1) % s) % s with n >= 1: no negative operand for converters' truncating Mod.
        pad_h = (s - (shape[1] - 1) % s) % s
        pad_w = (s - (shape[2] - 1) % s) % s
        padded = ops.pad(inputs, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]])
        # Restate the static channels, lost through a pad by runtime amounts (as in PadToMultiple).
        channels = inputs.shape[-1] if inputs.shape[-1] is not None else shape[3]
        return ops.reshape(padded, (-1, shape[1] + pad_h, shape[2] + pad_w, channels))

    def compute_output_shape(self, input_shape):
        def padded(size):
            return None if size is None else -(-(size - 1) // self.stride) * self.stride + 1

        return (input_shape[0], padded(input_shape[1]), padded(input_shape[2]), input_shape[3])

    def get_config(self):
        return {**super().get_config(), "stride": self.stride}


@keras.saving.register_keras_serializable(package="fcn_keras")
class WithAuxiliary(keras.layers.Layer):
    """Returns its first input (as float32); the others are auxiliary outputs kept in the model's graph.

    ``WithAuxiliary()([main, auxiliary])`` is ``main``: the auxiliary head's
    layers and weights belong to the model (saved, loaded, counted) while the
    model's output stays the main logits. Compiled runtimes (XLA, TF graphs,
    TFLite) drop the unused auxiliary computation at inference.
    """

    def call(self, inputs):
        return ops.cast(inputs[0], self.compute_dtype)

    def compute_output_shape(self, input_shapes):
        return input_shapes[0]


@keras.saving.register_keras_serializable(package="fcn_keras")
class PSPNet(FamilyModel):
    """PSPNet over whole images: see the module docstring and :func:`pspnet`."""

    ARCHITECTURE = "pspnet"
    BACKBONE = "resnet50"
    DEFAULT_NUM_CLASSES = 21
    PREPROCESSING = "caffe"
    OPTIONS = {"alpha": 1.0, "stem": "deep", "aux": False}

    @classmethod
    def graph(cls, x, image, num_classes, alpha, stem, aux):
        alpha, stem = check_alpha(alpha), check_stem(stem)
        if not isinstance(aux, bool):
            raise ValueError(f"aux must be True or False, got {aux!r}")
        padded = PadToStridePlusOne(8, name="pad_to_8k1")(x)
        features = dilated_resnet50(padded, stem, alpha)
        conv5 = features["conv5"]
        branches = [conv5]
        for bins in BINS:
            name = f"conv5_3_pool{bins}"
            y = AdaptiveAveragePooling2D(bins, name=name)(conv5)
            y = conv_bn(y, width(512, alpha), 1, f"{name}_conv")
            branches.append(Interp(name=f"{name}_interp")([y, conv5]))
        y = layers.Concatenate(name="conv5_3_concat")(branches)
        y = conv_bn(y, width(512, alpha), 3, "conv5_4")
        y = layers.Dropout(0.1, name="conv5_4_dropout")(y)
        y = layers.Conv2D(num_classes, 1, kernel_initializer="he_normal", name="conv6")(y)
        y = Interp(name="conv6_interp")([y, padded])
        y = CropToReference(0, name="crop")([y, image])
        if not aux:
            return layers.Activation("linear", dtype="float32", name="score")(y)
        a = conv_bn(features["conv4"], width(256, alpha), 3, "conv4_aux")
        a = layers.Dropout(0.1, name="conv4_aux_dropout")(a)
        a = layers.Conv2D(num_classes, 1, kernel_initializer="he_normal", name="conv6_aux")(a)
        a = Interp(name="conv6_aux_interp")([a, padded])
        a = CropToReference(0, name="crop_aux")([a, image])
        a = layers.Activation("linear", dtype="float32", name="score_aux")(a)
        return WithAuxiliary(dtype="float32", name="score")([y, a])


def auxiliary_model(model: PSPNet) -> keras.Model:
    """The two-output training model of a PSPNet built with ``aux=True``: ``[main, auxiliary]`` logits.

    Both are float32 ``(N, H, W, num_classes)``; the layers and variables are
    ``model``'s own, so training this trains ``model``. Compile it with
    ``loss_weights=list(AUX_LOSS_WEIGHTS)`` (1 and 0.4, the paper's). Its
    outputs are the layers ``score`` and ``score_aux``.

    Example:
        >>> model = pspnet(num_classes=3, alpha=1 / 32, aux=True)
        >>> training = auxiliary_model(model)
        >>> [tuple(o.shape) for o in training.outputs], training.get_layer("conv6") is model.get_layer("conv6")
        ([(None, None, None, 3), (None, None, None, 3)], True)
    """
    if not isinstance(model, PSPNet) or not model.options["aux"]:
        raise ValueError("auxiliary_model needs a PSPNet built with aux=True (pspnet(..., aux=True))")
    return keras.Model(model.input, [model.output, model.get_layer("score_aux").output], name=f"{model.name}_aux")


def pspnet(
    num_classes: int | None = None,
    input_shape: tuple = (None, None, 3),
    include_preprocessing: bool = False,
    weights: str | None = None,
    alpha: float = 1.0,
    name: str | None = None,
    *,
    stem: str = "deep",
    aux: bool = False,
    class_names: Sequence[str] | None = None,
    palette=None,
    ignore_label: int = IGNORE_LABEL,
    preprocessing: str | None = None,
    card: dict | None = None,
) -> PSPNet:
    """Builds PSPNet with a dilated ResNet50 (Zhao et al., CVPR 2017; hszhao/PSPNet pspnet50_ADE20K_473.prototxt).

    Args:
        num_classes: number of classes (default 21, PASCAL VOC).
        input_shape: ``(height, width, 3)``; ``None`` sizes accept any size
            (every size from 1 pixel up works).
        include_preprocessing: take RGB 0-255 images and apply the authors'
            preprocessing inside the model (``"caffe"``: BGR minus the ImageNet
            mean 103.939, 116.779, 123.68, as in eval_all.m).
        weights: ``None``, or ``"imagenet"`` / the path of a keras.applications
            ResNet50 ``.h5`` file, loaded exactly into the encoder; only with
            ``stem="standard"`` and ``alpha=1`` (the authors' deep-base stem has
            no keras.applications weights).
        alpha: width multiplier of every hidden layer (1: the authors' network).
        name: model name (default ``"pspnet"``).
        stem: ``"deep"`` (the release's three 3x3 convolutions) or
            ``"standard"`` (ResNet50's 7x7 convolution, keras.applications').
        aux: also build the auxiliary head on conv4 (for training through
            :func:`auxiliary_model`; the model's output is unchanged).
        class_names, palette, ignore_label, preprocessing, card: the model's
            identity (see :class:`~fcn_keras.models.SegmentationModel`).

    Returns:
        A :class:`PSPNet` mapping ``(N, H, W, 3)`` to float32 logits ``(N, H, W, num_classes)``.

    Example:
        >>> import numpy as np
        >>> model = pspnet(num_classes=5, alpha=1 / 32)
        >>> model.predict_on_batch(np.zeros((1, 37, 50, 3))).shape
        (1, 37, 50, 5)
    """
    check_stem(stem)
    if weights is not None:
        if not isinstance(weights, str):
            raise ValueError(f"weights must be None, 'imagenet' or a file path, got {weights!r}")
        if stem != "standard" or alpha != 1:
            raise ValueError(
                f"weights={weights!r} are keras.applications ResNet50's, which fit only stem='standard' and "
                f"alpha=1 (got stem={stem!r}, alpha={alpha!r}); the authors' deep-stem ResNet50 weights are in "
                "their Caffe release"
            )
    # Weights first: offline or for a bad file this fails before the model is built.
    app = keras_resnet50(weights) if weights is not None else None
    model = PSPNet(num_classes, class_names=class_names, palette=palette, ignore_label=ignore_label,
                   input_shape=input_shape, include_preprocessing=include_preprocessing, preprocessing=preprocessing,
                   card=card, name=name, alpha=alpha, stem=stem, aux=aux)
    if app is not None:
        copy_keras_resnet50_weights(app, model)
    return model
