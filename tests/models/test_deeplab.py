"""DeepLab-LargeFOV and ASPP-L: the released prototxts' layers, checked against a NumPy rendering of Caffe."""

from __future__ import annotations

import math

import numpy as np
import pytest
import keras

from fcn_keras.models.deeplab import (DeepLabASPP, DeepLabLargeFOV, deeplab_aspp, deeplab_largefov, interp_size,
                                      output_size, subsample_fc)
from tests.models.family_checks import check_exports, check_logits, check_round_trip, random_images, randomize

SIZES = [(37, 50), (48, 64)]
ALPHA = 1 / 16


@pytest.fixture(scope="module")
def largefov():
    return randomize(deeplab_largefov(num_classes=3, alpha=ALPHA, include_preprocessing=True), seed=1)


@pytest.fixture(scope="module")
def aspp():
    return randomize(deeplab_aspp(num_classes=3, alpha=ALPHA, include_preprocessing=True), seed=2)


@pytest.fixture(scope="module")
def images():
    return random_images(SIZES)


# --- Caffe's semantics in NumPy (channels last) ----------------------------------------------------------------

def caffe_pool(x: np.ndarray, kernel: int, stride: int, pad: int, method: str) -> np.ndarray:
    """Caffe's PoolingLayer: ceil-mode size, clipped windows; AVE divides by the window within the padded map."""
    def size(n):
        out = math.ceil((n + 2 * pad - kernel) / stride) + 1
        return out - 1 if pad and (out - 1) * stride >= n + pad else out

    h, w = x.shape[:2]
    out = np.empty((size(h), size(w), x.shape[2]), x.dtype)
    for i in range(out.shape[0]):
        hs, he = i * stride - pad, min(i * stride - pad + kernel, h + pad)
        for j in range(out.shape[1]):
            ws, we = j * stride - pad, min(j * stride - pad + kernel, w + pad)
            window = x[max(hs, 0):min(he, h), max(ws, 0):min(we, w)]
            out[i, j] = window.max((0, 1)) if method == "max" else window.sum((0, 1)) / ((he - hs) * (we - ws))
    return out


def caffe_interp(x: np.ndarray, zoom: int = 8) -> np.ndarray:
    """Caffe's InterpLayer with ``zoom_factor``: (h - 1) * zoom + 1 pixels, corners aligned (caffe_cpu_interp2)."""
    def axis(n_in):
        n_out = (n_in - 1) * zoom + 1
        scale = (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
        src = scale * np.arange(n_out)
        lo = src.astype(int)
        hi = np.where(lo < n_in - 1, lo + 1, lo)
        return lo, hi, (src - lo)[:, None]

    lo, hi, lam = axis(x.shape[0])
    x = (1 - lam)[..., None] * x[lo] + lam[..., None] * x[hi]
    lo, hi, lam = axis(x.shape[1])
    return (1 - lam)[None] * x[:, lo] + lam[None] * x[:, hi]


def conv(x: np.ndarray, layer, relu: bool = True) -> np.ndarray:
    """A Caffe convolution with pad = dilation * (k // 2), from a Keras layer's weights."""
    kernel, bias = layer.get_weights()
    k, d = kernel.shape[0], layer.dilation_rate[0]
    pad = d * (k // 2)
    padded = np.pad(x, ((pad, pad), (pad, pad), (0, 0)))
    out = np.broadcast_to(bias, x.shape[:2] + bias.shape).astype(np.float64)
    for i in range(k):
        for j in range(k):
            out = out + padded[i * d:i * d + x.shape[0], j * d:j * d + x.shape[1]] @ kernel[i, j]
    return np.maximum(out, 0) if relu else out


def caffe_forward(model, image: np.ndarray) -> np.ndarray:
    """The released prototxt's test net (fc8 -> fc8_interp), cut to the image as DeepLab's test code does."""
    from fcn_keras.preprocessing import preprocess

    x = np.asarray(preprocess(image[None].astype(np.float32), "deeplab"), np.float64)[0]
    for block, convs in enumerate((2, 2, 3, 3, 3), start=1):
        for i in range(1, convs + 1):
            x = conv(x, model.get_layer(f"conv{block}_{i}"))
        x = caffe_pool(x, 3, 2 if block <= 3 else 1, 1, "max")
    if isinstance(model, DeepLabLargeFOV):
        x = caffe_pool(x, 3, 1, 1, "ave")
        suffixes = [""]
    else:
        suffixes = [f"_{i}" for i in range(1, len(model.options["rates"]) + 1)]
    scores = 0
    for s in suffixes:
        h = conv(conv(x, model.get_layer(f"fc6{s}")), model.get_layer(f"fc7{s}"))
        scores = scores + conv(h, model.get_layer(f"fc8{s}"), relu=False)
    return caffe_interp(scores)[:image.shape[0], :image.shape[1]]


# --- geometry ---------------------------------------------------------------------------------------------------

def test_output_size_formulas_are_caffes():
    for n in range(1, 300):
        pooled = n
        for _ in range(3):
            pooled = caffe_pool(np.zeros((pooled, 1, 1)), 3, 2, 1, "max").shape[0]
        assert output_size(n) == pooled == (n + 6) // 8 + 1, n
        assert interp_size(n) == caffe_interp(np.zeros((pooled, 1, 1))).shape[0] >= n, n
    # The prototxt's "n = 32k - 31" sizes map one to one.
    assert [output_size(n) for n in (321, 513)] == [41, 65] and interp_size(321) == 321


def test_interp_is_caffes_align_corners_bilinear(largefov):
    """fc8_interp + score (deconvolution with the 15x15 bilinear kernel, crop 7) against caffe_cpu_interp2."""
    rng = np.random.default_rng(0)
    scores_in = keras.Input((None, None, 3))
    image_in = keras.Input((None, None, 3))
    up = largefov.get_layer("fc8_interp")(scores_in)
    interp = keras.Model([scores_in, image_in], largefov.get_layer("score")([up, image_in]))
    for n in [1, 2, 7, 8, 9, 10, 17, 37, 64]:
        scores = rng.normal(size=(1, output_size(n), output_size(n + 1), 3)).astype(np.float32)
        got = keras.ops.convert_to_numpy(interp([scores, np.zeros((1, n, n + 1, 3), np.float32)]))[0]
        want = caffe_interp(scores[0].astype(np.float64))[:n, :n + 1]
        assert got.shape == want.shape, n
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("arch", ["largefov", "aspp"])
def test_network_matches_the_prototxt_in_numpy(arch, request, images):
    model = request.getfixturevalue(arch)
    for image in images:
        got = check_logits(model, [image])[0]
        want = caffe_forward(model, image)
        scale = np.abs(want).max()
        assert scale > 0
        np.testing.assert_allclose(got, want, rtol=0, atol=2e-5 * scale)


def test_layer_names_are_the_prototxts(largefov, aspp):
    names = {layer.name for layer in largefov.layers}
    assert {"conv1_1", "conv5_3", "pool1", "pool4", "pool5", "pool5a", "fc6", "drop6", "fc7", "drop7", "fc8",
            "fc8_interp", "score"} <= names
    assert largefov.get_layer("fc6").dilation_rate == (12, 12) and largefov.get_layer("conv5_1").dilation_rate == (2, 2)
    assert largefov.get_layer("pool4").strides == (1, 1) and largefov.get_layer("pool3").strides == (2, 2)
    assert not largefov.get_layer("fc8_interp").trainable
    aspp_names = {layer.name for layer in aspp.layers}
    assert "pool5a" not in aspp_names and "fc6" not in aspp_names
    assert [aspp.get_layer(f"fc6_{i}").dilation_rate[0] for i in range(1, 5)] == [6, 12, 18, 24]
    assert {f"fc8_{i}" for i in range(1, 5)} | {"fc8"} <= aspp_names


def test_options_are_checked():
    with pytest.raises(ValueError, match="rates"):
        deeplab_aspp(alpha=ALPHA, rates=[6, 0])
    with pytest.raises(ValueError, match="rates"):
        deeplab_aspp(alpha=ALPHA, rates=[])
    with pytest.raises(ValueError, match="alpha"):
        deeplab_largefov(alpha=0)
    with pytest.raises(ValueError, match=r"alpha=0\.5"):
        deeplab_largefov(alpha=0.5, weights="imagenet")
    assert deeplab_aspp(num_classes=2, alpha=ALPHA, rates=(2, 4, 8, 12)).options["rates"] == [2, 4, 8, 12]


# --- the family checks ------------------------------------------------------------------------------------------

@pytest.mark.backend_agnostic
@pytest.mark.parametrize("arch", ["largefov", "aspp"])
def test_logits_have_the_inputs_size(arch, request, images):
    check_logits(request.getfixturevalue(arch), images)


@pytest.mark.parametrize("arch", ["largefov", "aspp"])
def test_round_trip(arch, request, images, tmp_path):
    loaded = check_round_trip(request.getfixturevalue(arch), images, tmp_path)
    assert isinstance(loaded, (DeepLabLargeFOV, DeepLabASPP))


@pytest.mark.parametrize("arch", ["largefov", "aspp"])
def test_exports(arch, request, images, tmp_path):
    check_exports(request.getfixturevalue(arch), images, tmp_path)


# --- full size: parameters and the ImageNet initialisation -----------------------------------------------------

def write_vgg16_h5(path) -> dict:
    """A keras.applications-layout VGG16-with-top file whose every array is one constant (HDF5 fill values:
    a few kilobytes on disk for 138 M parameters); returns layer -> (kernel fill, bias fill)."""
    import h5py

    shapes = {}
    cin = 3
    for b, (filters, convs) in enumerate(((64, 2), (128, 2), (256, 3), (512, 3), (512, 3)), 1):
        for i in range(1, convs + 1):
            shapes[f"block{b}_conv{i}"] = ((3, 3, cin, filters), (filters,))
            cin = filters
    shapes.update(fc1=((25088, 4096), (4096,)), fc2=((4096, 4096), (4096,)), predictions=((4096, 1000), (1000,)))
    fills = {}
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [n.encode() for n in shapes]
        for k, (name, (kernel, bias)) in enumerate(shapes.items()):
            group = f.create_group(name)
            names = [f"{name}/kernel:0", f"{name}/bias:0"]
            group.attrs["weight_names"] = [n.encode() for n in names]
            fills[name] = (0.001 * (k + 1), -0.001 * (k + 1))
            for n, shape, value in zip(names, (kernel, bias), fills[name]):
                group.create_dataset(n, shape=shape, dtype="float32", fillvalue=value, chunks=True)
    return fills


def test_full_size_parameters_and_imagenet_initialisation(tmp_path):
    """The paper's 20.5 M (LargeFOV, 21 classes) exactly as the layer shapes give it; ASPP-L likewise."""
    fills = write_vgg16_h5(tmp_path / "vgg16_weights_tf_dim_ordering_tf_kernels.h5")
    model = deeplab_largefov(21, weights=str(tmp_path / "vgg16_weights_tf_dim_ordering_tf_kernels.h5"))
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == 14_714_688 + (9 * 512 * 1024 + 1024) + (1024 * 1024 + 1024) + (1024 * 21 + 21) == 20_505_429
    assert abs(trainable - 20.5e6) / 20.5e6 < 0.02
    assert model.count_params() == trainable + 15 * 15 * 21 * 21  # + the fixed bilinear kernel
    kernel, bias = model.get_layer("conv3_2").get_weights()
    assert np.all(kernel == np.float32(fills["block3_conv2"][0])) and np.all(bias == np.float32(fills["block3_conv2"][1]))
    kernel, bias = model.get_layer("fc6").get_weights()
    assert kernel.shape == (3, 3, 512, 1024) and np.all(kernel == np.float32(fills["fc1"][0]))
    assert np.all(model.get_layer("fc7").get_weights()[1] == np.float32(fills["fc2"][1]))
    assert 0.005 < model.get_layer("fc8").get_weights()[0].std() < 0.015  # the prototxt's gaussian std 0.01
    del model
    aspp = deeplab_aspp(21)
    assert sum(int(np.prod(w.shape)) for w in aspp.trainable_weights) == 37_877_652
    assert aspp.count_params() == 37_877_652 + 15 * 15 * 21 * 21


def test_fc_subsampling_keeps_the_same_filters_on_both_sides():
    fc6 = (np.arange(7 * 7 * 2 * 16, dtype=np.float32).reshape(7, 7, 2, 16), np.arange(16, dtype=np.float32))
    fc7 = (np.arange(16 * 16, dtype=np.float32).reshape(1, 1, 16, 16), -np.arange(16, dtype=np.float32))
    (k6, b6), (k7, b7) = subsample_fc(fc6, fc7)
    assert k6.shape == (3, 3, 2, 4) and k7.shape == (1, 1, 4, 4)
    np.testing.assert_array_equal(k6[1, 2, 1], fc6[0][3, 6, 1, [0, 4, 8, 12]])
    np.testing.assert_array_equal(b6, [0, 4, 8, 12])
    np.testing.assert_array_equal(k7[0, 0, 2], fc7[0][0, 0, 8, [0, 4, 8, 12]])
    np.testing.assert_array_equal(b7, [0, -4, -8, -12])

