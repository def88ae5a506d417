"""The family's Caffe layers: BatchNorm + Scale, caffe-segnet's BN and Upsample, Interp, and DeepLab's names.

Files are written here (fcn_keras.caffe.write_caffemodel) and, where the writer
is what is being checked, encoded by hand from the field numbers of BVLC's and
caffe-segnet's caffe.proto. Conversions are checked against the Caffe layers'
own arithmetic in NumPy (batch_norm_layer.cpp, caffe-segnet's bn_layer.cpp).
"""

from __future__ import annotations

import struct

import keras
import numpy as np
import pytest

from fcn_keras.caffe import CaffeLayer, CaffeModelError, load_caffe_weights, read_caffemodel, write_caffemodel
from fcn_keras.models import BilinearUpsamplingInitializer, SegmentationModel

pytestmark = pytest.mark.backend_agnostic

C = 4  # channels of the small normalised convolution


def _field(number, wire, payload):
    key = bytes([(number << 3) | wire]) if number < 16 else _varint((number << 3) | wire)
    return key + (_varint(len(payload)) + payload if wire == 2 else payload)


def _varint(value):
    out = bytearray()
    while True:
        out.append((value & 0x7F) | (0x80 if value > 0x7F else 0))
        value >>= 7
        if not value:
            return bytes(out)


def test_family_layer_parameters_read_from_hand_encoded_bytes(tmp_path):
    blob = _field(7, 2, _field(1, 2, b"\x01\x02\x01\x01")) + _field(5, 2, struct.pack("<2f", 0.5, -1.0))
    bn = (_field(1, 2, b"conv1_1_bn") + _field(2, 2, b"BN") + _field(7, 2, blob) + _field(7, 2, blob)
          + _field(45, 2, _field(3, 0, b"\x01")))  # bn_param { bn_mode: INFERENCE }
    upsample = (_field(1, 2, b"upsample5") + _field(2, 2, b"Upsample") + _field(3, 2, b"pool5")
                + _field(3, 2, b"pool5_mask") + _field(137, 2, _field(1, 0, b"\x02") + _field(6, 0, b"\x17")
                                                     + _field(7, 0, b"\x1e")))  # scale 2, upsample_h 23, _w 30
    eps = _field(139, 2, _field(1, 0, b"\x01") + _field(3, 5, struct.pack("<f", 1e-3)))
    batch_norm = _field(1, 2, b"bn") + _field(2, 2, b"BatchNorm") + eps
    # deeplab-public-ver2 puts interp_param at 143; it is a field the reader does not know, and skips.
    interp = _field(1, 2, b"fc8_interp") + _field(2, 2, b"Interp") + _field(143, 2, _field(3, 0, b"\x08"))
    v1_bn = _field(4, 2, b"old_bn") + _field(5, 0, bytes([43])) + _field(6, 2, blob)  # V1 enum BN = 43
    path = tmp_path / "family.caffemodel"
    path.write_bytes(b"".join(_field(100, 2, layer) for layer in (bn, upsample, batch_norm, interp))
                     + _field(2, 2, v1_bn))
    read = read_caffemodel(path)
    assert read["conv1_1_bn"].params == {"bn_mode": "INFERENCE"}
    assert read["conv1_1_bn"].blob_shapes == [(1, 2, 1, 1)] * 2
    np.testing.assert_array_equal(read["conv1_1_bn"].blobs[0].ravel(), [0.5, -1.0])
    assert read["upsample5"].params == {"scale": 2, "upsample_h": 23, "upsample_w": 30}
    assert read["upsample5"].bottoms == ("pool5", "pool5_mask") and read["upsample5"].blob_shapes == []
    assert read["bn"].params["use_global_stats"] is True and read["bn"].params["eps"] == pytest.approx(1e-3)
    assert read["fc8_interp"].type == "Interp" and read["fc8_interp"].params == {} and not read["fc8_interp"].blobs
    assert read["old_bn"].type == "BN"


def test_writer_round_trips_the_parameters(tmp_path):
    layers = [CaffeLayer("bn", "BatchNorm", blobs=[np.ones(2, "f4")] * 3, params={"eps": 2e-5}),
              CaffeLayer("scale", "Scale", blobs=[np.ones(2, "f4")] * 2, params={"bias_term": True}),
              CaffeLayer("up", "Upsample", params={"scale": 2, "upsample_h": 45, "upsample_w": 60}),
              CaffeLayer("b", "BN", blobs=[np.ones((1, 2, 1, 1), "f4")] * 2, params={"bn_mode": "LEARN"})]
    write_caffemodel(tmp_path / "p.caffemodel", layers)
    read = read_caffemodel(tmp_path / "p.caffemodel")
    assert [read[layer.name].params for layer in layers] == [
        {"eps": pytest.approx(2e-5)}, {"bias_term": True}, {"scale": 2, "upsample_h": 45, "upsample_w": 60},
        {"bn_mode": "LEARN"}]
    with pytest.raises(ValueError, match="Upsample has no parameter 'zoom'"):
        write_caffemodel(tmp_path / "q.caffemodel", [CaffeLayer("up", "Upsample", params={"zoom": 8})])


def _normalised(epsilon: float, architecture: str = "segnet") -> SegmentationModel:
    """conv1_1 -> conv1_1_bn -> relu -> conv1_1_D (scores): SegNet's first and last layers, small."""
    x = keras.Input((None, None, 3))
    y = keras.layers.Conv2D(C, 3, padding="same", name="conv1_1")(x)
    y = keras.layers.BatchNormalization(epsilon=epsilon, name="conv1_1_bn")(y)
    y = keras.layers.ReLU(name="relu1_1")(y)
    y = keras.layers.Conv2D(2, 3, padding="same", name="conv1_1_D")(y)
    return SegmentationModel(x, y, architecture=architecture, backbone="vgg16", preprocessing="tf")


def _convolutions(rng):
    return [CaffeLayer("conv1_1", "Convolution", bottoms=("data",), tops=("conv1_1",),
                       blobs=[rng.standard_normal((C, 3, 3, 3)).astype("f4"), rng.standard_normal(C).astype("f4")]),
            CaffeLayer("conv1_1_D", "Convolution", bottoms=("conv1_1",), tops=("conv1_1_D",),
                       blobs=[rng.standard_normal((2, C, 3, 3)).astype("f4"), np.zeros(2, "f4")])]


def _normalised_output(model, x):
    """The BN layer's output for x, and its input (conv1_1's), both channels-last."""
    probe = keras.Model(model.input, [model.get_layer("conv1_1").output, model.get_layer("conv1_1_bn").output])
    conv, bn = probe(x, training=False)
    return keras.ops.convert_to_numpy(conv), keras.ops.convert_to_numpy(bn)


def test_segnet_bn_is_the_folded_inference_scale_and_shift(tmp_path):
    rng = np.random.default_rng(0)
    conv1_1, conv1_1_d = _convolutions(rng)
    scale, shift = rng.uniform(0.5, 2, (1, C, 1, 1)).astype("f4"), rng.standard_normal((1, C, 1, 1)).astype("f4")
    layers = [conv1_1, CaffeLayer("conv1_1_bn", "BN", ("conv1_1",), ("conv1_1",), blobs=[scale, shift],
                                  params={"bn_mode": "INFERENCE"}),
              CaffeLayer("pool1", "Pooling"), CaffeLayer("upsample1", "Upsample", params={"scale": 2}), conv1_1_d]
    write_caffemodel(tmp_path / "segnet.caffemodel", layers)
    model = load_caffe_weights(_normalised(epsilon=1e-9), tmp_path / "segnet.caffemodel")
    x = rng.uniform(-1, 1, (1, 5, 6, 3)).astype("f4")
    conv, bn = _normalised_output(model, x)
    # caffe-segnet bn_layer.cpp, INFERENCE: top = scale * bottom + shift, per channel.
    np.testing.assert_allclose(bn, conv * scale.reshape(C) + shift.reshape(C), rtol=1e-6, atol=1e-6)

    # A file whose BN holds other channel counts is refused, naming the layer, before any weight is set.
    before = model.get_layer("conv1_1_bn").get_weights()
    layers[1] = CaffeLayer("conv1_1_bn", "BN", blobs=[scale[:, :3], shift[:, :3]])
    write_caffemodel(tmp_path / "bad.caffemodel", layers)
    with pytest.raises(CaffeModelError, match=r"BN layer 'conv1_1_bn' has blobs \[\(1, 3, 1, 1\), \(1, 3, 1, 1\)\], "
                                              r"the model's 4 channels need 2 blobs of \[4, 4\] values"):
        load_caffe_weights(model, tmp_path / "bad.caffemodel")
    for got, kept in zip(model.get_layer("conv1_1_bn").get_weights(), before):
        np.testing.assert_array_equal(got, kept)


@pytest.mark.parametrize("factor", [2.5, 0.0])
def test_bvlc_batchnorm_and_its_scale(tmp_path, factor):
    rng = np.random.default_rng(1)
    conv1_1, conv1_1_d = _convolutions(rng)
    mean, variance = rng.standard_normal(C).astype("f4"), rng.uniform(0.5, 3, C).astype("f4")
    gamma, beta = rng.uniform(0.5, 2, C).astype("f4"), rng.standard_normal(C).astype("f4")
    layers = [conv1_1,
              CaffeLayer("conv1_1_bn", "BatchNorm", ("conv1_1",), ("conv1_1",),
                         blobs=[mean * max(factor, 1), variance * max(factor, 1), np.array([factor], "f4")],
                         params={"eps": 1e-5, "use_global_stats": True}),
              CaffeLayer("scale1_1", "Scale", ("conv1_1",), ("conv1_1",), blobs=[gamma, beta],
                         params={"bias_term": True}),
              conv1_1_d]
    write_caffemodel(tmp_path / "bn.caffemodel", layers)
    if not factor:  # variance 0: Caffe's eps cannot be moved into it below a larger Keras epsilon
        with pytest.raises(CaffeModelError, match="variance plus Caffe's eps is below the Keras layer's epsilon"):
            load_caffe_weights(_normalised(epsilon=1e-3, architecture="resnet"), tmp_path / "bn.caffemodel")
    # Keras' epsilon differs from Caffe's 1e-5 where it can: the difference moves into the variance.
    epsilon = 1e-3 if factor else 1e-5
    model = load_caffe_weights(_normalised(epsilon=epsilon, architecture="resnet"), tmp_path / "bn.caffemodel")
    x = rng.uniform(-1, 1, (1, 5, 6, 3)).astype("f4")
    conv, bn = _normalised_output(model, x)
    # batch_norm_layer.cpp: the stored sums divided by the factor (0 -> 0), normalised with eps; then Scale.
    m, v = (mean, variance) if factor else (np.zeros(C), np.zeros(C))
    expected = gamma * (conv - m) / np.sqrt(v + 1e-5) + beta
    np.testing.assert_allclose(bn, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def _deeplab_head(trainable_interp: bool = False) -> SegmentationModel:
    x = keras.Input((None, None, 3))
    y = keras.layers.Conv2D(3, 1, name="fc8")(x)
    y = keras.layers.Conv2DTranspose(3, 15, strides=8, use_bias=False, trainable=trainable_interp,
                                     kernel_initializer=BilinearUpsamplingInitializer(), name="fc8_interp")(y)
    return SegmentationModel(x, y, architecture="deeplab_largefov", backbone="vgg16", preprocessing="fcn")


def test_deeplab_names_fc8_voc12_and_its_interp_has_no_blobs(tmp_path):
    rng = np.random.default_rng(2)
    w, b = rng.standard_normal((3, 3, 1, 1)).astype("f4"), rng.standard_normal(3).astype("f4")
    path = tmp_path / "deeplab.caffemodel"
    write_caffemodel(path, [CaffeLayer("fc8_voc12", "Convolution", blobs=[w, b]), CaffeLayer("fc8_interp", "Interp")],
                     form="v1")
    model = _deeplab_head()
    interp = model.get_layer("fc8_interp").get_weights()[0].copy()
    load_caffe_weights(model, path)
    np.testing.assert_array_equal(model.get_layer("fc8").get_weights()[0], np.einsum("oihw->hwio", w))
    np.testing.assert_array_equal(model.get_layer("fc8").get_weights()[1], b)
    np.testing.assert_array_equal(model.get_layer("fc8_interp").get_weights()[0], interp)  # left as built
    with pytest.raises(CaffeModelError, match="layer 'fc8_interp' of .* is trainable, but Caffe computes it "
                                              "without blobs"):
        load_caffe_weights(_deeplab_head(trainable_interp=True), path)
    write_caffemodel(path, [CaffeLayer("fc8_interp", "Interp")])
    with pytest.raises(CaffeModelError, match=r"layers the model needs but the file lacks: \['fc8'\]"):
        load_caffe_weights(model, path)


def test_deeplab_largefov_takes_its_released_caffemodel_layout(tmp_path):
    """deeplab-public's LargeFOV parameter layers (train.prototxt: conv1_1 ... conv5_3, fc6, fc7, fc8_voc12, and
    the test net's blob-less Interp) in the V1 form the authors' Caffe writes, at a small width."""
    deeplab = pytest.importorskip("fcn_keras.models.deeplab", reason="the DeepLab builder is not in this version")
    from fcn_keras.models.family_model import width

    alpha = 1 / 16
    model = deeplab.deeplab_largefov(num_classes=21, alpha=alpha)
    rng = np.random.default_rng(3)
    shapes, channels = [], 3
    for block, (filters, convs) in enumerate(((64, 2), (128, 2), (256, 3), (512, 3), (512, 3)), 1):
        for i in range(1, convs + 1):
            shapes.append((f"conv{block}_{i}", (width(filters, alpha), channels, 3, 3)))
            channels = width(filters, alpha)
    fc = width(1024, alpha)
    shapes += [("fc6", (fc, channels, 3, 3)), ("fc7", (fc, fc, 1, 1)), ("fc8_voc12", (21, fc, 1, 1))]
    written = [CaffeLayer(name, "Convolution", blobs=[rng.standard_normal(shape).astype("f4"),
                                                      rng.standard_normal(shape[0]).astype("f4")])
               for name, shape in shapes]
    path = tmp_path / "train2_iter_8000.caffemodel"
    write_caffemodel(path, [*written, CaffeLayer("fc8_interp", "Interp")], form="v1")
    load_caffe_weights(model, path)
    for layer in written:
        kernel, bias = model.get_layer("fc8" if layer.name == "fc8_voc12" else layer.name).get_weights()
        np.testing.assert_array_equal(kernel, np.einsum("oihw->hwio", layer.blobs[0]), err_msg=layer.name)
        np.testing.assert_array_equal(bias, layer.blobs[1], err_msg=layer.name)


def _segnet_caffe_layers(num_classes: int, alpha: float, rng) -> list[CaffeLayer]:
    """segnet_train.prototxt's parameter layers at width ``alpha``: each convolution, then its BN (folded scale and
    shift, as compute_bn_statistics.py leaves them), except the last decoder convolution conv1_1_D (the scores)."""
    from fcn_keras.models.family_model import width

    encoder = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))
    names, channels = [], []
    for block, (filters, convs) in enumerate(encoder, 1):
        names += [f"conv{block}_{i}" for i in range(1, convs + 1)]
        channels += [width(filters, alpha)] * convs
    decoder_names, decoder_channels = [], []
    for block, (filters, convs) in reversed(list(enumerate(encoder, 1))):
        for i in range(convs, 0, -1):
            decoder_names.append(f"conv{block}_{i}_D")
            last = i == 1 and block > 1
            decoder_channels.append(width(encoder[block - 2][0], alpha) if last else width(filters, alpha))
    decoder_channels[-1] = num_classes
    layers, previous = [], 3
    for name, out in zip(names + decoder_names, channels + decoder_channels):
        layers.append(CaffeLayer(name, "Convolution", blobs=[rng.standard_normal((out, previous, 3, 3)).astype("f4"),
                                                             rng.standard_normal(out).astype("f4")]))
        if name != "conv1_1_D":
            layers.append(CaffeLayer(f"{name}_bn", "BN", blobs=[rng.uniform(0.5, 2, (1, out, 1, 1)).astype("f4"),
                                                                rng.standard_normal((1, out, 1, 1)).astype("f4")]))
        previous = out
    return layers


def test_segnet_takes_its_released_caffemodel_layout(tmp_path):
    segnet = pytest.importorskip("fcn_keras.models.segnet", reason="the SegNet builder is not in this version")
    model = segnet.segnet(num_classes=12, alpha=1 / 16)
    written = _segnet_caffe_layers(12, 1 / 16, np.random.default_rng(4))
    path = tmp_path / "segnet.caffemodel"
    write_caffemodel(path, [*written, CaffeLayer("upsample5", "Upsample", params={"scale": 2})])
    load_caffe_weights(model, path)
    for layer in written:
        got = model.get_layer(layer.name).get_weights()
        if layer.type == "BN":
            gamma, beta, mean, variance = got
            np.testing.assert_array_equal(gamma, layer.blobs[0].ravel(), err_msg=layer.name)
            np.testing.assert_array_equal(beta, layer.blobs[1].ravel(), err_msg=layer.name)
            assert not mean.any() and np.allclose(variance + model.get_layer(layer.name).epsilon, 1.0)
        else:
            np.testing.assert_array_equal(got[0], np.einsum("oihw->hwio", layer.blobs[0]), err_msg=layer.name)
