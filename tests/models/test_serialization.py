"""Every model class and custom layer survives `.keras` files in safe mode, with no custom_objects."""

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
    SegmentationModel,
)
from fcn_keras.preprocessing import MODES
from tests.keras_checks import check_object_round_trip, run_layer_test, run_model_test

backend_agnostic = pytest.mark.backend_agnostic
RNG = np.random.default_rng(0)


def _randomise(model, seed=0):
    rng = np.random.default_rng(seed)
    values = []
    for w in model.weights:
        value = rng.standard_normal(w.shape, dtype=np.float32) * np.float32(0.02)
        values.append(np.abs(value) + 0.5 if "variance" in w.path else value)  # BatchNorm needs variance > 0
    model.set_weights(values)


def _images(*shape):
    return RNG.uniform(0, 255, shape).astype("float32")


@backend_agnostic
@pytest.mark.parametrize(
    "factory, inputs, shape",
    [
        (lambda: CropToReference(2), [_images(2, 9, 8, 3), _images(2, 4, 5, 1)], (2, 4, 5, 3)),
        (lambda: Scale(1e-4), _images(1, 5, 6, 4), (1, 5, 6, 4)),
        (lambda: PadToMultiple(16), _images(1, 17, 5, 3), (1, 32, 16, 3)),
        *[(lambda m=m: Preprocessing(m), _images(2, 3, 4, 3), (2, 3, 4, 3)) for m in sorted(MODES)],
    ],
    ids=["crop", "scale", "pad", *[f"preprocessing-{m}" for m in sorted(MODES)]],
)
def test_custom_layers(factory, inputs, shape, tmp_path):
    run_layer_test(factory, inputs, shape, tmp_path)


@backend_agnostic
def test_bilinear_initializer_round_trips():
    clone = check_object_round_trip(BilinearUpsamplingInitializer())
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(clone((4, 4, 2, 2))),
                                  keras.ops.convert_to_numpy(BilinearUpsamplingInitializer()((4, 4, 2, 2))))


# JAX compiles every op of a model for each new input: there, the at-once FCN over the small tiny_vgg
# encoder stands in for the 134M-parameter VGG16 one (30 s of CPU on JAX). What a .keras file stores and
# restores (config, identity, weights) is the same code on every backend, and the VGG16 FCN's fast call
# on JAX is checked against TensorFlow by tests/models/test_backends.py.
ATONCE_BACKBONE = "tiny_vgg" if keras.backend.backend() == "jax" else "vgg16"


@backend_agnostic
@pytest.mark.parametrize(
    "build",
    [
        lambda: fcn_keras.fcn8s_atonce(num_classes=3, include_preprocessing=True, backbone=ATONCE_BACKBONE,
                                       class_names=["background", "cat", "dog"], palette=[[0, 0, 0], [9, 9, 9], [1, 2, 3]],
                                       card={"name": "test", "sha256": "0" * 64, "metrics": {"mean_iu": 0.5}}),
        lambda: fcn_keras.fcn16s(num_classes=2, backbone="mobilenet_v2", include_preprocessing=True,
                                 trainable_upsampling=True, ignore_label=-1),
    ],
    ids=[f"{ATONCE_BACKBONE}-atonce", "mobilenet_v2"],
)
def test_fcn_keras_file_round_trip(build, tmp_path):
    model = build()
    _randomise(model)
    loaded = run_model_test(model, _images(2, 21, 30, 3), tmp_path)
    assert np.abs(keras.ops.convert_to_numpy(loaded(_images(1, 21, 30, 3)))).max() > 0


# TensorFlow pass only: what `import fcn_keras` registers for a fresh process is backend-independent,
# and the JAX pass loads .keras files in its own process above (a fresh JAX process compiled the model
# anew: 28 s of CPU). That fcn_keras imports and runs on JAX without TensorFlow: test_backends.py.
def test_round_trip_in_a_fresh_process_after_import_fcn_keras(tmp_path):
    model = fcn_keras.fcn8s(num_classes=2, backbone="tiny_vgg", class_names=["road", "car"], include_preprocessing=True)
    _randomise(model)
    run_model_test(model, _images(1, 40, 33, 3), tmp_path, fresh_process=True)


@backend_agnostic
def test_mixed_precision_model_round_trips_as_mixed(tmp_path):
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = fcn_keras.fcn32s(num_classes=2, backbone="tiny_vgg")
    finally:
        keras.config.set_dtype_policy("float32")
    model.save(tmp_path / "mixed.keras")
    loaded = keras.models.load_model(tmp_path / "mixed.keras")  # the global policy is float32 here
    assert loaded.get_layer("score_fr").compute_dtype == "bfloat16"
    assert loaded.get_layer("score").compute_dtype == "float32"


@backend_agnostic
def test_a_generic_segmentation_model_round_trips(tmp_path):
    inputs = keras.Input((None, None, 3), name="image")
    outputs = keras.layers.Conv2D(3, 3, padding="same", name="classifier")(Preprocessing("tf")(inputs))
    model = SegmentationModel(inputs, outputs, architecture="one_conv", backbone="none",
                              class_names=["a", "b", "c"], preprocessing="tf", include_preprocessing=True)
    _randomise(model)
    run_model_test(model, _images(1, 7, 9, 3), tmp_path)
