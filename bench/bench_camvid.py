"""CamVid benchmark: a trained model on the 233 test images, in Keras and in every export, against the published table.

Full mode needs a model trained on CamVid and the CamVid folder:

    fcn-keras train camvid_mobilenet_v2_scratch --data ../shared/data/camvid --out runs/camvid
    FCN_KERAS_BENCH_CAMVID_MODEL=runs/camvid/best.keras python -m bench --only camvid

It measures, at native 360x480:

- the paper's four metrics and the per-class IoU of the test split (Keras);
- ``serving_default`` of the exported SavedModel on the test JPEG bytes against
  Keras on the training pipeline's decode of the same files;
- TFLite float32, float16 and int8 (int8 calibrated on training images):
  pixel agreement with Keras and the mean IU of each on the test split;
- latency per image (batch 1) of Keras, ``serving_default`` and each TFLite
  file, interleaved so that a drifting load hits all alike.

``FCN_KERAS_CAMVID`` names the dataset folder (default ``../shared/data/camvid``).
With ``FCN_KERAS_BENCH_CAMVID_FIGURES=DIR`` it also draws, into DIR, the
training curves of the run (``train_log.csv`` beside the checkpoint) and the
test images of ``OVERLAY_IMAGES`` with their labels and predictions.
Quick mode: a random-weight model on 4 test images, a smoke test of the same
code. Both modes need the folder.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

CAMVID = Path(os.environ.get("FCN_KERAS_CAMVID", Path(__file__).resolve().parents[2] / "shared" / "data" / "camvid"))

PUBLISHED = {
    # Class IoU on this test split, as the issue quotes them; per-class figures: docs/camvid.md.
    "SegNet (VGG16 encoder, ImageNet)": 46.4,
    "ENet (from scratch)": 51.3,
}


def _test_set(quick: bool):
    from fcn_keras import data

    if CAMVID.is_dir():
        source = data.folder_source(CAMVID / "test.txt", metadata="camvid")
        calibration = data.folder_source(CAMVID / "train.txt", metadata="camvid")
        return source, calibration, f"CamVid test split ({CAMVID})"
    raise FileNotFoundError(f"CamVid folder {CAMVID} is missing: set FCN_KERAS_CAMVID")


def _examples(source, limit: int | None = None):
    images, labels, files = [], [], []
    for i, (image, label) in enumerate(source.dataset()):
        if limit is not None and i >= limit:
            break
        images.append(np.asarray(image))
        labels.append(np.asarray(label))
        files.append(source.images[i])
    return images, labels, files


OVERLAY_IMAGES = (0, 100, 200)
"""Positions in the test split drawn by :func:`_figures`: one of each of the split's three sequences."""


def _figures(model, images, labels, palette, checkpoint: str | None, out: Path) -> list[str]:
    from fcn_keras import viz
    from fcn_keras.export import keras_logits

    out.mkdir(parents=True, exist_ok=True)
    written = []
    log = Path(checkpoint).parent / "train_log.csv" if checkpoint else None
    if log is not None and log.is_file():
        written.append(str(viz.save_image(viz.training_curves_image(log), out / "camvid_training_curves.png")))
    picked = [i for i in OVERLAY_IMAGES if i < len(images)]
    predictions = [logits.argmax(-1) for logits in keras_logits(model, [images[i] for i in picked])]
    # The dataset's colours for its labels and the predictions alike.
    rows = [viz.side_by_side(images[i], labels[i], p, palette=palette, class_names=model.class_names)
            for i, p in zip(picked, predictions)]
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    written.append(str(viz.save_image(np.concatenate(rows), out / "camvid_test_overlays.png")))
    return written


def run(quick: bool = False) -> dict:
    import keras
    import tensorflow as tf

    import fcn_keras
    from bench.bench_export import interleaved_latencies
    from fcn_keras.evaluation import evaluate
    from fcn_keras.export import export_saved_model, export_tflite, keras_logits, tflite_parity
    from fcn_keras.export.graph import logits_function
    from fcn_keras.export.parity import compare
    from fcn_keras.export.tflite import TFLiteModel

    checkpoint = os.environ.get("FCN_KERAS_BENCH_CAMVID_MODEL")
    source, calibration_source, where = _test_set(quick)
    if checkpoint and not quick:
        model, weights = keras.models.load_model(checkpoint), f"trained: {checkpoint}"
    elif quick:
        keras.utils.set_random_seed(0)
        model = fcn_keras.fcn8s(class_names=source.class_names, backbone="mobilenet_v2")
        weights = "random (quick smoke test)"
    else:
        raise ValueError("set FCN_KERAS_BENCH_CAMVID_MODEL to a model trained on CamVid (see bench/bench_camvid.py)")
    limit = 4 if quick else None
    images, labels, files = _examples(source, limit)
    calibration = _examples(calibration_source, 4 if quick else 100)[0]

    start = time.perf_counter()
    scores = evaluate(model, list(zip(images, labels)), verbose=0)
    evaluate_seconds = time.perf_counter() - start

    work = Path(tempfile.mkdtemp(prefix="bench_camvid_"))
    try:
        reference = keras_logits(model, images)
        sm = export_saved_model(model, work / "sm", scores=True, verbose=False)
        serve = tf.saved_model.load(sm).signatures["serving_default"]
        jpeg_bytes = [Path(f).read_bytes() for f in files]
        # serving_default returns softmax scores: compared as log-probabilities, whose argmax is the mask.
        served = [np.log(serve(image_bytes=tf.constant([b]))["scores"].numpy()[0] + 1e-30) for b in jpeg_bytes]
        log_softmax = [r - r.max(-1, keepdims=True) for r in reference]
        log_softmax = [z - np.log(np.exp(z).sum(-1, keepdims=True)) for z in log_softmax]
        reports = {"savedmodel serving_default (JPEG bytes)": compare("savedmodel", log_softmax, served, labels)}
        logits_fn, _, _ = logits_function(model)
        compiled = tf.function(logits_fn, input_signature=[tf.TensorSpec([1, None, None, 3], tf.float32)])
        timed = images[:2] if quick else images[:20]
        runs = {
            "keras": (lambda i: compiled(i[None].astype(np.float32)), timed),
            "savedmodel serving_default (JPEG bytes)": (
                lambda b: serve(image_bytes=tf.constant([b])), jpeg_bytes[:len(timed)]),
        }
        sizes = {}
        for quantization in (None, "float16", "int8"):
            name = f"tflite {quantization or 'float32'}"
            path = export_tflite(model, work / f"{quantization or 'float32'}.tflite", quantization=quantization,
                                 representative_data=calibration if quantization == "int8" else None, verbose=False)
            sizes[name] = os.path.getsize(path)
            reports[name] = tflite_parity(path, model, images, labels)
            runs[name] = (TFLiteModel(path, num_threads=os.cpu_count()).logits, timed)
        latencies = interleaved_latencies(runs, 2 if quick else 3)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    figures_dir = os.environ.get("FCN_KERAS_BENCH_CAMVID_FIGURES")
    figures = _figures(model, images, labels, source.palette, checkpoint, Path(figures_dir)) if figures_dir else []

    table = [{"format": "keras", "ms/image": round(1000 * latencies["keras"], 1), "vs keras": 1.0,
              "pixel agreement %": 100.0, "test mean IU %": round(100 * scores["mean_iou"], 2), "mean IU change": 0.0}]
    for name, report in reports.items():
        table.append({
            "format": name,
            "ms/image": round(1000 * latencies[name], 1),
            "vs keras": round(latencies[name] / latencies["keras"], 3),
            "pixel agreement %": round(100 * report.pixel_agreement, 3),
            "test mean IU %": round(100 * report.mean_iu_export, 2),
            "mean IU change": round(100 * (report.mean_iu_export - report.mean_iu_keras), 2),
        })
    int8 = reports["tflite int8"]
    confusion = np.asarray(scores["confusion_matrix"], np.float64)
    return {
        "model": model.name,
        "weights": weights,
        "images": f"{len(images)} from {where}, native size",
        "scores": {k: v for k, v in scores.items() if k != "confusion_matrix"},
        # What ENet and SegNet tabulate per class: accuracy (recall), the diagonal over the label counts.
        "per_class_accuracy": dict(zip(model.class_names, (np.diag(confusion) / confusion.sum(1)).round(4).tolist())),
        "published_class_iou": PUBLISHED,
        "evaluate_seconds": round(evaluate_seconds, 1),
        "tflite_bytes": sizes,
        "int8_target_met": int8.pixel_agreement >= 0.98 and (int8.mean_iu_keras - int8.mean_iu_export) <= 0.01,
        "tflite_float32_not_slower_than_keras": latencies["tflite float32"] <= latencies["keras"],
        "reports": {k: r.as_dict() for k, r in reports.items()},
        "figures": figures,
        "table": table,
    }


if __name__ == "__main__":
    import json
    import sys

    json.dump(run(quick="--quick" in sys.argv), sys.stdout, indent=1, default=float)
