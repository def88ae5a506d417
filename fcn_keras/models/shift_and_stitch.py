"""Shift-and-stitch and filter rarefaction: the FCN paper's dense output from a coarse network (§3.2).

A network whose output is downsampled by ``f`` gives dense output when it is
run ``f**2`` times, on the input shifted by ``x`` columns and ``y`` rows for
``x, y`` in ``0 ... f - 1``, and the outputs are interlaced
(:func:`shift_and_stitch`). The paper notes the equivalent "filter
rarefaction": set one layer's stride ``s`` to 1 and dilate every later filter
by ``s`` (:func:`rarefy`, which keeps the network's variables). Rarefying the
*last* subsampling layer of stride ``s`` equals shift-and-stitch with
``factor=s`` and shifts in units of ``step`` = the stride of the layers before
it (:func:`last_subsampling` gives both).

Here a shift by ``(x, y)`` drops the first ``x * step`` columns and
``y * step`` rows, so shifted run ``(x, y)``'s output ``(i, j)`` is the dense
output ``(i * f + y, j * f + x)``. With ``"valid"`` padding the two are the
same function everywhere both are defined. With ``"same"`` padding a shifted
copy's top/left edge lies inside the image: its outputs whose receptive
field reaches that edge read zero padding where the dense network reads
pixels, and differ; everything else agrees (docs/family/shift_and_stitch.md).

Example:
    >>> import numpy as np
    >>> net = keras.Sequential([keras.Input((None, None, 1)), keras.layers.Conv2D(2, 3),
    ...                         keras.layers.MaxPooling2D(2), keras.layers.Conv2D(1, 3)])
    >>> images = np.random.default_rng(0).normal(size=(1, 20, 20, 1)).astype("float32")
    >>> layer, factor, step = last_subsampling(net)
    >>> stitched = shift_and_stitch(net, images, factor, step)
    >>> dense = keras.ops.convert_to_numpy(rarefy(net)(images))
    >>> stitched.shape, bool(np.allclose(stitched, dense, atol=1e-5))
    ((1, 13, 13, 1), True)
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import keras
from keras import layers, ops

_PACKAGE = "fcn_keras"

# Layers that act on each position alone (at inference): rarefaction leaves them as they are.
_POINTWISE = (layers.Activation, layers.ReLU, layers.Dropout, layers.BatchNormalization, layers.LeakyReLU,
              layers.Softmax)
_POOLING = (layers.MaxPooling2D, layers.AveragePooling2D)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class RarefiedConv2D(keras.layers.Layer):
    """A ``Conv2D``'s own kernel and bias applied at stride 1 with its dilation multiplied by ``rate``.

    The filter rarefaction of the FCN paper (§3.2): ``f'_ij = f_{i/s, j/s}``
    where ``s`` divides ``i`` and ``j``, else 0, which is the à trous (dilated)
    filter. Holds the ``Conv2D`` itself, so the variables are the network's.

    Example:
        >>> import numpy as np
        >>> conv = keras.layers.Conv2D(1, 3)
        >>> conv.build((None, None, None, 1))
        >>> tuple(RarefiedConv2D(conv, 2)(np.zeros((1, 9, 9, 1), "float32")).shape)
        (1, 5, 5, 1)
    """

    def __init__(self, conv: layers.Conv2D | dict, rate: int = 1, **kwargs):
        super().__init__(**kwargs)
        if isinstance(conv, dict):
            conv = keras.saving.deserialize_keras_object(conv)
        if not isinstance(conv, layers.Conv2D) or isinstance(conv, layers.Conv2DTranspose):
            raise ValueError(f"RarefiedConv2D needs a keras.layers.Conv2D, got {type(conv).__name__}")
        if int(rate) != rate or rate < 1:
            raise ValueError(f"RarefiedConv2D: rate must be a positive integer, got {rate!r}")
        self.conv, self.rate = conv, int(rate)

    def build(self, input_shape):
        if not self.conv.built:
            self.conv.build(input_shape)

    def call(self, x):
        conv = self.conv
        dilation = tuple(d * self.rate for d in conv.dilation_rate)
        y = ops.conv(x, ops.cast(conv.kernel, x.dtype), strides=1, padding=conv.padding, dilation_rate=dilation,
                     data_format=conv.data_format)
        if conv.use_bias:
            y = y + ops.cast(conv.bias, y.dtype)
        return conv.activation(y)

    def compute_output_shape(self, input_shape):
        dilation = tuple(d * self.rate for d in self.conv.dilation_rate)
        sizes = []
        for size, k, d in zip(input_shape[1:3], self.conv.kernel_size, dilation):
            sizes.append(None if size is None else size if self.conv.padding == "same" else size - (k - 1) * d)
        return (input_shape[0], *sizes, self.conv.filters)

    def get_config(self):
        return {**super().get_config(), "conv": keras.saving.serialize_keras_object(self.conv), "rate": self.rate}


def chain_layers(network) -> list:
    """The layers of a chain network in order: a ``Sequential``, a functional chain or a list of layers.

    Nested chains are flattened; input layers are skipped. A functional model
    whose graph branches raises a ``ValueError`` naming the layer.

    Example:
        >>> net = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3, name="a")])
        >>> [layer.name for layer in chain_layers(net)]
        ['a']
    """
    if isinstance(network, (list, tuple)):
        found = []
        for item in network:
            found += chain_layers(item) if isinstance(item, keras.Model) else [item]
        return found
    if not isinstance(network, keras.Model):
        raise ValueError(f"expected a keras.Model or a list of layers, got {type(network).__name__}")
    if isinstance(network, keras.Sequential):
        return chain_layers(list(network.layers))
    config = network.get_config()
    found, previous = [], None
    for entry in config["layers"]:
        if entry["class_name"] == "InputLayer":
            previous = entry["name"]
            continue
        nodes = entry["inbound_nodes"]
        sources = [h for node in nodes for h in _sources(node["args"])]
        if len(nodes) != 1 or len(sources) != 1 or sources[0] != previous:
            raise ValueError(f"network {network.name!r} is not a chain at layer {entry['name']!r}: "
                             f"shift-and-stitch and rarefy take a chain of layers (Sequential or one input each)")
        layer = network.get_layer(entry["name"])
        found += chain_layers(layer) if isinstance(layer, keras.Model) else [layer]
        previous = entry["name"]
    return found


def _sources(value) -> list[str]:
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            return [value["config"]["keras_history"][0]]
        return [s for v in value.values() for s in _sources(v)]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in _sources(v)]
    return []


def _stride(layer) -> tuple[int, int]:
    strides = getattr(layer, "strides", None) or (1, 1)
    return (strides, strides) if isinstance(strides, int) else tuple(strides)


def last_subsampling(network) -> tuple[str, int, int]:
    """``(layer name, factor, step)``: the last layer with a stride, its stride, and the stride before it.

    Rarefying that layer (:func:`rarefy`) equals ``shift_and_stitch(network,
    images, factor, step)``. Strides must be square.

    Example:
        >>> net = keras.Sequential([keras.Input((None, None, 1)), keras.layers.MaxPooling2D(2, name="p1"),
        ...                         keras.layers.Conv2D(1, 3), keras.layers.MaxPooling2D(4, name="p2")])
        >>> last_subsampling(net)
        ('p2', 4, 2)
    """
    chain = chain_layers(network)
    strided = [i for i, layer in enumerate(chain) if _stride(layer) != (1, 1)]
    if not strided:
        raise ValueError("the network has no layer with a stride: its output is dense already")
    index = strided[-1]
    factor = _stride(chain[index])
    step = [math.prod(_stride(layer)[axis] for layer in chain[:index]) for axis in (0, 1)]
    if factor[0] != factor[1] or step[0] != step[1]:
        raise ValueError(f"layer {chain[index].name!r}: shift-and-stitch here takes square strides, "
                         f"got {factor} after {tuple(step)}")
    return chain[index].name, factor[0], step[0]


def rarefy(network, layer: str | None = None, input_shape: tuple | None = None, name: str | None = None) -> keras.Model:
    """The dense network: ``layer`` (default: the last subsampling one) at stride 1, every later filter dilated.

    ``network`` is a chain (:func:`chain_layers`) of ``Conv2D``, max/average
    pooling and pointwise layers. Layers up to ``layer`` are the network's own;
    ``layer`` becomes a stride-1 pooling (or a :class:`RarefiedConv2D`), and
    every later convolution a :class:`RarefiedConv2D` over its own variables.
    Later layers must have stride 1 and later poolings a 1x1 window (a window
    would need dilating, which Keras' pooling cannot): else a ``ValueError``.

    Example:
        >>> net = keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(4, 3, name="c1"),
        ...                         keras.layers.MaxPooling2D(2, name="p1"), keras.layers.Conv2D(2, 3, name="c2")])
        >>> dense = rarefy(net)
        >>> [type(l).__name__ for l in dense.layers[1:]], dense.get_layer("c1") is net.get_layer("c1")
        (['Conv2D', 'MaxPooling2D', 'RarefiedConv2D'], True)
    """
    chain = chain_layers(network)
    name_, rate, _ = last_subsampling(chain)
    if layer is not None and layer != name_:
        names = [l.name for l in chain]
        if layer not in names:
            raise ValueError(f"layer {layer!r} is not in the network (layers: {', '.join(names)})")
        raise ValueError(f"layer {layer!r} is not the last subsampling layer ({name_!r}); rarefying an earlier one "
                         f"leaves a later stride, whose output is not a dense grid")
    index = [l.name for l in chain].index(name_)
    if input_shape is None:
        input_shape = (None, None, _input_channels(chain[0]))
    # New layers compute as the layers they replace (a float64 network stays float64).
    inputs = keras.Input(tuple(input_shape), dtype=chain[0].compute_dtype, name="image")
    x = inputs
    for position, current in enumerate(chain):
        if position < index:
            x = current(x)
        elif position == index:
            if isinstance(current, _POOLING):
                pooling = type(current)(current.pool_size, strides=1, padding=current.padding,
                                        dtype=current.dtype_policy, name=f"{current.name}_rarefied")
                x = pooling(x)
            elif isinstance(current, layers.Conv2D):
                x = RarefiedConv2D(current, 1, dtype=current.dtype_policy, name=f"{current.name}_rarefied")(x)
            else:
                raise ValueError(f"layer {current.name!r} ({type(current).__name__}) cannot be rarefied")
        elif isinstance(current, layers.Conv2D) and not isinstance(current, layers.Conv2DTranspose):
            x = RarefiedConv2D(current, rate, dtype=current.dtype_policy, name=f"{current.name}_rarefied")(x)
        elif isinstance(current, _POOLING) and tuple(current.pool_size) == (1, 1):
            x = current(x)
        elif isinstance(current, _POINTWISE):
            x = current(x)
        else:
            raise ValueError(f"layer {current.name!r} ({type(current).__name__}) after {name_!r} has no rarefied "
                             f"form here (supported: Conv2D, 1x1 pooling, pointwise layers)")
    return keras.Model(inputs, x, name=name or f"{getattr(network, 'name', 'network')}_rarefied")


def _input_channels(first) -> int | None:
    kernel = getattr(first, "kernel", None)
    if kernel is not None:
        return int(kernel.shape[-2]) * getattr(first, "groups", 1)
    try:
        return first.input.shape[-1]
    except (AttributeError, ValueError):
        return None


def shift_and_stitch(network: Callable, images, factor: int, step: int = 1) -> np.ndarray:
    """Runs ``network`` on ``factor**2`` shifted copies of ``images`` and interlaces the outputs (FCN §3.2).

    Shift ``(x, y)`` drops the first ``x * step`` columns and ``y * step`` rows
    of ``images`` ``(N, H, W, C)``; its output ``(i, j)`` goes to
    ``(i * factor + y, j * factor + x)``. The result is cut to the rectangle
    every shift fills. ``step=1`` with ``factor`` the network's output stride is
    the paper's fully dense case; see :func:`last_subsampling` for the shifts
    that match :func:`rarefy`.

    Example:
        >>> import numpy as np
        >>> pool = keras.Sequential([keras.Input((None, None, 1)), keras.layers.MaxPooling2D(2)])
        >>> x = np.arange(16.0).reshape(1, 4, 4, 1)
        >>> shift_and_stitch(pool, x, 2)[0, :, :, 0].tolist()
        [[5.0, 6.0, 7.0], [9.0, 10.0, 11.0], [13.0, 14.0, 15.0]]
    """
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"images must be (N, H, W, C), got shape {images.shape}")
    for label, value in (("factor", factor), ("step", step)):
        if isinstance(value, bool) or int(value) != value or value < 1:
            raise ValueError(f"{label} must be a positive integer, got {value!r}")
    factor, step = int(factor), int(step)
    if (factor - 1) * step >= min(images.shape[1:3]):
        raise ValueError(f"shifts up to {(factor - 1) * step} pixels leave nothing of {images.shape[1:3]} images")
    outputs = {}
    for y in range(factor):
        for x in range(factor):
            shifted = images[:, y * step:, x * step:, :]
            outputs[y, x] = np.asarray(keras.ops.convert_to_numpy(network(shifted, training=False)))
    heights = [outputs[y, 0].shape[1] for y in range(factor)]
    widths = [outputs[0, x].shape[2] for x in range(factor)]
    height = min(h * factor + y for y, h in enumerate(heights))  # rows every shift fills
    width = min(w * factor + x for x, w in enumerate(widths))
    if height < 1 or width < 1:
        raise ValueError(f"a shifted copy of the {images.shape[1:3]} images has an empty output")
    first = outputs[0, 0]
    stitched = np.empty((first.shape[0], height, width, first.shape[3]), first.dtype)
    for (y, x), out in outputs.items():
        rows, cols = len(range(y, height, factor)), len(range(x, width, factor))
        stitched[:, y:height:factor, x:width:factor] = out[:, :rows, :cols]
    return stitched
