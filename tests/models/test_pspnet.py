"""PSPNet: the released network's layers and parameter count, its resampling layers against NumPy, the
ResNet50 weight mapping, the auxiliary head, and the family checks."""

from __future__ import annotations

import numpy as np
import keras
import pytest

from fcn_keras.models.pooling import AdaptiveAveragePooling2D, Interp, adaptive_bins
from fcn_keras.models.pspnet import (AUX_LOSS_WEIGHTS, PadToStridePlusOne, PSPNet, WithAuxiliary, auxiliary_model,
                                     pspnet)
from fcn_keras.models.resnet import copy_keras_resnet50_weights, dilated_resnet50, keras_resnet50
from tests.keras_checks import run_layer_test
from tests.models.family_checks import check_exports, check_logits, check_round_trip, random_images, randomize

ALPHA = 1 / 16
SIZES = [(48, 64), (37, 50)]


@pytest.fixture(scope="module")
def model():
    # With the auxiliary head: the family checks then also show it changes nothing of the model's output.
    return randomize(pspnet(num_classes=4, alpha=ALPHA, aux=True))


@pytest.fixture(scope="module")
def images():
    return random_images(SIZES)


@pytest.mark.backend_agnostic
def test_logits_have_the_image_size(model, images):
    check_logits(model, images + random_images([(1, 1)], seed=1))


def test_round_trip(model, images, tmp_path):
    check_round_trip(model, images, tmp_path)


def test_exports(model, images, tmp_path):
    check_exports(model, images, tmp_path)


def test_parameter_count_is_the_releases():
    # 46,841,174 is what the layer shapes of pspnet50_ADE20K_473.prototxt (150 classes) add up to, with
    # 4 blobs per BN as Caffe stores them; conv6 has 512 x classes weights + classes biases.
    model = pspnet(num_classes=21)
    assert model.count_params() == 46_841_174 - (150 - 21) * (512 + 1) == 46_774_997
    assert model.get_layer("conv1_3_3x3").kernel.shape == (3, 3, 64, 128)
    assert model.get_layer("conv5_3_pool6_conv").kernel.shape == (1, 1, 2048, 512)
    assert model.get_layer("conv5_4").kernel.shape == (3, 3, 4096, 512)
    assert model.get_layer("conv4_6_3x3").dilation_rate == (2, 2)
    assert model.get_layer("conv5_1_3x3").dilation_rate == (4, 4)
    # The auxiliary head adds 3x3x1024x256 + BN(256) + 1x1x256x21 + 21 (arithmetic, not a second full model).
    assert 3 * 3 * 1024 * 256 + 4 * 256 + 256 * 21 + 21 == 2_365_717


@pytest.mark.backend_agnostic
def test_473_is_the_releases_geometry():
    # 473 -> conv5_3 of 60 x 60 (the release's Interp height/width), and x8 Interp back onto 473 exactly.
    image = keras.Input((473, 473, 3))
    features = dilated_resnet50(image, alpha=ALPHA)
    assert features["conv5"].shape[1:3] == (60, 60) and features["conv4"].shape[1:3] == (60, 60)
    assert [adaptive_bins(60, b) for b in (1, 2, 3, 6)] == [
        [(i * 60 // b, (i + 1) * 60 // b) for i in range(b)] for b in (1, 2, 3, 6)]  # kernel = stride = 60 / b


def _pooling_reference(x, bins):
    out = np.zeros((x.shape[0], bins, bins, x.shape[3]))
    for i, (h0, h1) in enumerate(adaptive_bins(x.shape[1], bins)):
        for j, (w0, w1) in enumerate(adaptive_bins(x.shape[2], bins)):
            out[:, i, j] = x[:, h0:h1, w0:w1].mean(axis=(1, 2))
    return out


@pytest.mark.backend_agnostic
@pytest.mark.parametrize("shape", [(13, 11), (4, 2), (60, 60)])
def test_adaptive_pooling_is_the_numpy_reference(shape):
    x = np.random.default_rng(sum(shape)).normal(size=(2, *shape, 3)).astype(np.float32)
    for bins in (1, 2, 3, 6):
        ours = keras.ops.convert_to_numpy(AdaptiveAveragePooling2D(bins)(x))
        np.testing.assert_allclose(ours, _pooling_reference(x, bins), rtol=1e-5, atol=1e-6)


def test_adaptive_bins_cover_every_row_and_overlap_where_they_must():
    assert adaptive_bins(7, 3) == [(0, 3), (2, 5), (4, 7)]
    assert adaptive_bins(2, 6) == [(0, 1), (0, 1), (0, 1), (1, 2), (1, 2), (1, 2)]
    with pytest.raises(ValueError, match="bins must be >= 1"):
        adaptive_bins(5, 0)


def _interp_reference(x, height, width):
    """caffe_cpu_interp2 (hszhao/PSPNet src/caffe/util/interp.cpp) in NumPy, pixel by pixel, float32 coordinates."""
    x = np.asarray(x, np.float64)
    in_h, in_w = x.shape[1:3]
    out = np.zeros((x.shape[0], height, width, x.shape[3]))
    rh = np.float32(in_h - 1) / np.float32(height - 1) if height > 1 else np.float32(0)
    rw = np.float32(in_w - 1) / np.float32(width - 1) if width > 1 else np.float32(0)
    for h2 in range(height):
        h1r = np.float32(rh * np.float32(h2))
        h1 = int(h1r)
        h1p = 1 if h1 < in_h - 1 else 0
        hl = float(h1r) - h1
        for w2 in range(width):
            w1r = np.float32(rw * np.float32(w2))
            w1 = int(w1r)
            w1p = 1 if w1 < in_w - 1 else 0
            wl = float(w1r) - w1
            out[:, h2, w2] = ((1 - hl) * ((1 - wl) * x[:, h1, w1] + wl * x[:, h1, w1 + w1p])
                              + hl * ((1 - wl) * x[:, h1 + h1p, w1] + wl * x[:, h1 + h1p, w1 + w1p]))
    return out


@pytest.mark.backend_agnostic
@pytest.mark.parametrize("sizes", [((5, 7), (33, 49)), ((1, 1), (9, 4)), ((13, 9), (6, 4)), ((3, 2), (1, 1))])
def test_interp_is_caffes_align_corners_bilinear(sizes):
    (in_h, in_w), (out_h, out_w) = sizes
    x = np.random.default_rng(in_h * out_w).normal(size=(2, in_h, in_w, 3)).astype(np.float32)
    ours = keras.ops.convert_to_numpy(Interp()([x, np.zeros((1, out_h, out_w, 1), np.float32)]))
    np.testing.assert_allclose(ours, _interp_reference(x, out_h, out_w), rtol=1e-5, atol=1e-5)


@pytest.mark.backend_agnostic
def test_interp_x8_puts_feature_pixels_on_every_eighth_pixel():
    x = np.random.default_rng(0).normal(size=(1, 5, 4, 2)).astype(np.float32)
    ours = keras.ops.convert_to_numpy(Interp()([x, np.zeros((1, 33, 25, 1))]))
    np.testing.assert_allclose(ours[:, ::8, ::8], x, rtol=1e-6, atol=1e-6)


def test_layer_serialization(tmp_path):
    x = np.random.default_rng(1).normal(size=(1, 10, 17, 3)).astype(np.float32)
    run_layer_test(lambda: AdaptiveAveragePooling2D(3), x, (1, 3, 3, 3), tmp_path)
    run_layer_test(lambda: Interp(), [x, np.zeros((1, 4, 6, 1), np.float32)], (1, 4, 6, 3), tmp_path)
    run_layer_test(lambda: PadToStridePlusOne(8), x, (1, 17, 17, 3), tmp_path)
    run_layer_test(lambda: WithAuxiliary(), [x, x[:, :2]], (1, 10, 17, 3), tmp_path)


def test_standard_stem_loads_keras_applications_resnet50_exactly(tmp_path):
    """keras.applications ResNet50's weights (biases and epsilon folded into BN) give its very features.

    conv3 is the same function; conv4 and conv5, dilated instead of strided,
    sampled every 2nd / 4th pixel are keras' strided conv4 / conv5 (filter rarefaction).
    """
    app = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(None, None, 3))
    rng = np.random.default_rng(0)
    for layer in app.layers:  # random biases and BN statistics: a fresh model's zeros and ones would hide a mix-up
        if isinstance(layer, keras.layers.BatchNormalization):
            g, b, m, v = (w.shape for w in layer.weights)
            layer.set_weights([rng.uniform(0.5, 1.5, g), rng.normal(0, 0.1, b), rng.normal(0, 0.1, m),
                               rng.uniform(0.5, 1.5, v)])
        elif isinstance(layer, keras.layers.Conv2D):
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel, rng.normal(0, 0.1, bias.shape)])
    path = tmp_path / "resnet50.weights.h5"
    app.save_weights(path)
    loaded = keras_resnet50(str(path))  # the weights=<path> route of pspnet()
    image = keras.Input((None, None, 3))
    ours = keras.Model(image, dilated_resnet50(image, stem="standard"))
    copy_keras_resnet50_weights(loaded, ours)
    x = rng.normal(0, 50, (1, 57, 41, 3)).astype(np.float32)  # 8k + 1 high and wide
    theirs = keras.Model(app.input, [app.get_layer(f"conv{s}_block{n}_out").output for s, n in ((3, 4), (4, 6), (5, 3))])
    k3, k4, k5 = (keras.ops.convert_to_numpy(t) for t in theirs(x))
    o = {key: keras.ops.convert_to_numpy(t) for key, t in ours(x).items()}
    np.testing.assert_allclose(o["conv3"], k3, rtol=1e-4, atol=1e-4 * np.abs(k3).max())
    np.testing.assert_allclose(o["conv4"][:, ::2, ::2], k4, rtol=1e-4, atol=1e-4 * np.abs(k4).max())
    np.testing.assert_allclose(o["conv5"][:, ::4, ::4], k5, rtol=1e-4, atol=1e-4 * np.abs(k5).max())


def test_auxiliary_head_trains_through_a_second_output(model, images, tmp_path):
    assert model.get_layer("conv4_aux").input.shape[-1] == model.get_layer("conv4_6_relu").output.shape[-1]
    training = auxiliary_model(model)
    x = np.asarray(images[1], np.float32)[None] - 120
    main, aux = (keras.ops.convert_to_numpy(t) for t in training(x))
    np.testing.assert_allclose(main, keras.ops.convert_to_numpy(model(x)), rtol=1e-6, atol=1e-6)
    assert aux.shape == main.shape and aux.dtype == np.float32 and not np.allclose(aux, main)
    # The auxiliary weights are the model's: they load back from its .keras file.
    path = tmp_path / "pspnet.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True, compile=False)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(auxiliary_model(loaded)(x)[1]), aux, rtol=1e-5, atol=1e-5)
    before = model.get_layer("conv4_aux").get_weights()[0].copy()
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    # Eagerly: tracing the training step of ~200 layers costs half a minute, and the wiring is what is tested.
    training.compile(optimizer=keras.optimizers.SGD(0.01), loss=[loss, loss], loss_weights=list(AUX_LOSS_WEIGHTS),
                     run_eagerly=True)
    labels = np.random.default_rng(0).integers(0, 4, main.shape[:3])
    losses = training.train_on_batch(x, [labels, labels])
    assert np.all(np.isfinite(losses))
    assert not np.allclose(model.get_layer("conv4_aux").get_weights()[0], before)
    with pytest.raises(ValueError, match="aux=True"):
        auxiliary_model(loaded.__class__.from_config({**loaded.get_config(), "aux": False}))


def test_bad_arguments_raise_one_clear_error(tmp_path):
    with pytest.raises(ValueError, match="stem must be one of"):
        pspnet(alpha=ALPHA, stem="resnet")
    with pytest.raises(ValueError, match="fit only stem='standard'"):
        pspnet(weights="imagenet")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        pspnet(stem="standard", weights=str(tmp_path / "none.h5"))
    with pytest.raises(ValueError, match="aux must be"):
        pspnet(alpha=ALPHA, aux="yes")
    assert PSPNet.DEFAULT_NUM_CLASSES == 21 and PSPNet.PREPROCESSING == "caffe"


def test_imagenet_download_fails_fast_and_clearly_offline(tmp_path, monkeypatch):
    """The real keras.applications download, with the network unreachable: one error, before any model is built."""
    from fcn_keras.models.backbones import keras_cache_dir

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    for proxy in ("https_proxy", "http_proxy", "HTTPS_PROXY", "HTTP_PROXY"):
        monkeypatch.setenv(proxy, "http://127.0.0.1:9")  # the discard port: connections fail at once
    with pytest.raises(RuntimeError) as error:
        pspnet(stem="standard", weights="imagenet")
    message = str(error.value)
    assert "Could not download the ImageNet ResNet50 weights" in message
    assert "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5" in message and "weights=<path>" in message
    assert f"Keras' cache ({keras_cache_dir()})" in message and str(tmp_path) in message
