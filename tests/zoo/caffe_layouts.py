"""Random FCN weights in Caffe's layouts, and the Keras arrays they must become.

The expected Keras arrays are written from the layouts' definitions (einsum index
strings), independently of the library's conversion code.
"""

from __future__ import annotations

import numpy as np
from keras import layers

from fcn_keras.caffe import CaffeLayer
from fcn_keras.models import Scale

TRUNK = tuple(f"conv{b}_{i}" for b, n in ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3)) for i in range(1, n + 1)) + ("fc6", "fc7")
_trunk_cache: dict[str, list[np.ndarray]] = {}  # one set of trunk weights for the whole session: they are 134M values


def _random(rng, shape):
    return rng.random(shape, dtype=np.float32) - np.float32(0.5)


def caffe_layers(model, seed: int = 0, inner_product_fc: bool = False) -> list[CaffeLayer]:
    """The model's parameter layers as Caffe would store them, with random values."""
    rng = np.random.default_rng(seed)
    result = []
    for layer in model.layers:
        if isinstance(layer, layers.Conv2DTranspose):
            kh, kw, out, inp = layer.kernel.shape
            result.append(CaffeLayer(layer.name, "Deconvolution", blobs=[_random(rng, (inp, out, kh, kw))]))
        elif isinstance(layer, layers.Conv2D):
            kh, kw, inp, out = layer.kernel.shape
            if layer.name in TRUNK:
                if layer.name not in _trunk_cache:
                    trunk_rng = np.random.default_rng(abs(hash(layer.name)) % 2**32)
                    _trunk_cache[layer.name] = [_random(trunk_rng, (out, inp, kh, kw)), _random(trunk_rng, (out,))]
                blobs = _trunk_cache[layer.name]
            else:
                blobs = [_random(rng, (out, inp, kh, kw)), _random(rng, (out,))]
            kind = "Convolution"
            if inner_product_fc and layer.name in ("fc6", "fc7"):
                blobs, kind = [blobs[0].reshape(out, -1), blobs[1]], "InnerProduct"
            result.append(CaffeLayer(layer.name, kind, blobs=blobs))
        elif isinstance(layer, Scale):
            channels = layer.input.shape[-1]
            result.append(CaffeLayer(layer.name, "Scale", blobs=[np.full((channels,), layer.scale, np.float32)]))
    return result


def expected_keras(layer: CaffeLayer, shape: tuple[int, ...]) -> list[np.ndarray]:
    """The Keras weights a Caffe layer defines: conv (o,i,h,w)->(h,w,i,o), deconv (i,o,h,w)->(h,w,o,i)."""
    kernel = layer.blobs[0].reshape(shape[3], shape[2], shape[0], shape[1]) if layer.type == "InnerProduct" \
        else layer.blobs[0]
    if layer.type == "Deconvolution":
        return [np.einsum("iohw->hwoi", kernel)]
    return [np.einsum("oihw->hwio", kernel), layer.blobs[1]]


def assert_converted(model, written: list[CaffeLayer], big: int = 50_000_000) -> None:
    """Every weight of ``model`` equals the Caffe blobs' values, layer by layer.

    Arrays over ``big`` values (fc6) are compared at 100,000 random positions
    and by their per-(in, out) sums, which catch any axis mix-up, at a fraction
    of the cost of a full transposed comparison.
    """
    rng = np.random.default_rng(1)
    for layer in written:
        keras_layer = model.get_layer(layer.name)
        if layer.type == "Scale":
            assert keras_layer.scale == float(layer.blobs[0][0]) or np.isclose(keras_layer.scale, layer.blobs[0][0])
            continue
        got = keras_layer.get_weights()
        if got[0].size > big:
            kh, kw, inp, out = got[0].shape
            blob = layer.blobs[0].reshape(out, inp, kh, kw)
            idx = [rng.integers(0, n, 100_000) for n in (kh, kw, inp, out)]
            np.testing.assert_array_equal(got[0][tuple(idx)], blob[idx[3], idx[2], idx[0], idx[1]], err_msg=layer.name)
            np.testing.assert_allclose(got[0].sum(axis=(0, 1)), blob.sum(axis=(2, 3)).T, rtol=1e-4, atol=1e-3)
            np.testing.assert_array_equal(got[1], layer.blobs[1])
            continue
        for g, e in zip(got, expected_keras(layer, got[0].shape), strict=True):
            np.testing.assert_array_equal(g, e, err_msg=layer.name)
