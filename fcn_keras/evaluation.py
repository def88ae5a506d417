"""Evaluates a segmentation model over a dataset: the paper's four metrics, per-class IoU, JSON and a PNG.

Counts are exact int64 (:func:`fcn_keras.metrics.confusion_matrix`) over the
whole split. Images are run at their native size; with ``batch_size > 1``,
images of the same size are batched together (no padding is ever added), so
the figures are identical to batch 1.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import keras

from fcn_keras.files import write_text
from fcn_keras.metrics import SCORE_NAMES, confusion_matrix, scores_from_confusion
from fcn_keras.palette import IGNORE_LABEL, VOC_CLASSES


def evaluate(
    model: keras.Model,
    dataset: Iterable,
    num_classes: int,
    *,
    class_names: Sequence[str] | None = None,
    batch_size: int = 1,
    ignore_label: int = IGNORE_LABEL,
    out_json: str | os.PathLike | None = None,
    confusion_png: str | os.PathLike | None = None,
    verbose: int = 1,
) -> dict:
    """Runs ``model`` over ``dataset`` and scores it like the reference's score.py.

    Args:
        model: maps images ``(N, H, W, 3)`` (preprocessed as it expects) to logits ``(N, H, W, C)``.
        dataset: ``(image, label)`` pairs — a ``tf.data.Dataset`` or any iterable,
            e.g. ``fcn_keras.data.make_pipeline(..., training=False)``. Elements
            with 3-D images are single examples (batched here by equal size);
            4-D elements are used as the batches they are, and their padding
            must carry ``ignore_label`` (make_pipeline's evaluation batches do).
        num_classes: number of classes.
        class_names: names for the per-class table (default: VOC's for 21 classes).
        batch_size: examples per forward pass for 3-D elements; results equal batch 1.
        ignore_label: label value that is not counted.
        out_json: write the scores here (atomically).
        confusion_png: save the row-normalised confusion matrix as a PNG here (atomically), drawn by
            :func:`fcn_keras.viz.confusion_matrix_image` (needs matplotlib: the ``viz`` extra).
        verbose: 1 shows a progress bar and prints the table; 0 is silent.

    Returns:
        ``{"pixel_accuracy", "mean_accuracy", "mean_iou", "frequency_weighted_iou",
        "per_class_iou": {name: float or None}, "confusion_matrix": int64 array, "num_images"}``.

    Example:
        >>> import numpy as np
        >>> inputs = keras.Input((None, None, 3))
        >>> model = keras.Model(inputs, keras.layers.Conv2D(2, 1)(inputs))
        >>> pairs = [(np.zeros((4, 5, 3), "float32"), np.zeros((4, 5), "int32"))]
        >>> evaluate(model, pairs, 2, verbose=0)["num_images"]
        1
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    names = _class_names(class_names, num_classes)
    hist = np.zeros((num_classes, num_classes), np.int64)
    images_seen = 0
    progbar = keras.utils.Progbar(_length(dataset), unit_name="element") if verbose else None
    buckets: dict[tuple, list] = defaultdict(list)

    def run(images: np.ndarray, labels: np.ndarray) -> None:
        nonlocal hist, images_seen
        logits = keras.ops.convert_to_numpy(model.predict_on_batch(images))
        if logits.shape[:3] != labels.shape[:3]:
            raise ValueError(f"model output {logits.shape} does not match labels {labels.shape}")
        if logits.shape[-1] != num_classes:
            raise ValueError(f"model gives {logits.shape[-1]} classes, num_classes={num_classes}")
        hist += confusion_matrix(labels, logits.argmax(-1), num_classes, ignore_label)
        images_seen += len(images)

    for element in dataset:
        if progbar is not None:
            progbar.add(1)
        image, label = _pair(element)
        if image.ndim == 4:
            run(image, label.reshape(label.shape[:3]))
            continue
        if image.ndim != 3:
            raise ValueError(f"images must be (H, W, 3) or (N, H, W, 3), got shape {image.shape}")
        bucket = buckets[image.shape]
        bucket.append((image, label.reshape(label.shape[:2])))
        if len(bucket) == batch_size:
            run(np.stack([b[0] for b in bucket]), np.stack([b[1] for b in bucket]))
            bucket.clear()
    for bucket in buckets.values():
        if bucket:
            run(np.stack([b[0] for b in bucket]), np.stack([b[1] for b in bucket]))

    scores = scores_from_confusion(hist)
    result = {name: scores[name] for name in SCORE_NAMES}
    result["per_class_iou"] = {n: (None if np.isnan(v) else float(v)) for n, v in zip(names, scores["per_class_iou"])}
    result["confusion_matrix"] = hist
    result["num_images"] = images_seen
    if verbose:
        print(format_scores(result))
    if out_json is not None:
        _write_json(Path(out_json), result, names)
    if confusion_png is not None:
        from fcn_keras import viz  # charts are optional (matplotlib): imported only when asked for

        viz.save_image(viz.confusion_matrix_image(hist, names), confusion_png)
    return result


def format_scores(result: dict) -> str:
    """The four metrics (percent) and the per-class IoU table, as printed by :func:`evaluate`."""
    lines = [f"images: {result['num_images']}"]
    for name in SCORE_NAMES:
        lines.append(f"{name:>24}: {100 * result[name]:6.2f}")
    lines.append(f"{'class':>24}  IoU")
    for name, value in result["per_class_iou"].items():
        lines.append(f"{name:>24}: {'   n/a' if value is None else f'{100 * value:6.2f}'}")
    return "\n".join(lines)


def _write_json(path: Path, result: dict, names: Sequence[str]) -> None:
    payload = {**{k: v for k, v in result.items() if k != "confusion_matrix"},
               "class_names": list(names), "confusion_matrix": result["confusion_matrix"].tolist()}
    write_text(path, json.dumps(payload, indent=1, allow_nan=True))


def _class_names(class_names, num_classes: int) -> list[str]:
    if class_names is None:
        return list(VOC_CLASSES) if num_classes == len(VOC_CLASSES) else [f"class_{i}" for i in range(num_classes)]
    if len(class_names) != num_classes:
        raise ValueError(f"class_names has {len(class_names)} names for num_classes={num_classes}")
    return [str(c) for c in class_names]


def _pair(element) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(element, dict):
        image, label = element["image"], element["label"]
    else:
        image, label = element[0], element[1]
    return np.asarray(image, np.float32), np.asarray(label)


def _length(dataset) -> int | None:
    try:
        n = len(dataset)
    except TypeError:
        return None
    return n if n >= 0 else None
