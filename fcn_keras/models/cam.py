"""Class activation maps (Zhou et al., CVPR 2016): where a GAP classifier sees each class, as a segmentation model.

A classifier that ends in convolutional features ``f_k(x, y)``, global average
pooling and a fully connected layer scores class ``c`` with
``z_c = sum_k w_k^c mean_xy f_k(x, y) + b_c``. Its class activation map is
``M_c(x, y) = sum_k w_k^c f_k(x, y)``: by the linearity of the average,
``mean_xy M_c = z_c - b_c``. The paper upsamples the maps to the image and
localizes by thresholding them (:mod:`fcn_keras.localization`).

Two ways in, one model class out, so ``predict``, the exports and the CLI work
unchanged on the maps (the per-pixel "logits" are ``M_c`` at the input's size):

- :func:`class_activation_model` takes ANY Keras classifier ending in
  ``GlobalAveragePooling2D -> Dense`` (``keras.applications.ResNet50`` or
  ``MobileNetV2`` with ``include_top=True``, ...) and returns a
  :class:`~fcn_keras.models.SegmentationModel` (architecture ``"cam"``) over
  the classifier's own layers and variables;
- :func:`cam_vgg16` builds the paper's VGG16-CAM (``deploy_vgg16CAM.prototxt``
  of zhoubolei/CAM) directly as that segmentation model, and
  :func:`cam_classifier` gives its classifier (``CAM_pool``, ``CAM_dropout``,
  ``CAM_fc``, ``prob``) over the same variables, to train with image labels.

In both, the layer named like the classifier's ``Dense`` (``CAM_fc`` in
VGG16-CAM, ``predictions`` in keras.applications) is a
:class:`ClassActivationMaps` holding that ``Dense``: its output is ``M_c`` at
the features' resolution, and its weights are the ``Dense``'s (so Caffe blobs
map by name). The last layer, ``score``, resizes the maps bilinearly to the
input's size (:class:`ResizeToReference`), in float32.

Example:
    >>> import numpy as np
    >>> model = cam_vgg16(num_classes=3, alpha=1 / 16)
    >>> model.predict(np.zeros((1, 37, 50, 3)), verbose=0).shape
    (1, 37, 50, 3)
    >>> cam_classifier(model).output_shape
    (None, 3)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import keras
from keras import layers, ops

from fcn_keras.models.backbones import VGG16_BLOCKS, vgg16_convolutions
from fcn_keras.models.family_model import FamilyModel, check_alpha, width
from fcn_keras.models.layers import Preprocessing
from fcn_keras.models.segmentation_model import SegmentationModel
from fcn_keras.palette import IGNORE_LABEL
from fcn_keras.preprocessing import MODES

_PACKAGE = "fcn_keras"

CAM_CONV_GROUPS = 2
"""``CAM_conv``'s ``group: 2`` in deploy_vgg16CAM.prototxt: two halves of conv5_3 feed two halves of its 1024 maps."""


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ClassActivationMaps(keras.layers.Layer):
    """``M_c(x, y) = sum_k w_k^c f_k(x, y)``: a classifier's ``Dense`` kernel applied at every feature position.

    Holds the ``Dense`` itself (its weights are this layer's weights); the bias
    and the activation are not applied, as in the paper and the authors'
    ``returnCAMmap.m``. Input ``(N, h, w, K)`` features, output ``(N, h, w, C)``.

    Example:
        >>> import numpy as np
        >>> dense = keras.layers.Dense(2)
        >>> dense.build((None, 3))
        >>> maps = ClassActivationMaps(dense)(np.ones((1, 4, 5, 3), "float32"))
        >>> np.allclose(maps[0, 0, 0], keras.ops.sum(dense.kernel, axis=0))
        True
    """

    def __init__(self, dense: layers.Dense | dict, **kwargs):
        super().__init__(**kwargs)
        if isinstance(dense, dict):
            dense = keras.saving.deserialize_keras_object(dense)
        if not isinstance(dense, layers.Dense):
            raise ValueError(f"ClassActivationMaps needs a keras.layers.Dense, got {type(dense).__name__}")
        self.dense = dense

    def build(self, input_shape):
        if not self.dense.built:
            self.dense.build((None, input_shape[-1]))
        rows = self.dense.kernel.shape[0]
        if input_shape[-1] is not None and input_shape[-1] != rows:
            raise ValueError(f"ClassActivationMaps {self.name!r}: the features have {input_shape[-1]} channels but "
                             f"the Dense {self.dense.name!r} takes {rows}")

    def call(self, features):
        kernel = ops.cast(self.dense.kernel, features.dtype)
        # A 1x1 convolution: one CONV_2D in every runtime, rather than a 4-D by 2-D matmul.
        return ops.conv(features, ops.reshape(kernel, (1, 1, *kernel.shape)), strides=1, padding="valid")

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.dense.units)

    def get_config(self):
        return {**super().get_config(), "dense": keras.saving.serialize_keras_object(self.dense)}


def _resize_axis(x, size, axis: int):
    """Bilinear resampling of ``x`` along ``axis`` (1 or 2) to ``size`` samples, half-pixel centres, edges clamped."""
    in_size = ops.shape(x)[axis]
    scale = ops.cast(in_size, "float32") / ops.cast(size, "float32")
    source = (ops.cast(ops.arange(size), "float32") + 0.5) * scale - 0.5
    source = ops.clip(source, 0.0, ops.cast(in_size - 1, "float32"))
    lower = ops.floor(source)
    weight = ops.cast(source - lower, x.dtype)
    lower = ops.cast(lower, "int32")
    upper = ops.minimum(lower + 1, in_size - 1)
    shape = [1, 1, 1, 1]
    shape[axis] = -1
    weight = ops.reshape(weight, shape)
    below, above = ops.take(x, lower, axis=axis), ops.take(x, upper, axis=axis)
    return below + (above - below) * weight


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ResizeToReference(keras.layers.Layer):
    """Resizes ``x`` bilinearly to the runtime height and width of a reference tensor (half-pixel centres).

    ``ResizeToReference()([x, ref])``: the sampling of ``tf.image.resize``
    (bilinear, no antialiasing) and of OpenCV's ``cv2.resize``, which the
    authors' ``pytorch_CAM.py`` upsamples with, for sizes known only at run
    time (``keras.ops.image.resize`` needs them when the graph is built).
    Built from gathers and arithmetic: it exports to TFLite builtins.

    Example:
        >>> import numpy as np
        >>> x = np.array([0.0, 4.0]).reshape(1, 1, 2, 1)
        >>> keras.ops.convert_to_numpy(ResizeToReference()([x, np.zeros((1, 1, 4, 1))]))[0, 0, :, 0].tolist()
        [0.0, 1.0, 3.0, 4.0]
    """

    def call(self, inputs):
        x, ref = inputs
        ref_shape = ops.shape(ref)
        return _resize_axis(_resize_axis(x, ref_shape[1], 1), ref_shape[2], 2)

    def compute_output_shape(self, input_shapes):
        x_shape, ref_shape = input_shapes
        return (x_shape[0], ref_shape[1], ref_shape[2], x_shape[3])


@dataclass(frozen=True)
class GapHead:
    """A classifier's GAP + Dense head: the features tensor it pools, the pooling layer, the Dense."""

    features: object
    pooling: layers.GlobalAveragePooling2D
    dense: layers.Dense


# Between the pooling and the Dense, and after the Dense, only what keeps the scores linear in the pooled
# features (dropout is the identity at inference) or maps them monotonically to probabilities.
_BETWEEN = (layers.Dropout, layers.Flatten)
_AFTER = (layers.Activation, layers.Softmax)


def void_label(num_classes: int, ignore_label: int | None = None) -> int:
    """``ignore_label``, or by default 255 (the package's void label) unless that is a class index (ImageNet's
    1000 classes), then ``num_classes``: maps have no void pixels, but a segmentation model names one.

    Example:
        >>> void_label(21), void_label(1000), void_label(1000, -1)
        (255, 1000, -1)
    """
    if ignore_label is not None:
        return ignore_label
    return IGNORE_LABEL if num_classes <= IGNORE_LABEL else int(num_classes)


def find_gap_head(classifier: keras.Model) -> GapHead:
    """The ``GlobalAveragePooling2D -> Dense`` head of ``classifier`` whose Dense gives the classifier's output.

    Walks back from the output through the functional graph (its config, as
    :mod:`fcn_keras.models.receptive_field` does): at most activations
    (softmax), a ``Dense``, only dropout/flatten layers, a
    ``GlobalAveragePooling2D``. Anything else raises a ``ValueError`` naming
    the model.

    Example:
        >>> x = keras.Input((8, 8, 3))
        >>> f = keras.layers.Conv2D(4, 3, name="features")(x)
        >>> y = keras.layers.Dense(2, name="fc")(keras.layers.GlobalAveragePooling2D()(f))
        >>> find_gap_head(keras.Model(x, y)).dense.name
        'fc'
    """
    if not isinstance(classifier, keras.Model):
        raise ValueError(f"class activation maps need a keras.Model classifier, got {type(classifier).__name__}")
    chain = _layers_before_output(classifier)
    position = 0
    while position < len(chain) and isinstance(chain[position], _AFTER):
        position += 1
    dense = chain[position] if position < len(chain) else None
    position += 1
    while position < len(chain) and isinstance(chain[position], _BETWEEN):
        position += 1
    pooling = chain[position] if position < len(chain) else None
    if (isinstance(dense, layers.Dense) and isinstance(pooling, layers.GlobalAveragePooling2D)
            and pooling.data_format == "channels_last"):
        return GapHead(pooling.input, pooling, dense)
    last = [f"{layer.name} ({type(layer).__name__})" for layer in reversed(chain[: position + 1])]
    raise ValueError(
        f"model {classifier.name!r} has no GlobalAveragePooling2D -> Dense head giving its output, which class "
        f"activation maps need (e.g. keras.applications.ResNet50(include_top=True)); its output comes from "
        f"{' -> '.join(last) or 'its input'}"
    )


def _layers_before_output(model: keras.Model, depth: int = 8) -> list:
    """The layers that make the model's single output, last first, while each has one input (``depth`` at most)."""
    if isinstance(model, keras.Sequential):
        return list(reversed(model.layers))[:depth]
    config = model.get_config()
    entries = {entry["name"]: entry for entry in config["layers"]}
    outputs = _histories(config["output_layers"])
    if len(outputs) != 1:
        raise ValueError(f"model {model.name!r} has {len(outputs)} outputs; a classifier for CAM has one")
    chain, (name, node, _) = [], outputs[0]
    while len(chain) < depth and entries[name]["class_name"] != "InputLayer":
        chain.append(model.get_layer(name))
        nodes = entries[name]["inbound_nodes"]
        if isinstance(chain[-1], layers.GlobalAveragePooling2D) and len(nodes) != 1:
            raise ValueError(f"model {model.name!r}: its pooling layer {name!r} is called {len(nodes)} times")
        sources = _histories(nodes[node]["args"])
        if len(sources) != 1:
            break
        name, node, _ = sources[0]
    return chain


def _histories(value) -> list[tuple]:
    """The ``(layer, node, tensor)`` references in a functional config's outputs or call arguments."""
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            return [tuple(value["config"]["keras_history"])]
        return [h for v in value.values() for h in _histories(v)]
    if isinstance(value, (list, tuple)):
        if len(value) == 3 and isinstance(value[0], str) and isinstance(value[1], int):
            return [tuple(value)]
        return [h for v in value for h in _histories(v)]
    return []


def class_activation_model(
    classifier: keras.Model,
    class_names: Sequence[str] | None = None,
    *,
    preprocessing: str | None = None,
    include_preprocessing: bool = False,
    input_shape: tuple | None = None,
    palette=None,
    ignore_label: int | None = None,
    card: dict | None = None,
    name: str | None = None,
) -> SegmentationModel:
    """The class activation maps of a GAP classifier as a :class:`SegmentationModel` over the same variables.

    Args:
        classifier: a Keras classifier ending in conv features ->
            ``GlobalAveragePooling2D`` -> ``Dense`` (:func:`find_gap_head`).
        class_names: one name per output of the Dense (default ``"class i"``;
            ImageNet's names are not shipped).
        preprocessing: the input mode the classifier was trained on (a key of
            :data:`fcn_keras.preprocessing.MODES`: ``"caffe"`` for
            keras.applications ResNet50/VGG16, ``"tf"`` for MobileNetV2). A
            plain classifier does not record it, so it is required, unless the
            classifier's first layer is a ``Preprocessing`` layer (as in
            :func:`cam_classifier` of a model built with
            ``include_preprocessing=True``): its mode is used, and the CAM
            model takes RGB 0-255 like the classifier.
        include_preprocessing: put a ``Preprocessing`` layer in front (the
            model then takes RGB 0-255).
        input_shape: rebuild the features on this input shape, e.g.
            ``(None, None, 3)`` for any image size (the layers are shared);
            default: the classifier's own input.
        palette, ignore_label (default :func:`void_label`), card, name: the
            model's identity.

    Returns:
        A model with architecture ``"cam"`` and backbone ``classifier.name``
        mapping images to float32 maps ``(N, H, W, classes)`` of the input's
        size; the layer named like the Dense outputs them at feature resolution.

    Example:
        >>> x = keras.Input((None, None, 3))
        >>> f = keras.layers.Conv2D(4, 3, strides=2, name="features")(x)
        >>> y = keras.layers.Dense(2, activation="softmax", name="fc")(keras.layers.GlobalAveragePooling2D()(f))
        >>> cam = class_activation_model(keras.Model(x, y, name="toy"), ["cat", "dog"], preprocessing="tf")
        >>> cam.architecture, cam.backbone, cam.class_names, cam.get_layer("fc").output.shape
        ('cam', 'toy', ('cat', 'dog'), (None, None, None, 2))
    """
    head = find_gap_head(classifier)
    if len(classifier.inputs) != 1:
        raise ValueError(f"model {classifier.name!r} has {len(classifier.inputs)} inputs; CAM needs one image input")
    features = head.features
    image = classifier.inputs[0]
    own = [layer for layer in classifier.layers if isinstance(layer, Preprocessing) and layer.input is image]
    if own:
        if preprocessing is not None and preprocessing != own[0].mode:
            raise ValueError(f"model {classifier.name!r} preprocesses its input itself ({own[0].mode!r}); "
                             f"got preprocessing={preprocessing!r}")
        preprocessing = own[0].mode
    elif preprocessing is None:
        raise ValueError(f"model {classifier.name!r} does not record its input preprocessing: give "
                         f"preprocessing= (one of {', '.join(sorted(MODES))})")
    if include_preprocessing and not own or input_shape is not None:
        shape = tuple(input_shape) if input_shape is not None else tuple(classifier.input_shape[1:])
        image = keras.Input(shape, name="image")
        x = Preprocessing(preprocessing, name="preprocessing")(image) if include_preprocessing and not own else image
        trunk = keras.Model(classifier.inputs[0], features)
        # The same layer objects called on the new input: the graph stays flat (get_layer reaches every layer).
        features = keras.models.clone_model(trunk, input_tensors=x, clone_function=lambda layer: layer).output
    maps = ClassActivationMaps(head.dense, name=head.dense.name)(features)
    scores = ResizeToReference(dtype="float32", name="score")([maps, image])
    return SegmentationModel(
        image, scores, architecture="cam", backbone=classifier.name, class_names=class_names, palette=palette,
        ignore_label=void_label(head.dense.units, ignore_label), preprocessing=preprocessing,
        include_preprocessing=include_preprocessing or bool(own), card=card, name=name or f"{classifier.name}_cam",
    )


def maps_layer(model: keras.Model) -> ClassActivationMaps:
    """The :class:`ClassActivationMaps` layer of a CAM model (exactly one), with an error naming the model.

    Example:
        >>> maps_layer(cam_vgg16(num_classes=2, alpha=1 / 16)).name
        'CAM_fc'
    """
    found = [layer for layer in model.layers if isinstance(layer, ClassActivationMaps)]
    if len(found) != 1:
        raise ValueError(f"model {model.name!r} is not a class activation model (it has {len(found)} "
                         f"ClassActivationMaps layers; class_activation_model() or cam_vgg16() make one)")
    return found[0]


def cam_classifier(model: keras.Model, dropout: float = 0.5, classifier_activation: str | None = "softmax",
                   name: str | None = None) -> keras.Model:
    """The classifier of a CAM model, over the same variables: features -> GAP -> dropout -> Dense -> softmax.

    What the paper trains with image labels (``model.fit(images, one_hot)``);
    training it trains the CAM model. Layers are the prototxt's: ``CAM_pool``
    (global average pooling; the prototxt's 14x14 average at 224x224),
    ``CAM_dropout`` (``dropout``, 0.5 in the prototxt), the Dense (``CAM_fc``)
    and ``prob`` (``classifier_activation``, as keras.applications names it;
    ``None``: logits). A Dense that has its own activation (keras.applications'
    softmax) keeps it and gets no ``prob``.

    Example:
        >>> classifier = cam_classifier(cam_vgg16(num_classes=4, alpha=1 / 16))
        >>> [layer.name for layer in classifier.layers[-4:]]
        ['CAM_pool', 'CAM_dropout', 'CAM_fc', 'prob']
    """
    cam = maps_layer(model)
    x = layers.GlobalAveragePooling2D(name="CAM_pool")(cam.input)
    if dropout:
        x = layers.Dropout(dropout, name="CAM_dropout")(x)
    x = cam.dense(x)
    if cam.dense.activation is keras.activations.linear and classifier_activation is not None:
        x = layers.Activation(classifier_activation, dtype="float32", name="prob")(x)
    return keras.Model(model.input, x, name=name or f"{model.name}_classifier")


@keras.saving.register_keras_serializable(package=_PACKAGE)
class CAMVGG16(FamilyModel):
    """The paper's VGG16-CAM as a segmentation model of its class activation maps; see :func:`cam_vgg16`."""

    ARCHITECTURE, BACKBONE, DEFAULT_NUM_CLASSES, PREPROCESSING = "cam", "vgg16", 1000, "caffe"
    OPTIONS = {"alpha": 1.0}

    def __init__(self, num_classes: int | None = None, *, class_names: Sequence[str] | None = None,
                 ignore_label: int | None = None, **kwargs):
        classes = num_classes or (len(class_names) if class_names is not None else self.DEFAULT_NUM_CLASSES)
        super().__init__(num_classes, class_names=class_names, ignore_label=void_label(classes, ignore_label),
                         **kwargs)

    @classmethod
    def graph(cls, x, image, num_classes: int, alpha: float):
        alpha = check_alpha(alpha)
        cam_width, conv5_width = width(1024, alpha), width(512, alpha)
        if cam_width % CAM_CONV_GROUPS or conv5_width % CAM_CONV_GROUPS:
            raise ValueError(f"alpha={alpha} gives CAM_conv {conv5_width} -> {cam_width} channels; its group: 2 "
                             f"needs both even (e.g. alpha=1, 1/8, 1/16)")
        for block, (filters, convs) in enumerate(VGG16_BLOCKS, start=1):
            for i in range(1, convs + 1):
                x = layers.Conv2D(width(filters, alpha), 3, padding="same", activation="relu", name=f"conv{block}_{i}")(x)
            if block < len(VGG16_BLOCKS):  # pool5 and everything after conv5_3 removed, as the paper says
                # Caffe rounds pooled sizes up ("same"); at 224x224 both roundings agree.
                x = layers.MaxPooling2D(2, 2, padding="same", name=f"pool{block}")(x)
        x = layers.Conv2D(cam_width, 3, padding="same", groups=CAM_CONV_GROUPS, activation="relu",
                          kernel_initializer=keras.initializers.RandomNormal(stddev=0.01), name="CAM_conv")(x)
        dense = layers.Dense(num_classes, name="CAM_fc")
        maps = ClassActivationMaps(dense, name="CAM_fc")(x)
        return ResizeToReference(dtype="float32", name="score")([maps, image])


def cam_vgg16(
    num_classes: int | None = None,
    input_shape: tuple = (None, None, 3),
    include_preprocessing: bool = False,
    weights: str | None = None,
    alpha: float = 1.0,
    name: str | None = None,
    *,
    class_names: Sequence[str] | None = None,
    palette=None,
    ignore_label: int | None = None,
    preprocessing: str | None = None,
    card: dict | None = None,
) -> CAMVGG16:
    """The paper's VGG16-CAM (Zhou et al., CVPR 2016, §2; zhoubolei/CAM ``models/deploy_vgg16CAM.prototxt``).

    VGG16's conv1_1 ... conv5_3 (3x3, pad 1, ReLU) with pool1-pool4 (2x2/2),
    pool5 and the fully connected layers removed (14x14 maps at 224x224);
    ``CAM_conv`` (3x3, pad 1, 1024 maps, ``group: 2``, Gaussian std 0.01) +
    ReLU; then global average pooling and ``CAM_fc`` to the classes (softmax
    ``prob``). The model returned computes the class activation maps
    ``M_c = sum_k w_k^c f_k`` from CAM_conv's maps and CAM_fc's weights,
    bilinearly resized to the input: float32 ``(N, H, W, num_classes)`` for any
    input size (pooling rounds up, as Caffe's). :func:`cam_classifier` gives
    the classifier over the same variables, to train with image labels.

    Args:
        num_classes: classes (1000 for ImageNet, or the length of ``class_names``).
        input_shape: ``(height, width, 3)``; the paper uses 224x224.
        include_preprocessing: take RGB 0-255 and preprocess inside the model.
        weights: ``None``, ``"imagenet"`` or the path of a keras.applications
            VGG16 ``.h5`` (with or without top): conv1_1 ... conv5_3 only
            (``alpha=1``); CAM_conv and CAM_fc are always initialised anew.
        alpha: width multiplier of every hidden layer (1: the paper's).
        name, class_names, palette, ignore_label (default :func:`void_label`),
            preprocessing (default ``"caffe"``: keras.applications VGG16's),
            card: the identity.

    Example:
        >>> model = cam_vgg16(num_classes=5, alpha=1 / 16)
        >>> model.architecture, model.get_layer("CAM_conv").groups, model.get_layer("CAM_fc").output.shape
        ('cam', 2, (None, None, None, 5))
    """
    if weights is not None:
        if not isinstance(weights, str):
            raise ValueError(f"weights must be None, 'imagenet' or a file path, got {weights!r}")
        if check_alpha(alpha) != 1.0:
            raise ValueError(f"weights={weights!r} are VGG16's own widths: they need alpha=1, got alpha={alpha}")
        if weights != "imagenet" and not os.path.isfile(weights):
            raise FileNotFoundError(f"weights file {weights!r} does not exist")
    model = CAMVGG16(num_classes, class_names=class_names, palette=palette, ignore_label=ignore_label,
                     input_shape=input_shape, include_preprocessing=include_preprocessing,
                     preprocessing=preprocessing, card=card, name=name or "cam_vgg16", alpha=alpha)
    if weights is not None:
        for layer_name, values in vgg16_convolutions(weights, "cam_vgg16(weights=<path>)").items():
            model.get_layer(layer_name).set_weights(values)
    return model
