"""The inference graph every export format shares: raw RGB in, float32 logits out.

An exported model takes RGB images with values 0-255. What the network
expects is read from the model, never guessed: when ``model.input_preprocessing``
names a mode (the model does not apply it itself),
:func:`fcn_keras.preprocessing.preprocess` with that mode goes in front.
Computation is float32 (a mixed-precision model is copied to float32 first,
:func:`fcn_keras.models.with_precision`) unless ``precision="bfloat16"`` asks
for the model's ``mixed_bfloat16`` copy (SavedModel only: TFLite has no
bfloat16 convolutions); inputs and logits are float32 either way. The model
must map an image to logits of the same height and width.

``reference=False`` (SavedModel, the Keras side of parity checks) calls the
model, i.e. its exact fast formulation; ``reference=True`` (TFLite, ONNX) runs
:func:`fcn_keras.models.reference_graph`, the plain layer-by-layer network over
the same variables: those runtimes bring their own convolution kernels, and
int8 quantizes the plain convolutions' values well.
"""

from __future__ import annotations

from typing import Callable

import keras
import numpy as np

from fcn_keras.models import SegmentationModel, reference_graph, require_segmentation_model
from fcn_keras.models.precision import check_precision, with_precision
from fcn_keras.preprocessing import preprocess

_PROBE_SIZE = (37, 50)  # odd, not a multiple of 32: exposes any crop/pad mistake


def check_same_size(model: keras.Model, min_input_size: int | None = None) -> None:
    """Refuses a model whose logits do not have the input's height and width.

    The probe image is at least ``min_input_size`` (default: the model's
    ``MIN_INPUT_SIZE``, 1 if it has none) on each side.

    The exported ``mask`` is one class per input pixel; a model that changes the
    size (a classifier, an FCN without its final crop) cannot honour that.

    Example:
        >>> x = keras.Input((None, None, 3))
        >>> check_same_size(keras.Model(x, keras.layers.Conv2D(2, 3, strides=2)(x), name="strided"))
        Traceback (most recent call last):
        ...
        ValueError: export needs per-pixel logits of the input's size: model 'strided' maps a 37x50 image to output shape (18, 24, 2), so its mask would not match the image
    """
    shape = model.input_shape
    if isinstance(shape, list) or len(shape) != 4 or shape[-1] != 3:
        raise ValueError(f"export needs a model with one (N, H, W, 3) image input; {model.name!r} has {shape}")
    # A model that needs larger images (DeconvNet's 7x7 fc6: 193) says so in MIN_INPUT_SIZE.
    minimum = int(getattr(model, "MIN_INPUT_SIZE", 1) if min_input_size is None else min_input_size)
    size = tuple(s if s is not None else max(p, minimum) for s, p in zip(shape[1:3], _PROBE_SIZE))
    output = model(np.zeros((1, *size, 3), "float32"), training=False)
    out_shape = tuple(output.shape)
    if len(out_shape) != 4 or out_shape[1:3] != size:
        raise ValueError(
            f"export needs per-pixel logits of the input's size: model {model.name!r} maps a {size[0]}x{size[1]} "
            f"image to output shape {out_shape[1:]}, so its mask would not match the image"
        )


def logits_function(model: SegmentationModel, *, reference: bool = False, check: bool = True,
                    precision: str = "float32") -> tuple[Callable, SegmentationModel, str | None]:
    """A function ``images (N, H, W, 3), RGB 0-255 -> float32 logits (N, H, W, C)``, and what it runs.

    Validates ``model`` (a :class:`~fcn_keras.models.SegmentationModel`, and
    with ``check`` :func:`check_same_size`, which runs it once), copies it to
    ``precision`` (``"float32"`` or ``"bfloat16"``, :func:`fcn_keras.models.with_precision`)
    if needed and puts ``model.input_preprocessing`` in front. ``reference=True`` runs the plain
    layer-by-layer graph (:func:`fcn_keras.models.reference_graph`) instead of
    the model's call. Returns ``(fn, copy, mode)``, ``copy`` being the model in
    ``precision`` and ``mode`` the preprocessing added (None when the model applies its own).

    Example:
        >>> x = keras.Input((None, None, 3))
        >>> m = SegmentationModel(x, keras.layers.Conv2D(2, 1)(x), architecture="linear", backbone="none",
        ...                       preprocessing="tf")
        >>> fn, _, mode = logits_function(m)
        >>> mode, tuple(fn(np.zeros((1, 4, 6, 3), "uint8")).shape)
        ('tf', (1, 4, 6, 2))
    """
    model = require_segmentation_model(model)
    mode = model.input_preprocessing
    precise_model = with_precision(model, check_precision(precision))
    network = reference_graph(precise_model) if reference else precise_model
    if check:
        check_same_size(network, getattr(model, "MIN_INPUT_SIZE", None))  # a reference graph has no attribute

    def logits(images):
        x = keras.ops.cast(images, "float32")
        if mode is not None:
            x = preprocess(x, mode)
        return keras.ops.cast(network(x, training=False), "float32")

    return logits, precise_model, mode


def export_identity(model: SegmentationModel) -> dict:
    """What every export writes next to the network: the model's identity (:meth:`SegmentationModel.identity`),
    its name, and the preprocessing put into the exported graph.

    Example:
        >>> x = keras.Input((None, None, 3))
        >>> m = SegmentationModel(x, keras.layers.Conv2D(2, 1)(x), architecture="linear", backbone="none",
        ...                       class_names=["sky", "sea"], preprocessing="torch")
        >>> info = export_identity(m)
        >>> info["class_names"], info["preprocessing_added"], info["input"]
        (['sky', 'sea'], 'torch', 'RGB, 0-255')
    """
    model = require_segmentation_model(model)
    return {"model_name": model.name, **model.identity(), "preprocessing_added": model.input_preprocessing,
            "input": "RGB, 0-255"}
