"""FCN heads over keras.applications MobileNetV2 and ResNet50."""

from __future__ import annotations

import numpy as np
import pytest
import keras

import fcn_keras
from fcn_keras.models import build_fcn

pytestmark = pytest.mark.backend_agnostic


@pytest.mark.parametrize("backbone", ["mobilenet_v2", "resnet50"])
@pytest.mark.parametrize("arch", ["fcn32s", "fcn16s", "fcn8s"])
def test_output_equals_input_size(backbone, arch):
    model = build_fcn(arch, num_classes=4, backbone=backbone)
    assert model.name == f"{arch}_{backbone}"
    rng = np.random.default_rng(0)
    # Non-zero scores so that misaligned or dropped padding would show in the values.
    for layer in model.layers:
        if layer.name.startswith("score_"):
            layer.set_weights([rng.standard_normal(w.shape).astype("float32") * 0.1 for w in layer.weights])
    sizes = {"mobilenet_v2": [(1, 1), (31, 45), (97, 50)], "resnet50": [(1, 1), (33, 70)]}[backbone]
    if keras.backend.backend() == "jax":  # JAX compiles every op anew per padded size: the extremes only there
        sizes = {"mobilenet_v2": [(1, 1), (97, 50)], "resnet50": [(33, 70)]}[backbone]
    for size in sizes:
        y = keras.ops.convert_to_numpy(model(rng.uniform(-1, 1, (1, *size, 3)).astype("float32"), training=False))
        assert y.shape == (1, *size, 4) and np.all(np.isfinite(y)) and np.abs(y).max() > 0
    keras.backend.clear_session()


def test_skips_come_from_strides_8_16_32():
    model = fcn_keras.fcn8s(num_classes=3, backbone="mobilenet_v2", input_shape=(64, 96, 3))
    shapes = {layer.name: tuple(layer.output.shape[1:3]) for layer in model.layers if layer.name.startswith("score")}
    assert shapes["score_pool3"] == (8, 12)
    assert shapes["score_pool4"] == (4, 6)
    assert shapes["score_fr"] == (2, 3)
    assert shapes["score"] == (64, 96)


def test_padding_does_not_leak_into_the_valid_region():
    """Outputs for an image equal the outputs for the same image already padded to 32 (top-left part)."""
    model = fcn_keras.fcn32s(num_classes=2, backbone="mobilenet_v2")
    rng = np.random.default_rng(1)
    layer = model.get_layer("score_fr")
    layer.set_weights([rng.standard_normal(w.shape).astype("float32") for w in layer.weights])
    # 97x50, padded to 128x64 as in test_output_equals_input_size: on JAX the encoder's kernels compiled
    # there for that padded size serve again.
    image = rng.uniform(-1, 1, (1, 97, 50, 3)).astype("float32")
    padded = np.zeros((1, 128, 64, 3), "float32")
    padded[:, :97, :50] = image
    a = keras.ops.convert_to_numpy(model(image, training=False))
    b = keras.ops.convert_to_numpy(model(padded, training=False))[:, :97, :50]
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * np.abs(b).max())


def test_backbone_preprocessing_modes():
    # VGG16's "fcn" mode is checked where a full-size VGG16 FCN with preprocessing is built anyway
    # (tests/models/test_layers.py::test_include_preprocessing_equals_preprocessing_outside).
    model = fcn_keras.fcn8s(num_classes=2, backbone="mobilenet_v2", include_preprocessing=True)
    assert model.get_layer("preprocessing").mode == "tf"
