"""The custom layers and initializer: formulas, shapes, and serialization."""

from __future__ import annotations

import numpy as np
import pytest
import keras

import fcn_keras
from fcn_keras.models import (
    BilinearUpsamplingInitializer,
    CropToReference,
    PadToMultiple,
    Preprocessing,
    Scale,
    bilinear_kernel,
)
from fcn_keras.models.heads import HEADS, head_layers
from fcn_keras.preprocessing import MODES, REFERENCE_BGR_MEAN

pytestmark = pytest.mark.backend_agnostic


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 16, 32, 64])
def test_bilinear_kernel_formula(k):
    # the reference document's formula (surgery.py upsample_filt), element by element
    f = (k + 1) // 2
    c = f - 1 if k % 2 == 1 else f - 0.5
    expected = np.array([[(1 - abs(i - c) / f) * (1 - abs(j - c) / f) for j in range(k)] for i in range(k)])
    np.testing.assert_allclose(bilinear_kernel(k), expected, rtol=0, atol=1e-12)
    assert bilinear_kernel(k).shape == (k, k)


def test_bilinear_kernel_known_values():
    np.testing.assert_allclose(bilinear_kernel(4)[:, 0], [0.0625, 0.1875, 0.1875, 0.0625])
    np.testing.assert_allclose(bilinear_kernel(3), [[0.25, 0.5, 0.25], [0.5, 1.0, 0.5], [0.25, 0.5, 0.25]])
    # A stride-s transposed convolution with the 2s kernel reproduces a constant map
    assert np.isclose(bilinear_kernel(64)[::32, ::32].sum(), 1.0)


def test_bilinear_initializer_is_channel_diagonal():
    w = keras.ops.convert_to_numpy(BilinearUpsamplingInitializer()((16, 16, 5, 5), dtype="float32"))
    for i in range(5):
        for j in range(5):
            expected = bilinear_kernel(16) if i == j else np.zeros((16, 16))
            np.testing.assert_allclose(w[:, :, i, j], expected, atol=1e-7)
    with pytest.raises(ValueError, match="square"):
        BilinearUpsamplingInitializer()((4, 3, 2, 2))


def test_fixed_bilinear_upsampling_interpolates_linearly():
    """FCN-32s' upscore on a linear ramp gives a linear ramp (away from the borders)."""
    # The layer as FCN-32s defines it, without the 134M-parameter trunk beneath it.
    layer = head_layers(HEADS["fcn32s"], 1, reference=True, trainable_upsampling=False)["upscore"]
    assert (layer.kernel_size, layer.strides, layer.trainable) == ((64, 64), (32, 32), False)
    ramp = np.arange(6, dtype="float32")[None, :, None, None] * np.ones((1, 1, 6, 1), "float32")
    up = keras.ops.convert_to_numpy(layer(ramp))[0, :, :, 0]
    assert up.shape == (5 * 32 + 64, 5 * 32 + 64)
    interior = up[64:160, 100]
    np.testing.assert_allclose(np.diff(interior), 1 / 32, atol=1e-5)


def test_crop_to_reference_follows_runtime_shapes():
    layer = CropToReference(3)
    x = np.arange(2 * 20 * 30 * 2, dtype="float32").reshape(2, 20, 30, 2)
    for h, w in [(1, 1), (10, 7), (17, 27)]:
        y = keras.ops.convert_to_numpy(layer([x, np.zeros((2, h, w, 9), "float32")]))
        np.testing.assert_array_equal(y, x[:, 3 : 3 + h, 3 : 3 + w, :])
    with pytest.raises(ValueError, match="offset"):
        CropToReference(-1)


def test_crop_in_a_functional_model_with_unknown_sizes():
    a, b = keras.Input((None, None, 2)), keras.Input((None, None, 1))
    model = keras.Model([a, b], CropToReference(2)([a, b]))
    assert model.output_shape == (None, None, None, 2)
    y = model.predict([np.ones((1, 9, 8, 2)), np.ones((1, 4, 5, 1))], verbose=0)
    assert y.shape == (1, 4, 5, 2)


def test_scale_and_pad_to_multiple():
    x = np.ones((1, 33, 64, 2), "float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(Scale(0.01)(x)), 0.01 * x)
    padded = keras.ops.convert_to_numpy(PadToMultiple(32)(x))
    assert padded.shape == (1, 64, 64, 2)
    assert padded[:, :33].min() == 1 and padded[:, 33:].max() == 0
    assert PadToMultiple(32).compute_output_shape((None, 1, None, 3)) == (None, 32, None, 3)


def test_preprocess_input_is_the_reference_preprocessing():
    rgb = np.random.default_rng(0).integers(0, 256, (2, 4, 5, 3)).astype("uint8")
    expected = rgb[..., ::-1].astype("float32") - np.array(REFERENCE_BGR_MEAN, "float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(fcn_keras.preprocess_input(rgb)), expected, atol=1e-4)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(Preprocessing("fcn")(rgb)), expected, atol=1e-4)
    with pytest.raises(ValueError, match="3 channels"):
        fcn_keras.preprocess_input(np.zeros((1, 2, 2, 4)))
    with pytest.raises(ValueError, match="mode"):
        Preprocessing("bgr")


@pytest.mark.parametrize("mode", sorted(MODES))
def test_preprocess_is_one_definition_for_numpy_and_backend_tensors(mode):
    rgb = np.random.default_rng(1).uniform(0, 255, (1, 3, 4, 3)).astype("float32")
    on_numpy = fcn_keras.preprocess(rgb, mode)
    on_backend = keras.ops.convert_to_numpy(fcn_keras.preprocess(keras.ops.convert_to_tensor(rgb), mode))
    np.testing.assert_allclose(on_backend, on_numpy, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(Preprocessing(mode)(rgb)), on_numpy, rtol=1e-6, atol=1e-6)


# On JAX this would build and compile two full-size VGG16 FCNs (20 s of CPU) to show what other tests
# show between them: preprocess_input computes the same on every backend (above, in the JAX pass too),
# and a VGG16 FCN with its preprocessing layer computes on JAX what it computes on TensorFlow
# (tests/models/test_backends.py, whose JAX process the TensorFlow pass starts).
@pytest.mark.skipif(keras.backend.backend() == "jax", reason="on JAX: preprocess_input above, FCN in test_backends.py")
def test_include_preprocessing_equals_preprocessing_outside():
    rng = np.random.default_rng(0)
    inside = fcn_keras.fcn32s(num_classes=2, include_preprocessing=True)
    assert inside.get_layer("preprocessing").mode == "fcn"  # VGG16's default: the reference's (preprocess_input)
    outside = fcn_keras.fcn32s(num_classes=2)
    weights = [rng.standard_normal(w.shape, dtype=np.float32) * np.float32(0.01) for w in outside.weights]
    outside.set_weights(weights)
    inside.set_weights(weights)
    rgb = rng.integers(0, 256, (1, 19, 23, 3)).astype("float32")
    a = keras.ops.convert_to_numpy(inside(rgb))
    b = keras.ops.convert_to_numpy(outside(fcn_keras.preprocess_input(rgb)))
    assert np.abs(a).max() > 0
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * np.abs(b).max())
