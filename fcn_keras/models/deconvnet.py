"""DeconvNet (Noh, Hong, Han, ICCV 2015): VGG16 with fc6/fc7, mirrored by unpooling and deconvolution layers.

The network of HyeonwooNoh/DeconvNet ``model/DeconvNet/DeconvNet_inference_deploy.prototxt``
(the same layers as ``training/00{1,2}_stage_*/stage_*_train.prototxt``), by its
layer names:

- encoder: ``conv1_1`` ... ``conv5_3`` (3x3, pad 1), each with batch
  normalization ``bn{b}_{i}`` and ``relu{b}_{i}``, 2x2/stride-2 max pooling
  ``pool{b}`` keeping its switches; ``fc6`` (7x7, valid, 4096) + ``bnfc6`` +
  ``relu6``; ``fc7`` (1x1, 4096) + ``bnfc7`` + ``relu7``; no dropout;
- decoder: ``fc6-deconv`` (7x7 deconvolution back to 512) + ``fc6-deconv-bn`` +
  ``fc6-deconv-relu``; then per pooling in reverse, ``unpool{b}`` with that
  pooling's switches (:class:`fcn_keras.models.unpooling.Unpooling2D`) and 3x3
  pad-1 deconvolutions ``deconv{b}_{i}`` + ``debn{b}_{i}`` + ``derelu{b}_{i}``
  of 512, 512, 512 | 512, 512, 256 | 256, 256, 128 | 128, 64 | 64, 64 channels;
  ``seg-score-voc`` (1x1) gives the scores.

The 7x7 valid ``fc6`` needs ``pool5`` to be at least 7x7; pooling rounds up,
so ``pool5`` is ceil(H/32) x ceil(W/32) and images need height and width of at
least 193 (:data:`MIN_INPUT_SIZE`; the authors run 224x224 proposal crops).
``fc6-deconv`` restores ``pool5``'s size and every unpooling its encoder
map's, so the logits have the input's size.
"""

from __future__ import annotations

import os
from typing import Sequence

import keras
from keras import layers

from fcn_keras.models.backbones import VGG16_BLOCKS, load_vgg16_weights
from fcn_keras.models.family_model import FamilyModel, check_alpha, check_weights, width
from fcn_keras.models.segnet import conv_bn_relu
from fcn_keras.models.unpooling import Unpooling2D
from fcn_keras.palette import IGNORE_LABEL, VOC_CLASSES

MIN_INPUT_SIZE = 6 * 32 + 1
"""The smallest image height/width: pool5 = ceil(size / 32) must be >= 7 for the 7x7 ``fc6``."""


def _gaussian():
    # The prototxt's decoder filler: gaussian, std 0.01 (biases constant 0).
    return keras.initializers.RandomNormal(stddev=0.01)


def check_input_size(input_shape) -> None:
    """A ``ValueError`` naming ``input_shape`` when a known height or width is below :data:`MIN_INPUT_SIZE`.

    Example:
        >>> check_input_size((160, None, 3))
        Traceback (most recent call last):
        ...
        ValueError: deconvnet: input_shape (160, None, 3) has an image height of 160 < 193: the 7x7 fc6 needs pool5 = ceil(size / 32) >= 7, i.e. images of at least 193x193
    """
    for size, side in zip(input_shape[:2], ("height", "width")):
        if size is not None and size < MIN_INPUT_SIZE:
            raise ValueError(
                f"deconvnet: input_shape {tuple(input_shape)} has an image {side} of {size} < {MIN_INPUT_SIZE}: the "
                f"7x7 fc6 needs pool5 = ceil(size / 32) >= 7, i.e. images of at least {MIN_INPUT_SIZE}x{MIN_INPUT_SIZE}"
            )


@keras.saving.register_keras_serializable(package="fcn_keras")
class DeconvNet(FamilyModel):
    """DeconvNet as :func:`deconvnet` builds it; see the module docstring for its layers."""

    ARCHITECTURE = "deconvnet"
    BACKBONE = "vgg16"
    DEFAULT_NUM_CLASSES = 21
    PREPROCESSING = "fcn"
    OPTIONS = {"alpha": 1.0}
    MIN_INPUT_SIZE = MIN_INPUT_SIZE  # read by fcn_keras.export's size check

    @classmethod
    def graph(cls, x, image, num_classes: int, alpha: float):
        alpha = check_alpha(alpha)
        check_input_size(tuple(image.shape[1:]))
        encoder_maps = {}
        for block, (filters, convs) in enumerate(VGG16_BLOCKS, start=1):
            for i in range(1, convs + 1):
                x = conv_bn_relu(x, width(filters, alpha), 3, (f"conv{block}_{i}", f"bn{block}_{i}", f"relu{block}_{i}"))
            encoder_maps[block] = x
            x = layers.MaxPooling2D(2, 2, padding="same", name=f"pool{block}")(x)
        x = conv_bn_relu(x, width(4096, alpha), 7, ("fc6", "bnfc6", "relu6"), padding="valid")
        x = conv_bn_relu(x, width(4096, alpha), 1, ("fc7", "bnfc7", "relu7"))
        x = conv_bn_relu(x, width(512, alpha), 7, ("fc6-deconv", "fc6-deconv-bn", "fc6-deconv-relu"),
                         padding="valid", transpose=True, kernel_initializer=_gaussian())
        for block in range(len(VGG16_BLOCKS), 0, -1):
            filters, convs = VGG16_BLOCKS[block - 1]
            x = Unpooling2D(name=f"unpool{block}")([x, encoder_maps[block]])
            for i in range(1, convs + 1):
                # The last deconvolution of a block maps to the channels the block took in (conv1's: 64).
                out = VGG16_BLOCKS[max(block - 2, 0)][0] if i == convs else filters
                x = conv_bn_relu(x, width(out, alpha), 3, (f"deconv{block}_{i}", f"debn{block}_{i}",
                                                           f"derelu{block}_{i}"),
                                 transpose=True, kernel_initializer=_gaussian())
        return layers.Conv2D(num_classes, 1, kernel_initializer=_gaussian(), dtype="float32", name="seg-score-voc")(x)


def deconvnet(
    num_classes: int | None = None,
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
) -> DeconvNet:
    """DeconvNet (Noh, Hong, Han, ICCV 2015) as HyeonwooNoh/DeconvNet's DeconvNet_inference_deploy.prototxt.

    Images must be at least 193x193 (:data:`MIN_INPUT_SIZE`): a smaller known
    size in ``input_shape`` raises a ``ValueError`` here; with ``None`` sizes a
    smaller image fails when called (``fc6`` has nothing to convolve). Every
    size from 193 up works, odd ones included; the float32 logits have the
    input's size. Defaults follow the released network: the 21 VOC classes and
    the ``"fcn"`` preprocessing (BGR minus 104.00698793, 116.66876762,
    122.67891434: inference/util/preprocess_image.m). At ``alpha=1`` with 21
    classes it has 251,839,061 weights, 251,805,653 of them trainable (the
    paper's 252M; the rest are batch-norm statistics).

    Args:
        num_classes: classes scored by ``seg-score-voc``; 21 when neither it nor ``class_names`` is given.
        input_shape: ``(height, width, 3)``, sizes ``None`` or at least 193.
        include_preprocessing: put the preprocessing inside the model (then it takes RGB 0-255 images).
        weights: ``None`` (Caffe's ``msra`` for the encoder, the prototxt's Gaussian of std 0.01 for the decoder),
            or ``"imagenet"`` / the path of keras.applications' VGG16 weights file *with top* for ``conv1_1`` ...
            ``fc7`` (fc6/fc7 converted to convolutions, as the paper initialises; needs ``alpha=1``).
        alpha: width multiplier of every hidden layer (1 is the authors' network).
        name, class_names, palette, ignore_label, preprocessing, card: the model's identity
            (:class:`fcn_keras.models.SegmentationModel`).

    Example:
        >>> model = deconvnet(num_classes=3, alpha=1 / 16)
        >>> tuple(model(keras.ops.zeros((1, 193, 200, 3))).shape), model.get_layer("fc6").output.shape[-1]
        ((1, 193, 200, 3), 256)
    """
    alpha = check_alpha(alpha)
    check_weights(weights, alpha, "deconvnet")
    if weights not in (None, "imagenet") and not os.path.isfile(weights):
        raise FileNotFoundError(f"deconvnet: weights file {weights!r} does not exist")  # before a 252M build
    if num_classes is None and class_names is None:
        class_names = VOC_CLASSES
    model = DeconvNet(num_classes, class_names=class_names, palette=palette, ignore_label=ignore_label,
                      input_shape=input_shape, include_preprocessing=include_preprocessing,
                      preprocessing=preprocessing, card=card, name=name, alpha=alpha)
    if weights is not None:
        load_vgg16_weights(model, weights)
    return model
