"""The .caffemodel reader and writer: both protobuf forms, legacy fields, corrupt files, layout semantics."""

from __future__ import annotations

import struct

import keras
import numpy as np
import pytest

from fcn_keras.caffe import CaffeLayer, CaffeModelError, load_caffe_weights, read_caffemodel, write_caffemodel
from fcn_keras.models import Scale


def _layers():
    rng = np.random.default_rng(0)
    return [
        CaffeLayer("data", "Input", tops=("data",)),
        CaffeLayer("conv", "Convolution", bottoms=("data",), tops=("conv",),
                   blobs=[rng.standard_normal((4, 3, 3, 3)).astype("float32"), np.arange(4, dtype="float32")]),
        CaffeLayer("relu", "ReLU", bottoms=("conv",), tops=("conv",)),
        CaffeLayer("up", "Deconvolution", bottoms=("conv",), tops=("up",),
                   blobs=[rng.standard_normal((4, 2, 4, 4)).astype("float32")]),
    ]


@pytest.mark.parametrize("form", ["layer", "v1"])
@pytest.mark.parametrize("legacy_dims", [False, True])
@pytest.mark.parametrize("packed", [True, False])
def test_round_trip_both_forms(tmp_path, form, legacy_dims, packed):
    path = tmp_path / "net.caffemodel"
    written = _layers()
    write_caffemodel(path, written, form=form, legacy_dims=legacy_dims, packed=packed, name="tiny")
    read = read_caffemodel(path)
    assert list(read) == [layer.name for layer in written]
    for layer in written:
        got = read[layer.name]
        # V1 has enum types: the ones it cannot express ("Input") are left out.
        assert got.type == (layer.type if form == "layer" or layer.type != "Input" else "")
        assert got.bottoms == layer.bottoms and got.tops == layer.tops
        assert len(got.blobs) == len(layer.blobs)
        for g, w in zip(got.blobs, layer.blobs):
            assert g.dtype == np.float32
            np.testing.assert_array_equal(g.reshape(w.shape), w)
            if not legacy_dims:
                assert g.shape == w.shape


def test_hand_encoded_v1_and_new_forms(tmp_path):
    # Bytes written from caffe.proto's field numbers, not by our writer.
    def field(number, wire, payload):
        return bytes([(number << 3) | wire]) + (bytes([len(payload)]) + payload if wire == 2 else payload)

    data = struct.pack("<2f", 1.5, -2.0)
    blob_v1 = field(1, 0, b"\x01") + field(2, 0, b"\x01") + field(3, 0, b"\x01") + field(4, 0, b"\x02") + field(5, 2, data)
    v1 = field(2, 2, b"\x00") + field(3, 2, b"out") + field(4, 2, b"old") + field(5, 0, b"\x27") + field(6, 2, blob_v1)
    shape = field(1, 2, b"\x02\x01")  # BlobShape.dim packed: [2, 1]
    blob_new = field(7, 2, shape) + field(5, 2, data)
    blob_double = field(7, 2, field(1, 2, b"\x01")) + field(8, 2, struct.pack("<d", 0.25))  # double_data
    new = (field(1, 2, b"new") + field(2, 2, b"Convolution") + field(3, 2, b"x") + field(7, 2, blob_new)
           + field(7, 2, blob_double))
    path = tmp_path / "hand.caffemodel"
    path.write_bytes(field(1, 2, b"net") + field(2, 2, v1) + b"\xa2\x06" + bytes([len(new)]) + new)  # 100 -> a2 06
    layers = read_caffemodel(path)
    assert layers["old"].type == "Deconvolution" and layers["old"].tops == ("out",)
    assert layers["old"].blobs[0].shape == (1, 1, 1, 2)
    assert layers["new"].type == "Convolution" and layers["new"].bottoms == ("x",)
    assert layers["new"].blobs[0].tolist() == [[1.5], [-2.0]]
    assert layers["new"].blobs[1].dtype == np.float32 and layers["new"].blobs[1].tolist() == [0.25]


def test_selected_layers_skip_the_data_of_the_others(tmp_path):
    path = tmp_path / "net.caffemodel"
    write_caffemodel(path, _layers())
    read = read_caffemodel(path, layers=["up"])
    assert read["conv"].blobs == [] and read["conv"].blob_shapes == [(4, 3, 3, 3), (4,)]
    assert read["up"].blobs[0].shape == (4, 2, 4, 4)


@pytest.mark.parametrize("cut", [1, 7, 40, 200, -5, -1])
def test_truncated_file_is_refused(tmp_path, cut):
    path = tmp_path / "net.caffemodel"
    write_caffemodel(path, _layers())
    data = path.read_bytes()
    path.write_bytes(data[:cut] if cut > 0 else data[:cut])
    with pytest.raises(CaffeModelError, match="truncated or corrupt"):
        read_caffemodel(path)


def test_corrupt_and_foreign_files_are_refused(tmp_path):
    path = tmp_path / "x.caffemodel"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    with pytest.raises(CaffeModelError, match=str(path.name)):
        read_caffemodel(path)
    path.write_bytes(b"")
    with pytest.raises(CaffeModelError, match="no layers"):
        read_caffemodel(path)
    # A blob whose shape does not match its data.
    layer = CaffeLayer("conv", "Convolution", blobs=[np.zeros((2, 3), "float32")])
    write_caffemodel(path, [layer])
    data = bytearray(path.read_bytes())
    data[data.index(b"\x0a\x02\x02\x03") + 3] = 4  # BlobShape dims (2, 3) -> (2, 4)
    path.write_bytes(bytes(data))
    with pytest.raises(CaffeModelError, match=r"blob 0 of layer 'conv' has shape \(2, 4\)"):
        read_caffemodel(path)


def _reference_conv(x, w, b):
    """Caffe Convolution, stride 1, no pad: out[o, y, x] = b[o] + sum w[o, i, h, v] x[i, y + h, x + v]."""
    out_c, in_c, kh, kw = w.shape
    _, height, width = x.shape
    out = np.zeros((out_c, height - kh + 1, width - kw + 1)) + b[:, None, None]
    for h in range(kh):
        for v in range(kw):
            out += np.einsum("oi,iyx->oyx", w[:, :, h, v], x[:, h : h + out.shape[1], v : v + out.shape[2]])
    return out


def _reference_deconv(x, w, stride):
    """Caffe Deconvolution, no pad: out[o, y * s + h, x * s + v] += w[i, o, h, v] x[i, y, x]."""
    in_c, out_c, kh, kw = w.shape
    _, height, width = x.shape
    out = np.zeros((out_c, (height - 1) * stride + kh, (width - 1) * stride + kw))
    for y in range(height):
        for xx in range(width):
            out[:, y * stride : y * stride + kh, xx * stride : xx * stride + kw] += np.einsum("iohv,i->ohv", w, x[:, y, xx])
    return out


@pytest.mark.backend_agnostic
def test_converted_layers_compute_what_caffe_computes(tmp_path):
    """Layout semantics, with non-symmetric kernels: Keras output equals a direct Caffe computation."""
    rng = np.random.default_rng(3)
    inputs = keras.Input((None, None, 3))
    conv = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    fc = keras.layers.Conv2D(5, (2, 3), name="fc")(conv)  # from an InnerProduct blob
    up = keras.layers.Conv2DTranspose(2, 4, strides=2, use_bias=False, name="up")(fc)
    model = keras.Model(inputs, [conv, fc, up])
    w_conv, b_conv = rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    w_fc, b_fc = rng.standard_normal((5, 4 * 2 * 3)), rng.standard_normal(5)
    w_up = rng.standard_normal((5, 2, 4, 4))
    path = tmp_path / "net.caffemodel"
    write_caffemodel(path, [CaffeLayer("conv", "Convolution", blobs=[w_conv, b_conv]),
                            CaffeLayer("fc", "InnerProduct", blobs=[w_fc, b_fc]),
                            CaffeLayer("up", "Deconvolution", blobs=[w_up])], form="v1")
    load_caffe_weights(model, path)

    x = rng.standard_normal((7, 8, 3)).astype("float32")
    got_conv, got_fc, got_up = (np.asarray(t)[0] for t in model(x[None]))
    ref_conv = _reference_conv(x.transpose(2, 0, 1), w_conv, b_conv)
    ref_fc = _reference_conv(ref_conv, w_fc.reshape(5, 4, 2, 3), b_fc)  # Caffe flattens (C, H, W) in C order
    ref_up = _reference_deconv(ref_fc, w_up, 2)
    for got, ref in ((got_conv, ref_conv), (got_fc, ref_fc), (got_up, ref_up)):
        np.testing.assert_allclose(got, ref.transpose(1, 2, 0), rtol=1e-4, atol=1e-4)


def _tiny_fcn():
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3, name="conv1_1")(inputs)
    x = Scale(0.01, name="scale_pool4")(x)
    x = keras.layers.Conv2D(2, 1, name="score_fr")(x)
    x = keras.layers.Conv2DTranspose(2, 4, strides=2, use_bias=False, name="upscore")(x)
    return keras.Model(inputs, x, name="tiny_fcn")


def _tiny_layers(score_shape=(2, 4, 1, 1), scale=0.01):
    return [CaffeLayer("conv1_1", "Convolution", blobs=[np.ones((4, 3, 3, 3), "float32"), np.ones(4, "float32")]),
            CaffeLayer("scale_pool4", "Scale", blobs=[np.full(4, scale, "float32")]),
            CaffeLayer("score_fr", "Convolution", blobs=[np.ones(score_shape, "float32"), np.ones(2, "float32")]),
            CaffeLayer("upscore", "Deconvolution", blobs=[np.ones((2, 2, 4, 4), "float32")])]


def test_bad_files_leave_the_model_untouched(tmp_path):
    model = _tiny_fcn()
    before = [w.copy() for w in model.get_weights()]
    path = tmp_path / "bad.caffemodel"
    cases = [
        (_tiny_layers(score_shape=(3, 4, 1, 1)), r"layer 'score_fr' blob shape \(3, 4, 1, 1\) .* needs Caffe shape \(2, 4, 1, 1\)"),
        (_tiny_layers(scale=0.5), r"Scale layer 'scale_pool4' holds \[\[0.5\]\], the model's fixed scale is 0.01"),
        (_tiny_layers()[:2] + _tiny_layers()[3:] + [CaffeLayer("score_frx", "Convolution", blobs=[np.ones(2, "float32")])],
         r"lacks: \['score_fr'\]; layers with weights in the file that the model lacks: \['score_frx'\]"),
        ([CaffeLayer(l.name, "Convolution" if l.name == "upscore" else l.type, blobs=l.blobs) for l in _tiny_layers()],
         r"'upscore' is a Caffe Convolution, the model needs Deconvolution"),
    ]
    for layers, message in cases:
        write_caffemodel(path, layers)
        with pytest.raises(CaffeModelError, match=message):
            load_caffe_weights(model, path)
    write_caffemodel(path, _tiny_layers())
    path.write_bytes(path.read_bytes()[:-10])  # the last blob is cut short
    with pytest.raises(CaffeModelError, match="truncated"):
        load_caffe_weights(model, path)
    for b, a in zip(before, model.get_weights()):
        np.testing.assert_array_equal(b, a)
    write_caffemodel(path, _tiny_layers())
    load_caffe_weights(model, path)
    assert model.get_layer("score_fr").get_weights()[0].shape == (1, 1, 4, 2)
    np.testing.assert_array_equal(model.get_layer("conv1_1").get_weights()[1], np.ones(4))
