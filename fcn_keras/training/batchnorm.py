"""BatchNorm moving statistics a trained model can predict with: momentum that settles, and statistics re-estimated.

Inference uses the moving statistics, so a model whose statistics lag its
weights predicts nonsense after training well: keras.applications'
MobileNetV2 (momentum 0.999) trained from scratch for 460 steps keeps 63 % of
its initial statistics and scores 25 % pixel accuracy in inference mode
against 81 % with batch statistics. Two remedies, both on by default:

- :func:`settle_batchnorm` lowers a momentum too slow for one epoch of the
  recipe (an explicit recipe value that is too slow is refused);
- :class:`EstimateStatistics` re-estimates the statistics from training
  batches before every validation, so validation, ``best.keras`` and the final
  ``model.keras`` use statistics of the current weights ("precise BN").
"""

from __future__ import annotations

import os
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from fcn_keras.recipes import Recipe
from fcn_keras.training.init import iter_layers

STALE_STATISTICS = 0.05
"""The largest share of its initial moving statistics a BatchNormalization layer may keep after one epoch."""


def statistics_window(recipe: Recipe) -> int:
    """Steps over which moving statistics must settle: the first validation comes after one epoch.

    Example:
        >>> from fcn_keras.recipes import load_recipe
        >>> statistics_window(load_recipe("tiny_synthetic"))
        10
    """
    return min(recipe.training.steps, recipe.training.steps_per_epoch)


def settled_momentum(window: int, tolerance: float = STALE_STATISTICS) -> float:
    """The largest BatchNorm momentum that keeps at most ``tolerance`` of the initial statistics after ``window`` steps.

    A moving average ``s <- m s + (1 - m) x`` keeps ``m ** n`` of its start after ``n`` steps.

    Example:
        >>> round(settled_momentum(460), 4), round(0.999 ** 460, 2)
        (0.9935, 0.63)
    """
    return tolerance ** (1.0 / max(int(window), 1))


def settle_batchnorm(model: keras.Model, recipe: Recipe) -> dict[str, float]:
    """Makes every BatchNormalization layer's moving statistics able to converge within one epoch of the recipe.

    Inference uses the moving statistics, so a model whose statistics still
    hold their initial values (keras.applications' MobileNetV2: momentum 0.999
    keeps 63 % of them after 460 steps) predicts nonsense after training well.
    With ``[model] batchnorm_momentum = 0`` (the default) a layer whose momentum
    is too slow for :func:`statistics_window` gets :func:`settled_momentum`
    and the change is printed; an explicit ``batchnorm_momentum`` that is too
    slow is refused. Returns ``{layer name: momentum}`` of the layers changed.

    Example:
        >>> from fcn_keras.models import build_fcn
        >>> from fcn_keras.recipes import load_recipe
        >>> recipe = load_recipe("tiny_synthetic").replace(model={"batchnorm_momentum": 0.999})
        >>> settle_batchnorm(build_fcn("fcn8s", num_classes=4, backbone="mobilenet_v2"), recipe)
        Traceback (most recent call last):
        ...
        ValueError: tiny_synthetic.toml: [model] batchnorm_momentum = 0.999 keeps 99% of the initial BatchNorm statistics after one epoch (10 steps), so the model would predict from them in inference; use at most 0.7411, or 0 to choose automatically
    """
    window = statistics_window(recipe)
    limit = settled_momentum(window)
    explicit = recipe.model.batchnorm_momentum
    if explicit and explicit > limit:
        raise ValueError(
            f"{os.path.basename(recipe.source)}: [model] batchnorm_momentum = {explicit} keeps "
            f"{explicit ** window:.0%} of the initial BatchNorm statistics after one epoch ({window} steps), so the "
            f"model would predict from them in inference; use at most {limit:.4f}, or 0 to choose automatically")
    changed, before = {}, set()
    for layer in iter_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            momentum = explicit or min(float(layer.momentum), limit)
            if momentum != layer.momentum:
                before.add(float(layer.momentum))
                layer.momentum = momentum
                changed[layer.name] = momentum
    if changed and not explicit:
        print(f"BatchNorm momentum {', '.join(map(str, sorted(before)))} -> {limit:.4f} on {len(changed)} layers: "
              f"their moving statistics must settle within one epoch ({window} steps)")
    return changed


def batchnorm_layers(model: keras.Model) -> list[keras.layers.BatchNormalization]:
    """Every BatchNormalization layer of ``model``, nested models included.

    Example:
        >>> from fcn_keras.models import build_fcn
        >>> len(batchnorm_layers(build_fcn("fcn8s", num_classes=2, backbone="mobilenet_v2")))
        52
    """
    return [layer for layer in iter_layers(model) if isinstance(layer, keras.layers.BatchNormalization)]


def estimate_statistics(model: keras.Model, batches: tf.data.Dataset, forward: Callable | None = None) -> int:
    """Sets every BatchNorm layer's moving mean and variance to the average of its batch statistics over ``batches``.

    ``batches`` yields ``(images, labels)`` as training does (preprocessed,
    augmented); only the images are used and no trainable weight changes.
    Returns the number of batches used (0 and nothing changed for a model
    without BatchNorm). ``forward`` is a compiled
    ``model(images, training=True)`` from an earlier call (:func:`statistics_forward`),
    which saves tracing the model again.

    Example:
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.BatchNormalization()])
        >>> x = np.arange(16, dtype="float32").reshape(4, 4)
        >>> estimate_statistics(model, tf.data.Dataset.from_tensors((x, x)).repeat(2))
        2
        >>> model.layers[0].moving_mean.numpy().tolist()
        [6.0, 7.0, 8.0, 9.0]
    """
    layers = batchnorm_layers(model)
    if not layers:
        return 0
    momenta = [layer.momentum for layer in layers]
    sums = [[np.zeros(layer.moving_mean.shape, "float64"), np.zeros(layer.moving_variance.shape, "float64")]
            for layer in layers]
    count = 0
    try:
        for layer in layers:
            layer.momentum = 0.0  # a training-mode call then leaves the batch's statistics in the moving ones
        forward = forward or statistics_forward(model)
        for images, *_ in batches:
            forward(images)
            for (mean, variance), layer in zip(sums, layers):
                mean += keras.ops.convert_to_numpy(layer.moving_mean)
                variance += keras.ops.convert_to_numpy(layer.moving_variance)
            count += 1
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
    if count:
        for (mean, variance), layer in zip(sums, layers):
            layer.moving_mean.assign((mean / count).astype(layer.moving_mean.dtype))
            layer.moving_variance.assign((variance / count).astype(layer.moving_variance.dtype))
    return count


def statistics_forward(model: keras.Model) -> Callable:
    """``model(images, training=True)`` compiled for :func:`estimate_statistics` (``tf.function``; ``jax.jit`` on JAX).

    It is traced on its first call, while every BatchNorm momentum is 0, and keeps that
    momentum in its graph; only :func:`estimate_statistics` may call it. On JAX the
    compiled function is the public ``model.stateless_call``, whose new non-trainable
    values (moving statistics, RNG state) are assigned back, as a TensorFlow graph
    assigns them; under a ``keras.distribution`` it runs on the distributed variables.

    Example:
        >>> callable(statistics_forward(keras.Sequential([keras.Input((2,)), keras.layers.BatchNormalization()])))
        True
    """
    if keras.backend.backend() == "jax":
        import jax

        step = jax.jit(lambda trainable, non_trainable, images: model.stateless_call(
            trainable, non_trainable, images, training=True)[1])

        def forward(images) -> None:
            values = step([v.value for v in model.trainable_variables],
                          [v.value for v in model.non_trainable_variables], np.asarray(images))
            for variable, value in zip(model.non_trainable_variables, values):
                variable.assign(value)

        return forward
    return tf.function(lambda images: model(images, training=True), autograph=False, reduce_retracing=True)


class EstimateStatistics(keras.callbacks.Callback):
    """Re-estimates the BatchNorm statistics (:func:`estimate_statistics`) before every validation of ``fit``.

    ``batches(epoch)`` returns the training batches to estimate from; they are
    a pure function of the epoch, so a resumed run estimates exactly as an
    uninterrupted one. Validation is the last thing of an epoch, so
    ``best.keras`` and the final model carry statistics of their own weights.
    """

    def __init__(self, batches: Callable[[int], tf.data.Dataset]):
        super().__init__()
        self.batches = batches
        self.epoch = 0
        self.forward = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_test_begin(self, logs=None):
        self.forward = self.forward or statistics_forward(self.model)  # traced once per run
        estimate_statistics(self.model, self.batches(self.epoch), self.forward)
