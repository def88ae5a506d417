"""Caffe's SGD, as the FCN reference solver uses it: coupled L2 weight decay and per-parameter multipliers.

Keras' ``SGD(weight_decay=...)`` decays weights *decoupled* from the gradient
and has no per-variable learning-rate multipliers. Caffe instead adds the L2
term to the gradient before momentum, and scales each parameter blob's learning
rate and decay by its ``lr_mult`` / ``decay_mult`` (the reference: weights
``(1, 1)``, biases ``(2, 0)``; fixed upsampling layers are simply not trainable).
"""

from __future__ import annotations

import fnmatch

import keras
from keras import ops

DEFAULT_MULTIPLIERS: dict[str, tuple[float, float]] = {"*bias": (2.0, 0.0), "*": (1.0, 1.0)}
"""The reference's ``param { lr_mult decay_mult }`` per variable path pattern (first match wins)."""


@keras.saving.register_keras_serializable(package="fcn_keras")
class CaffeSGD(keras.optimizers.Optimizer):
    """SGD with momentum exactly as Caffe's SGDSolver.

    For every trainable variable ``w`` with multipliers ``(lr_mult, decay_mult)``::

        v <- momentum * v + learning_rate * lr_mult * (grad + weight_decay * decay_mult * w)
        w <- w - v

    Args:
        learning_rate: float or ``keras.optimizers.schedules`` schedule.
        momentum: 0.99 in the reference solver, 0.9 in the paper.
        weight_decay: the L2 coefficient (Caffe ``weight_decay``), added to the gradient.
        multipliers: ``{pattern: (lr_mult, decay_mult)}`` matched with ``fnmatch``
            against each variable's path (e.g. ``"fcn8s/score_fr/bias"``); the
            first matching pattern wins, unmatched variables get ``(1, 1)``.
            Defaults to :data:`DEFAULT_MULTIPLIERS` (biases at twice the
            learning rate and without decay).
        **kwargs: other ``keras.optimizers.Optimizer`` arguments (``clipnorm``,
            ``loss_scale_factor``, ...), except Keras' decoupled ``weight_decay``.

    Example:
        >>> opt = CaffeSGD(learning_rate=1e-10, momentum=0.99, weight_decay=5e-4)
        >>> opt.multipliers_for("fcn32s/score_fr/bias")
        (2.0, 0.0)
    """

    def __init__(
        self,
        learning_rate=1e-10,
        momentum: float = 0.99,
        weight_decay: float = 5e-4,
        multipliers: dict | None = None,
        name: str = "caffe_sgd",
        **kwargs,
    ):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        if not 0.0 <= float(momentum) < 1.0:
            raise ValueError(f"CaffeSGD: momentum must be in [0, 1), got {momentum!r}")
        if float(weight_decay) < 0:
            raise ValueError(f"CaffeSGD: weight_decay must be >= 0, got {weight_decay!r}")
        self.momentum = float(momentum)
        self.l2_weight_decay = float(weight_decay)
        multipliers = DEFAULT_MULTIPLIERS if multipliers is None else multipliers
        self.multipliers = {str(k): (float(v[0]), float(v[1])) for k, v in multipliers.items()}

    def multipliers_for(self, path: str) -> tuple[float, float]:
        """``(lr_mult, decay_mult)`` of the variable with this path."""
        for pattern, pair in self.multipliers.items():
            if fnmatch.fnmatchcase(path, pattern):
                return pair
        return (1.0, 1.0)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self._variable_multipliers = [self.multipliers_for(v.path) for v in variables]
        self.velocities = self.add_optimizer_variables(variables, "velocity")
        # update_step receives the Keras variable (JAX, torch) or, on TensorFlow, the tf.Variable inside
        # it — under a tf.distribute strategy one per replica. Each of them maps to its index here.
        # (Only ids are kept: an optimizer attribute holding variables would track them as its own.)
        self._index_by_id = {}
        for index, variable in enumerate(variables):
            for same in (variable, *_backend_variables(variable)):
                self._index_by_id[id(same)] = index

    def _index(self, variable) -> int:
        try:
            return self._index_by_id[id(variable)]
        except KeyError:
            raise ValueError(
                f"CaffeSGD: variable {getattr(variable, 'name', variable)!r} is not one it was built for "
                "(under a tf.distribute strategy, build the optimizer inside the strategy's scope)"
            ) from None

    def update_step(self, gradient, variable, learning_rate):
        index = self._index(variable)
        lr_mult, decay_mult = self._variable_multipliers[index]
        dtype = variable.dtype
        gradient = ops.cast(gradient, dtype)
        if self.l2_weight_decay and decay_mult:
            gradient = gradient + ops.cast(self.l2_weight_decay * decay_mult, dtype) * variable
        velocity = self.velocities[index]
        step = ops.cast(learning_rate, dtype) * ops.cast(lr_mult, dtype)
        self.assign(velocity, ops.cast(self.momentum, dtype) * velocity + step * gradient)
        self.assign_sub(variable, velocity)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({
            "momentum": self.momentum,
            "weight_decay": self.l2_weight_decay,
            "multipliers": {k: list(v) for k, v in self.multipliers.items()},
        })
        return config


def _backend_variables(variable: keras.Variable) -> tuple:
    """The TensorFlow variables a Keras variable holds: the tf.Variable and, when distributed, each replica's."""
    if keras.backend.backend() != "tensorflow":
        return ()
    import tensorflow as tf

    value = variable.value
    return (value, *tf.distribute.get_strategy().experimental_local_results(value))
