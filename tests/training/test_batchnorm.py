"""BatchNorm statistics after training from scratch: a model that learned must also predict in inference mode.

The run this guards against: FCN-8s over keras.applications' MobileNetV2
(BatchNorm momentum 0.999) trained from scratch on CamVid for 460 steps gave
81 % pixel accuracy with batch statistics and 25 % in inference mode, because
the moving statistics kept 63 % of their initial values.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from fcn_keras.training import build_model, compile_model, data_sources, train, train_dataset
from fcn_keras.training.batchnorm import batchnorm_layers, estimate_statistics, settle_batchnorm, settled_momentum
from fcn_keras.training.data import pipeline_preprocessing
from tests.training import tiny

STEPS = 24


def _recipe(**training):
    return tiny.tiny_recipe(model={"backbone": "tiny_keras_bn"},
                            training={"steps": STEPS, "steps_per_epoch": 8, "batchnorm_batches": 16, **training})


def _training_examples(recipe, out):
    train_source, _ = data_sources(recipe, None, out)
    examples = list(train_source.dataset())
    images = np.stack([np.asarray(image, "float32") for image, _ in examples])
    labels = np.stack([np.asarray(label) for _, label in examples])
    return keras.ops.convert_to_numpy(pipeline_preprocessing(build_model(recipe, init="none"))(images)), labels


def _accuracy(model, images, labels, training: bool) -> float:
    """Pixel accuracy with the moving statistics (``training=False``) or this batch's statistics."""
    predicted = np.argmax(keras.ops.convert_to_numpy(model(images, training=training)), -1)
    return float(np.mean(predicted == labels))


def _statistics_error(model, images) -> float:
    """Largest relative gap between the first BatchNorm's moving variance and the variance of its input here."""
    layer = batchnorm_layers(model)[0]
    encoder = next(inner for inner in model.layers if isinstance(inner, keras.Model))
    probe = keras.Model(encoder.inputs, encoder.get_layer(layer.name).input)
    features = keras.ops.convert_to_numpy(probe(images, training=True))
    variance = features.reshape(-1, features.shape[-1]).var(0)
    return float(np.max(np.abs(keras.ops.convert_to_numpy(layer.moving_variance) - variance) / variance))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    recipe = _recipe()
    out = tmp_path_factory.mktemp("bn")
    result = train(recipe, out / "run", verbose=0)
    # The same recipe through plain model.fit, without either remedy: the failure the test must catch.
    plain = build_model(recipe, init="none")
    compile_model(plain, recipe)
    plain.fit(train_dataset(recipe, data_sources(recipe, None, out / "plain")[0], range(recipe.epochs),
                            preprocessing=pipeline_preprocessing(plain)),
              epochs=recipe.epochs, steps_per_epoch=recipe.training.steps_per_epoch, verbose=0)
    return keras.models.load_model(result["model"]), plain, _training_examples(recipe, out / "examples")


def test_trained_from_scratch_predicts_in_inference_mode(trained):
    model, plain, (images, labels) = trained
    assert _statistics_error(model, images) < 0.25
    assert _accuracy(model, images, labels, training=False) >= _accuracy(model, images, labels, training=True) - 0.03
    # Without the remedies the moving statistics are still mostly their initial ones: the check above can fail.
    assert _statistics_error(plain, images) > 1.0


def test_slow_momentum_is_lowered_and_an_explicit_one_refused(capsys):
    recipe = _recipe()
    model = build_model(recipe, init="none")
    changed = settle_batchnorm(model, recipe)
    limit = settled_momentum(8)
    assert len(changed) == 5 and set(changed.values()) == {limit} and limit ** 8 == pytest.approx(0.05)
    assert "0.999 -> 0.6877 on 5 layers" in capsys.readouterr().out
    with pytest.raises(ValueError, match=r"\[model\] batchnorm_momentum = 0.99 keeps 92% of the initial BatchNorm "
                                         r"statistics after one epoch \(8 steps\).*use at most 0.6877"):
        settle_batchnorm(model, recipe.replace(model={"batchnorm_momentum": 0.99}))


def test_estimate_equals_the_average_of_batch_statistics():
    keras.utils.set_random_seed(1)
    inputs = keras.Input((6, 6, 2))
    x = keras.layers.BatchNormalization(momentum=0.999, name="bn1")(keras.layers.Conv2D(3, 3, name="c1")(inputs))
    x = keras.layers.BatchNormalization(momentum=0.999, name="bn2")(keras.layers.Conv2D(4, 1, name="c2")(x))
    model = keras.Model(inputs, x)
    batches = [np.random.default_rng(i).normal(3.0, 2.0, (2, 6, 6, 2)).astype("float32") for i in range(3)]
    assert estimate_statistics(model, tf.data.Dataset.from_tensor_slices((batches, batches))) == 3
    for name in ("bn1", "bn2"):
        probe = keras.Model(inputs, model.get_layer(name).input)
        features = [keras.ops.convert_to_numpy(probe(b, training=True)).reshape(-1, 3 if name == "bn1" else 4)
                    for b in batches]
        layer = model.get_layer(name)
        np.testing.assert_allclose(layer.moving_mean.numpy(), np.mean([f.mean(0) for f in features], 0),
                                   rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(layer.moving_variance.numpy(), np.mean([f.var(0) for f in features], 0),
                                   rtol=1e-4)
        assert layer.momentum == 0.999
