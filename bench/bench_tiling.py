"""Tiled inference on one large image: peak memory and time, against what the whole image would need untiled.

One 8000x8000 RGB image (seeded noise), FCN-8s over MobileNetV2 (``weights=None``,
11 classes: CamVid's), segmented by ``fcn_keras.tiling.tiled(...).segment`` in
1024x1024 windows at the exact overlap (``fcn_keras.tiling.exact_overlap``: twice
the receptive field's radius, on the stride's grid) and at a smaller one. Every
measurement runs in a fresh subprocess (``python -m bench.bench_tiling --worker
JOB``), so its resident memory is its own: ``RSS before`` is taken once the model
is built and has run once and the image is in memory; then the kernel's
high-water mark is reset (``/proc/self/clear_refs``), so ``peak RSS`` is the
run's own peak (model, image, mask and windows included) and ``added`` what
segmenting added; ``process peak`` is ``ru_maxrss`` over the whole process,
model building included.

The untiled figure is an estimate: the whole network on ``S x S`` images, S = 1024,
2048, 3072, measured the same way (the time is a second call, the first traces the
network for the new size), then the peak extrapolated linearly in pixels from the
two largest to 8000x8000 (activations grow with the pixel count; the fixed part is
the runtime and the weights), next to the floor that the whole image's float32
logits and preprocessed input alone take.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass

import numpy as np

from bench.measure import peak_mb, start_peak_window

WORKER_TIMEOUT_S = 3 * 3600
PROGRESS = "progress: "
NUM_CLASSES = 11


@dataclass(frozen=True)
class Job:
    kind: str  # "tiled" or "whole"
    size: int  # image side
    architecture: str = "fcn8s"
    backbone: str = "mobilenet_v2"
    tile: int = 0
    overlap: int | None = None  # None: the exact overlap


def plan(quick: bool) -> list[Job]:
    """The measurements of a full run (or ``quick``: a tiny model and image, for CI), in order."""
    if quick:
        return [Job("tiled", 480, backbone="tiny_vgg", tile=352), Job("whole", 256, backbone="tiny_vgg")]
    return [Job("tiled", 8000, tile=1024), Job("tiled", 8000, tile=1024, overlap=128),
            *(Job("whole", size) for size in (1024, 2048, 3072))]


def run(quick: bool = False) -> dict:
    """Runs every job of :func:`plan` in its own subprocess; returns figures and a table.

    Example:
        >>> figures = run(quick=True)  # doctest: +SKIP
        >>> figures["rows"][0]["windows"] > 1  # doctest: +SKIP
        True
    """
    threads = len(os.sched_getaffinity(0))
    rows = []
    jobs = plan(quick)
    for i, job in enumerate(jobs, start=1):
        result = _spawn({**asdict(job), "threads": threads})
        rows.append({**asdict(job), **result})
        print(f"[{i}/{len(jobs)}] {job.kind} {job.size}x{job.size}: "
              + (result["error"] if "error" in result else
                 f"{result['seconds']:.1f} s, peak RSS {result['peak_rss_mb']:.0f} MB"), flush=True)
    target = jobs[0].size
    estimate = _untiled_estimate([r for r in rows if r["kind"] == "whole" and "error" not in r], target)
    return {"threads": threads, "rows": rows, "untiled_estimate": estimate,
            "table": [_table_row(r) for r in rows] + ([_estimate_row(estimate, target)] if estimate else [])}


def _spawn(spec: dict) -> dict:
    """Runs one worker in a fresh interpreter, echoing its progress lines; returns its JSON result or an error."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": "tensorflow"}
    project = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join([project] + [p for p in [env.get("PYTHONPATH")] if p])
    cmd = [sys.executable, "-m", "bench.bench_tiling", "--worker", json.dumps(spec)]
    with tempfile.TemporaryFile("w+") as stdout:
        process = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.PIPE, text=True, env=env, cwd=project)
        tail: list[str] = []
        deadline = time.monotonic() + WORKER_TIMEOUT_S
        for line in process.stderr:  # the worker's progress, every tenth of the windows
            if line.startswith(PROGRESS):
                print("   ", line[len(PROGRESS):].rstrip(), flush=True)
            tail = (tail + [line.rstrip()])[-3:]
            if time.monotonic() > deadline:
                process.kill()
                return {"error": f"timed out after {WORKER_TIMEOUT_S} s"}
        process.wait()
        stdout.seek(0)
        lines = [line for line in stdout.read().splitlines() if line.startswith("{")]
    if process.returncode != 0 or not lines:
        return {"error": f"exit {process.returncode}: " + " | ".join(tail)}
    return json.loads(lines[-1])


def _untiled_estimate(whole: list[dict], size: int) -> dict | None:
    """The whole network's peak at ``size`` x ``size``, extrapolated from the two largest measured sizes."""
    if len(whole) < 2:
        return None
    a, b = sorted(whole, key=lambda r: r["size"])[-2:]
    per_pixel = (b["peak_rss_mb"] - a["peak_rss_mb"]) / (b["size"] ** 2 - a["size"] ** 2)
    floor_mb = size * size * (NUM_CLASSES + 3) * 4 / 2**20  # float32 logits + preprocessed float32 input
    return {"size": size, "peak_rss_mb": b["peak_rss_mb"] + per_pixel * (size**2 - b["size"] ** 2),
            "from_sizes": [a["size"], b["size"]], "mb_per_megapixel": per_pixel * 1e6,
            "logits_and_input_floor_mb": floor_mb}


def _table_row(row: dict) -> dict:
    base = {"run": row["kind"], "image": f"{row['size']}x{row['size']}", "model": f"{row['architecture']} / "
            f"{row['backbone']}", "tile": f"{row['tile']}x{row['tile']}" if row["tile"] else "whole image"}
    if "error" in row:
        return {**base, "error": row["error"]}
    fmt = lambda key, digits=1: None if row.get(key) is None else round(row[key], digits)  # noqa: E731
    return {**base, "overlap": row.get("overlap_used"), "exact overlap": row.get("exact_overlap"),
            "windows": row.get("windows"), "pixels run / image": fmt("pixel_overhead", 2),
            "wall s": fmt("seconds"), "median s / window": fmt("median_window_s", 2),
            "RSS before MB": fmt("setup_rss_mb", 0), "peak RSS MB": fmt("run_peak_mb", 0),
            "added MB": None if "run_peak_mb" not in row else round(row["run_peak_mb"] - row["setup_rss_mb"]),
            "process peak MB": fmt("peak_rss_mb", 0)}


def _estimate_row(estimate: dict, size: int) -> dict:
    return {"run": "whole (estimate)", "image": f"{size}x{size}", "model": "fcn8s / mobilenet_v2",
            "tile": "whole image", "peak RSS MB": round(estimate["peak_rss_mb"]),
            "added MB": f">= {round(estimate['logits_and_input_floor_mb'])} (logits + input alone)"}


# ---------------------------------------------------------------- worker side


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _worker(spec: dict) -> dict:
    import keras
    import tensorflow as tf

    import fcn_keras
    from fcn_keras.segmenter import keras_segmenter
    from fcn_keras.tiling import exact_overlap, tiled

    threads = spec.pop("threads")
    job = Job(**spec)
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    keras.utils.set_random_seed(0)
    model = fcn_keras.models.build_fcn(job.architecture, num_classes=NUM_CLASSES, backbone=job.backbone)
    segmenter = keras_segmenter(model)
    image = np.random.default_rng(0).integers(0, 256, (job.size, job.size, 3), dtype=np.uint8)
    segmenter.logits(image[:64, :64])  # the first call's one-time costs (kernel selection) are not the run's
    setup = _rss_mb()
    start_peak_window()  # the run's own peak from here
    if job.kind == "whole":
        start = time.perf_counter()
        segmenter.logits(image)  # the first call at a new size traces the network for it
        first = time.perf_counter() - start
        start = time.perf_counter()
        logits = segmenter.logits(image)
        seconds = time.perf_counter() - start
        return {"seconds": seconds, "first_call_s": first, "peak_rss_mb": _rss_mb(), "run_peak_mb": peak_mb(),
                "setup_rss_mb": setup, "logits_mb": logits.nbytes / 2**20}
    exact = exact_overlap(segmenter, (job.tile, job.tile))
    stamps: list[float] = []

    def progress(done: int, total: int) -> None:
        stamps.append(time.perf_counter())
        if done % max(1, total // 10) == 0 or done == total:
            print(f"{PROGRESS}window {done}/{total}, {stamps[-1] - start:.0f} s", file=sys.stderr, flush=True)

    tiles = tiled(segmenter, (job.tile, job.tile), exact if job.overlap is None else job.overlap, progress=progress)
    plan = tiles.windows(job.size, job.size)
    start = time.perf_counter()
    mask = tiles.segment(image)
    seconds = time.perf_counter() - start
    durations = np.diff([start, *stamps])
    full = [d for d, (r, c) in zip(durations, plan) if r.stop - r.start == job.tile and c.stop - c.start == job.tile]
    pixels = sum((r.stop - r.start) * (c.stop - c.start) for r, c in plan)
    return {"seconds": seconds, "peak_rss_mb": _rss_mb(), "run_peak_mb": peak_mb(), "setup_rss_mb": setup,
            "windows": len(plan), "overlap_used": tiles.overlap, "exact_overlap": exact,
            "receptive_field_radius": segmenter.receptive_field().radius,
            "pixel_overhead": pixels / job.size**2, "median_window_s": float(np.median(full)) if full else None,
            "mask_mb": mask.nbytes / 2**20, "image_mb": image.nbytes / 2**20}


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "--worker":
        sys.exit("usage: python -m bench.bench_tiling --worker JOB_JSON  (run the suite with: python -m bench)")
    print(json.dumps(_worker(json.loads(sys.argv[2]))), flush=True)
