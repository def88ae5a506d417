"""fcn_keras._compat in one process: Keras still peeks under a strategy, and each workaround does its job.

Whether the workarounds are still *needed* (Keras still fails without them) needs a real
multi-worker cluster: test_training.py::test_multi_worker_on_localhost_trains_together.
"""

from __future__ import annotations

import numpy as np
import keras
import tensorflow as tf

from fcn_keras import _compat


def _compiled(strategy):
    with strategy.scope():
        model = keras.Sequential([keras.Input((2, 2, 1)), keras.layers.Conv2D(1, 1)])
        model.compile(optimizer="sgd", loss="mse")
        model.optimizer.build(model.trainable_variables)
    return model


def _iterations_started_by_fit(model) -> int:
    started = []

    def batches():
        started.append(True)
        for _ in range(4):
            yield np.ones((1, 2, 2, 1), "float32"), np.zeros((1, 2, 2, 1), "float32")

    spec = tf.TensorSpec((1, 2, 2, 1), tf.float32)
    model.fit(tf.data.Dataset.from_generator(batches, output_signature=(spec, spec)), steps_per_epoch=2,
              shuffle=False, verbose=0)
    return len(started)


def test_fit_peeks_under_a_strategy_and_skip_fit_peek_stops_it():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    # Upstream behaviour that fcn_keras.training.data's iteration-invariant datasets make harmless:
    # fit under a strategy iterates the data once before training. (If this fails, Keras stopped
    # peeking: the invariance is then merely harmless, and skip_fit_peek may be unneeded.)
    assert _iterations_started_by_fit(_compiled(strategy)) == 2
    model = _compiled(strategy)
    _compat.skip_fit_peek(model)
    assert _iterations_started_by_fit(model) == 1, "skip_fit_peek no longer stops the peek: Keras changed the hook"
    assert _iterations_started_by_fit(_compiled(tf.distribute.get_strategy())) == 1  # no strategy, no peek


def test_vector_step_logs_returns_the_same_values_as_vectors():
    x, y = np.ones((2, 2, 2, 1), "float32"), np.zeros((2, 2, 2, 1), "float32")
    keras.utils.set_random_seed(0)
    plain = _compiled(tf.distribute.get_strategy())
    keras.utils.set_random_seed(0)
    vector = _compiled(tf.distribute.get_strategy())
    _compat.vector_step_logs(vector)
    expected = plain.train_on_batch(x, y, return_dict=True)
    got = vector.train_on_batch(x, y, return_dict=True)
    assert np.shape(got["loss"]) == (1,) and np.shape(expected["loss"]) == ()
    np.testing.assert_allclose(np.asarray(got["loss"])[0], expected["loss"], rtol=1e-6)
    assert np.shape(vector.test_on_batch(x, y, return_dict=True)["loss"]) == (1,)
