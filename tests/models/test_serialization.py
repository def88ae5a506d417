"""`.keras` round-trips in safe mode, with no custom_objects."""

from __future__ import annotations

import numpy as np
import pytest
import keras

import fcn_keras

pytestmark = pytest.mark.backend_agnostic


def _randomise(model, seed=0):
    rng = np.random.default_rng(seed)
    values = []
    for w in model.weights:
        value = rng.standard_normal(w.shape).astype("float32") * 0.02
        values.append(np.abs(value) + 0.5 if "variance" in w.path else value)  # BatchNorm needs variance > 0
    model.set_weights(values)


@pytest.mark.parametrize(
    "build",
    [
        lambda: fcn_keras.fcn8s_atonce(num_classes=3, include_preprocessing=True),
        lambda: fcn_keras.fcn16s(num_classes=2, backbone="mobilenet_v2", include_preprocessing=True,
                                 trainable_upsampling=True),
    ],
    ids=["vgg16-atonce", "mobilenet_v2"],
)
def test_keras_file_round_trip(build, tmp_path):
    model = build()
    _randomise(model)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    x = np.random.default_rng(1).uniform(0, 255, (2, 21, 30, 3)).astype("float32")
    expected = keras.ops.convert_to_numpy(model(x, training=False))
    got = keras.ops.convert_to_numpy(loaded(x, training=False))
    assert np.abs(expected).max() > 0
    np.testing.assert_array_equal(got, expected)
    assert [l.name for l in loaded.layers] == [l.name for l in model.layers]
    assert [l.trainable for l in loaded.layers] == [l.trainable for l in model.layers]
