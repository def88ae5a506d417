"""Export benchmark: Keras vs the SavedModel signatures vs TFLite float32/float16/int8, on the same images.

Full mode: FCN-8s over MobileNetV2 (21 classes) on the 18 real VOC images of
``../shared/data/voc-mini`` at their own sizes (synthetic images when absent).
No trained weights exist offline: the backbone and the score layers hold
random weights (score layers random instead of zero so that masks vary), so
pixel agreement measures the conversion, not a trained model's robustness.
int8 is calibrated on the VOC train split. ``FCN_KERAS_BENCH_EXPORT_MODEL=run.keras``
benchmarks a trained checkpoint instead (e.g. ``fcn-keras demo``'s model). Quick mode: a tiny per-pixel model
made of fcn_keras layers on two small images — a smoke test that runs in seconds.

Latencies are per image (batch 1), medians over repeats in which the formats take
turns (so a shared machine's drifting load hits all alike); TFLite uses every core.
Targets (issue 5): SavedModel overhead <= 5 % over Keras; int8 >= 2x faster than
TFLite float32 at >= 98 % pixel agreement.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import keras
import numpy as np

from fcn_keras.models.layers import BilinearUpsamplingInitializer, CropToReference, PadToMultiple, Preprocessing

VOC_MINI = Path(os.environ.get("FCN_KERAS_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")) / "voc-mini"


def tiny_fcn(num_classes: int = 3, dtype: str | None = None, name: str = "tiny_fcn") -> keras.Model:
    """A small per-pixel model of fcn_keras layers: preprocessing, pad, stride-4 convs, bilinear upsampling, crop."""
    keras.utils.set_random_seed(1)
    inputs = keras.Input((None, None, 3), name="image")
    x = Preprocessing("tf", name="preprocessing")(inputs)
    x = PadToMultiple(4, name="pad")(x)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", dtype=dtype)(x)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu", dtype=dtype)(x)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu", dtype=dtype)(x)
    x = keras.layers.Conv2D(num_classes, 1, name="score_fr", dtype=dtype)(x)
    x = keras.layers.Conv2DTranspose(num_classes, 8, strides=4, padding="same", use_bias=False, dtype=dtype,
                                     kernel_initializer=BilinearUpsamplingInitializer(), name="upscore")(x)
    outputs = CropToReference(0, dtype="float32", name="score")([x, inputs])
    return keras.Model(inputs, outputs, name=name)


def randomize_scores(model: keras.Model, seed: int = 0) -> keras.Model:
    """Gives the (zero-initialised) score layers N(0, 1) kernels, so masks are not all class 0."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if layer.name.startswith("score_") and layer.weights:  # not the score_pool*c crops
            kernel, bias = layer.get_weights()
            layer.set_weights([rng.normal(0.0, 1.0, kernel.shape).astype("float32"), bias])
    return model


def interleaved_latencies(runs: dict, repeats: int) -> dict[str, float]:
    """Median seconds per item of each run; the runs take turns within every repeat.

    Taking turns spreads the load of a shared machine over all of them alike, so
    their ratios hold even when absolute times drift.
    """
    for fn, items in runs.values():  # warm-up: one trace / allocation per size
        for item in items:
            fn(item)
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, (fn, items) in runs.items():
            start = time.perf_counter()
            for item in items:
                fn(item)
            times[name].append((time.perf_counter() - start) / len(items))
    return {name: float(np.median(t)) for name, t in times.items()}


def tiny_segmentation_model(num_classes: int = 21):
    """:func:`tiny_fcn` as a :class:`~fcn_keras.models.SegmentationModel` (what the exports take): RGB 0-255 in."""
    from fcn_keras.models import SegmentationModel

    plain = tiny_fcn(num_classes)
    return SegmentationModel(plain.input, plain.output, architecture="tiny_fcn", backbone="tiny",
                             preprocessing="tf", include_preprocessing=True, name=plain.name)


def _data(quick: bool):
    from fcn_keras.data import read_image as load_image

    if quick or not VOC_MINI.is_dir():
        rng = np.random.default_rng(0)
        sizes = [(64, 80), (72, 56)] if quick else [(375, 500), (500, 375), (333, 500)]
        images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes]
        return images, images, None, "synthetic"
    ids = lambda split: (VOC_MINI / "ImageSets" / "Segmentation" / f"{split}.txt").read_text().split()
    images = [load_image(VOC_MINI / "JPEGImages" / f"{i}.jpg") for i in ids("trainval")]
    from PIL import Image

    labels = [np.asarray(Image.open(VOC_MINI / "SegmentationClass" / f"{i}.png")) for i in ids("trainval")]
    calibration = [load_image(VOC_MINI / "JPEGImages" / f"{i}.jpg") for i in ids("train")]
    return images, calibration, labels, "voc-mini (18 real VOC images, own sizes)"


def run(quick: bool = False) -> dict:
    import tensorflow as tf

    import fcn_keras
    from fcn_keras.export import export_saved_model, export_tflite, keras_logits, tflite_parity
    from fcn_keras.export.graph import logits_function
    from fcn_keras.export.parity import compare
    from fcn_keras.export.tflite import TFLiteModel

    repeats = 2 if quick else 3
    images, calibration, labels, source = _data(quick)
    checkpoint = os.environ.get("FCN_KERAS_BENCH_EXPORT_MODEL")
    if checkpoint and not quick:
        from fcn_keras.export.command import load_model

        model, weights = load_model(checkpoint), f"trained: {checkpoint}"
    elif quick:
        model, weights = tiny_segmentation_model(21), "random (tiny model)"
    else:
        keras.utils.set_random_seed(0)
        model = fcn_keras.fcn8s(num_classes=21, backbone="mobilenet_v2")
        randomize_scores(model)
        weights = "random (backbone Keras default init, score layers N(0, 1)); no trained weights offline"

    if labels is not None and model.output_shape[-1] != 21:
        labels = None  # VOC labels mean nothing to a model of other classes

    work = Path(tempfile.mkdtemp(prefix="bench_export_"))
    try:
        logits_fn, _, _ = logits_function(model)
        # What in-process serving would run: the same function compiled once for any size.
        compiled = tf.function(logits_fn, input_signature=[tf.TensorSpec([1, None, None, 3], tf.float32)])
        start = time.perf_counter()
        path = export_saved_model(model, work / "sm", verbose=False)
        export_seconds = {"savedmodel": time.perf_counter() - start}
        loaded = tf.saved_model.load(path)
        predict = loaded.signatures["predict_images"]
        serve = loaded.signatures["serving_default"]
        encoded = [tf.io.encode_png(image).numpy() for image in images]
        runs = {  # name -> (function of one item, items)
            "keras eager": (lambda i: logits_fn(i[None].astype(np.float32)), images),
            "keras": (lambda i: compiled(i[None].astype(np.float32)), images),
            "savedmodel predict_images": (lambda i: predict(images=tf.constant(i[None])), images),
            "savedmodel serving_default (PNG decode incl.)": (
                lambda data: serve(image_bytes=tf.constant([data])), encoded),
        }
        reference = keras_logits(model, images)
        reports = {"savedmodel predict_images": compare(
            "savedmodel", reference, [predict(images=tf.constant(i[None]))["logits"].numpy()[0] for i in images],
            labels)}
        for quantization in (None, "float16", "int8"):
            name = f"tflite {quantization or 'float32'}"
            start = time.perf_counter()
            tfl = export_tflite(model, work / f"{name.replace(' ', '_')}.tflite", quantization=quantization,
                                representative_data=calibration if quantization == "int8" else None, verbose=False)
            export_seconds[name] = time.perf_counter() - start
            runs[name] = (TFLiteModel(tfl, num_threads=os.cpu_count()).logits, images)
            reports[name] = tflite_parity(tfl, model, images, labels)
        timings = interleaved_latencies(runs, repeats)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    table = []
    for name, seconds in timings.items():
        report = reports.get(name)
        table.append({
            "format": name,
            "ms/image": round(1000 * seconds, 2),
            "vs keras": round(seconds / timings["keras"], 3),
            "max rel. logits err": None if report is None else float(f"{report.max_relative_error:.3g}"),
            "pixel agreement %": None if report is None else round(100 * report.pixel_agreement, 3),
            "mean IU vs keras": None if report is None else round(report.mean_iu_vs_keras, 4),
        })
    savedmodel_overhead = timings["savedmodel predict_images"] / timings["keras"] - 1
    int8_speedup = timings["tflite float32"] / timings["tflite int8"]
    return {
        "model": model.name,
        "weights": weights,
        "images": f"{len(images)} from {source}",
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg()[0],
        "savedmodel_overhead": round(savedmodel_overhead, 4),
        "savedmodel_overhead_target_met": savedmodel_overhead <= 0.05,
        "int8_speedup_vs_tflite_float32": round(int8_speedup, 3),
        "int8_pixel_agreement": round(reports["tflite int8"].pixel_agreement, 5),
        "int8_target_met": int8_speedup >= 2 and reports["tflite int8"].pixel_agreement >= 0.98,
        "export_seconds": {k: round(v, 1) for k, v in export_seconds.items()},
        "reports": {k: r.as_dict() for k, r in reports.items()},
        "table": table,
    }


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
