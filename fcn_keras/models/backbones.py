"""Encoders under the FCN heads, each giving score sources at strides 8, 16 and 32.

``vgg16`` is the reference trunk (conv1_1 ... fc7 with conv1_1's 100-pixel pad and
ceil-mode pooling, net.py); ``mobilenet_v2`` and ``resnet50`` are
keras.applications encoders for light or fast training, which have no reference
to match; ``tiny_vgg`` is a small from-scratch encoder for demos and tests. Also
here: the Dense->Conv conversion of a classifier (:func:`convolutionalize`) and
the ImageNet initialisation it enables.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

import numpy as np
import keras
from keras import layers

from fcn_keras.models.layers import PadToMultiple

# (filters, convolutions) per VGG16 block; every block ends in a 2x2/2 ceil-mode max pool.
VGG16_BLOCKS: tuple[tuple[int, int], ...] = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))
REFERENCE_PAD = 100
"""conv1_1's zero padding in the reference: it makes every input size alignable."""


@dataclass(frozen=True)
class Backbone:
    """How to build one encoder.

    ``taps`` name the layers giving the stride 8/16/32 features of a
    keras.applications model; ``reference`` marks the exact reference geometry
    (100-pixel pad, crop offsets from the reference) instead of padding the input
    to a multiple of 32 and upsampling with ``padding="same"``.
    """

    name: str
    preprocessing: str
    reference: bool = False
    application: Callable | None = None
    taps: tuple[str, str, str] = ()


def tiny_vgg(include_top: bool = False, weights: str | None = None, input_shape: tuple = (None, None, 3),
             widths: tuple[int, ...] = (16, 32, 64, 96, 128)) -> keras.Model:
    """A narrow VGG-style encoder (two 3x3 convs + 2x2 pool per block, no batch norm), for quick demos.

    It trains from scratch in a minute or two on a CPU (no batch-norm statistics
    to settle, unlike MobileNetV2 from scratch); it has no pretrained weights.
    ``include_top`` exists for keras.applications' signature and must be False.

    Example:
        >>> tiny_vgg().get_layer("block5_pool").output.shape
        (None, None, None, 128)
    """
    if include_top or weights is not None:
        raise ValueError("tiny_vgg has no classifier top and no pretrained weights: use include_top=False, weights=None")
    inputs = keras.Input(input_shape)
    x = inputs
    for block, width in enumerate(widths, start=1):
        for i in (1, 2):
            x = layers.Conv2D(width, 3, padding="same", activation="relu", kernel_initializer="he_normal",
                              name=f"block{block}_conv{i}")(x)
        x = layers.MaxPooling2D(2, name=f"block{block}_pool")(x)
    return keras.Model(inputs, x, name="tiny_vgg")


BACKBONES: dict[str, Backbone] = {
    "vgg16": Backbone("vgg16", preprocessing="fcn", reference=True),
    "mobilenet_v2": Backbone(
        "mobilenet_v2",
        preprocessing="tf",
        application=keras.applications.MobileNetV2,
        taps=("block_6_expand_relu", "block_13_expand_relu", "out_relu"),
    ),
    "resnet50": Backbone(
        "resnet50",
        preprocessing="caffe",
        application=keras.applications.ResNet50,
        taps=("conv3_block4_out", "conv4_block6_out", "conv5_block3_out"),
    ),
    "tiny_vgg": Backbone(
        "tiny_vgg", preprocessing="tf", application=tiny_vgg, taps=("block3_pool", "block4_pool", "block5_pool"),
    ),
}


def get_backbone(name: str) -> Backbone:
    """Looks up a backbone by name, with an error that lists the known ones.

    Example:
        >>> get_backbone("mobilenet_v2").preprocessing
        'tf'
    """
    if name not in BACKBONES:
        raise ValueError(f"Unknown backbone={name!r}; choose one of {sorted(BACKBONES)}")
    return BACKBONES[name]


def trunk(spec: Backbone, x, backbone_weights: str | None = None) -> dict[int, object]:
    """The backbone ``spec``'s features of ``x`` by stride (8, 16, 32): the reference trunk or a keras.applications one.

    Example:
        >>> sorted(trunk(get_backbone("tiny_vgg"), keras.Input((64, 64, 3))))
        [8, 16, 32]
    """
    if spec.reference:
        return vgg16_trunk(x)
    return application_trunk(spec, x, backbone_weights)


def vgg16_trunk(x) -> dict[int, object]:
    """The reference trunk conv1_1 ... drop7 (net.py) applied to ``x``; returns features by stride.

    Stride 8 is ``pool3``, 16 ``pool4`` and 32 ``drop7`` (fc7 after dropout).
    Caffe's ``pad=100`` of conv1_1 is the ``pad1`` zero padding before a valid
    convolution; every other convolution is 3x3 with ``pad=1`` ("same"), and
    every pooling rounds up (``padding="same"``), as Caffe's does. The models
    compute this network faster, exactly, over the same layers
    (:mod:`fcn_keras.models.fast`).

    Example:
        >>> features = vgg16_trunk(keras.Input((64, 80, 3)))
        >>> [tuple(features[s].shape[1:3]) for s in (8, 16, 32)]
        [(33, 35), (17, 18), (3, 3)]
    """
    x = layers.ZeroPadding2D(REFERENCE_PAD, name="pad1")(x)
    features = {}
    for block, (filters, convs) in enumerate(VGG16_BLOCKS, start=1):
        for i in range(1, convs + 1):
            padding = "valid" if (block, i) == (1, 1) else "same"
            x = layers.Conv2D(filters, 3, padding=padding, activation="relu", name=f"conv{block}_{i}")(x)
        x = layers.MaxPooling2D(2, 2, padding="same", name=f"pool{block}")(x)
        features[2**block] = x
    x = layers.Conv2D(4096, 7, padding="valid", activation="relu", name="fc6")(x)
    x = layers.Dropout(0.5, name="drop6")(x)
    x = layers.Conv2D(4096, 1, activation="relu", name="fc7")(x)
    x = layers.Dropout(0.5, name="drop7")(x)
    return {8: features[8], 16: features[16], 32: x}


def application_trunk(backbone: Backbone, x, weights: str | None) -> dict[int, object]:
    """Applies a keras.applications encoder to ``x`` padded to a multiple of 32."""
    try:
        app = backbone.application(include_top=False, weights=weights, input_shape=(None, None, 3))
    except Exception as exc:  # keras raises several types for unreadable or mismatching files
        raise ValueError(f"weights={weights!r} could not be loaded into {backbone.name}: {exc}") from exc
    encoder = keras.Model(app.input, [app.get_layer(tap).output for tap in backbone.taps], name=backbone.name)
    padded = PadToMultiple(32, name="pad_to_32")(x)
    return dict(zip((8, 16, 32), encoder(padded)))


def convolutionalize(model: keras.Model) -> keras.Model:
    """Turns a classifier such as ``keras.applications.VGG16(include_top=True)`` fully convolutional.

    The first ``Dense`` after ``Flatten`` becomes a valid convolution whose
    kernel covers the flattened map (7x7 for VGG16), later ``Dense`` layers
    become 1x1 convolutions; weights are copied (reshaped) and layer names and
    activations are kept. The input becomes ``(None, None, channels)``: on the
    classifier's own input size the output is ``(N, 1, 1, classes)`` equal to the
    classifier's, on larger inputs a stride-32 map of them.

    Example:
        >>> vgg = keras.applications.VGG16(weights=None)
        >>> fcn = convolutionalize(vgg)
        >>> tuple(fcn.get_layer("fc1").kernel.shape)
        (7, 7, 512, 4096)
    """
    inputs = keras.Input((None, None, model.input_shape[-1]), name="image")
    x = inputs
    flattened_shape = None
    copies = []
    for layer in model.layers:
        if isinstance(layer, layers.InputLayer):  # functional models list it, Sequential ones do not
            continue
        if isinstance(layer, layers.Flatten):
            flattened_shape = tuple(layer.input.shape[1:])
            continue
        if isinstance(layer, layers.Dense):
            if flattened_shape is not None:
                kh, kw, cin = flattened_shape
                flattened_shape = None
            else:
                kh, kw, cin = 1, 1, layer.kernel.shape[0]
            conv = layers.Conv2D(
                layer.units, (kh, kw), activation=layer.activation, use_bias=layer.use_bias, name=layer.name
            )
            x = conv(x)
            kernel = keras.ops.convert_to_numpy(layer.kernel).reshape(kh, kw, cin, layer.units)
            copies.append((conv, [kernel] + [keras.ops.convert_to_numpy(w) for w in layer.weights[1:]]))
        elif isinstance(layer, (layers.Conv2D, layers.MaxPooling2D, layers.AveragePooling2D, layers.Dropout,
                                layers.Activation, layers.ReLU, layers.ZeroPadding2D)):
            clone = layer.__class__.from_config(layer.get_config())
            x = clone(x)
            copies.append((clone, [keras.ops.convert_to_numpy(w) for w in layer.weights]))
        else:
            raise ValueError(
                f"convolutionalize: layer {layer.name!r} ({type(layer).__name__}) has no convolutional equivalent"
            )
    result = keras.Model(inputs, x, name=f"{model.name}_convolutional")
    for clone, values in copies:
        clone.set_weights(values)
    return result


_VGG16_WEIGHTS_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels.h5"

# keras.applications VGG16 layer -> reference layer.
_VGG16_TO_REFERENCE = {
    **{f"block{b}_conv{i}": f"conv{b}_{i}" for b, (_, n) in enumerate(VGG16_BLOCKS, 1) for i in range(1, n + 1)},
    "fc1": "fc6",
    "fc2": "fc7",
}


VGG16_NOTOP_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"


def keras_cache_dir() -> str:
    """Where keras.applications' downloads go: ``$KERAS_HOME/models``, by default ``~/.keras/models``.

    Example:
        >>> keras_cache_dir().endswith("models")
        True
    """
    return os.path.join(os.environ.get("KERAS_HOME", os.path.join("~", ".keras")), "models")


def vgg16_convolutions(weights: str, usage: str = "weights=<path>") -> dict[str, list]:
    """conv1_1 ... conv5_3's weights from keras.applications' ImageNet VGG16, by the reference's layer names.

    ``weights`` is ``"imagenet"`` (downloads the file without top) or the path of
    a VGG16 ``.h5`` file with or without top (read by layer name). Offline, or
    for a file that does not fit, one error says which and what to do; ``usage``
    says how to pass a file.

    Example:
        >>> vgg16_convolutions("/nonexistent/vgg16_notop.h5")
        Traceback (most recent call last):
        ...
        FileNotFoundError: weights file '/nonexistent/vgg16_notop.h5' does not exist
    """
    if weights == "imagenet":
        try:
            vgg = keras.applications.VGG16(include_top=False, weights="imagenet")
        except Exception as exc:  # get_file raises a bare Exception on network errors
            raise RuntimeError(
                f"Could not download the ImageNet VGG16 weights ({VGG16_NOTOP_FILE}, fetched by "
                f"keras.applications.VGG16(include_top=False)): {exc}. Offline, copy that file (or the with-top "
                f"one, {_VGG16_WEIGHTS_FILE}) into Keras' cache ({keras_cache_dir()}) or pass its path: {usage}."
            ) from exc
    else:
        if not os.path.isfile(weights):
            raise FileNotFoundError(f"weights file {weights!r} does not exist")
        vgg = keras.applications.VGG16(include_top=False, weights=None)
        _load_checked(vgg, weights)  # by layer name: a with-top or a notop file
    return {f"conv{block}_{i}": vgg.get_layer(f"block{block}_conv{i}").get_weights()
            for block, (_, convs) in enumerate(VGG16_BLOCKS, start=1) for i in range(1, convs + 1)}


def load_vgg16_weights(fcn: keras.Model, weights: str) -> None:
    """Initialises an FCN's conv1_1 ... fc7 from ImageNet VGG16 via :func:`convolutionalize`.

    ``weights`` is ``"imagenet"`` (keras.applications downloads the file with
    ``keras.utils.get_file``) or the path of a VGG16 weights file *with top*
    (keras.applications' ``.h5`` layout, or a Keras 3 ``.weights.h5`` of
    ``VGG16(include_top=True)``). A file that does not fit raises an error
    naming the layer and both shapes.
    """
    if weights == "imagenet":
        try:
            vgg = keras.applications.VGG16(include_top=True, weights="imagenet")
        except Exception as exc:  # get_file raises a bare Exception on network errors
            raise RuntimeError(
                "Could not download the ImageNet VGG16 weights with top "
                f"({_VGG16_WEIGHTS_FILE}, fetched by keras.applications.VGG16): {exc}. "
                f"Offline, copy that file from a machine with network access into Keras' cache "
                f"({keras_cache_dir()}), or pass its "
                "path: weights=<path> (build_fcn), --init <path> (fcn-keras train)."
            ) from exc
    else:
        if not os.path.isfile(weights):
            raise FileNotFoundError(f"weights file {weights!r} does not exist")
        vgg = keras.applications.VGG16(include_top=True, weights=None)
        _load_checked(vgg, weights)
    converted = convolutionalize(vgg)
    for source, target in _VGG16_TO_REFERENCE.items():
        fcn.get_layer(target).set_weights(converted.get_layer(source).get_weights())


def _load_checked(model: keras.Model, path: str) -> None:
    """``model.load_weights(path)`` with an error naming the layer and shapes that do not fit."""
    if path.endswith(".weights.h5"):
        try:
            model.load_weights(path)
        except Exception as exc:
            raise ValueError(f"weights file {path!r} does not fit {model.name}: {exc}") from exc
        return
    import h5py  # a dependency of keras

    with h5py.File(path, "r") as f:
        group = f["model_weights"] if "model_weights" in f else f
        for layer in model.layers:
            if not layer.weights:
                continue
            if layer.name not in group:
                raise ValueError(f"weights file {path!r} has no weights for layer {layer.name!r} of {model.name}")
            names = [n.decode() if isinstance(n, bytes) else n for n in group[layer.name].attrs["weight_names"]]
            values = [np.asarray(group[layer.name][n]) for n in names]
            expected = [tuple(w.shape) for w in layer.weights]
            found = [v.shape for v in values]
            if expected != found:
                raise ValueError(
                    f"weights file {path!r} does not fit layer {layer.name!r} of {model.name}: "
                    f"the file has shapes {found}, the layer needs {expected}"
                )
            layer.set_weights(values)
