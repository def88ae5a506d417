"""The FCN mapping: a reference FCN's Keras layers filled from a ``.caffemodel``, exactly.

Layers are matched by the reference names (``conv1_1`` ... ``score_fr``,
``upscore``, ...); every name, Caffe type and blob shape is checked before any
weight is set. Blob layouts: Caffe convolutions ``(out, in, kh, kw)`` and
deconvolutions ``(in, out, kh, kw)`` both become Keras' ``(kh, kw, in, out)``
/ ``(kh, kw, out, in)`` by the transpose ``(2, 3, 1, 0)``.

Example:
    >>> from fcn_keras.caffe import CaffeModelError
    >>> issubclass(CaffeModelError, ValueError)
    True
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from fcn_keras.caffe.proto import CaffeModelError
from fcn_keras.caffe.reader import iter_caffemodel, read_caffemodel

if TYPE_CHECKING:
    import keras

__all__ = ["load_caffe_weights"]

def _leaf_layers(model) -> list:
    import keras

    leaves = []
    for layer in model.layers:
        leaves.extend(_leaf_layers(layer) if isinstance(layer, keras.Model) else [layer])
    return leaves


@dataclass(frozen=True)
class _Target:
    """A Keras layer that takes Caffe blobs: their Caffe shapes and accepted Caffe types."""

    layer: object
    kind: str  # "conv", "deconv" or "scale"
    shapes: tuple[tuple[int, ...], ...]
    types: tuple[str, ...]


def _targets(model) -> dict[str, _Target]:
    from keras import layers as L

    from fcn_keras.models.layers import Scale

    targets = {}
    for layer in _leaf_layers(model):
        if isinstance(layer, L.Conv2DTranspose):
            kh, kw, out, inp = layer.kernel.shape
            if layer.use_bias:
                raise CaffeModelError(f"layer {layer.name!r} has a bias, which Caffe's FCN deconvolutions lack")
            targets[layer.name] = _Target(layer, "deconv", ((inp, out, kh, kw),), ("Deconvolution",))
        elif isinstance(layer, L.Conv2D):
            kh, kw, inp, out = layer.kernel.shape
            shapes = ((out, inp, kh, kw),) + (((out,),) if layer.use_bias else ())
            targets[layer.name] = _Target(layer, "conv", shapes, ("Convolution", "InnerProduct"))
        elif isinstance(layer, Scale):
            targets[layer.name] = _Target(layer, "scale", (), ("Scale",))
        elif layer.weights:
            raise CaffeModelError(
                f"layer {layer.name!r} ({type(layer).__name__}) of {model.name} has no Caffe FCN counterpart: "
                "load_caffe_weights supports the reference VGG16 FCNs"
            )
    return targets


def _strip(shape: tuple[int, ...]) -> tuple[int, ...]:
    while len(shape) > 1 and shape[0] == 1:
        shape = shape[1:]
    return tuple(shape)


def _fits(found: tuple[int, ...], shape: tuple[int, ...]) -> bool:
    """Whether a blob of shape ``found`` holds a Caffe ``shape`` parameter. Accepts legacy
    4-D blobs (leading 1-dims) and InnerProduct ``(out, in * kh * kw)`` matrices for
    convolutions: Caffe flattens (C, H, W) in C order, so a reshape restores them."""
    found = _strip(found)
    return found == _strip(shape) or (len(shape) == 4 and found == _strip((shape[0], int(np.prod(shape[1:])))))


def load_caffe_weights(model: keras.Model, caffemodel_path: str | os.PathLike) -> keras.Model:
    """Fills an FCN built by :mod:`fcn_keras.models` with a ``.caffemodel``'s weights, exactly.

    Blobs are matched by the reference layer names. Convolution weights
    ``(out, in, kh, kw)`` and deconvolution weights ``(in, out, kh, kw)`` are both
    transposed ``(2, 3, 1, 0)`` into Keras' ``Conv2D`` ``(kh, kw, in, out)`` and
    ``Conv2DTranspose`` ``(kh, kw, out, in)`` layouts; ``fc6``/``fc7`` may come as
    InnerProduct matrices. At-once ``Scale`` blobs are checked against the
    model's fixed scales. The whole file (every field, layer name, type, blob
    shape and size) is checked before any weight is set, so a bad file leaves the
    model untouched; the data is then streamed one layer at a time.

    Returns:
        ``model``.

    Raises:
        CaffeModelError: corrupt file, missing/extra layers (named), or a
            mis-shaped blob (layer, expected and found shapes).

    Example:
        >>> import os, tempfile, numpy as np, fcn_keras
        >>> from fcn_keras.caffe import CaffeLayer, write_caffemodel
        >>> model = fcn_keras.fcn32s(num_classes=2, backbone="tiny_vgg")
        >>> path = os.path.join(tempfile.mkdtemp(), "other.caffemodel")
        >>> write_caffemodel(path, [CaffeLayer("fc8", "InnerProduct", blobs=[np.zeros((2, 3), "float32")])])
        >>> load_caffe_weights(model, path)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        fcn_keras.caffe.proto.CaffeModelError: ... does not fit fcn32s_tiny_vgg: ...; layers with weights in the file that the model lacks: ['fc8']. ...
        >>> model = fcn_keras.fcn8s(num_classes=21)
        >>> load_caffe_weights(model, "fcn8s-heavy-pascal.caffemodel")  # doctest: +SKIP
    """
    from keras import ops

    path = os.fspath(caffemodel_path)
    targets = _targets(model)
    # Pass 1 reads the whole file's structure (every field length, blob shape and
    # count, and the small Scale blobs) and checks it against the model; pass 2
    # streams the data layer by layer into the model, so at most one blob is held.
    scales = [name for name, target in targets.items() if target.kind == "scale"]
    structure = read_caffemodel(path, layers=scales)
    with_blobs = {name for name, layer in structure.items() if layer.blob_shapes}
    missing = [name for name in targets if name not in with_blobs]
    extra = [name for name in structure if name in with_blobs and name not in targets]
    if missing or extra:
        raise CaffeModelError(
            f"{path} does not fit {model.name}: "
            + "; ".join(part for part in (
                f"layers the model needs but the file lacks: {missing}" if missing else "",
                f"layers with weights in the file that the model lacks: {extra}" if extra else "",
            ) if part)
            + ". Is it a caffemodel for another architecture or class count?"
        )
    for name, target in targets.items():
        layer = structure[name]
        if layer.type and layer.type not in target.types:
            raise CaffeModelError(f"{path}: layer {name!r} is a Caffe {layer.type}, the model needs {' or '.join(target.types)}")
        if target.kind == "scale":
            scale = target.layer.scale
            if len(layer.blobs) != 1 or not np.allclose(layer.blobs[0], scale, rtol=1e-6, atol=0):
                found = [np.unique(b).tolist()[:4] for b in layer.blobs]
                raise CaffeModelError(f"{path}: Scale layer {name!r} holds {found}, the model's fixed scale is {scale}")
            continue
        if len(layer.blob_shapes) != len(target.shapes):
            raise CaffeModelError(
                f"{path}: layer {name!r} has {len(layer.blob_shapes)} blobs {layer.blob_shapes}, "
                f"the model needs {len(target.shapes)} with Caffe shapes {list(target.shapes)}"
            )
        for found, shape in zip(layer.blob_shapes, target.shapes):
            if not _fits(found, shape):
                raise CaffeModelError(
                    f"{path}: layer {name!r} blob shape {found} does not fit the model, "
                    f"which needs Caffe shape {shape}"
                )

    weighted = [name for name, target in targets.items() if target.kind != "scale"]
    for layer in iter_caffemodel(path, layers=weighted):
        if layer.name not in weighted:
            continue
        target = targets[layer.name]
        for variable, blob, shape in zip(target.layer.weights, layer.blobs, target.shapes):
            # keras.ops' transpose is several times faster than NumPy's on fc6's 400 MB.
            value = ops.convert_to_tensor(blob.reshape(shape), dtype=variable.dtype)
            variable.assign(ops.transpose(value, (2, 3, 1, 0)) if len(shape) == 4 else value)
    return model