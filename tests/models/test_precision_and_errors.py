"""Mixed precision and argument errors."""

from __future__ import annotations

import numpy as np
import pytest
import keras

import fcn_keras

pytestmark = pytest.mark.backend_agnostic


@pytest.fixture
def policy():
    def set_policy(name):
        keras.config.set_dtype_policy(name)
    yield set_policy
    keras.config.set_dtype_policy("float32")


@pytest.mark.parametrize("name", ["mixed_float16", "mixed_bfloat16"])
def test_logits_are_float32_under_mixed_precision(policy, name):
    policy(name)
    model = fcn_keras.fcn8s(num_classes=3, backbone="tiny_vgg", include_preprocessing=True)
    assert model.get_layer("score_fr").compute_dtype == name.split("_")[1]
    assert model.get_layer("preprocessing").compute_dtype == "float32"
    y = model(np.random.default_rng(0).uniform(0, 255, (1, 13, 17, 3)).astype("float32"))
    assert keras.backend.standardize_dtype(y.dtype) == "float32"
    assert y.shape == (1, 13, 17, 3)


def test_reference_fcn_under_mixed_float16_matches_float32(policy):
    rng = np.random.default_rng(0)
    reference = fcn_keras.fcn32s(num_classes=2)
    weights = [rng.standard_normal(w.shape, dtype=np.float32) * np.float32(np.sqrt(2 / max(1, np.prod(w.shape[:-1]))))
               for w in reference.weights]  # drawn in float32: half the time of float64 draws for 134M values
    reference.set_weights(weights)
    policy("mixed_float16")
    mixed = fcn_keras.fcn32s(num_classes=2)
    mixed.set_weights(weights)
    x = rng.uniform(-100, 100, (1, 20, 24, 3)).astype("float32")
    a = keras.ops.convert_to_numpy(reference(x))
    b = keras.ops.convert_to_numpy(mixed(x))
    assert b.dtype == np.float32
    assert np.abs(a - b).max() <= 2e-2 * np.abs(a).max()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"input_shape": (None, None, 1)}, "input_shape"),
        ({"input_shape": (None, None)}, "input_shape"),
        ({"input_shape": (0, 10, 3)}, "input_shape"),
        ({"num_classes": 0}, "num_classes"),
        ({"num_classes": 2.5}, "num_classes"),
        ({"num_classes": True}, "num_classes"),
        ({"backbone": "alexnet"}, "backbone='alexnet'.*mobilenet_v2"),
        ({"weights": 3}, "weights"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        fcn_keras.fcn8s(**kwargs)


def test_unknown_architecture():
    with pytest.raises(ValueError, match="architecture='fcn4s'"):
        fcn_keras.models.build_fcn("fcn4s")
