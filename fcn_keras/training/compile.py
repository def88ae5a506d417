"""The recipe's loss, Caffe SGD and metrics on a model, and its training state built up front."""

from __future__ import annotations

import keras
import numpy as np

from fcn_keras.losses import SegmentationCrossEntropy
from fcn_keras.metrics import SegmentationMetrics
from fcn_keras.optimizers import CaffeSGD
from fcn_keras.recipes import Recipe


def make_optimizer(recipe: Recipe) -> keras.optimizers.Optimizer:
    """The recipe's optimizer (Caffe SGD or AdamW) with its learning-rate schedule.

    Example:
        >>> from fcn_keras.recipes import load_recipe
        >>> opt = make_optimizer(load_recipe("fcn32s_voc"))
        >>> opt.momentum, opt.multipliers_for("fcn32s/score_fr/bias")
        (0.99, (2.0, 0.0))
    """
    o, s, t = recipe.optimizer, recipe.schedule, recipe.training
    lr = o.learning_rate
    if s.name == "poly":
        lr = keras.optimizers.schedules.PolynomialDecay(lr, t.steps, end_learning_rate=0.0, power=s.power)
    elif s.name == "step":
        lr = keras.optimizers.schedules.ExponentialDecay(lr, s.step_size, s.gamma, staircase=True)
    if o.name == "adamw":
        optimizer = keras.optimizers.AdamW(learning_rate=lr, weight_decay=o.weight_decay, beta_1=o.momentum)
        optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
        return optimizer
    multipliers = {"*bias": (o.bias_lr_multiplier, 0.0), "*": (1.0, 1.0)}
    return CaffeSGD(learning_rate=lr, momentum=o.momentum, weight_decay=o.weight_decay, multipliers=multipliers)


def compile_model(model: keras.Model, recipe: Recipe, **compile_kwargs) -> keras.Model:
    """Compiles ``model`` with the recipe's loss, optimizer and :class:`~fcn_keras.metrics.SegmentationMetrics`.

    Under a ``mixed_float16`` policy Keras wraps the optimizer in a
    ``LossScaleOptimizer``. Returns the model.

    Example:
        >>> from fcn_keras.recipes import load_recipe
        >>> from fcn_keras.training import build_model
        >>> recipe = load_recipe("tiny_synthetic")
        >>> compile_model(build_model(recipe, init="none"), recipe).loss.reduction
        'mean'
    """
    loss = SegmentationCrossEntropy(recipe.loss.reduction, class_weights=recipe.loss.class_weights or None)
    model.compile(optimizer=make_optimizer(recipe), loss=loss,
                  metrics=[SegmentationMetrics(recipe.model.num_classes)], **compile_kwargs)
    return model


def build_training_state(model: keras.Model) -> None:
    """Creates every variable that ``fit`` would create lazily: the optimizer's and the loss and metric state.

    Then a resume state can be restored into them before the first step, and
    ``fit`` has nothing left to build. The loss and metrics are built by one
    call of the public ``model.compute_loss`` / ``model.compute_metrics`` on a
    one-pixel batch inside a ``keras.StatelessScope``, so no value changes
    (under a ``tf.distribute`` strategy too, whose sum-on-read metric variables
    cannot be updated outside a replica). Call it inside the strategy's scope.

    Example:
        >>> model = keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(2, 1)])
        >>> model.compile(optimizer="sgd", loss=SegmentationCrossEntropy(), metrics=[SegmentationMetrics(2)])
        >>> build_training_state(model)
        >>> model.optimizer.built, sum(len(m.variables) for m in model.metrics)
        (True, 4)
    """
    model.optimizer.build(model.trainable_variables)
    num_classes = int(model.output_shape[-1])
    y = np.zeros((1, 1, 1), "int32")
    y_pred = np.zeros((1, 1, 1, num_classes), "float32")
    with keras.StatelessScope():
        model.compute_loss(x=None, y=y, y_pred=y_pred)
        model.compute_metrics(None, y, y_pred, sample_weight=None)
