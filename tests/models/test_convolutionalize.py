"""Dense->Conv conversion of VGG16 and the ImageNet initialisation of the FCN trunk."""

from __future__ import annotations


import h5py
import numpy as np
import pytest
import keras

import fcn_keras
from fcn_keras.models import convolutionalize


@pytest.fixture(scope="module")
def vgg():
    """A randomly initialised keras.applications VGG16 with top, logits out (no softmax)."""
    keras.utils.set_random_seed(0)
    model = keras.applications.VGG16(include_top=True, weights=None, classifier_activation=None)
    # Non-zero biases so that a lost bias would show (the kernels stay where they are: no 0.5 GB copies).
    for layer in model.layers:
        if layer.weights:
            layer.bias.assign(np.random.default_rng(1).normal(0, 0.05, layer.bias.shape).astype("float32"))
    return model


@pytest.fixture(scope="module")
def conv(vgg):
    """``vgg`` convolutionalized (once: two tests read it)."""
    return convolutionalize(vgg)


def write_applications_h5(model: keras.Model, path, overrides: dict | None = None, stop_after: str | None = None):
    """Writes weights in keras.applications' downloadable .h5 layout (the legacy Keras format).

    ``overrides`` replaces a layer's arrays (to make a file that does not fit);
    ``stop_after`` truncates the file after that layer.
    """
    overrides = overrides or {}
    with h5py.File(path, "w") as f:
        names = []
        for layer in model.layers:
            names.append(layer.name.encode())
            group = f.create_group(layer.name)
            values = overrides.get(layer.name, [np.asarray(w) for w in layer.get_weights()])
            weight_names = [f"{layer.name}/{kind}:0".encode() for kind in ("kernel", "bias")[: len(values)]]
            group.attrs["weight_names"] = weight_names
            for name, value in zip(weight_names, values):
                group.create_dataset(name.decode(), data=value)
            if layer.name == stop_after:
                break
        f.attrs["layer_names"] = names
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.2.4"


def test_convolutionalized_vgg16_equals_vgg16_on_224(vgg, conv):
    assert conv.input_shape == (None, None, None, 3)
    assert conv.get_layer("fc1").kernel.shape == (7, 7, 512, 4096)
    assert conv.get_layer("fc2").kernel.shape == (1, 1, 4096, 4096)
    assert conv.get_layer("predictions").kernel.shape == (1, 1, 4096, 1000)
    x = np.random.default_rng(0).uniform(-100, 100, (2, 224, 224, 3)).astype("float32")
    expected = vgg.predict(x, verbose=0)
    got = conv.predict(x, verbose=0)
    assert got.shape == (2, 1, 1, 1000)
    np.testing.assert_allclose(got[:, 0, 0], expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_convolutionalized_vgg16_gives_a_stride_32_map(vgg, conv):
    """On 256x320 the output is the classifier applied to every 7x7 window of pool5."""
    x = np.random.default_rng(2).uniform(-100, 100, (1, 256, 320, 3)).astype("float32")
    got = conv.predict(x, verbose=0)
    assert got.shape == (1, 2, 4, 1000)
    features = keras.applications.VGG16(include_top=False, weights=None, input_shape=(None, None, 3))
    features.set_weights(vgg.get_weights()[: len(features.weights)])
    pool5 = features.predict(x, verbose=0)[0]  # (8, 10, 512)
    dense = [vgg.get_layer(n).get_weights() for n in ("fc1", "fc2", "predictions")]
    for i in range(2):
        for j in range(4):
            h = pool5[i : i + 7, j : j + 7].reshape(-1)  # channels-last flatten, as Flatten does
            h = np.maximum(h @ dense[0][0] + dense[0][1], 0)
            h = np.maximum(h @ dense[1][0] + dense[1][1], 0)
            logits = h @ dense[2][0] + dense[2][1]
            np.testing.assert_allclose(got[0, i, j], logits, rtol=1e-3, atol=1e-4 * np.abs(logits).max())


def test_convolutionalize_keeps_the_softmax():
    model = keras.Sequential([keras.Input((4, 4, 2)), keras.layers.Conv2D(3, 3), keras.layers.Flatten(),
                              keras.layers.Dense(5, activation="softmax")])
    conv = convolutionalize(model)
    x = np.random.default_rng(0).standard_normal((3, 4, 4, 2)).astype("float32")
    np.testing.assert_allclose(conv.predict(x, verbose=0)[:, 0, 0], model.predict(x, verbose=0), atol=1e-6)


def test_convolutionalize_refuses_layers_without_a_convolutional_form():
    model = keras.Sequential([keras.Input((4, 4, 2)), keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(5)])
    with pytest.raises(ValueError, match="global_average_pooling2d"):
        convolutionalize(model)


def _check_trunk_is_vgg(fcn, vgg):
    for b, convs in enumerate((2, 2, 3, 3, 3), 1):
        for i in range(1, convs + 1):
            for got, want in zip(fcn.get_layer(f"conv{b}_{i}").get_weights(), vgg.get_layer(f"block{b}_conv{i}").get_weights()):
                np.testing.assert_array_equal(got, want)
    fc1_kernel, fc1_bias = vgg.get_layer("fc1").get_weights()
    np.testing.assert_array_equal(fcn.get_layer("fc6").get_weights()[0], fc1_kernel.reshape(7, 7, 512, 4096))
    np.testing.assert_array_equal(fcn.get_layer("fc6").get_weights()[1], fc1_bias)
    np.testing.assert_array_equal(fcn.get_layer("fc7").get_weights()[0][0, 0], vgg.get_layer("fc2").get_weights()[0])


def test_fcn_initialised_from_an_applications_weights_file(vgg, tmp_path):
    path = tmp_path / "vgg16_weights_tf_dim_ordering_tf_kernels.h5"
    write_applications_h5(vgg, path)
    # keras.applications itself reads the file we wrote: it has the real layout.
    reloaded = keras.applications.VGG16(include_top=True, weights=str(path), classifier_activation=None)
    np.testing.assert_array_equal(reloaded.get_layer("fc2").get_weights()[0], vgg.get_layer("fc2").get_weights()[0])
    fcn = fcn_keras.fcn32s(num_classes=4, weights=str(path))
    _check_trunk_is_vgg(fcn, vgg)
    assert not np.any(fcn.get_layer("score_fr").get_weights()[0])


def test_fcn_initialised_from_a_keras3_weights_file(vgg, tmp_path):
    path = tmp_path / "vgg16.weights.h5"
    vgg.save_weights(path)
    _check_trunk_is_vgg(fcn_keras.fcn8s(num_classes=2, weights=str(path)), vgg)


def test_weights_file_that_does_not_fit_names_layer_and_shapes(vgg, tmp_path):
    path = tmp_path / "wrong.h5"
    write_applications_h5(vgg, path, overrides={"fc1": [np.zeros((100, 4096), "float32"), np.zeros(4096, "float32")]},
                          stop_after="fc1")
    with pytest.raises(ValueError, match=r"fc1.*\(100, 4096\).*\(25088, 4096\)"):
        fcn_keras.fcn8s(weights=str(path))
    truncated = tmp_path / "truncated.h5"
    write_applications_h5(vgg, truncated, stop_after="block5_pool")
    with pytest.raises(ValueError, match="no weights for layer 'fc1'"):
        fcn_keras.fcn8s(weights=str(truncated))
    with pytest.raises(FileNotFoundError, match="nowhere.h5"):
        fcn_keras.fcn8s(weights=str(tmp_path / "nowhere.h5"))


def test_imagenet_download_fails_fast_and_clearly_offline(tmp_path, monkeypatch):
    """The real keras.applications download path, with the network unreachable (in this process: Keras reads
    KERAS_HOME and the proxies when it downloads, and a fresh process would only add a TensorFlow import)."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    for proxy in ("https_proxy", "http_proxy", "HTTPS_PROXY", "HTTP_PROXY"):
        monkeypatch.setenv(proxy, "http://127.0.0.1:9")  # the discard port: connections fail at once
    with pytest.raises(RuntimeError) as error:
        fcn_keras.fcn32s(weights="imagenet")
    message = str(error.value)
    assert "Could not download the ImageNet VGG16 weights" in message
    assert "vgg16_weights_tf_dim_ordering_tf_kernels.h5" in message and "weights=<path>" in message
    # Where to put a copy: Keras' own cache, under KERAS_HOME.
    assert f"Keras' cache ({tmp_path / 'models'})" in message
