"""Beam DirectRunner throughput against plain ``fcn-keras predict``, on the same images and model, in one process.

Full mode: the first 48 CamVid test images (360x480 JPEGs, ``../shared/data/camvid/test``;
48 synthetic 360x480 images when absent), FCN-8s over MobileNetV2 (12 classes, random
weights: ``weights=None`` backbone, score layers N(0, 1) so the masks vary), saved as
``.keras``. Quick mode: 4 synthetic 32x48 images and a tiny_vgg FCN-8s.

Each variant runs end to end as a user would run it — load the model, read, segment and
write the three PNGs of every image — into a fresh output directory (nothing skipped):

* ``predict``: ``fcn-keras predict MODEL DIR --out OUT`` (one process, one image at a time);
* ``beam in_memory x1``: ``fcn-keras predict ... --beam`` on the DirectRunner in this process
  (``--direct_num_workers 1``), the same ``Segmenter`` behind RunInference;
* ``beam multi_processing x2``: the DirectRunner with two worker processes
  (``--direct_num_workers 2 --direct_running_mode multi_processing``), each loading TensorFlow
  and the model itself (their start is part of the time).

The variants take turns (predict, beam, predict, beam, ...; the median of the repeats), so a
shared machine's drifting load hits them alike, and every run's pictures are checked equal to
predict's, byte for byte. ``ratio`` is predict's time over the variant's (above 1: faster than
predict). CPU seconds (this process and its finished worker processes) do not depend on other
load: on a busy machine they compare the variants' work better than the wall times do.
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

CAMVID = Path(os.environ.get("FCN_KERAS_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")) / "camvid"
NUM_IMAGES = 48
SIZE = (360, 480)
VARIANTS = {
    "predict": None,
    "beam in_memory x1": ["--direct_num_workers", "1", "--direct_running_mode", "in_memory"],
    "beam multi_processing x2": ["--direct_num_workers", "2", "--direct_running_mode", "multi_processing"],
}


def _images(directory: Path, quick: bool) -> str:
    """The benchmark's images in ``directory``; returns a description of them."""
    from PIL import Image

    directory.mkdir()
    camvid = sorted((CAMVID / "test").glob("*.png")) + sorted((CAMVID / "test").glob("*.jpg"))
    if not quick and len(camvid) >= NUM_IMAGES:
        for path in camvid[:NUM_IMAGES]:
            shutil.copy(path, directory / path.name)
        return f"{NUM_IMAGES} CamVid test images ({SIZE[1]}x{SIZE[0]})"
    count, size = (4, (32, 48)) if quick else (NUM_IMAGES, SIZE)
    rng = np.random.default_rng(0)
    for k in range(count):
        pixels = np.zeros((*size, 3), np.uint8)
        for _ in range(8):
            y, x = rng.integers(0, size[0]), rng.integers(0, size[1])
            pixels[y : y + size[0] // 3, x : x + size[1] // 3] = rng.integers(0, 256, 3)
        Image.fromarray(pixels).save(directory / f"synthetic_{k:03d}.jpg", quality=90)
    return f"{count} synthetic images ({size[1]}x{size[0]})"


def _model(path: Path, quick: bool) -> str:
    import fcn_keras

    backbone = "tiny_vgg" if quick else "mobilenet_v2"
    model = fcn_keras.fcn8s(num_classes=12, backbone=backbone, include_preprocessing=True)
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if layer.name.startswith("score_") and layer.weights:
            kernel, bias = layer.get_weights()
            layer.set_weights([rng.normal(0.0, 1.0, kernel.shape).astype("float32"), bias])
    model.save(path)
    return f"fcn8s / {backbone} (random weights, 12 classes, preprocessing inside)"


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the multi_processing workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _run(variant: str, model: Path, images: Path, out: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one ``fcn-keras predict`` run of ``variant``."""
    import contextlib
    import io

    from fcn_keras import cli

    argv = ["predict", str(model), str(images), "--out", str(out)]
    if VARIANTS[variant] is not None:
        argv += ["--beam", *VARIANTS[variant]]
    start, cpu = time.perf_counter(), _cpu_seconds()
    with contextlib.redirect_stdout(io.StringIO()):
        status = cli.main(argv)
    elapsed, cpu = time.perf_counter() - start, _cpu_seconds() - cpu
    if status != 0:
        raise RuntimeError(f"{variant}: fcn-keras {' '.join(argv)} exited with {status}")
    return elapsed, cpu


def _same_masks(a: Path, b: Path) -> bool:
    names = sorted(p.name for p in a.glob("*.png"))
    return names == sorted(p.name for p in b.glob("*.png")) and all(
        (a / n).read_bytes() == (b / n).read_bytes() for n in names)


def run(quick: bool = False) -> dict:
    """Times predict and the Beam DirectRunner variants on the same images; quick mode takes about a minute."""
    repeats = 1 if quick else int(os.environ.get("FCN_KERAS_BENCH_BEAM_REPEATS", "3"))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        images_text = _images(tmp / "images", quick)
        model_text = _model(tmp / "model.keras", quick)
        count = len(list((tmp / "images").iterdir()))
        # A first, untimed predict: TensorFlow's start and the model's first trace are paid by nobody.
        _run("predict", tmp / "model.keras", tmp / "images", tmp / "warmup")
        times: dict[str, list[float]] = {v: [] for v in VARIANTS}
        cpu: dict[str, list[float]] = {v: [] for v in VARIANTS}
        identical = True
        load_at_start = os.getloadavg()[0]
        for r in range(repeats):
            for variant in VARIANTS:
                out = tmp / f"out-{r}-{variant.replace(' ', '_')}"
                wall, seconds = _run(variant, tmp / "model.keras", tmp / "images", out)
                times[variant].append(wall)
                cpu[variant].append(seconds)
                identical &= _same_masks(out, tmp / "warmup")
                shutil.rmtree(out)
    median = {v: statistics.median(t) for v, t in times.items()}
    median_cpu = {v: statistics.median(t) for v, t in cpu.items()}
    table = [{"variant": v, "images": count, "wall s (median)": round(median[v], 2),
              "images/s": round(count / median[v], 2), "ratio vs predict": round(median["predict"] / median[v], 2),
              "CPU s (median)": round(median_cpu[v], 1), "images/CPU-s": round(count / median_cpu[v], 2),
              "runs": len(times[v])} for v in VARIANTS]
    return {
        "images": images_text,
        "model": model_text,
        "cores": len(os.sched_getaffinity(0)),
        # Other processes competing for those cores: the wall times are noisy when these exceed the cores.
        "load_average_1min": [round(load_at_start, 2), round(os.getloadavg()[0], 2)],
        "times_s": {v: [round(t, 2) for t in ts] for v, ts in times.items()},
        "cpu_s": {v: [round(t, 1) for t in ts] for v, ts in cpu.items()},
        "outputs_identical_to_predict": identical,
        "quick": quick,
        "table": table,
    }


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(quick="--quick" in sys.argv), indent=1))
