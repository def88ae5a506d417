"""Unpooling by switches: against a NumPy rendering of Caffe's max pooling with argmax and SegNet's Upsample.

The reference below follows Caffe's loops (pooling_layer.cpp, caffe-segnet's
upsample_layer.cpp, DeconvNet's unpooling_layer.cpp): ceil-mode windows clipped
at the bottom/right, the maximum updated only on a strictly greater value (so
the first maximum in row-major order wins ties), and the upsampled map written
at the stored flat index of each window's maximum, zeros elsewhere.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import keras

from fcn_keras.models.unpooling import Unpooling2D, switches
from tests.keras_checks import run_layer_test

FLT_MAX = np.finfo(np.float32).max


def caffe_max_pool_with_mask(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One channel (H, W) -> pooled (ph, pw) and Caffe's mask of flat indices into (H, W); 2x2, stride 2."""
    h, w = x.shape
    ph, pw = math.ceil((h - 2) / 2) + 1, math.ceil((w - 2) / 2) + 1
    pooled = np.full((ph, pw), -FLT_MAX, x.dtype)
    mask = np.full((ph, pw), -1, np.int64)
    for i in range(ph):
        for j in range(pw):
            for hh in range(2 * i, min(2 * i + 2, h)):
                for ww in range(2 * j, min(2 * j + 2, w)):
                    if x[hh, ww] > pooled[i, j]:
                        pooled[i, j] = x[hh, ww]
                        mask[i, j] = hh * w + ww
    return pooled, mask


def caffe_upsample(values: np.ndarray, mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """SegNet's Upsample: zeros of ``size``, then ``top[mask[i]] = values[i]`` for every pooled position."""
    top = np.zeros(size[0] * size[1], values.dtype)
    top[mask.ravel()] = values.ravel()
    return top.reshape(size)


def per_channel(fn, x: np.ndarray, *more):
    """Applies a per-(H, W) reference to every image and channel of NHWC arrays; stacks the results."""
    n, _, _, c = x.shape
    out = [[fn(x[b, :, :, k], *(m[b, :, :, k] for m in more)) for k in range(c)] for b in range(n)]
    if isinstance(out[0][0], tuple):
        return tuple(np.stack([np.stack([out[b][k][t] for k in range(c)], -1) for b in range(n)])
                     for t in range(len(out[0][0])))
    return np.stack([np.stack(row, -1) for row in out])


def tied(shape, seed):
    """Random values from a handful of levels, so most windows hold equal maxima; negatives too."""
    rng = np.random.default_rng(seed)
    return (rng.integers(-3, 2, shape) * 0.5).astype("float32")


SIZES = [(1, 1), (1, 4), (3, 1), (6, 8), (7, 9), (13, 10), (23, 30)]


def unpooling_model(channels: int = 4) -> keras.Model:
    # One compiled graph per input size on JAX, instead of one dispatch per op of an eager layer call.
    values, pooled_input = keras.Input((None, None, channels)), keras.Input((None, None, channels))
    return keras.Model([values, pooled_input], Unpooling2D()([values, pooled_input]))


def switches_of(x: np.ndarray) -> np.ndarray:
    """:func:`switches` of ``x`` (NHWC), run as one compiled graph."""
    inputs = keras.Input((None, None, x.shape[-1]))
    return keras.ops.convert_to_numpy(keras.Model(inputs, keras.layers.Lambda(switches)(inputs)).predict_on_batch(x))


@pytest.mark.backend_agnostic
@pytest.mark.parametrize("size", SIZES, ids=[f"{h}x{w}" for h, w in SIZES])
def test_max_pooling_same_is_caffe_ceil_mode_pooling(size):
    # Negative values make a zero-padded partial window give the wrong maximum, which this would catch.
    x = tied((2, *size, 3), seed=size[0] * 100 + size[1]) - 2.0
    expected, _ = per_channel(caffe_max_pool_with_mask, x)
    actual = keras.ops.convert_to_numpy(keras.layers.MaxPooling2D(2, 2, padding="same")(x))
    assert actual.shape == expected.shape == (2, -(-size[0] // 2), -(-size[1] // 2), 3)
    np.testing.assert_array_equal(actual, expected)


@pytest.mark.backend_agnostic
def test_unpooling_equals_caffe_argmax_and_upsample():
    model = unpooling_model()
    for size in SIZES:
        x = tied((2, *size, 4), seed=size[0] * 31 + size[1])
        pooled, mask = per_channel(caffe_max_pool_with_mask, x)
        values = np.random.default_rng(7).normal(size=pooled.shape).astype("float32")
        expected = np.stack([
            np.stack([caffe_upsample(values[b, :, :, k], mask[b, :, :, k], size) for k in range(x.shape[3])], -1)
            for b in range(x.shape[0])])
        actual = keras.ops.convert_to_numpy(model.predict_on_batch([values, x]))
        assert actual.shape == x.shape
        np.testing.assert_array_equal(actual, expected, err_msg=f"size {size}")


@pytest.mark.backend_agnostic
def test_ties_go_to_the_first_maximum_in_row_major_order():
    windows = {  # one 2x2 window each: (row 0, row 1) -> the position Caffe's mask names
        "all equal": ([[1, 1], [1, 1]], (0, 0)),
        "top right and bottom left": ([[0, 2], [2, 1]], (0, 1)),
        "bottom row": ([[0, 0], [3, 3]], (1, 0)),
        "left column": ([[4, 0], [4, 0]], (0, 0)),
        "last only": ([[0, 0], [0, 5]], (1, 1)),
        "all negative, equal": ([[-1, -1], [-1, -1]], (0, 0)),
    }
    x = np.asarray([window for window, _ in windows.values()], "float32")[..., None]  # one image per window
    found = switches_of(x)[..., 0]
    for (name, (_, (i, j))), mask in zip(windows.items(), found):
        expected = np.zeros((2, 2))
        expected[i, j] = 1
        np.testing.assert_array_equal(mask, expected, err_msg=name)
    # A partial window at the bottom-right edge of an odd map: its one or two positions only.
    x = np.asarray([[0, 0, 7], [0, 0, 7], [6, 6, 6]], "float32").reshape(1, 3, 3, 1)
    np.testing.assert_array_equal(switches_of(x)[0, :, :, 0], [[1, 0, 1], [0, 0, 0], [1, 0, 1]])


@pytest.mark.backend_agnostic
def test_one_switch_per_window_and_decoder_values_land_on_the_encoder_maxima():
    # An identity decoder: unpooling the pooling's own output puts each window's maximum back where it was
    # and nothing elsewhere, so pooling that map again gives the same pooled values.
    x = tied((2, 11, 14, 3), seed=3)
    pooled = keras.ops.convert_to_numpy(keras.layers.MaxPooling2D(2, 2, padding="same")(x))
    mask = switches_of(x)
    assert set(np.unique(mask)) == {0.0, 1.0}
    padded = np.pad(mask, ((0, 0), (0, 1), (0, 0), (0, 0)))  # 11 rows: the last windows are partial
    per_window = padded.reshape(2, 6, 2, 7, 2, 3).sum(axis=(2, 4))
    np.testing.assert_array_equal(per_window, np.ones((2, 6, 7, 3)))
    unpooled = keras.ops.convert_to_numpy(unpooling_model(3).predict_on_batch([pooled, x]))
    np.testing.assert_array_equal(unpooled, np.where(mask == 1, x, 0))
    # Pooling the unpooled map (everything else below the values) gives the pooled values back.
    np.testing.assert_array_equal(per_channel(caffe_max_pool_with_mask, np.where(mask == 1, x, -10.0))[0], pooled)


@pytest.mark.backend_agnostic
def test_shape_errors_name_both_shapes():
    with pytest.raises(ValueError, match="ceil-mode pooled height"):
        Unpooling2D()([keras.Input((4, 5, 2)), keras.Input((9, 10, 2))])
    with pytest.raises(ValueError, match="same channels"):
        Unpooling2D()([keras.Input((5, 5, 2)), keras.Input((9, 10, 3))])


def test_layer_serialization(tmp_path):
    x = tied((1, 7, 6, 2), seed=5)
    values = np.arange(1, 4 * 3 * 2 + 1, dtype="float32").reshape(1, 4, 3, 2)
    run_layer_test(lambda: Unpooling2D(name="upsample1"), [values, x], (1, 7, 6, 2), tmp_path)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TFLite conversion needs TensorFlow")
def test_tflite_is_builtin_ops_and_places_values_exactly(tmp_path):
    from fcn_keras.export.tflite import TFLiteModel, convert_tflite
    from fcn_keras.models import SegmentationModel
    from fcn_keras.preprocessing import preprocess

    # Unpooling an image's own pooling: each channel keeps only its windows' (first) maxima.
    image = keras.Input((None, None, 3))
    pooled = keras.layers.MaxPooling2D(2, 2, padding="same")(image)
    model = SegmentationModel(image, Unpooling2D()([pooled, image]), architecture="unpool", backbone="none",
                              preprocessing="tf")
    content = convert_tflite(model)  # raises for any non-builtin op
    path = tmp_path / "unpool.tflite"
    path.write_bytes(content)
    runner = TFLiteModel(path)
    for size in [(37, 50), (16, 24), (1, 1)]:
        rgb = (np.random.default_rng(sum(size)).integers(0, 4, (*size, 3)) * 60).astype("float32")  # many ties
        x = preprocess(rgb[None], "tf")
        pooled_values, mask = per_channel(caffe_max_pool_with_mask, x)
        expected = np.stack([caffe_upsample(pooled_values[0, :, :, k], mask[0, :, :, k], size) for k in range(3)], -1)
        actual = runner.logits(rgb)
        # Positions exactly (no level maps to 0); values up to TFLite's folding of the "tf" scaling.
        np.testing.assert_array_equal(actual != 0, expected != 0)
        np.testing.assert_allclose(actual, expected, rtol=1e-6, atol=1e-6)
