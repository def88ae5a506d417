"""CaffeSGD against Caffe's update rule computed by hand."""

from __future__ import annotations

import numpy as np
import pytest
import keras

from fcn_keras.optimizers import CaffeSGD

pytestmark = pytest.mark.backend_agnostic


def _tiny_net():
    inputs = keras.Input((6, 6, 2))
    x = keras.layers.Conv2D(3, 3, name="conv")(inputs)
    x = keras.layers.Conv2DTranspose(3, 4, strides=2, use_bias=False, trainable=False, name="upscore")(x)
    return keras.Model(inputs, x, name="net")


def _caffe_reference(w, b, grads, lr, mu, wd, steps):
    vw, vb = np.zeros_like(w), np.zeros_like(b)
    for gw, gb in grads[:steps]:
        vw = mu * vw + lr * 1.0 * (gw + wd * 1.0 * w)
        vb = mu * vb + lr * 2.0 * (gb + wd * 0.0 * b)
        w, b = w - vw, b - vb
    return w, b


def test_updates_equal_hand_computed_caffe_sgd():
    model = _tiny_net()
    conv = model.get_layer("conv")
    w0, b0 = (np.asarray(v) for v in conv.get_weights())
    b0 = b0 + np.array([0.5, -1.0, 2.0], "float32")
    conv.set_weights([w0, b0])
    fixed = model.get_layer("upscore").get_weights()[0].copy()
    rng = np.random.default_rng(0)
    grads = [(rng.normal(size=w0.shape).astype("float32"), rng.normal(size=b0.shape).astype("float32"))
             for _ in range(3)]
    lr, mu, wd = 0.1, 0.9, 0.05
    opt = CaffeSGD(learning_rate=lr, momentum=mu, weight_decay=wd)
    for gw, gb in grads:
        opt.apply_gradients([(gw, conv.kernel), (gb, conv.bias)])
    w_ref, b_ref = _caffe_reference(w0.astype(np.float64), b0.astype(np.float64), grads, lr, mu, wd, 3)
    np.testing.assert_allclose(np.asarray(conv.kernel), w_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(conv.bias), b_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(model.get_layer("upscore").get_weights()[0], fixed)
    # Keras' SGD with its decoupled weight_decay is a different update: the test can tell them apart.
    keras_sgd = keras.optimizers.SGD(learning_rate=lr, momentum=mu, weight_decay=wd)
    conv.set_weights([w0, b0])
    for gw, gb in grads:
        keras_sgd.apply_gradients([(gw, conv.kernel), (gb, conv.bias)])
    assert not np.allclose(np.asarray(conv.kernel), w_ref, rtol=1e-5, atol=1e-6)


def test_trains_with_fit_and_leaves_fixed_upsampling_untouched():
    model = _tiny_net()
    fixed = model.get_layer("upscore").get_weights()[0].copy()
    model.compile(optimizer=CaffeSGD(learning_rate=1e-3, momentum=0.99), loss="mse")
    x = np.random.default_rng(1).random((2, 6, 6, 2)).astype("float32")
    before = model.get_layer("conv").get_weights()[0].copy()
    model.fit(x, np.ones((2, 10, 10, 3), "float32"), epochs=2, verbose=0)
    assert not np.allclose(model.get_layer("conv").get_weights()[0], before)
    np.testing.assert_array_equal(model.get_layer("upscore").get_weights()[0], fixed)


def test_multipliers_and_config():
    opt = CaffeSGD(multipliers={"*/score_*/kernel": (10.0, 1.0), "*bias": (2.0, 0.0)})
    assert opt.multipliers_for("fcn8s/score_fr/kernel") == (10.0, 1.0)
    assert opt.multipliers_for("fcn8s/conv1_1/bias") == (2.0, 0.0)
    assert opt.multipliers_for("fcn8s/conv1_1/kernel") == (1.0, 1.0)
    clone = keras.optimizers.deserialize(keras.optimizers.serialize(opt))
    assert isinstance(clone, CaffeSGD)
    assert (clone.momentum, clone.l2_weight_decay, clone.multipliers) == (opt.momentum, 5e-4, opt.multipliers)
    with pytest.raises(ValueError, match="momentum"):
        CaffeSGD(momentum=1.5)
