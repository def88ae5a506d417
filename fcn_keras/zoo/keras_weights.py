"""Keras ``.weights.h5`` files matched to a model by layer name, and loaded that way.

``model.load_weights`` pairs a file's weights with a model's layers by position
(``conv2d``, ``conv2d_1``, ... in the order of ``model.layers``), ignores layers
the file has and the model lacks, and names no layer when shapes differ. A zoo
model given a local file needs the opposite: every layer with weights found by
its name (which Keras records beside each layer's variables), shapes equal, no
layer left over, and an error that names the file and the first layer that does
not fit, raised before any weight is set.

Example:
    >>> import pathlib, tempfile, fcn_keras
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "fcn32s.weights.h5"
    >>> fcn_keras.fcn32s(num_classes=3, backbone="tiny_vgg").save_weights(path)
    >>> weights_file_layers(path)["score_fr"]
    [(1, 1, 128, 3), (3,)]
    >>> load_weights_by_name(fcn_keras.fcn32s(num_classes=5, backbone="tiny_vgg"), path)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    fcn_keras.zoo.keras_weights.WeightsMismatchError: ...fcn32s.weights.h5 does not fit model 'fcn32s_tiny_vgg': \
layer 'score_fr' has shapes [(1, 1, 128, 3), (3,)] in the file, the model's are [(1, 1, 128, 5), (5,)]
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import keras

__all__ = ["WeightsMismatchError", "weights_file_layers", "model_weight_layers", "check_weights_file",
           "load_weights_by_name"]


class WeightsMismatchError(ValueError):
    """A weights file is unreadable or does not fit a model; the message names the file and the layer."""


def _layout(path: Path) -> dict[str, tuple[str, list[str], list[tuple[int, ...]]]]:
    """Qualified layer name -> (HDF5 group of its variables, their dataset names in order, their shapes)."""
    import h5py

    found: dict[str, tuple[str, list[str], list[tuple[int, ...]]]] = {}

    def visit(group, names: tuple[str, ...]) -> None:
        for key, child in group.items():
            if key == "vars" or not isinstance(child, h5py.Group):
                continue
            variables = child.get("vars")
            if not isinstance(variables, h5py.Group):  # a container (``layers``, an attribute): no name of its own
                visit(child, names)
                continue
            name = variables.attrs.get("name", key)
            qualified = (*names, name.decode() if isinstance(name, bytes) else str(name))
            if len(variables):
                keys = sorted(variables, key=lambda k: (len(k), k))  # "0", "1", ..., "10"
                found["/".join(qualified)] = (variables.name, keys, [tuple(variables[k].shape) for k in keys])
            visit(child, qualified)

    try:
        with h5py.File(path, "r") as f:
            visit(f, ())
    except OSError as exc:  # not HDF5, truncated, unreadable
        raise WeightsMismatchError(f"{path} is not a readable Keras .weights.h5 file ({exc})") from None
    return found


def weights_file_layers(path: str | os.PathLike) -> dict[str, list[tuple[int, ...]]]:
    """The layers of a Keras ``.weights.h5`` file that hold weights: name -> shapes of its variables.

    A layer of a nested model is named ``<nested model>/<layer>``; the outermost
    model's name is left out, so a file fits any model with the same layers.

    Example:
        >>> import pathlib, tempfile, fcn_keras
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "m.weights.h5"
        >>> fcn_keras.fcn8s(num_classes=2, backbone="tiny_vgg").save_weights(path)
        >>> layers = weights_file_layers(path)
        >>> layers["tiny_vgg/block1_conv1"], layers["upscore8"]
        ([(3, 3, 3, 16), (16,)], [(16, 16, 2, 2)])
    """
    return {name: shapes for name, (_, _, shapes) in _layout(Path(path)).items()}


def model_weight_layers(model: keras.Model) -> dict[str, keras.layers.Layer]:
    """The layers of ``model`` that hold weights, named as :func:`weights_file_layers` names them.

    Example:
        >>> import fcn_keras
        >>> list(model_weight_layers(fcn_keras.fcn32s(num_classes=2, backbone="tiny_vgg")))[-3:]
        ['tiny_vgg/block5_conv2', 'score_fr', 'upscore']
    """
    import keras

    layers: dict[str, keras.layers.Layer] = {}

    def visit(container: keras.Model, names: tuple[str, ...]) -> None:
        for layer in container.layers:
            qualified = (*names, layer.name)
            if isinstance(layer, keras.Model):
                visit(layer, qualified)
            elif layer.weights:
                layers["/".join(qualified)] = layer

    visit(model, ())
    # Layers a model holds outside its output's graph (the SIFT Flow model's geometric head) are saved with it.
    for layer in getattr(model, "auxiliary_layers", ()):
        if layer.weights:
            layers[layer.name] = layer
    return layers


def check_weights_file(model: keras.Model, path: str | os.PathLike) -> None:
    """Refuses ``path`` unless its layers are exactly ``model``'s layers with weights, by name and shape.

    :class:`WeightsMismatchError` names the file and the first layer that does
    not fit: missing from the file, of other shapes, or in the file but not in
    the model (model layers in their order first).

    Example:
        >>> import pathlib, tempfile, fcn_keras
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "fcn8s.weights.h5"
        >>> fcn_keras.fcn8s(num_classes=2, backbone="tiny_vgg").save_weights(path)
        >>> check_weights_file(fcn_keras.fcn8s(num_classes=2, backbone="tiny_vgg"), path)
        >>> check_weights_file(fcn_keras.fcn32s(num_classes=2, backbone="tiny_vgg"), path)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        fcn_keras.zoo.keras_weights.WeightsMismatchError: ...: layer 'upscore' has no weights in the file...
    """
    _check(model, Path(path))


def _check(model: keras.Model, path: Path) -> dict:
    """:func:`check_weights_file`; returns the file's layout for loading."""
    layout = _layout(path)
    found = {name: shapes for name, (_, _, shapes) in layout.items()}
    layers = model_weight_layers(model)
    start = f"{path} does not fit model {model.name!r}: "
    if not found:
        raise WeightsMismatchError(start + "the file holds no Keras layer weights (is it a .weights.h5 "
                                           "written by save_weights?)")
    for name, layer in layers.items():
        needed = [tuple(w.shape) for w in layer.weights]
        if name not in found:
            missing = [n for n in layers if n not in found]
            raise WeightsMismatchError(start + f"layer {name!r} has no weights in the file ({len(missing)} of the "
                                               f"model's {len(layers)} layers with weights are missing)")
        if found[name] != needed:
            raise WeightsMismatchError(start + f"layer {name!r} has shapes {found[name]} in the file, "
                                               f"the model's are {needed}")
    extra = [name for name in found if name not in layers]
    if extra:
        raise WeightsMismatchError(start + f"the file has weights for layer {extra[0]!r}, which the model lacks "
                                           f"({len(extra)} such layers)")
    return layout


def load_weights_by_name(model: keras.Model, path: str | os.PathLike) -> keras.Model:
    """Sets ``model``'s weights from a ``.weights.h5`` file, layer by layer name; returns ``model``.

    The whole file is checked first (:func:`check_weights_file`), so a file that
    does not fit leaves the model untouched. One layer's arrays are in memory at
    a time.

    Example:
        >>> import pathlib, tempfile, numpy as np, fcn_keras
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "m.weights.h5"
        >>> source = fcn_keras.fcn32s(num_classes=2, backbone="tiny_vgg")
        >>> source.save_weights(path)
        >>> model = load_weights_by_name(fcn_keras.fcn32s(num_classes=2, backbone="tiny_vgg"), path)
        >>> all(np.array_equal(a, b) for a, b in zip(model.get_weights(), source.get_weights()))
        True
    """
    import h5py

    layout = _check(model, Path(path))
    with h5py.File(path, "r") as f:
        for name, layer in model_weight_layers(model).items():
            where, keys, _ = layout[name]
            layer.set_weights([f[where][k][()] for k in keys])
    return model
