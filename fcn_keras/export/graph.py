"""The inference graph every export format shares: raw RGB in, float32 logits out.

An exported FCN takes RGB images with values 0-255, whatever the Keras model
expects: the backbone's preprocessing goes into the graph (unless the model
already starts with its own ``preprocessing`` layer), computation is float32
(a mixed-precision model is copied to float32 first) and the model must map an
image to logits of the same height and width.
"""

from __future__ import annotations

import copy

import keras
import numpy as np

from fcn_keras.models.backbones import BACKBONES
from fcn_keras.models.layers import Preprocessing

PREPROCESSING_MODES = ("fcn", "caffe", "tf", "torch")
_PROBE_SIZE = (37, 50)  # odd, not a multiple of 32: exposes any crop/pad mistake


def model_preprocessing(model: keras.Model) -> str | None:
    """The mode of the model's own ``preprocessing`` layer, or None when it has none.

    Example:
        >>> import fcn_keras
        >>> model_preprocessing(fcn_keras.fcn32s(num_classes=2, include_preprocessing=True))
        'fcn'
    """
    for layer in model.layers:
        if isinstance(layer, Preprocessing) and layer.name == "preprocessing":
            return layer.mode
    return None


def infer_preprocessing(model: keras.Model, preprocessing: str | None = None) -> str | None:
    """The preprocessing the export must add in front of ``model`` (None: the model has it).

    ``preprocessing`` overrides the guess for models without a ``preprocessing``
    layer; otherwise it is taken from the backbone: the reference VGG16 trunk
    (``conv1_1``) uses ``"fcn"``, a keras.applications encoder named as in
    ``BACKBONES`` uses that backbone's mode (``mobilenet_v2``: ``"tf"``,
    ``resnet50``: ``"caffe"``).
    """
    own = model_preprocessing(model)
    if own is not None:
        if preprocessing is not None and preprocessing != own:
            raise ValueError(
                f"preprocessing={preprocessing!r} conflicts with model {model.name!r}, which starts with its own "
                f"{own!r} preprocessing layer; leave preprocessing=None"
            )
        return None
    if preprocessing is not None:
        if preprocessing not in PREPROCESSING_MODES:
            raise ValueError(f"preprocessing must be one of {PREPROCESSING_MODES}, got {preprocessing!r}")
        return preprocessing
    names = {layer.name for layer in model.layers}
    for name, backbone in BACKBONES.items():
        if name in names and not backbone.reference:
            return backbone.preprocessing
    if "conv1_1" in names:
        return BACKBONES["vgg16"].preprocessing
    raise ValueError(
        f"cannot tell which preprocessing model {model.name!r} expects (no 'preprocessing' layer and no known "
        f"backbone); pass preprocessing= one of {PREPROCESSING_MODES}"
    )


def _float32_config(config):
    # A layer config names its dtype policy as a string or as a serialized
    # DTypePolicy; both spellings of a mixed policy become "float32".
    if isinstance(config, dict):
        out = {}
        for key, value in config.items():
            if key == "dtype" and isinstance(value, str) and value.startswith("mixed_"):
                value = "float32"
            elif key == "dtype" and isinstance(value, dict) and str(value.get("config", {}).get("name", "")).startswith("mixed_"):
                value = copy.deepcopy(value)
                value["config"]["name"] = "float32"
            else:
                value = _float32_config(value)
            out[key] = value
        return out
    if isinstance(config, list):
        return [_float32_config(item) for item in config]
    return config


def is_mixed_precision(model: keras.Model) -> bool:
    """Whether any layer of ``model`` (nested models included) computes in float16/bfloat16."""
    def walk(layers):
        for layer in layers:
            if layer.compute_dtype in ("float16", "bfloat16"):
                return True
            if hasattr(layer, "layers") and walk(layer.layers):
                return True
        return False

    return walk(model.layers)


def float32_model(model: keras.Model) -> keras.Model:
    """``model`` itself when it computes in float32, else a float32 copy with its weights.

    TFLite refuses float16/bfloat16 convolutions and a serving signature should
    not depend on the training policy, so every export computes in float32.
    """
    if not is_mixed_precision(model):
        return model
    config = _float32_config(model.get_config())
    clone = model.__class__.from_config(config)
    clone.set_weights(model.get_weights())
    if is_mixed_precision(clone):
        raise ValueError(f"could not make a float32 copy of model {model.name!r}: some layer kept a mixed policy")
    return clone


def check_same_size(model: keras.Model) -> None:
    """Refuses a model whose logits do not have the input's height and width.

    The exported ``mask`` is one class per input pixel; a model that changes the
    size (a classifier, an FCN without its final crop) cannot honour that.
    """
    shape = model.input_shape
    if isinstance(shape, list) or len(shape) != 4 or shape[-1] != 3:
        raise ValueError(f"export needs a model with one (N, H, W, 3) image input; {model.name!r} has {shape}")
    size = tuple(s if s is not None else p for s, p in zip(shape[1:3], _PROBE_SIZE))
    output = model(np.zeros((1, *size, 3), "float32"), training=False)
    out_shape = tuple(output.shape)
    if len(out_shape) != 4 or out_shape[1:3] != size:
        raise ValueError(
            f"export needs per-pixel logits of the input's size: model {model.name!r} maps a {size[0]}x{size[1]} "
            f"image to output shape {out_shape[1:]}, so its mask would not match the image"
        )


def logits_function(model: keras.Model, preprocessing: str | None = None):
    """A float32 function ``images (N, H, W, 3), RGB 0-255 -> logits (N, H, W, C)``.

    Validates ``model`` (:func:`check_same_size`), copies it to float32 if needed
    and puts the preprocessing in front. Returns ``(fn, float_model, mode)`` where
    ``mode`` is the added preprocessing (None when the model has its own).
    """
    mode = infer_preprocessing(model, preprocessing)
    float_model = float32_model(model)
    check_same_size(float_model)
    prep = Preprocessing(mode, name="export_preprocessing") if mode is not None else None

    def logits(images):
        x = keras.ops.cast(images, "float32")
        if prep is not None:
            x = prep(x)
        return keras.ops.cast(float_model(x, training=False), "float32")

    return logits, float_model, mode


def num_classes(model: keras.Model) -> int:
    """The number of classes (channels of the logits)."""
    return int(model.output_shape[-1])
