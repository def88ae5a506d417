"""Evaluates a segmentation model over a dataset: the paper's four metrics, per-class IoU, JSON and a PNG.

Counts are exact int64 (:func:`fcn_keras.metrics.confusion_matrix`) over the
whole split. Images are run at their native size; with ``batch_size > 1``,
images of the same size are batched together (no padding is ever added), so
the figures are identical to batch 1. With ``tile``, each image is segmented
window by window (:func:`fcn_keras.tiling.tiled`) and the same counts are taken
from those masks.
"""

from __future__ import annotations

import json
import os
import sys
from collections import defaultdict
from pathlib import Path
from typing import Iterable

import numpy as np
import keras

from fcn_keras.files import write_text
from fcn_keras.metrics import SCORE_NAMES, confusion_matrix, scores_from_confusion
from fcn_keras.models import SegmentationModel, require_segmentation_model
from fcn_keras.preprocessing import preprocess


def evaluate(
    model: SegmentationModel,
    dataset: Iterable,
    *,
    batch_size: int = 1,
    tile: tuple[int, int] | None = None,
    overlap: int | None = None,
    out_json: str | os.PathLike | None = None,
    confusion_png: str | os.PathLike | None = None,
    crf=None,
    verbose: int = 1,
) -> dict:
    """Runs ``model`` over ``dataset`` and scores it like the reference's score.py.

    What is scored comes from the model: its classes (``model.class_names``),
    the label of void pixels (``model.ignore_label``, not counted) and the
    preprocessing of its input (``model.input_preprocessing``, applied here).

    Args:
        model: a :class:`~fcn_keras.models.SegmentationModel` mapping images
            ``(N, H, W, 3)`` to logits ``(N, H, W, C)``.
        dataset: ``(image, label)`` pairs of RGB images with values 0-255 — a
            :class:`fcn_keras.data.FileSource` (its name is then used in messages), a
            ``tf.data.Dataset`` or any iterable, e.g. ``fcn_keras.data.make_pipeline(...,
            training=False, preprocessing=None)`` (images outside 0-255, i.e. already
            preprocessed, are refused). Elements with 3-D images are single examples
            (batched here by equal size); 4-D elements are used as the batches they
            are, and their padding must carry the ignore label (make_pipeline's
            evaluation batches do). A dataset with no elements, or with no pixel
            labelled with one of the model's classes, raises ``ValueError``: its scores
            would be NaN.
        batch_size: examples per forward pass for 3-D elements; results equal batch 1.
        tile: ``(height, width)``: segment each image in windows of at most this size,
            overlapping by ``overlap`` pixels (default: the exact overlap, for which the
            masks are the whole image's), as :func:`fcn_keras.tiling.tiled` does; one
            image at a time (``batch_size`` must be 1).
        overlap: with ``tile``, the pixels neighbouring windows share.
        out_json: write the scores here (atomically, plain modes).
        confusion_png: save the row-normalised confusion matrix as a PNG here (atomically), drawn by
            :func:`fcn_keras.viz.confusion_matrix_image` (needs matplotlib: the ``viz`` extra).
        crf: score the dense CRF's labels instead of the argmax: ``True`` (DeepLab-LargeFOV's
            published parameters), a :class:`fcn_keras.crf.DenseCRF`, or a dict / ``"key=value,..."``
            of parameters to override (:func:`fcn_keras.crf.resolve_crf`); needs the ``crf`` extra.
            Not with ``tile`` (the CRF is fully connected over the whole image). 4-D elements are
            refined as the padded images they are.
        verbose: 1 shows a progress bar and prints the table; 0 is silent.

    Returns:
        ``{"pixel_accuracy", "mean_accuracy", "mean_iou", "frequency_weighted_iou",
        "per_class_iou": {name: float or None}, "confusion_matrix": int64 array, "num_images"}``.

    Example:
        >>> x = keras.Input((None, None, 3))
        >>> model = SegmentationModel(x, keras.layers.Conv2D(2, 1)(x), architecture="linear", backbone="none",
        ...                           class_names=["sky", "sea"], preprocessing="tf")
        >>> pairs = [(np.zeros((4, 5, 3), "uint8"), np.zeros((4, 5), "int32"))]
        >>> sorted(evaluate(model, pairs, verbose=0)["per_class_iou"])
        ['sea', 'sky']
        >>> evaluate(model, [], verbose=0)
        Traceback (most recent call last):
        ...
        ValueError: evaluate: dataset is empty (it gave no (image, label) pairs), so there is nothing to score
    """
    model = require_segmentation_model(model)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    num_classes, names, ignore_label = model.num_classes, list(model.class_names), model.ignore_label
    mode = model.input_preprocessing
    crf = _resolve_crf(crf)
    masks_of = _masks_function(model, batch_size, tile, overlap, crf)
    dataset, described = _elements(dataset)
    hist = np.zeros((num_classes, num_classes), np.int64)
    images_seen = 0
    progbar = keras.utils.Progbar(_length(dataset), unit_name="element") if verbose else None
    buckets: dict[tuple, list] = defaultdict(list)

    def run(images: np.ndarray, labels: np.ndarray) -> None:
        nonlocal hist, images_seen
        if images.size and (images.min() < 0 or images.max() > 255):
            raise ValueError(
                f"evaluate takes RGB images with values 0-255 (model {model.name!r} applies "
                f"{'its own' if mode is None else repr(mode)} preprocessing); got values "
                f"{float(images.min()):.4g} to {float(images.max()):.4g}: build the pipeline with preprocessing=None")
        masks = masks_of(images)
        if masks.shape[:3] != labels.shape[:3]:
            raise ValueError(f"model output {masks.shape} does not match labels {labels.shape}")
        hist += confusion_matrix(labels, masks, num_classes, ignore_label)
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

    # Refused rather than scored: every figure of an empty confusion matrix is NaN, which
    # reads like a broken model rather than a wrong or empty split.
    if images_seen == 0:
        raise ValueError(f"evaluate: {described} is empty (it gave no (image, label) pairs), "
                         "so there is nothing to score")
    if hist.sum() == 0:
        raise ValueError(f"evaluate: {described} has {images_seen} images but no pixel labelled with one of "
                         f"model {model.name!r}'s {num_classes} classes (all are the ignore label "
                         f"{ignore_label} or outside 0..{num_classes - 1}), so there is nothing to score")
    scores = scores_from_confusion(hist)
    result = {name: scores[name] for name in SCORE_NAMES}
    result["per_class_iou"] = {n: (None if np.isnan(v) else float(v)) for n, v in zip(names, scores["per_class_iou"])}
    result["confusion_matrix"] = hist
    result["num_images"] = images_seen
    if crf is not None:
        result["crf"] = crf.params()
    if verbose:
        print(format_scores(result))
    if out_json is not None:
        _write_json(Path(out_json), result, model)
    if confusion_png is not None:
        from fcn_keras import viz  # charts are optional (matplotlib): imported only when asked for

        viz.save_image(viz.confusion_matrix_image(hist, model=model), confusion_png)
    return result


def _resolve_crf(crf):
    """``evaluate``'s ``crf`` as a DenseCRF or None; pydensecrf2's absence is reported before any image runs."""
    if crf is None or crf is False:
        return None
    from fcn_keras.crf import require_pydensecrf, resolve_crf

    crf = resolve_crf(crf)
    require_pydensecrf()
    return crf


def _masks_function(model: SegmentationModel, batch_size: int, tile, overlap, crf=None):
    """``images (N, H, W, 3) RGB 0-255 -> masks (N, H, W)``: one forward pass (then the CRF), or each image tiled."""
    if crf is not None and tile is not None:
        raise ValueError("crf with tile: the dense CRF connects every pixel of the whole image, which tiled "
                         "evaluation never holds; evaluate without tile")
    if tile is None:
        if overlap is not None:
            raise ValueError("overlap applies to tiled evaluation: pass tile=(height, width) with it")
        mode = model.input_preprocessing

        def whole(images: np.ndarray) -> np.ndarray:
            x = images if mode is None else preprocess(images, mode)
            logits = keras.ops.convert_to_numpy(model.predict_on_batch(x))
            if crf is None:
                return logits.argmax(-1)
            from fcn_keras.crf import to_uint8_image

            return np.stack([crf.labels(to_uint8_image(image), scores) for image, scores in zip(images, logits)])

        return whole
    if batch_size != 1:
        raise ValueError(f"batch_size={batch_size} with tile: tiled evaluation runs one image at a time, window by "
                         f"window; pass batch_size=1")
    from fcn_keras.segmenter import keras_segmenter
    from fcn_keras.tiling import tiled

    tiles = tiled(keras_segmenter(model), tile, overlap)
    return lambda images: np.stack([tiles.segment(image) for image in images])


def format_scores(result: dict) -> str:
    """The four metrics (percent) and the per-class IoU table, as printed by :func:`evaluate`.

    Example:
        >>> print(format_scores({"num_images": 1, "pixel_accuracy": 1.0, "mean_accuracy": 1.0, "mean_iou": 0.5,
        ...                      "frequency_weighted_iou": 0.5, "per_class_iou": {"sky": 1.0, "sea": None}}))
        ... # doctest: +NORMALIZE_WHITESPACE
        images: 1
        pixel_accuracy: 100.00
        mean_accuracy: 100.00
        mean_iou: 50.00
        frequency_weighted_iou: 50.00
        class IoU
        sky: 100.00
        sea: n/a
    """
    lines = [f"images: {result['num_images']}"]
    if result.get("crf"):
        lines.append("dense CRF: " + ", ".join(f"{k}={v:g}" for k, v in result["crf"].items()))
    for name in SCORE_NAMES:
        lines.append(f"{name:>24}: {100 * result[name]:6.2f}")
    lines.append(f"{'class':>24}  IoU")
    for name, value in result["per_class_iou"].items():
        lines.append(f"{name:>24}: {'   n/a' if value is None else f'{100 * value:6.2f}'}")
    return "\n".join(lines)


def _write_json(path: Path, result: dict, model: SegmentationModel) -> None:
    payload = {**{k: v for k, v in result.items() if k != "confusion_matrix"},
               "class_names": list(model.class_names), "ignore_label": model.ignore_label, "model_name": model.name,
               "card": model.card, "confusion_matrix": result["confusion_matrix"].tolist()}
    write_text(path, json.dumps(payload, indent=1, allow_nan=True))


def _elements(dataset) -> tuple[Iterable, str]:
    """What to iterate, and how messages name the dataset: a FileSource by its name."""
    # Checked without importing fcn_keras.data (and TensorFlow): a FileSource exists only if it was imported.
    source = sys.modules.get("fcn_keras.data.source")
    if source is not None and isinstance(dataset, source.FileSource):
        return dataset.dataset(), f"dataset {dataset.name!r}"
    return dataset, "dataset"


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
