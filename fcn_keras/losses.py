"""Pixelwise softmax cross-entropy for segmentation, with the reference's ignore label.

Only ``keras.ops`` is used, so the loss runs on every Keras backend. It is
computed in float32 whatever the mixed-precision policy, and returns one
scalar per batch (already the batch's whole contribution: no further Keras
reduction, and exact under ``tf.distribute``, see :class:`SegmentationCrossEntropy`).
"""

from __future__ import annotations

from typing import Sequence

import keras
from keras import ops

from fcn_keras.palette import IGNORE_LABEL

REDUCTIONS = ("sum", "mean")


@keras.saving.register_keras_serializable(package="fcn_keras")
class SegmentationCrossEntropy(keras.losses.Loss):
    """Softmax cross-entropy from logits over every pixel whose label is not ``ignore_label``.

    Args:
        reduction: ``"sum"`` sums over all valid pixels of the batch — the
            reference's unnormalised loss that its lr 1e-10 recipe needs;
            ``"mean"`` divides that sum by the number of valid pixels (the
            paper's per-pixel-normalised loss). With class weights, "mean"
            divides by the summed weights of the valid pixels.
        ignore_label: label value that contributes nothing (255 in VOC).
        class_weights: optional per-class weights (length = number of classes).
        check_labels: raise when a label is neither a class index nor
            ``ignore_label`` (unchecked, such pixels are skipped). Works
            eagerly and in ``tf.function`` graphs on TensorFlow and under
            ``jax.jit`` (via a host callback); inside an
            XLA-compiled TensorFlow step (``jit_compile=True``) TensorFlow drops
            assertions, so :func:`fcn_keras.training.train` also checks labels
            in the input pipeline.

    A batch without any valid pixel gives 0 (not NaN). Under a
    ``tf.distribute`` strategy, "mean" divides by the valid pixels of the
    *global* batch (summed over replicas), so N replicas compute exactly the
    single-device loss and gradients.

    Example:
        >>> import numpy as np
        >>> loss = SegmentationCrossEntropy(reduction="mean")
        >>> logits = np.zeros((1, 2, 2, 3), "float32")
        >>> labels = np.array([[[0, 1], [2, 255]]])
        >>> round(float(loss(labels, logits)), 4)  # log(3) on the 3 valid pixels
        1.0986
    """

    def __init__(
        self,
        reduction: str = "sum",
        ignore_label: int = IGNORE_LABEL,
        class_weights: Sequence[float] | None = None,
        check_labels: bool = True,
        name: str = "segmentation_cross_entropy",
        dtype=None,
    ):
        if reduction not in REDUCTIONS:
            raise ValueError(f"SegmentationCrossEntropy: reduction must be one of {REDUCTIONS}, got {reduction!r}")
        # Our call() returns the batch scalar, which Keras leaves untouched for any reduction.
        super().__init__(name=name, reduction=reduction, dtype=dtype or "float32")
        self.ignore_label = int(ignore_label)
        self.class_weights = None if class_weights is None else [float(w) for w in class_weights]
        self.check_labels = bool(check_labels)

    def call(self, y_true, y_pred):
        logits = ops.cast(y_pred, "float32")
        num_classes = logits.shape[-1]
        labels = ops.cast(y_true, "int32")
        if len(labels.shape) == len(logits.shape):  # (N, H, W, 1) labels
            labels = ops.squeeze(labels, axis=-1)
        if self.class_weights is not None and len(self.class_weights) != num_classes:
            raise ValueError(
                f"SegmentationCrossEntropy: class_weights has {len(self.class_weights)} entries "
                f"but the logits have {num_classes} classes"
            )
        if self.check_labels:
            check_label_range(labels, num_classes, self.ignore_label)
        # Out-of-range labels are masked too, so that no gather fails before the check reports them.
        in_range = ops.logical_and(ops.greater_equal(labels, 0), ops.less(labels, num_classes))
        valid = ops.logical_and(ops.not_equal(labels, self.ignore_label), in_range)
        safe = ops.where(valid, labels, 0)
        log_probs = ops.log_softmax(logits, axis=-1)
        picked = ops.take_along_axis(log_probs, ops.expand_dims(safe, -1), axis=-1)[..., 0]
        weight = ops.cast(valid, "float32")
        if self.class_weights is not None:
            weight = weight * ops.take(ops.convert_to_tensor(self.class_weights, "float32"), safe)
        total = -ops.sum(picked * weight)
        if self.reduction == "sum":
            return total
        return ops.divide_no_nan(total, _global_sum(ops.stop_gradient(ops.sum(weight))))

    def get_config(self) -> dict:
        return {
            "name": self.name,
            "reduction": self.reduction,
            "ignore_label": self.ignore_label,
            "class_weights": self.class_weights,
            "check_labels": self.check_labels,
        }


def check_label_range(labels, num_classes: int, ignore_label: int = IGNORE_LABEL) -> None:
    """Raises when a label is neither in ``[0, num_classes)`` nor ``ignore_label``.

    Eager tensors raise ``ValueError`` at once. In a TensorFlow graph the check
    is a ``tf.debugging`` assertion (``InvalidArgumentError`` at run time); under
    ``jax.jit`` a host callback raises when the step runs (JAX reports it as a
    runtime error whose message contains ours).

    Example:
        >>> import numpy as np
        >>> check_label_range(np.array([0, 2, 255]), num_classes=3)
    """
    labels = ops.convert_to_tensor(labels, "int32")
    bad = ops.logical_and(
        ops.not_equal(labels, ignore_label),
        ops.logical_or(ops.less(labels, 0), ops.greater_equal(labels, num_classes)),
    )
    num_bad = ops.sum(ops.cast(bad, "int32"))
    worst = ops.max(ops.where(bad, labels, -1))
    message = (
        f"labels must be class indices in [0, {num_classes}) or the ignore label {ignore_label}; "
        f"found out-of-range labels (count, largest)"
    )
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        if tf.executing_eagerly():
            _raise_if_bad(int(num_bad), int(worst), message)
        else:
            tf.debugging.Assert(tf.equal(num_bad, 0), [message, "count:", num_bad, "largest:", worst])
    elif backend == "jax":
        import jax

        if isinstance(num_bad, jax.core.Tracer):
            jax.debug.callback(lambda n, w: _raise_if_bad(int(n), int(w), message), num_bad, worst)
        else:
            _raise_if_bad(int(num_bad), int(worst), message)
    else:
        _raise_if_bad(int(ops.convert_to_numpy(num_bad)), int(ops.convert_to_numpy(worst)), message)


def _raise_if_bad(num_bad: int, worst: int, message: str) -> None:
    if num_bad:
        raise ValueError(f"{message}: {num_bad} pixels, largest {worst}")


def _global_sum(value):
    """Sums ``value`` over the replicas of a ``tf.distribute`` step (identity elsewhere)."""
    if keras.backend.backend() != "tensorflow":
        return value
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_reduce(tf.distribute.ReduceOp.SUM, value)
