"""TFLite against Keras for the flagship FCN-8s (VGG16): float32 and int8, at 500x500, batch 1.

The files are written the way users write them, by :func:`fcn_keras.export.export_tflite` (float32, and
int8 calibrated on ``CALIBRATION`` images: the real VOC images of ``../shared/data/voc-mini`` resized
to the input size when present, seeded noise otherwise), each conversion in a subprocess of its own,
since converting 134M parameters holds several copies of them. One timing process then loads the
Keras model (the same seeded weights) and both files under LiteRT (XNNPACK, every core) and lets them
take turns (:func:`bench.bench_export.interleaved_latencies`), so their ratios hold on a loaded machine.
Pixel agreement with Keras is reported on the timing image; with random weights it measures the
conversion, not a trained model (the trained CamVid model's figures are in bench_camvid).

``FCN_KERAS_BENCH_TFLITE_SIZE`` changes the input size; quick mode is a 64x64 smoke test of the path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from bench.bench_export import VOC_MINI

SIZE = int(os.environ.get("FCN_KERAS_BENCH_TFLITE_SIZE", 500))
CALIBRATION = 8


def _model(num_classes: int = 21):
    import keras

    import fcn_keras
    from bench.bench_export import randomize_scores

    keras.utils.set_random_seed(0)
    # Preprocessing inside, as the TFLite file has it: both take the same RGB 0-255 image.
    return randomize_scores(fcn_keras.fcn8s(num_classes=num_classes, include_preprocessing=True), seed=0)


def _calibration(size: int, count: int) -> list[np.ndarray]:
    from PIL import Image

    files = sorted((VOC_MINI / "JPEGImages").glob("*.jpg"))[:count] if VOC_MINI.is_dir() else []
    if files:
        return [np.asarray(Image.open(f).convert("RGB").resize((size, size)), np.float32) for f in files]
    rng = np.random.default_rng(2)
    return [rng.uniform(0, 255, (size, size, 3)).astype(np.float32) for _ in range(count)]


def _convert(path: str, quantization: str | None, size: int, count: int) -> dict:
    import resource

    from fcn_keras.export import export_tflite

    model = _model()
    data = _calibration(size, count) if quantization == "int8" else None
    export_tflite(model, path, quantization=quantization, representative_data=data, verbose=False)
    return {"bytes": os.path.getsize(path), "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}


def _time(files: dict, size: int, repeats: int) -> dict:
    from bench.bench_export import interleaved_latencies
    from fcn_keras.export.tflite import TFLiteModel

    threads = len(os.sched_getaffinity(0))
    model = _model()
    image = _calibration(size, 1)[0]
    runners = {"keras_predict": lambda x: model.predict(x[None], verbose=0)[0]}
    for name, path in files.items():
        runners[f"tflite_{name}"] = TFLiteModel(path, num_threads=threads).logits
    outputs = {name: np.asarray(fn(image)) for name, fn in runners.items()}
    latencies = interleaved_latencies({name: (fn, [image]) for name, fn in runners.items()}, repeats)
    reference = outputs["keras_predict"].argmax(-1)
    agreement = {name: float(np.mean(out.argmax(-1) == reference)) for name, out in outputs.items()}
    return {"latency_s": latencies, "pixel_agreement": agreement, "threads": threads}


def _spawn(*args) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": "tensorflow"}
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    result = subprocess.run([sys.executable, "-m", "bench.bench_tflite", *map(str, args)], env=env,
                            capture_output=True, text=True, timeout=3600)
    if result.returncode != 0:
        raise RuntimeError(f"bench_tflite worker {args} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def run(quick: bool = False) -> dict:
    """Converts FCN-8s to float32 and int8 TFLite files and times them against Keras ``predict``."""
    size, repeats, count = (64, 1, 2) if quick else (SIZE, 5, CALIBRATION)
    with tempfile.TemporaryDirectory() as work:
        files = {q or "float32": os.path.join(work, f"fcn8s_{q or 'float32'}.tflite") for q in (None, "int8")}
        conversions = {name: _spawn("convert", path, name, size, count) for name, path in files.items()}
        timed = _spawn("time", json.dumps(files), size, repeats)
    latency = timed["latency_s"]
    rows = [{"variant": name, "input": f"1x{size}x{size}", "median_s": round(seconds, 3),
             "x keras predict": round(seconds / latency["keras_predict"], 2),
             "x tflite float32": round(seconds / latency["tflite_float32"], 2),
             "pixel agreement with keras": round(timed["pixel_agreement"][name], 5),
             "file MB": round(conversions[name.removeprefix("tflite_")]["bytes"] / 2**20, 1) if name != "keras_predict" else None,
             "conversion peak RSS MB": conversions[name.removeprefix("tflite_")]["peak_rss_mb"] if name != "keras_predict" else None}
            for name, seconds in latency.items()]
    return {"model": "fcn8s (VGG16), 21 classes, random weights (seeded)", "threads": timed["threads"],
            "calibration": f"{count} {'VOC images' if VOC_MINI.is_dir() else 'noise images'} at {size}x{size}",
            "targets": {"tflite_float32 <= keras_predict": latency["tflite_float32"] <= latency["keras_predict"],
                        "tflite_int8 <= 0.5 x tflite_float32": latency["tflite_int8"] <= 0.5 * latency["tflite_float32"]},
            "table": rows}


if __name__ == "__main__":
    verb = sys.argv[1]
    if verb == "convert":
        path, name, size, count = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
        print(json.dumps(_convert(path, None if name == "float32" else name, size, count)))
    elif verb == "time":
        print(json.dumps(_time(json.loads(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))))
    else:
        sys.exit("usage: python -m bench --only tflite")
