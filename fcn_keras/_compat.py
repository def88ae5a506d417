"""Workarounds for Keras and TensorFlow bugs, each naming the upstream issue. Nothing else lives here.

Both concern ``model.fit`` of Keras 3 (checked with 3.15, TensorFlow 2.21) under
``tf.distribute.MultiWorkerMirroredStrategy`` with two or more workers, which
upstream does not work out of the box: keras-team/keras#20585 (open; the
TensorFlow multi-worker Keras tutorial fails with Keras 3, also
tensorflow/tensorflow#72388). :func:`fcn_keras.training.train` applies them to
its own model only, and only in a multi-worker cluster.

``tests/training/test_training.py::test_multi_worker_on_localhost_trains_together``
keeps them honest: its workers train with them (they still work) and, on fresh
models without them, reproduce both failures (they are still needed). When a
Keras release fixes one, that test fails and names the workaround to delete.
"""

from __future__ import annotations

import keras
import tensorflow as tf

UPSTREAM_ISSUE = "https://github.com/keras-team/keras/issues/20585"


def skip_fit_peek(model: keras.Model) -> None:
    """Stops ``fit``/``evaluate`` of this model from peeking at a batch to build it.

    Bug: for a model created under a strategy, Keras' TensorFlow trainer first
    takes one batch of the data and reduces it with ``strategy.reduce("MEAN",
    (x, y), axis=None)`` to build the model symbolically
    (``keras/src/backend/tensorflow/trainer.py``, ``_maybe_symbolic_build``).
    A multi-worker strategy cannot reduce a tuple: ``ValueError: Attempt to
    convert a value (PerReplica:...) with an unsupported type`` — before the
    first step, even when everything is built already.

    Workaround: :func:`fcn_keras.training.train` builds the model, its loss and
    metric state and the optimizer before ``fit``, so the build has nothing to
    do; this replaces the peek-and-build hook on this instance by a no-op. It
    is the one private Keras name the project touches.
    """
    if not hasattr(model, "_maybe_symbolic_build"):
        raise RuntimeError(f"Keras {keras.__version__} has no Model._maybe_symbolic_build: check whether "
                           f"{UPSTREAM_ISSUE} is fixed and remove fcn_keras._compat.skip_fit_peek")
    model._maybe_symbolic_build = _no_build  # noqa: SLF001 - the workaround itself


def _no_build(*args, **kwargs) -> None:
    return None


def vector_step_logs(model: keras.Model) -> None:
    """Makes this model's ``train_step`` and ``test_step`` return their logs as 1-element vectors.

    Bug: under a multi-worker strategy Keras reduces each step's logs with
    ``strategy.reduce("MEAN", value, axis=0)``, which fails on the scalar
    logs every ``train_step`` returns (``ValueError: Invalid reduction
    dimension 0 for input with 0 dimensions``).

    Workaround: the steps return each log as a ``[1]`` vector, which that
    reduction turns back into the same scalar (every worker holds the same
    synchronised values). The methods are set on this instance only.
    """
    for name in ("train_step", "test_step"):
        step = getattr(model, name)

        def vector_logs(data, step=step):
            return tf.nest.map_structure(lambda value: tf.reshape(value, [1]), step(data))

        setattr(model, name, vector_logs)


def multi_worker_fit(model: keras.Model) -> None:
    """Applies every workaround that ``fit`` needs under a multi-worker strategy to ``model``."""
    skip_fit_peek(model)
    vector_step_logs(model)
