"""Caffe weights into a model by layer name, exactly: the reference FCNs, SIFT Flow's two heads, DeepLab, SegNet.

Layers are matched by the authors' names (``conv1_1`` ... ``score_fr``,
``upscore``, ...; an architecture whose names differ has rules in
:mod:`fcn_keras.caffe.family`); every name, Caffe type and blob shape is
checked before any weight is set. Blob layouts: Caffe convolutions ``(out,
in, kh, kw)`` and deconvolutions ``(in, out, kh, kw)`` both become Keras'
``(kh, kw, in, out)`` / ``(kh, kw, out, in)`` by the transpose ``(2, 3, 1,
0)``. A Keras ``BatchNormalization`` takes either caffe-segnet's ``BN`` (folded
scale and shift) or BVLC Caffe's ``BatchNorm`` (mean, variance and the
moving-average factor they are divided by; 0 stands for 0) with the ``Scale``
layer (gamma, beta) that follows it.

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

from fcn_keras.caffe.family import CaffeRules, rules
from fcn_keras.caffe.proto import CaffeLayer, CaffeModelError
from fcn_keras.caffe.reader import iter_caffemodel, read_caffemodel

if TYPE_CHECKING:
    import keras

__all__ = ["load_caffe_weights", "batch_norm_values"]

BATCH_NORM_EPS = 1e-5
"""BVLC Caffe's ``BatchNormParameter.eps`` default, used when a file does not set it."""


def _leaf_layers(model) -> list:
    import keras

    leaves = []
    for layer in model.layers:
        leaves.extend(_leaf_layers(layer) if isinstance(layer, keras.Model) else [layer])
    # Layers the model holds outside its output's graph (the SIFT Flow model's geometric head).
    return leaves + list(getattr(model, "auxiliary_layers", ()))


@dataclass(frozen=True)
class _Target:
    """A Keras layer that takes Caffe blobs: their Caffe shapes and accepted Caffe types."""

    layer: object
    kind: str  # "conv", "deconv", "scale" or "bn"
    shapes: tuple[tuple[int, ...], ...]
    types: tuple[str, ...]


def _targets(model, rule: CaffeRules) -> dict[str, _Target]:
    from keras import layers as L

    from fcn_keras.models.layers import Scale

    targets = {}
    for layer in _leaf_layers(model):
        if layer.name in rule.blobless:
            if layer.trainable and layer.weights:
                raise CaffeModelError(f"layer {layer.name!r} of {model.name} is trainable, but Caffe computes it "
                                      f"without blobs ({rule.source}): build it fixed to load Caffe weights")
            continue
        if isinstance(layer, L.BatchNormalization):
            if not (layer.center and layer.scale) or layer.axis not in (-1, len(layer.input.shape) - 1):
                raise CaffeModelError(f"layer {layer.name!r}: Caffe batch normalization needs a channels-last "
                                      "BatchNormalization with both gamma and beta")
            targets[layer.name] = _Target(layer, "bn", ((layer.gamma.shape[0],),), ("BN", "BatchNorm"))
        elif isinstance(layer, L.Conv2DTranspose):
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
                "load_caffe_weights maps convolutions, deconvolutions, batch normalizations and fixed scales"
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


def batch_norm_values(caffe: CaffeLayer, scale: CaffeLayer | None, epsilon: float,
                      bn_folded: bool = True) -> dict[str, np.ndarray]:
    """Keras ``BatchNormalization`` values (gamma, beta, moving mean and variance) equal to a Caffe normalization.

    ``caffe`` is caffe-segnet's ``BN`` (blobs scale and shift; folded inference
    values when ``bn_folded``: mean 0, variance ``1 - epsilon``) or BVLC
    Caffe's ``BatchNorm`` (blobs mean, variance, factor: both divided by the
    factor, a factor 0 standing for 0, as batch_norm_layer.cpp does), whose
    ``eps`` (param, default 1e-5) is moved into the variance so that Keras'
    ``epsilon`` gives the same ``sqrt(var + eps)``; ``scale`` is the ``Scale``
    layer after it (gamma, and beta if it has a bias), or ``None`` (1 and 0).

    Example:
        >>> bn = CaffeLayer("bn", "BatchNorm", blobs=[np.full(2, 4, "f4"), np.full(2, 8, "f4"), np.full(1, 2, "f4")])
        >>> values = batch_norm_values(bn, None, epsilon=1e-3)
        >>> values["moving_mean"].tolist(), values["moving_variance"].round(6).tolist()
        ([2.0, 2.0], [3.99901, 3.99901])
    """
    blobs = [np.asarray(b, np.float64).reshape(-1) for b in caffe.blobs]
    if caffe.type == "BN":
        if not bn_folded:
            raise CaffeModelError(f"layer {caffe.name!r}: a BN layer's training-mode scale and shift need the "
                                  "training set's statistics, which a caffemodel does not hold")
        scale_blob, shift = blobs
        # Keras computes gamma * (x - mean) / sqrt(variance + epsilon) + beta.
        return {"gamma": scale_blob, "beta": shift, "moving_mean": np.zeros_like(shift),
                "moving_variance": np.full_like(shift, 1.0 - epsilon)}
    mean, variance, factor = blobs
    factor = 0.0 if factor[0] == 0 else 1.0 / factor[0]
    eps = caffe.params.get("eps", BATCH_NORM_EPS)
    variance = variance * factor + eps - epsilon
    # The file's eps is a float32: equal epsilons may differ by its rounding.
    if (variance < -1e-6 * max(eps, epsilon)).any():
        raise CaffeModelError(f"layer {caffe.name!r}: its variance plus Caffe's eps is below the Keras layer's "
                              f"epsilon {epsilon}; build the BatchNormalization with a smaller epsilon")
    variance = np.maximum(variance, 0.0)
    gamma = np.ones_like(mean) if scale is None else np.asarray(scale.blobs[0], np.float64).reshape(-1)
    beta = np.zeros_like(mean) if scale is None or len(scale.blobs) < 2 \
        else np.asarray(scale.blobs[1], np.float64).reshape(-1)
    return {"gamma": gamma, "beta": beta, "moving_mean": mean * factor, "moving_variance": variance}


def _paired_scales(structure: dict[str, CaffeLayer], batch_norms: list[str]) -> dict[str, str]:
    """BatchNorm layer -> the Scale layer that applies its gamma and beta: the next Scale reading its output."""
    names = list(structure)
    pairs = {}
    for name in batch_norms:
        top = (structure[name].tops or (None,))[0]
        for later in names[names.index(name) + 1:]:
            layer = structure[later]
            if layer.type == "Scale" and (top is None or top in layer.bottoms):
                pairs[name] = later
                break
    return pairs


def load_caffe_weights(model: keras.Model, caffemodel_path: str | os.PathLike) -> keras.Model:
    """Fills a model built by :mod:`fcn_keras.models` with a ``.caffemodel``'s weights, exactly.

    Blobs are matched by the authors' layer names (with the architecture's
    :func:`fcn_keras.caffe.family.rules`: DeepLab's ``fc8_voc12`` is ``fc8``).
    Convolution weights ``(out, in, kh, kw)`` and deconvolution weights
    ``(in, out, kh, kw)`` are both transposed ``(2, 3, 1, 0)`` into Keras'
    ``Conv2D`` ``(kh, kw, in, out)`` and ``Conv2DTranspose`` ``(kh, kw, out,
    in)`` layouts; ``fc6``/``fc7`` may come as InnerProduct matrices. At-once
    ``Scale`` blobs are checked against the model's fixed scales; batch
    normalizations take :func:`batch_norm_values`. Layers the model holds
    outside its output's graph (``model.auxiliary_layers``: SIFT Flow's
    geometric head) are filled too. The whole file (every field, layer name,
    type, blob shape and size) is checked before any weight is set, so a bad
    file leaves the model untouched; the data is then streamed one layer at a time.

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
    rule = rules(getattr(model, "architecture", ""))
    targets = _targets(model, rule)
    to_caffe = {keras_name: caffe_name for caffe_name, keras_name in rule.renames.items()}
    # Pass 1 reads the whole file's structure (every field length, blob shape and
    # count, and the small Scale and normalization blobs) and checks it against the
    # model; pass 2 streams the data layer by layer into the model, so at most one
    # blob is held.
    small = [to_caffe.get(name, name) for name, target in targets.items() if target.kind in ("scale", "bn")]
    read = read_caffemodel(path, layers=small)
    batch_norms = [to_caffe.get(name, name) for name, target in targets.items() if target.kind == "bn"
                   and read.get(to_caffe.get(name, name), CaffeLayer("")).type == "BatchNorm"]
    paired = _paired_scales(read, batch_norms)
    if paired:
        scales_read = read_caffemodel(path, layers=paired.values())
        read.update({name: scales_read[name] for name in paired.values()})
    consumed = set(paired.values()) - set(targets)
    structure = {rule.renames.get(name, name) if layer.blob_shapes else name: layer
                 for name, layer in read.items() if name not in consumed}
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
    normalizations = {}
    for name, target in targets.items():
        layer = structure[name]
        if layer.type and layer.type not in target.types:
            raise CaffeModelError(f"{path}: layer {layer.name!r} is a Caffe {layer.type}, the model needs "
                                  f"{' or '.join(target.types)}")
        if target.kind == "scale":
            scale = target.layer.scale
            if len(layer.blobs) != 1 or not np.allclose(layer.blobs[0], scale, rtol=1e-6, atol=0):
                found = [np.unique(b).tolist()[:4] for b in layer.blobs]
                raise CaffeModelError(f"{path}: Scale layer {name!r} holds {found}, the model's fixed scale is {scale}")
            continue
        if target.kind == "bn":
            normalizations[name] = _check_normalization(path, target, layer, read.get(paired.get(layer.name, "")),
                                                         rule)
            continue
        if len(layer.blob_shapes) != len(target.shapes):
            raise CaffeModelError(
                f"{path}: layer {layer.name!r} has {len(layer.blob_shapes)} blobs {layer.blob_shapes}, "
                f"the model needs {len(target.shapes)} with Caffe shapes {list(target.shapes)}"
            )
        for found, shape in zip(layer.blob_shapes, target.shapes):
            if not _fits(found, shape):
                raise CaffeModelError(
                    f"{path}: layer {layer.name!r} blob shape {found} does not fit the model, "
                    f"which needs Caffe shape {shape}"
                )

    for name, values in normalizations.items():
        bn = targets[name].layer
        for key, value in values.items():
            getattr(bn, key).assign(ops.convert_to_tensor(value.astype("float32"), dtype=getattr(bn, key).dtype))
    weighted = {to_caffe.get(name, name): name for name, target in targets.items() if target.kind in ("conv", "deconv")}
    for layer in iter_caffemodel(path, layers=weighted):
        if layer.name not in weighted:
            continue
        target = targets[weighted[layer.name]]
        for variable, blob, shape in zip(target.layer.weights, layer.blobs, target.shapes):
            # keras.ops' transpose is several times faster than NumPy's on fc6's 400 MB.
            value = ops.convert_to_tensor(blob.reshape(shape), dtype=variable.dtype)
            variable.assign(ops.transpose(value, (2, 3, 1, 0)) if len(shape) == 4 else value)
    return model


def _check_normalization(path: str, target: _Target, layer: CaffeLayer, scale: CaffeLayer | None,
                         rule: CaffeRules) -> dict[str, np.ndarray]:
    """The checked Keras values of one normalization (the file's blob counts and channel counts)."""
    (channels,), = target.shapes
    counts = {"BN": [channels, channels], "BatchNorm": [channels, channels, 1]}[layer.type or "BN"]
    found = [int(np.prod(shape)) for shape in layer.blob_shapes]
    if found != counts:
        raise CaffeModelError(f"{path}: {layer.type or 'BN'} layer {layer.name!r} has blobs {layer.blob_shapes}, "
                              f"the model's {channels} channels need {len(counts)} blobs of {counts} values")
    if scale is not None and [int(np.prod(s)) for s in scale.blob_shapes] not in ([channels], [channels, channels]):
        raise CaffeModelError(f"{path}: Scale layer {scale.name!r} after {layer.name!r} has blobs "
                              f"{scale.blob_shapes}, the model needs gamma (and beta) of {channels} values")
    return batch_norm_values(layer, scale, float(target.layer.epsilon), rule.bn_folded)
