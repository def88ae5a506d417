"""Random reference-FCN weights in Caffe's layouts, and the check that Keras holds exactly them.

The layer list and Caffe shapes are written here from the reference net.py files
(not read off a Keras model), and the expected Keras arrays from the layouts'
definitions (einsum index strings), independently of the library's conversion.
"""

from __future__ import annotations

import numpy as np

from fcn_keras.caffe import CaffeLayer

_VGG16 = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))
TRUNK = tuple(f"conv{b}_{i}" for b, (_, n) in enumerate(_VGG16, 1) for i in range(1, n + 1)) + ("fc6", "fc7")
# (skip score layer, its source's channels, the 2x upsampling before it, at-once scale)
_SKIPS = {"fcn32s": (), "fcn16s": (("pool4", 512, "upscore2", None),),
          "fcn8s": (("pool4", 512, "upscore2", None), ("pool3", 256, "upscore_pool4", None)),
          "fcn8s_atonce": (("pool4", 512, "upscore2", 0.01), ("pool3", 256, "upscore_pool4", 1e-4))}
_FINAL = {"fcn32s": ("upscore", 64), "fcn16s": ("upscore16", 32), "fcn8s": ("upscore8", 16), "fcn8s_atonce": ("upscore8", 16)}
_trunk_cache: dict[str, list[np.ndarray]] = {}  # one set of trunk weights per session: 134M values


def _random(rng, shape):
    return rng.random(shape, dtype=np.float32) - np.float32(0.5)


def caffe_layers(architecture: str, num_classes: int = 21, seed: int = 0,
                 inner_product_fc: bool = False) -> list[CaffeLayer]:
    """The parameter layers of a reference FCN as its .caffemodel stores them, with random values."""
    rng = np.random.default_rng(seed)
    layers, channels = [], 3
    for block, (filters, convs) in enumerate(_VGG16, 1):
        for i in range(1, convs + 1):
            layers.append((f"conv{block}_{i}", (filters, channels, 3, 3)))
            channels = filters
    layers += [("fc6", (4096, 512, 7, 7)), ("fc7", (4096, 4096, 1, 1)), ("score_fr", (num_classes, 4096, 1, 1))]
    result = []
    for name, shape in layers:
        if name in TRUNK:
            if name not in _trunk_cache:
                trunk_rng = np.random.default_rng(TRUNK.index(name))
                _trunk_cache[name] = [_random(trunk_rng, shape), _random(trunk_rng, shape[:1])]
            blobs = _trunk_cache[name]
        else:
            blobs = [_random(rng, shape), _random(rng, shape[:1])]
        if inner_product_fc and name in ("fc6", "fc7"):
            result.append(CaffeLayer(name, "InnerProduct", blobs=[blobs[0].reshape(shape[0], -1), blobs[1]]))
        else:
            result.append(CaffeLayer(name, "Convolution", blobs=blobs))
    for source, source_channels, upsample, scale in _SKIPS[architecture]:
        result.append(CaffeLayer(upsample, "Deconvolution", blobs=[_random(rng, (num_classes, num_classes, 4, 4))]))
        if scale is not None:  # Caffe's Scale layer: one factor per channel, all equal here
            result.append(CaffeLayer(f"scale_{source}", "Scale", blobs=[np.full((source_channels,), scale, np.float32)]))
        result.append(CaffeLayer(f"score_{source}", "Convolution",
                                 blobs=[_random(rng, (num_classes, source_channels, 1, 1)), _random(rng, (num_classes,))]))
    name, kernel = _FINAL[architecture]
    result.append(CaffeLayer(name, "Deconvolution", blobs=[_random(rng, (num_classes, num_classes, kernel, kernel))]))
    return result


def _expected_keras(layer: CaffeLayer, kernel_shape: tuple[int, ...]) -> list[np.ndarray]:
    """Keras weights a Caffe layer defines: conv (o,i,h,w)->(h,w,i,o), deconv (i,o,h,w)->(h,w,o,i)."""
    kh, kw, _, out = kernel_shape
    if layer.type == "Deconvolution":
        return [np.einsum("iohw->hwoi", layer.blobs[0])]
    kernel = layer.blobs[0].reshape(out, -1, kh, kw)  # InnerProduct: Caffe flattens (C, H, W) in C order
    return [np.einsum("oihw->hwio", kernel), layer.blobs[1]]


def assert_converted(model, written: list[CaffeLayer], big: int = 10_000_000) -> None:
    """Every weight of ``model`` equals the Caffe blobs' values, layer by layer.

    Kernels over ``big`` values (fc6, fc7) are compared at 100,000 random
    positions and by their per-(in, out) sums, which catch any axis mix-up, at a
    fraction of the cost of a full transposed comparison.
    """
    rng = np.random.default_rng(1)
    for layer in written:
        keras_layer = model.get_layer(layer.name)
        if layer.type == "Scale":
            assert np.allclose(layer.blobs[0], keras_layer.scale, rtol=1e-6)
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
        for g, e in zip(got, _expected_keras(layer, got[0].shape), strict=True):
            np.testing.assert_array_equal(g, e, err_msg=layer.name)


def siftflow_caffe_layers(seed: int = 0, semantic: int = 33, geometric: int = 3) -> list[CaffeLayer]:
    """The parameter layers of siftflow-fcn16s/net.py with random values: the trunk, then each head (``_sem``, ``_geo``)."""
    rng = np.random.default_rng(seed)
    trunk = [layer for layer in caffe_layers("fcn32s", num_classes=1) if layer.name in TRUNK]
    heads = []
    for task, n in (("sem", semantic), ("geo", geometric)):
        heads += [
            CaffeLayer(f"score_fr_{task}", "Convolution", blobs=[_random(rng, (n, 4096, 1, 1)), _random(rng, (n,))]),
            CaffeLayer(f"upscore2_{task}", "Deconvolution", blobs=[_random(rng, (n, n, 4, 4))]),
            CaffeLayer(f"score_pool4_{task}", "Convolution", blobs=[_random(rng, (n, 512, 1, 1)), _random(rng, (n,))]),
            CaffeLayer(f"upscore16_{task}", "Deconvolution", blobs=[_random(rng, (n, n, 32, 32))]),
        ]
    return trunk + heads
