"""A model's arithmetic, counted from its layers' shapes.

One multiply-add counts as 2 FLOPs. Counted: convolutions (grouped and
depthwise included), transposed convolutions as the dense operation the layer
defines (the reference's ``C x C`` kernel, whatever shortcut a layer takes) and
dense layers; nested models are counted through. Pooling, activations, crops
and sums are left out: they are memory-bound and tiny next to the
convolutions. For FCN-8s at 500x500 (700x700 after conv1_1's 100-pixel pad)
this gives about 362 GFLOP, as stated in the reference facts: count the plain
network's graph for that figure. Every counted layer is called once in an FCN's graph. An FCN's graph is the reference's whether its calls run the
exact fast formulation or not (``fast=``), so the count is the reference's
arithmetic: what the fast formulation skips (the pad's constant margin) and how
it computes the rest (Winograd, per-channel upsampling) are not seen — a layer
counts what it defines, not how it is computed.

Example:
    >>> from fcn_keras.models import build_fcn
    >>> round(model_flops(build_fcn("fcn8s", fast=False), 500, 500) / 1e9)
    363
"""

from __future__ import annotations

import math

import keras


def layer_flops(model: keras.Model, height: int, width: int, batch: int = 1) -> dict[str, int]:
    """FLOPs of each counted layer of ``model`` on a ``batch`` of ``height`` x ``width`` images.

    Example:
        >>> from fcn_keras.models import fcn8s
        >>> flops = layer_flops(fcn8s(), 500, 500)
        >>> round(flops["fc6"] / 1e9, 1)
        52.6
    """
    shape = (batch, height, width) + tuple(model.input_shape[3:])
    return _count(model, shape)


def model_flops(model: keras.Model, height: int, width: int, batch: int = 1) -> int:
    """Total FLOPs of ``model`` on a ``batch`` of ``height`` x ``width`` images (see :func:`layer_flops`)."""
    return sum(layer_flops(model, height, width, batch).values())


def _count(model: keras.Model, input_shape: tuple) -> dict[str, int]:
    graph = keras.Model(model.input, model.output)  # the functional graph as a plain model, whatever the class
    counted = [layer for layer in graph.layers if _is_counted(layer)]
    # One symbolic pass with the concrete input shape gives every counted layer's input and output shape.
    # (A nested model's output is not needed: it is counted from its own graph.)
    tensors = [t for layer in counted for t in (_input_in(graph, layer),
                                                 _input_in(graph, layer) if isinstance(layer, keras.Model) else layer.output)]
    specs = keras.Model(graph.input, tensors).compute_output_spec(keras.KerasTensor(input_shape))
    flops: dict[str, int] = {}
    for i, layer in enumerate(counted):
        in_shape = tuple(specs[2 * i].shape)
        if isinstance(layer, keras.Model):
            for key, value in _count(layer, in_shape).items():
                flops[f"{layer.name}/{key}"] = flops.get(f"{layer.name}/{key}", 0) + value
        else:
            flops[layer.name] = _flops(layer, in_shape, tuple(specs[2 * i + 1].shape))
    return flops


def _input_in(graph: keras.Model, layer):
    """The tensor feeding ``layer`` in ``graph``.

    A layer's ``input`` is that of its first call; a nested model's first "call" is its
    own graph, so its input in ``graph`` is read from the graph's config: the layer (or
    the graph's input) its call names. Every other counted layer is called once.
    """
    if not isinstance(layer, keras.Model):
        return layer.input
    node = next(entry for entry in graph.get_config()["layers"] if entry["name"] == layer.name)["inbound_nodes"][0]
    source, _, index = node["args"][0]["config"]["keras_history"]
    producer = graph.get_layer(source)
    if isinstance(producer, keras.layers.InputLayer):
        return graph.input
    return keras.tree.flatten(producer.output)[index]


def _is_counted(layer) -> bool:
    return isinstance(layer, (keras.Model, keras.layers.Dense, keras.layers.Conv2D, keras.layers.Conv2DTranspose,
                              keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D))


def _flops(layer, in_shape: tuple, out_shape: tuple) -> int:
    positions_out = math.prod(out_shape[:-1])
    if isinstance(layer, keras.layers.Dense):
        return 2 * in_shape[-1] * layer.units * positions_out
    kernel = math.prod(layer.kernel_size)
    if isinstance(layer, keras.layers.Conv2DTranspose):
        # Every input position scatters a full k x k x C_out block: count on the input side.
        return 2 * kernel * in_shape[-1] * layer.filters * math.prod(in_shape[:-1])
    if isinstance(layer, keras.layers.SeparableConv2D):
        depth = in_shape[-1] * layer.depth_multiplier
        return 2 * kernel * depth * positions_out + 2 * depth * layer.filters * positions_out
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return 2 * kernel * in_shape[-1] * layer.depth_multiplier * positions_out
    return 2 * kernel * (in_shape[-1] // layer.groups) * layer.filters * positions_out
