"""The FCN paper's four segmentation scores (reference score.py) and a Keras metric for them.

All scores come from one confusion matrix ``hist`` accumulated over a whole
dataset (rows: ground truth, columns: prediction), counting only pixels whose
label is a class index in ``[0, num_classes)``:

- pixel accuracy ``diag.sum() / hist.sum()``
- mean accuracy ``nanmean(diag / hist.sum(1))``
- mean IU ``nanmean(diag / (hist.sum(1) + hist.sum(0) - diag))``
- frequency-weighted IU ``sum(freq[freq > 0] * iu[freq > 0])``, ``freq = hist.sum(1) / hist.sum()``
"""

from __future__ import annotations

import numpy as np
import keras
from keras import ops

from fcn_keras.palette import IGNORE_LABEL

SCORE_NAMES = ("pixel_accuracy", "mean_accuracy", "mean_iou", "frequency_weighted_iou")

# SegmentationMetrics keeps each 64-bit count as two int32 words, count = high * 2**26 + low with
# 0 <= low < 2**26 on every replica: JAX has no int64 unless jax_enable_x64 is set, and the words
# stay exact when tf.distribute sums up to 31 replicas' low words on read.
_LOW_BITS = 26
_LOW_BASE = 1 << _LOW_BITS


def confusion_matrix(labels, predictions, num_classes: int, ignore_label: int = IGNORE_LABEL) -> np.ndarray:
    """The int64 confusion matrix of score.py's ``fast_hist`` (pixels labelled outside [0, n) skipped).

    Example:
        >>> confusion_matrix(np.array([0, 1, 255]), np.array([0, 0, 1]), 2).tolist()
        [[1, 0], [1, 0]]
    """
    labels = np.asarray(labels).astype(np.int64).ravel()
    predictions = np.asarray(predictions).astype(np.int64).ravel()
    if labels.shape != predictions.shape:
        raise ValueError(f"labels and predictions differ in size: {labels.size} vs {predictions.size}")
    keep = (labels >= 0) & (labels < num_classes) & (labels != ignore_label)
    if predictions[keep].size and (predictions[keep].min() < 0 or predictions[keep].max() >= num_classes):
        raise ValueError(f"predictions must be class indices in [0, {num_classes})")
    counts = np.bincount(num_classes * labels[keep] + predictions[keep], minlength=num_classes**2)
    return counts.reshape(num_classes, num_classes).astype(np.int64)


def scores_from_confusion(hist) -> dict:
    """The four scores (fractions) and ``per_class_iou`` (NaN for a class absent from both maps).

    Example:
        >>> s = scores_from_confusion(np.array([[3, 1], [0, 4]]))
        >>> s["pixel_accuracy"], s["per_class_iou"].round(2).tolist()
        (0.875, [0.75, 0.8])
    """
    hist = np.asarray(hist, dtype=np.float64)
    diag = np.diag(hist)
    total = hist.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        per_class_accuracy = diag / hist.sum(1)
        iou = diag / (hist.sum(1) + hist.sum(0) - diag)
        freq = hist.sum(1) / total
        pixel_accuracy = diag.sum() / total
    return {
        "pixel_accuracy": float(pixel_accuracy),
        "mean_accuracy": _nanmean(per_class_accuracy),
        "mean_iou": _nanmean(iou),
        "frequency_weighted_iou": float((freq[freq > 0] * iou[freq > 0]).sum()) if total else float("nan"),
        "per_class_iou": iou,
    }


def segmentation_scores(labels, predictions, num_classes: int, ignore_label: int = IGNORE_LABEL) -> dict:
    """The paper's four scores over label and prediction maps, exactly as score.py computes them.

    ``labels`` and ``predictions`` are integer arrays of equal size (any shape,
    or lists of per-image arrays of different sizes). Returns a dict with
    ``pixel_accuracy``, ``mean_accuracy``, ``mean_iou``,
    ``frequency_weighted_iou`` (fractions), ``per_class_iou`` (array, NaN for
    classes absent from both) and ``confusion_matrix`` (int64).

    Example:
        >>> s = segmentation_scores(np.array([[0, 1], [1, 255]]), np.array([[0, 1], [0, 0]]), 2)
        >>> round(s["mean_iou"], 4)
        0.5
    """
    if isinstance(labels, (list, tuple)):
        if len(labels) != len(predictions):
            raise ValueError(f"{len(labels)} label maps but {len(predictions)} predictions")
        hist = sum(
            (confusion_matrix(l, p, num_classes, ignore_label) for l, p in zip(labels, predictions)),
            np.zeros((num_classes, num_classes), np.int64),
        )
    else:
        hist = confusion_matrix(labels, predictions, num_classes, ignore_label)
    return {**scores_from_confusion(hist), "confusion_matrix": hist}


def _nanmean(values: np.ndarray) -> float:
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else float("nan")


@keras.saving.register_keras_serializable(package="fcn_keras")
class SegmentationMetrics(keras.metrics.Metric):
    """Pixel accuracy, mean accuracy, mean IU and frequency-weighted IU, accumulated over batches.

    ``update_state(y_true, y_pred)`` takes integer labels ``(N, H, W)`` (or
    ``(N, H, W, 1)``) and logits or probabilities ``(N, H, W, C)``; pixels whose
    label is ``ignore_label`` or outside ``[0, num_classes)`` are not counted.
    One confusion matrix of exact 64-bit counts is kept (as two int32 words per
    cell, so it is exact on JAX without ``jax_enable_x64`` too);
    :meth:`confusion_matrix` returns it as int64. ``result()`` returns a dict of
    the four scores, which Keras ``fit``/``evaluate`` log by name
    (``mean_iou``, ``val_mean_iou`` ...). Works under ``tf.distribute`` (replica
    counts are summed on read) and mixed precision.

    Example:
        >>> m = SegmentationMetrics(num_classes=2)
        >>> m.update_state(np.array([[[0, 1]]]), np.array([[[[2.0, 0.0], [0.0, 1.0]]]]))
        >>> float(m.result()["mean_iou"])
        1.0
    """

    def __init__(self, num_classes: int, ignore_label: int = IGNORE_LABEL, name: str = "segmentation_metrics",
                 dtype=None):
        super().__init__(name=name, dtype=dtype or "float32")
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"SegmentationMetrics: num_classes must be an integer >= 1, got {num_classes!r}")
        self.num_classes = num_classes
        self.ignore_label = int(ignore_label)
        shape = (num_classes, num_classes)
        self.low = self.add_variable(shape, "zeros", dtype="int32", aggregation="sum", name="confusion_low")
        self.high = self.add_variable(shape, "zeros", dtype="int32", aggregation="sum", name="confusion_high")

    def update_state(self, y_true, y_pred, sample_weight=None):
        if sample_weight is not None:
            raise ValueError("SegmentationMetrics counts pixels and takes no sample_weight; "
                             "mark pixels to skip with the ignore label instead")
        n = self.num_classes
        labels = ops.cast(y_true, "int32")
        if len(labels.shape) == len(y_pred.shape):
            labels = ops.squeeze(labels, axis=-1)
        predictions = ops.cast(ops.argmax(y_pred, axis=-1), "int32")
        valid = ops.logical_and(
            ops.logical_and(ops.greater_equal(labels, 0), ops.less(labels, n)),
            ops.not_equal(labels, self.ignore_label),
        )
        # Invalid pixels land in an extra segment n*n that is dropped.
        cell = ops.reshape(ops.where(valid, labels * n + predictions, n * n), (-1,))
        counts = ops.segment_sum(ops.ones_like(cell), cell, num_segments=n * n + 1)
        self.add_counts(ops.reshape(counts[: n * n], (n, n)))

    def add_counts(self, counts) -> None:
        """Adds an int32 ``(n, n)`` matrix of counts (each < 2**31 - 2**26) to the 64-bit matrix.

        Example:
            >>> m = SegmentationMetrics(num_classes=2)
            >>> m.add_counts(np.array([[3, 0], [1, 2]], "int32"))
            >>> m.confusion_matrix().tolist(), m.scores()["pixel_accuracy"]
            ([[3, 0], [1, 2]], 0.8333333333333334)
        """
        low = self.low + ops.cast(counts, "int32")
        carry = ops.floor_divide(low, _LOW_BASE)
        self.low.assign(low - carry * _LOW_BASE)
        self.high.assign(self.high + carry)

    def _float_matrix(self):
        # float32 keeps ~7 significant digits of each count: plenty for ratios.
        return ops.cast(self.high, "float32") * float(_LOW_BASE) + ops.cast(self.low, "float32")

    def result(self) -> dict:
        hist = self._float_matrix()
        diag = ops.diagonal(hist)
        rows, cols = ops.sum(hist, axis=1), ops.sum(hist, axis=0)
        total = ops.sum(hist)
        accuracy = _divide_nan(diag, rows)
        iou = _divide_nan(diag, rows + cols - diag)
        freq = _divide_nan(rows, total)
        fw_iou = ops.sum(ops.where(ops.greater(freq, 0), freq * ops.where(ops.isnan(iou), 0.0, iou), 0.0))
        return {
            "pixel_accuracy": _divide_nan(ops.sum(diag), total),
            "mean_accuracy": _nanmean_tensor(accuracy),
            "mean_iou": _nanmean_tensor(iou),
            "frequency_weighted_iou": ops.where(ops.greater(total, 0), fw_iou, float("nan")),
        }

    def confusion_matrix(self) -> np.ndarray:
        """The exact accumulated confusion matrix as a NumPy int64 array (summed over replicas).

        Example:
            >>> SegmentationMetrics(num_classes=2).confusion_matrix().dtype
            dtype('int64')
        """
        high = np.asarray(self.high.numpy(), dtype=np.int64)
        low = np.asarray(self.low.numpy(), dtype=np.int64)
        return high * _LOW_BASE + low

    def scores(self) -> dict:
        """The four scores, ``per_class_iou`` and ``confusion_matrix`` computed exactly in NumPy.

        Example:
            >>> bool(np.isnan(SegmentationMetrics(num_classes=2).scores()["mean_iou"]))  # nothing counted yet
            True
        """
        hist = self.confusion_matrix()
        return {**scores_from_confusion(hist), "confusion_matrix": hist}

    def reset_state(self):
        for variable in (self.low, self.high):
            variable.assign(ops.zeros(variable.shape, "int32"))

    def get_config(self) -> dict:
        return {"name": self.name, "num_classes": self.num_classes, "ignore_label": self.ignore_label}


def _divide_nan(numerator, denominator):
    return ops.where(ops.greater(denominator, 0), numerator / ops.maximum(denominator, 1e-30), float("nan"))


def _nanmean_tensor(values):
    present = ops.logical_not(ops.isnan(values))
    count = ops.sum(ops.cast(present, "float32"))
    return ops.where(count > 0, ops.sum(ops.where(present, values, 0.0)) / ops.maximum(count, 1.0), float("nan"))
