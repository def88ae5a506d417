"""Staged initialisation by layer name, init checkpoints that do not fit, NaN stop, bad labels in the data."""

from __future__ import annotations

import numpy as np
import pytest
import keras

from fcn_keras.models import build_fcn
from fcn_keras.training import TrainingDiverged, build_model, init_from_model, label_checked, train
from tests.training import tiny


def _randomised(model):
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if layer.trainable_weights:
            layer.set_weights([rng.normal(size=w.shape).astype("float32") for w in layer.get_weights()])
    return model


def test_staged_init_copies_shared_layers_and_keeps_new_scores_zero(tmp_path):
    tiny.register()
    fcn32 = _randomised(build_fcn("fcn32s", num_classes=3, backbone="tiny"))
    fcn32.save(tmp_path / "fcn32s.keras")
    recipe = tiny.tiny_recipe(model={"architecture": "fcn16s"})
    fcn16 = build_model(recipe, init=tmp_path / "fcn32s.keras")
    for name in ("score_fr", "tiny"):
        for a, b in zip(fcn16.get_layer(name).get_weights(), fcn32.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)
    assert all(not w.any() for w in fcn16.get_layer("score_pool4").get_weights())
    # ... and FCN-8s from that FCN-16s: score_pool4 carried over, score_pool3 new and zero.
    fcn16 = _randomised(fcn16)
    fcn8 = build_fcn("fcn8s", num_classes=3, backbone="tiny")
    copied = init_from_model(fcn8, fcn16)
    assert {"score_fr", "score_pool4", "tiny"} <= set(copied) and "score_pool3" not in copied
    np.testing.assert_array_equal(fcn8.get_layer("score_pool4").get_weights()[0],
                                  fcn16.get_layer("score_pool4").get_weights()[0])
    assert not fcn8.get_layer("score_pool3").get_weights()[0].any()


def test_init_from_another_architecture_names_the_misfits(tmp_path):
    tiny.register()
    five = build_fcn("fcn32s", num_classes=5, backbone="tiny")
    with pytest.raises(ValueError, match=r"score_fr \(checkpoint \[\(1, 1, 64, 5\), \(5,\)\], model \[\(1, 1, 64, 3\)"):
        init_from_model(build_fcn("fcn16s", num_classes=3, backbone="tiny"), five)
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="dense")])
    with pytest.raises(ValueError, match="shares no layer"):
        init_from_model(build_fcn("fcn32s", num_classes=3, backbone="tiny"), other)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        init_from_model(five, tmp_path / "missing.keras")


def test_nan_loss_stops_with_a_message_naming_the_step(tmp_path):
    recipe = tiny.tiny_recipe(optimizer={"learning_rate": 1e12}, loss={"reduction": "sum"},
                              training={"steps": 8, "deterministic": False, "checkpoint_every": 100})
    with pytest.raises(TrainingDiverged, match=r"loss became (nan|inf) at global step \d+ \(epoch 1, batch \d+\)"):
        train(recipe, tmp_path, verbose=0)
    assert not (tmp_path / "resume" / "latest.json").exists()  # no diverged state to resume from


def test_out_of_range_labels_in_the_data_path_fail_clearly():
    import tensorflow as tf

    labels = np.zeros((1, 4, 4), "int32")
    labels[0, 1, 1] = 7
    dataset = label_checked(tf.data.Dataset.from_tensors((np.zeros((1, 4, 4, 3), "float32"), labels)), 3)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"class indices in \[0, 3\) or the ignore label 255"):
        list(dataset)
    ok = label_checked(tf.data.Dataset.from_tensors((np.zeros((1, 4, 4, 3), "float32"), labels * 0 + 255)), 3)
    assert len(list(ok)) == 1


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_policies_train_with_float32_logits_and_loss(policy):
    from fcn_keras.training import compile_model, dtype_policy

    recipe = tiny.tiny_recipe(training={"mixed_precision": policy})
    with dtype_policy(policy):
        model = compile_model(build_model(recipe), recipe)
    assert keras.config.dtype_policy().name == "float32"  # restored
    assert model.get_layer("score_fr").compute_dtype == policy.removeprefix("mixed_")
    assert model.output.dtype == "float32"
    if policy == "mixed_float16":
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        assert type(model.optimizer.inner_optimizer).__name__ == "CaffeSGD"
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(2, 32, 32, 3)).astype("float32"), rng.integers(0, 3, (2, 32, 32))
    before = model.get_layer("score_fr").get_weights()[1].copy()
    logs = model.train_on_batch(x, y, return_dict=True)
    assert np.isfinite(logs["loss"]) and "mean_iou" in logs
    assert not np.array_equal(model.get_layer("score_fr").get_weights()[1], before)
    assert model.loss.dtype == "float32"
