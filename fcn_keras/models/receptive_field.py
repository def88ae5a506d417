"""How far a segmentation network looks and on what grid: its total stride and receptive field, from its layers.

Tiled inference (:mod:`fcn_keras.tiling`) gives the whole image's output only
when every tile starts on the network's pooling grid (a multiple of the
*stride*) and every kept pixel has the *receptive field* inside its tile. Both
are read from the model's functional graph: each tensor is described, per axis,
by its jump ``j`` (input pixels per position) and the interval ``[lo, hi]``
such that position ``p`` depends on input pixels ``p * j + lo ... p * j + hi``.
A convolution or pooling of kernel ``k``, stride ``s``, dilation ``d`` and
``b`` pixels of padding before gives ``s * j`` and
``[lo - b * j, hi + ((k - 1) * d - b) * j]``; padding and crops shift the
interval; transposed convolutions divide the jump (every output phase
counted); sums and concatenations take the union; pointwise layers keep it.
Nested models are walked through. "same" padding is taken as TensorFlow pads it
on sizes divisible by the stride, which is what every layer of an FCN sees when
the input is a multiple of the stride (the non-reference backbones pad it so).

The stride is the least common multiple of every map's jump: shifting the input
by it shifts every map by whole positions. The bounds are exact upper bounds
(weights can only make an output depend on fewer pixels, never on more).

Example:
    >>> from fcn_keras.models import fcn32s
    >>> field = receptive_field(fcn32s(num_classes=21))
    >>> field.stride, field.radius
    (32, 233)
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from fractions import Fraction

import keras

from fcn_keras.models.layers import CropToReference, PadToMultiple, Preprocessing, Scale


@dataclass(frozen=True)
class ReceptiveField:
    """A network's total ``stride`` and, per axis (rows, columns), how many input pixels
    ``before`` (above / left) and ``after`` (below / right) of an output pixel it can depend on.

    Example:
        >>> field = ReceptiveField(32, before=(90, 90), after=(97, 97))
        >>> field.radius, field.size
        (97, (188, 188))
    """

    stride: int
    before: tuple[int, int]
    after: tuple[int, int]

    @property
    def radius(self) -> int:
        """The half-width: the most pixels an output reaches on any side."""
        return max(*self.before, *self.after)

    @property
    def size(self) -> tuple[int, int]:
        """The full extent per axis, ``before + 1 + after``."""
        return tuple(b + 1 + a for b, a in zip(self.before, self.after))


@dataclass(frozen=True)
class _Axis:
    jump: Fraction
    lo: Fraction
    hi: Fraction


_Tensor = tuple  # (_Axis rows, _Axis cols)

_IDENTITY = _Axis(Fraction(1), Fraction(0), Fraction(0))


def receptive_field(model: keras.Model) -> ReceptiveField:
    """The total stride and receptive field of ``model``, a functional Keras model from images to per-pixel outputs.

    Raises ``ValueError`` naming the layer when the model has one whose spatial
    effect is unknown here (a reshape, a global pooling, a custom layer), or when
    its output is not at the input's resolution.

    Example:
        >>> from fcn_keras.models import fcn8s
        >>> receptive_field(fcn8s(num_classes=3, backbone="tiny_vgg")).stride
        32
    """
    graph = keras.Model(model.inputs, model.outputs)  # the functional graph, whatever the model's class
    jumps: list[Fraction] = []
    outputs = _walk(graph, [(_IDENTITY, _IDENTITY)], jumps, model.name)
    if len(outputs) != 1:
        raise ValueError(f"receptive_field: {model.name} has {len(outputs)} outputs; it takes a segmentation model "
                         f"with one per-pixel output")
    rows, cols = outputs[0]
    if rows.jump != 1 or cols.jump != 1:
        raise ValueError(f"receptive_field: {model.name}'s output has {float(rows.jump):g} x {float(cols.jump):g} "
                         f"input pixels per position, not one: it is not a per-pixel segmentation output")
    stride = functools.reduce(math.lcm, (j.numerator for j in jumps), 1)
    return ReceptiveField(stride, before=(max(0, math.ceil(-rows.lo)), max(0, math.ceil(-cols.lo))),
                          after=(max(0, math.ceil(rows.hi)), max(0, math.ceil(cols.hi))))


@functools.lru_cache(maxsize=None)
def architecture_receptive_field(architecture: str, backbone: str) -> ReceptiveField:
    """:func:`receptive_field` of an :class:`~fcn_keras.models.FCN` named by its identity
    (what an export records), built once without weights to read its layers.

    Example:
        >>> architecture_receptive_field("fcn8s", "tiny_vgg").radius
        121
    """
    from fcn_keras.models.fcn import FCN

    try:
        model = FCN(architecture, num_classes=1, backbone=backbone)
    except ValueError as exc:
        raise ValueError(f"no receptive field for architecture {architecture!r} over backbone {backbone!r}: "
                         f"{exc}") from None
    return receptive_field(model)  # the model (its weights were built only to have layers) is dropped here


def _walk(graph: keras.Model, inputs: list[_Tensor], jumps: list, where: str) -> list[_Tensor]:
    """The geometry of ``graph``'s outputs given its inputs'; every map's jump is appended to ``jumps``."""
    if isinstance(graph, keras.Sequential):
        tensor = inputs[0]
        for layer in graph.layers:
            tensor = _apply(layer, [tensor], jumps, f"{where}/{graph.name}")[0]
        return [tensor]
    config = graph.get_config()
    known: dict[tuple, _Tensor] = {}
    for history, tensor in zip(_histories(config["input_layers"]), inputs):
        known[history] = tensor
    for entry in config["layers"]:
        if entry["class_name"] == "InputLayer":
            continue
        layer = graph.get_layer(entry["name"])
        for node_index, node in enumerate(entry["inbound_nodes"]):
            sources = [known[h] for h in _histories(node["args"])]
            for tensor_index, tensor in enumerate(_apply(layer, sources, jumps, f"{where}/{graph.name}")):
                known[(entry["name"], node_index, tensor_index)] = tensor
                jumps.extend(axis.jump for axis in tensor)
    return [known[h] for h in _histories(config["output_layers"])]


def _histories(value) -> list[tuple]:
    """The ``(layer, node, tensor)`` references in a config's ``input_layers``/``output_layers`` or call args."""
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            name, node, index = value["config"]["keras_history"]
            return [(name, node, index)]
        return [h for v in value.values() for h in _histories(v)]
    if isinstance(value, (list, tuple)):
        if len(value) == 3 and isinstance(value[0], str) and isinstance(value[1], int):
            return [(value[0], value[1], value[2])]
        return [h for v in value for h in _histories(v)]
    return []


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


def _pads(value) -> tuple[int, int]:
    """``before`` padding (or cropping) per axis of a ``ZeroPadding2D``/``Cropping2D`` argument."""
    if isinstance(value, int):
        return value, value
    return tuple(v if isinstance(v, int) else v[0] for v in value)


_POINTWISE_NAMES = (
    "Activation", "ReLU", "LeakyReLU", "ELU", "PReLU", "Softmax", "BatchNormalization", "Dropout",
    "SpatialDropout2D", "GaussianNoise", "GaussianDropout", "AlphaDropout", "Rescaling", "Normalization",
    "Identity", "ActivityRegularization",
)
_POINTWISE = tuple(c for c in (getattr(keras.layers, n, None) for n in _POINTWISE_NAMES) if c is not None) + (
    Scale, Preprocessing, PadToMultiple)  # PadToMultiple pads at the bottom/right only: no shift
_MERGE = (keras.layers.Add, keras.layers.Subtract, keras.layers.Multiply, keras.layers.Average,
          keras.layers.Maximum, keras.layers.Minimum, keras.layers.Concatenate)


def _apply(layer, sources: list[_Tensor], jumps: list, where: str) -> list[_Tensor]:
    if isinstance(layer, keras.Model):
        return _walk(layer, sources, jumps, where)
    if isinstance(layer, _POINTWISE) or (isinstance(layer, keras.layers.LayerNormalization)
                                         and set(_pair(layer.axis) if not isinstance(layer.axis, int)
                                                 else [layer.axis]) <= {-1, 3}):
        return [sources[0]]
    if isinstance(layer, CropToReference):  # the second input gives only the size
        return [tuple(_shift(a, layer.offset) for a in sources[0])]
    if isinstance(layer, _MERGE):
        return [_union(sources, layer, where)]
    if isinstance(layer, keras.layers.ZeroPadding2D):
        return [tuple(_shift(a, -b) for a, b in zip(sources[0], _pads(layer.padding)))]
    if isinstance(layer, keras.layers.Cropping2D):
        return [tuple(_shift(a, b) for a, b in zip(sources[0], _pads(layer.cropping)))]
    if isinstance(layer, keras.layers.Conv2DTranspose):
        if getattr(layer, "output_padding", None) is not None:
            raise _unknown(layer, where, "a transposed convolution with output_padding")
        return [tuple(_transpose(a, k, s, layer.padding) for a, k, s in
                      zip(sources[0], _pair(layer.kernel_size), _pair(layer.strides)))]
    if isinstance(layer, keras.layers.UpSampling2D):
        return [tuple(_upsample(a, s, layer.interpolation) for a, s in zip(sources[0], _pair(layer.size)))]
    if hasattr(layer, "kernel_size") and hasattr(layer, "strides"):  # Conv2D, DepthwiseConv2D, SeparableConv2D
        dilation = _pair(getattr(layer, "dilation_rate", 1))
        return [tuple(_window(a, k, s, d, layer.padding) for a, k, s, d in
                      zip(sources[0], _pair(layer.kernel_size), _pair(layer.strides), dilation))]
    if isinstance(layer, (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)):
        return [tuple(_window(a, k, s, 1, layer.padding) for a, k, s in
                      zip(sources[0], _pair(layer.pool_size), _pair(layer.strides or layer.pool_size)))]
    raise _unknown(layer, where)


def _unknown(layer, where: str, what: str | None = None) -> ValueError:
    return ValueError(f"receptive_field: layer {layer.name!r} ({what or type(layer).__name__}) in {where} has a "
                      f"spatial effect this module does not know, so the stride and receptive field cannot be read")


def _shift(a: _Axis, positions: int) -> _Axis:
    return _Axis(a.jump, a.lo + positions * a.jump, a.hi + positions * a.jump)


def _window(a: _Axis, kernel: int, stride: int, dilation: int, padding: str) -> _Axis:
    extent = (kernel - 1) * dilation + 1
    # TensorFlow's "same" on a size divisible by the stride: max(extent - stride, 0) in all, the smaller half first.
    before = max(extent - stride, 0) // 2 if padding == "same" else 0
    return _Axis(a.jump * stride, a.lo - before * a.jump, a.hi + (extent - 1 - before) * a.jump)


def _transpose(a: _Axis, kernel: int, stride: int, padding: str) -> _Axis:
    # Output q = p * stride + t - before (t < kernel) receives input positions p; over every phase of q.
    before = max(kernel - stride, 0) // 2 if padding == "same" else 0
    jump = a.jump / stride
    lo = min(Fraction(-((kernel - 1 - phase - before) // stride)) * a.jump - phase * jump for phase in range(stride))
    hi = max(Fraction((phase + before) // stride) * a.jump - phase * jump for phase in range(stride))
    return _Axis(jump, a.lo + lo, a.hi + hi)


def _upsample(a: _Axis, size: int, interpolation: str) -> _Axis:
    jump = a.jump / size
    if interpolation == "nearest":  # q reads q // size
        return _Axis(jump, a.lo - (size - 1) * jump, a.hi)
    # Interpolating ones read the two positions around (q + 0.5) / size - 0.5 (bilinear; wider kernels: unknown).
    if interpolation != "bilinear":
        raise ValueError(f"receptive_field: UpSampling2D interpolation {interpolation!r} is not known here")
    centre = (Fraction(1, 2) / size - Fraction(1, 2)) * a.jump
    return _Axis(jump, a.lo + centre - a.jump, a.hi + centre + a.jump)


def _union(sources: list[_Tensor], layer, where: str) -> _Tensor:
    axes = []
    for parts in zip(*sources):
        if len({p.jump for p in parts}) != 1:
            raise ValueError(f"receptive_field: layer {layer.name!r} in {where} merges maps of different strides "
                             f"{sorted(float(p.jump) for p in parts)}")
        axes.append(_Axis(parts[0].jump, min(p.lo for p in parts), max(p.hi for p in parts)))
    return tuple(axes)
