"""An independent NumPy rendering of the reference Caffe nets (voc-fcn*/net.py), for tests.

It works on Caffe blob layouts — convolution (out, in, kh, kw), deconvolution
(in, out, kh, kw) — and Caffe's layer semantics (zero pad, ceil-mode pooling
with clipped windows, deconvolution output (H - 1) * s + k, Crop with offset),
so comparing it with the Keras models checks both the architecture and the
claim that a blob converts by nothing but the transpose (2, 3, 1, 0).
"""

from __future__ import annotations

import math

import numpy as np

VGG_CONVS = [(f"conv{b}_{i}", c) for b, (c, n) in enumerate(((64, 2), (128, 2), (256, 3), (512, 3), (512, 3)), 1)
             for i in range(1, n + 1)]

BLOCK_ENDS = {"conv1_2", "conv2_2", "conv3_3", "conv4_3", "conv5_3"}


def conv(x, w, b, pad):
    """x (C, H, W), w (O, C, kh, kw) -> (O, H', W'), stride 1, cross-correlation."""
    c, h, wd = x.shape
    o, _, kh, kw = w.shape
    x = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    oh, ow = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    cols = np.empty((c, kh, kw, oh, ow), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            cols[:, i, j] = x[:, i : i + oh, j : j + ow]
    out = w.reshape(o, -1) @ cols.reshape(c * kh * kw, oh * ow)
    return out.reshape(o, oh, ow) + b[:, None, None]


def max_pool_ceil(x, k=2, s=2):
    c, h, w = x.shape
    oh, ow = math.ceil((h - k) / s) + 1, math.ceil((w - k) / s) + 1
    out = np.full((c, oh, ow), -np.inf, dtype=x.dtype)
    for i in range(oh):
        for j in range(ow):
            out[:, i, j] = x[:, i * s : min(i * s + k, h), j * s : min(j * s + k, w)].max(axis=(1, 2))
    return out


def deconv(x, w, s):
    """x (C_in, H, W), w (C_in, C_out, k, k) -> (C_out, (H-1)s+k, (W-1)s+k), no bias."""
    cin, h, wd = x.shape
    _, cout, k, _ = w.shape
    out = np.zeros((cout, (h - 1) * s + k, (wd - 1) * s + k), dtype=x.dtype)
    for a in range(k):
        for b in range(k):
            contrib = np.einsum("chw,co->ohw", x, w[:, :, a, b])
            out[:, a : a + (h - 1) * s + 1 : s, b : b + (wd - 1) * s + 1 : s] += contrib
    return out


def crop(x, ref_hw, offset):
    h, w = ref_hw
    return x[:, offset : offset + h, offset : offset + w]


def relu(x):
    return np.maximum(x, 0)


def trunk(blobs: dict, image_chw: np.ndarray) -> dict:
    """conv1_1 ... score_fr on one preprocessed image (C, H, W): the part all four nets share."""
    x = image_chw
    out = {"size": image_chw.shape[1:]}
    for name, _ in VGG_CONVS:
        x = relu(conv(x, *blobs[name], pad=100 if name == "conv1_1" else 1))
        if name in BLOCK_ENDS:
            x = max_pool_ceil(x)
            out[f"pool{name[4]}"] = x
    x = relu(conv(x, *blobs["fc6"], pad=0))
    x = relu(conv(x, *blobs["fc7"], pad=0))
    out["score_fr"] = conv(x, *blobs["score_fr"], pad=0)
    return out


def head(architecture: str, blobs: dict, features: dict) -> np.ndarray:
    """The architecture's upsampling and skips on :func:`trunk`'s output; scores (classes, H, W)."""
    score, size = features["score_fr"], features["size"]
    if architecture == "fcn32s":
        return crop(deconv(score, blobs["upscore"][0], 32), size, 19)
    scales = {"pool4": 0.01, "pool3": 1e-4} if architecture == "fcn8s_atonce" else {"pool4": 1.0, "pool3": 1.0}
    up = deconv(score, blobs["upscore2"][0], 2)
    sp4 = conv(features["pool4"] * scales["pool4"], *blobs["score_pool4"], pad=0)
    fuse = up + crop(sp4, up.shape[1:], 5)
    if architecture == "fcn16s":
        return crop(deconv(fuse, blobs["upscore16"][0], 16), size, 27)
    up = deconv(fuse, blobs["upscore_pool4"][0], 2)
    sp3 = conv(features["pool3"] * scales["pool3"], *blobs["score_pool3"], pad=0)
    fuse = up + crop(sp3, up.shape[1:], 9)
    return crop(deconv(fuse, blobs["upscore8"][0], 8), size, 31)


def forward(architecture: str, blobs: dict, image_chw: np.ndarray) -> np.ndarray:
    """Runs a reference net on one preprocessed image (C, H, W); returns scores (classes, H, W)."""
    return head(architecture, blobs, trunk(blobs, image_chw))


def random_blobs(num_classes: int, seed: int = 0) -> dict:
    """Random weights in Caffe layouts for every layer of any of the four nets.

    He-scaled so activations keep their magnitude through 15 layers; the score
    and upsampling layers are random too (not zero / bilinear) so that the
    layout of every blob matters.
    """
    rng = np.random.default_rng(seed)
    blobs = {}
    cin = 3
    for name, cout in VGG_CONVS:
        blobs[name] = (rng.standard_normal((cout, cin, 3, 3), np.float32) * np.sqrt(2 / (9 * cin)),
                       rng.standard_normal(cout, np.float32) * 0.1)
        cin = cout
    blobs["fc6"] = (rng.standard_normal((4096, 512, 7, 7), np.float32) * np.sqrt(2 / (49 * 512)),
                    rng.standard_normal(4096, np.float32) * 0.1)
    blobs["fc7"] = (rng.standard_normal((4096, 4096, 1, 1), np.float32) * np.sqrt(2 / 4096),
                    rng.standard_normal(4096, np.float32) * 0.1)
    for name, c in (("score_fr", 4096), ("score_pool4", 512), ("score_pool3", 256)):
        blobs[name] = (rng.standard_normal((num_classes, c, 1, 1), np.float32) * np.sqrt(1 / c),
                       rng.standard_normal(num_classes, np.float32))
    for name, k in (("upscore", 64), ("upscore16", 32), ("upscore2", 4), ("upscore_pool4", 4), ("upscore8", 16)):
        blobs[name] = (rng.standard_normal((num_classes, num_classes, k, k), np.float32) / k,)
    return blobs


def keras_layouts(blobs: dict) -> dict:
    """The Caffe blobs as Keras weights: every kernel by the transpose (2, 3, 1, 0) alone, biases as they are.

    Made once for several models: transposing fc6's 0.4 GB kernel costs seconds, copying it does not.
    """
    return {name: [np.ascontiguousarray(blob[0].transpose(2, 3, 1, 0)), *blob[1:]] for name, blob in blobs.items()}


def set_keras_weights(model, layouts: dict) -> None:
    """Gives a Keras FCN the Caffe blobs in :func:`keras_layouts`."""
    for layer in model.layers:
        if layer.name in layouts and layer.weights:
            layer.set_weights(layouts[layer.name])
