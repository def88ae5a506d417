"""What a smaller overlap costs: tiled against whole-image output of a trained model, overlap by overlap.

A trained model is needed for the masks to mean anything: the demo's FCN-8s over
``tiny_vgg`` (``fcn_keras.demo``, its default 300 steps; or the ``.keras`` file
in ``FCN_KERAS_BENCH_SEAMS_MODEL``), on held-out synthetic images of the demo's
kind but 480x640, 20 of them. For each overlap at a 320x320 tile (the exact one
is 256: twice the receptive field's radius of 121, on the 32-pixel grid) it
reports: the largest logit difference from the whole image's (relative to the
largest logit), the share of mask pixels that differ, the mean IU of the tiled
masks against the labels next to the whole image's, and the pixels the network
runs per image pixel. For comparison, the same windows blended the common other
way, every window's logits averaged uniformly over the whole overlap, are scored
as well.
"""

from __future__ import annotations

import os
import tempfile
import time

import numpy as np

OVERLAPS = (0, 32, 64, 128, 192, 256)
TILE = (320, 320)
IMAGES, SIZE = 20, (480, 640)


def run(quick: bool = False) -> dict:
    """Trains (or loads) the model, then scores every overlap; returns figures and a table.

    Example:
        >>> run(quick=True)["table"][0]["overlap"]  # doctest: +SKIP
        0
    """
    import keras

    from fcn_keras import data
    from fcn_keras.demo import run_demo
    from fcn_keras.metrics import confusion_matrix, scores_from_confusion
    from fcn_keras.segmenter import keras_segmenter
    from fcn_keras.tiling import exact_overlap, tiled

    work = tempfile.mkdtemp(prefix="fcn_seams_")
    path = os.environ.get("FCN_KERAS_BENCH_SEAMS_MODEL")
    trained_in = None
    if path is None:
        start = time.perf_counter()
        settings = dict(epochs=1, steps_per_epoch=2, num_images=8) if quick else {}
        print("training the demo's model (fcn_keras.demo, its defaults)", flush=True)
        run_demo(os.path.join(work, "demo"), verbose=0, **settings)
        path, trained_in = os.path.join(work, "demo", "model.keras"), time.perf_counter() - start
    model = keras.models.load_model(path)
    whole = keras_segmenter(model)
    count, size = (1, (340, 420)) if quick else (IMAGES, SIZE)
    root = data.write_synthetic_voc(os.path.join(work, "large"), num_images=count, seed=123, image_size=size,
                                    num_classes=model.num_classes, val_fraction=1.0)
    source = data.voc_source(root, "val", num_classes=model.num_classes)
    pairs = [source.read(i) for i in range(len(source))]
    references = [whole.logits(image) for image, _ in pairs]
    n = model.num_classes

    def mean_iou(masks) -> float:
        hist = sum(confusion_matrix(label, mask, n, model.ignore_label) for (_, label), mask in zip(pairs, masks))
        return float(scores_from_confusion(hist)["mean_iou"])

    whole_iou = mean_iou([r.argmax(-1) for r in references])
    exact = exact_overlap(whole, TILE)
    rows = []
    for overlap in (OVERLAPS[0], OVERLAPS[-1]) if quick else OVERLAPS:
        tiles = tiled(whole, TILE, overlap)
        for blend in ("split (fcn_keras)", "uniform mean"):
            outputs = [tiles.logits(image) if blend.startswith("split") else _uniform_mean(tiles, image)
                       for image, _ in pairs]
            differs = np.mean([(o.argmax(-1) != r.argmax(-1)).mean() for o, r in zip(outputs, references)])
            error = max(np.abs(o - r).max() / np.abs(r).max() for o, r in zip(outputs, references))
            plan = tiles.windows(*size)
            print(f"overlap {overlap}, {blend}: {100 * differs:.3f} % of mask pixels differ", flush=True)
            rows.append({"overlap": overlap, "blend": blend, "exact": overlap >= exact,
                         "max_logit_error_rel": float(error), "mask_pixels_differing": float(differs),
                         "mean_iou": mean_iou([o.argmax(-1) for o in outputs]), "whole_mean_iou": whole_iou,
                         "pixels_run_per_pixel": sum((r.stop - r.start) * (c.stop - c.start) for r, c in plan)
                         / (size[0] * size[1])})
    return {"model": path if trained_in is None else "fcn_keras.demo default (trained here)",
            "training_s": trained_in, "tile": TILE, "exact_overlap": exact,
            "radius": whole.receptive_field().radius, "images": f"{count} x {size[0]}x{size[1]}", "rows": rows,
            "table": [{"overlap": r["overlap"], "blend": r["blend"], "exact": r["exact"],
                       "max logit error": f"{r['max_logit_error_rel']:.1e}",
                       "mask pixels differing": f"{100 * r['mask_pixels_differing']:.3f} %",
                       "mean IU (whole image)": f"{100 * r['mean_iou']:.2f} ({100 * whole_iou:.2f})",
                       "pixels run / pixel": round(r["pixels_run_per_pixel"], 2)} for r in rows]}


def _uniform_mean(tiles, image: np.ndarray) -> np.ndarray:
    """Every window's logits over its whole extent, averaged where windows overlap (not what fcn_keras does)."""
    total, count = None, np.zeros(image.shape[:2] + (1,), np.float32)
    for rows, cols in tiles.windows(*image.shape[:2]):
        scores = tiles.base.logits(image[rows.start:rows.stop, cols.start:cols.stop])
        if total is None:
            total = np.zeros(image.shape[:2] + scores.shape[-1:], np.float32)
        total[rows.start:rows.stop, cols.start:cols.stop] += scores
        count[rows.start:rows.stop, cols.start:cols.stop] += 1
    return total / count
