"""SegNet (Badrinarayanan, Kendall, Cipolla, PAMI 2017): a VGG16 encoder and its mirror decoder, unpooled by switches.

The network of alexgkendall/SegNet-Tutorial ``Models/segnet_train.prototxt``
(and ``segnet_inference.prototxt``), layer for layer and by the prototxt's
layer names:

- encoder: VGG16's 13 convolutions ``conv1_1`` ... ``conv5_3`` (3x3, pad 1),
  each followed by batch normalization ``conv{b}_{i}_bn`` and ``relu{b}_{i}``;
  each block ends in 2x2/stride-2 max pooling ``pool{b}`` that keeps its
  switches (Caffe's ``pool{b}_mask``);
- decoder: per block in reverse, ``upsample{b}`` puts the values at the
  switches of ``pool{b}`` (:class:`fcn_keras.models.unpooling.Unpooling2D`),
  then 3x3 convolutions ``conv{b}_{i}_D`` + ``conv{b}_{i}_D_bn`` +
  ``relu{b}_{i}_D`` for ``i`` from the block's last convolution down to 1, each
  mapping back to the channels its encoder twin took in: 512, 512, 512 |
  512, 512, 256 | 256, 256, 128 | 128, 64 | 64, classes. The last,
  ``conv1_1_D``, gives the scores (no batch norm, no ReLU).

Caffe pools in ceil mode and SegNet's ``Upsample`` takes the encoder map's size
(``upsample_h``/``upsample_w``: CamVid's 360x480 pools 45 -> 23 and unpools
23 -> 45), so every input size works and the logits have the input's size.
"""

from __future__ import annotations

from typing import Sequence

import keras
from keras import layers

from fcn_keras.models.backbones import VGG16_BLOCKS, vgg16_convolutions
from fcn_keras.models.family_model import FamilyModel, check_alpha, check_weights, width
from fcn_keras.models.unpooling import Unpooling2D
from fcn_keras.palette import IGNORE_LABEL

BN_EPSILON = 1e-9
"""caffe-segnet's (and DeconvNet's Caffe) ``BN`` layer: ``var_eps_ = 1e-9`` (bn_layer.cpp)."""

BN_SHIFT_INIT = 0.001
"""The prototxts' ``shift_filler`` (constant 0.001); ``scale_filler`` is constant 1."""

CAMVID_CLASS_NAMES: tuple[str, ...] = (
    "Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car", "Pedestrian", "Bicyclist",
)
"""SegNet-Tutorial's CamVid classes in label order (Scripts/test_segmentation_camvid.py); 11 = Unlabelled, ignored."""

CAMVID_CLASS_WEIGHTS: tuple[float, ...] = (
    0.2595, 0.1826, 4.5640, 0.1417, 0.9051, 0.3826, 9.6446, 1.8418, 0.6823, 6.2478, 7.3614,
)
"""segnet_train.prototxt's ``class_weighting`` (median frequency balancing), in :data:`CAMVID_CLASS_NAMES`' order."""


def msra_initializer() -> keras.initializers.Initializer:
    """Caffe's ``msra`` filler: a Gaussian (not truncated) of variance 2 / fan_in, as the prototxt's convolutions use.

    Example:
        >>> msra_initializer().get_config()["distribution"]
        'untruncated_normal'
    """
    return keras.initializers.VarianceScaling(2.0, "fan_in", "untruncated_normal")


def conv_bn_relu(x, filters: int, kernel_size: int, names: tuple[str, str, str], *, padding: str = "same",
                 transpose: bool = False, kernel_initializer=None):
    """Caffe's Convolution (or Deconvolution) + BN + ReLU triple, its three layers named ``names``.

    The batch normalization is the Caffe ``BN`` layer's: epsilon
    :data:`BN_EPSILON`, scale 1 and shift :data:`BN_SHIFT_INIT` at start.

    Example:
        >>> y = conv_bn_relu(keras.Input((8, 8, 3)), 4, 3, ("conv1_1", "conv1_1_bn", "relu1_1"))
        >>> tuple(y.shape)
        (None, 8, 8, 4)
    """
    conv_name, bn_name, relu_name = names
    conv = layers.Conv2DTranspose if transpose else layers.Conv2D
    x = conv(filters, kernel_size, padding=padding, kernel_initializer=kernel_initializer or msra_initializer(),
             name=conv_name)(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, beta_initializer=keras.initializers.Constant(BN_SHIFT_INIT),
                                  name=bn_name)(x)
    return layers.ReLU(name=relu_name)(x)


@keras.saving.register_keras_serializable(package="fcn_keras")
class SegNet(FamilyModel):
    """SegNet as :func:`segnet` builds it; see the module docstring for its layers."""

    ARCHITECTURE = "segnet"
    BACKBONE = "vgg16"
    DEFAULT_NUM_CLASSES = len(CAMVID_CLASS_NAMES)
    PREPROCESSING = "segnet"
    OPTIONS = {"alpha": 1.0}

    @classmethod
    def graph(cls, x, image, num_classes: int, alpha: float):
        alpha = check_alpha(alpha)
        encoder_maps = {}
        for block, (filters, convs) in enumerate(VGG16_BLOCKS, start=1):
            for i in range(1, convs + 1):
                x = conv_bn_relu(x, width(filters, alpha), 3, (f"conv{block}_{i}", f"conv{block}_{i}_bn",
                                                               f"relu{block}_{i}"))
            encoder_maps[block] = x
            x = layers.MaxPooling2D(2, 2, padding="same", name=f"pool{block}")(x)
        for block in range(len(VGG16_BLOCKS), 0, -1):
            filters, convs = VGG16_BLOCKS[block - 1]
            x = Unpooling2D(name=f"upsample{block}")([x, encoder_maps[block]])
            for i in range(convs, 0, -1):
                if (block, i) == (1, 1):
                    break
                # Each decoder convolution maps back to the channels its encoder twin took in.
                out = filters if i > 1 else VGG16_BLOCKS[block - 2][0]
                x = conv_bn_relu(x, width(out, alpha), 3, (f"conv{block}_{i}_D", f"conv{block}_{i}_D_bn",
                                                           f"relu{block}_{i}_D"))
        return layers.Conv2D(num_classes, 3, padding="same", kernel_initializer=msra_initializer(),
                             dtype="float32", name="conv1_1_D")(x)


def segnet(
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
) -> SegNet:
    """SegNet (Badrinarayanan, Kendall, Cipolla, PAMI 2017) as alexgkendall/SegNet-Tutorial's segnet_train.prototxt.

    Any input size works (ceil-mode pooling, unpooling to each encoder map's
    size); the float32 logits have the input's height and width. Defaults
    follow the tutorial's CamVid network: 11 classes
    (:data:`CAMVID_CLASS_NAMES`; the tutorial's label 11, Unlabelled, is its
    ``ignore_label`` and has no score) and the ``"segnet"`` preprocessing (its
    ``DenseImageData`` layer feeds OpenCV's BGR 0-255 pixels, no mean, no
    scale). Training used median-frequency class weights
    (:data:`CAMVID_CLASS_WEIGHTS`). At ``alpha=1`` with 11 classes it has
    29,465,227 weights, 29,449,355 of them trainable (the paper's 29.45M; the
    rest are batch-norm statistics).

    Args:
        num_classes: classes scored by ``conv1_1_D``; 11 when neither it nor ``class_names`` is given.
        input_shape: ``(height, width, 3)``, sizes may be ``None``.
        include_preprocessing: put the preprocessing inside the model (then it takes RGB 0-255 images).
        weights: ``None`` (Caffe's ``msra`` initialisation), or ``"imagenet"`` / the path of keras.applications'
            VGG16 no-top weights file for ``conv1_1`` ... ``conv5_3`` (the paper's encoder initialisation;
            needs ``alpha=1``).
        alpha: width multiplier of every hidden layer (1 is the authors' network).
        name, class_names, palette, ignore_label, preprocessing, card: the model's identity
            (:class:`fcn_keras.models.SegmentationModel`).

    Example:
        >>> model = segnet(num_classes=3, alpha=1 / 16)
        >>> tuple(model(keras.ops.zeros((1, 37, 50, 3))).shape), model.get_layer("upsample4").name
        ((1, 37, 50, 3), 'upsample4')
    """
    alpha = check_alpha(alpha)
    check_weights(weights, alpha, "segnet")
    convolutions = vgg16_convolutions(weights, "segnet(weights=<path>)") if weights is not None else {}
    if num_classes is None and class_names is None:
        class_names = CAMVID_CLASS_NAMES
    model = SegNet(num_classes, class_names=class_names, palette=palette, ignore_label=ignore_label,
                   input_shape=input_shape, include_preprocessing=include_preprocessing,
                   preprocessing=preprocessing, card=card, name=name, alpha=alpha)
    for layer_name, values in convolutions.items():
        model.get_layer(layer_name).set_weights(values)
    return model
