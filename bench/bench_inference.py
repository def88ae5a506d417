"""FCN-8s inference: latency, throughput, peak memory, and efficiency against this machine's matmul rate.

Every measurement runs in a fresh subprocess (``python -m bench.bench_inference
--worker JOB``), so its peak resident memory (``ru_maxrss``) is its own, and
measures, in that same process, the float32 matmul rate (4096x4096) the
efficiency is relative to: achieved FLOP/s = model FLOPs / median latency,
efficiency = achieved FLOP/s / matmul FLOP/s. On a shared machine that ratio, not
the absolute time, is what compares across runs.

Variants: ``predict`` (``model.predict``), ``call`` (``tf.function`` of the model,
XLA off), ``xla`` (``jit_compile=True``), ``saved_model`` (the exported serving
signature), ``tflite`` (TFLite interpreter, XNNPACK), ``plain`` (``call`` of
``build_fcn(..., fast=False)``, the plain layer-by-layer network: what the exact
fast formulations gain) and
``torch`` (the same network written plainly in PyTorch, same input and thread count).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass

import numpy as np

SIZES = (256, 500, 1024)
KERAS_VARIANTS = ("call", "predict", "xla", "saved_model", "tflite")
THROUGHPUT = (320, 8)  # images/second at batch 8 of 320x320
REFERENCE_SIZE = 500
TARGETS = {"median_s": 1.0, "efficiency": 0.8, "torch_speedup": 2.0, "peak_rss_mb": 2048}
MATMUL_SIZE = 4096
# "call" with TF's oneDNN allocator replaced by malloc: its pool keeps the memory that random
# initialisation used (about twice the weights) for the life of the process.
SYSTEM_ALLOCATOR = "call_malloc"
# The variants whose worker builds the Keras model (the others load the exported files).
MODEL_VARIANTS = ("call", "predict", "xla", "plain", SYSTEM_ALLOCATOR)
WORKER_TIMEOUT_S = 1800


@dataclass(frozen=True)
class Job:
    variant: str
    size: int
    batch: int = 1
    repeats: int = 5
    matmul_size: int = MATMUL_SIZE


def plan(quick: bool) -> list[Job]:
    """The measurements of a full (or ``quick``: tiny, for CI) run, in order.

    """
    if quick:
        # The peer is left out: tests/bench checks it against the Keras model directly.
        return [Job("call", 64, repeats=1, matmul_size=512)]
    repeats = {256: 5, 500: 5, 1024: 3}
    jobs = [Job(v, s, repeats=repeats[s]) for s in SIZES for v in (*KERAS_VARIANTS, "torch")]
    jobs.append(Job("plain", REFERENCE_SIZE, repeats=3))
    jobs.append(Job(SYSTEM_ALLOCATOR, REFERENCE_SIZE))
    size, batch = THROUGHPUT
    jobs += [Job(v, size, batch, repeats=3) for v in ("call", "xla", "torch")]
    return jobs


def run(quick: bool = False) -> dict:
    """Runs every job of :func:`plan` in its own subprocess; returns figures and a table.

    Example:
        >>> figures = run(quick=True)  # doctest: +SKIP
        >>> figures["rows"][0]["variant"], figures["rows"][0]["efficiency"] > 0  # doctest: +SKIP
        ('call', True)
    """
    threads = len(os.sched_getaffinity(0))
    jobs = [job for job in plan(quick) if job.variant != "torch" or _has_torch()]
    workdir = tempfile.mkdtemp(prefix="fcn_bench_")
    rows = []
    # The FLOPs are counted by the first worker that builds the model anyway (a fresh process and a
    # 134M-parameter model cost seconds): the export step, else the first job; a worker of their own
    # where neither builds it or the one that did failed (its rows say why).
    count = {"count_flops": sorted({job.size for job in jobs}), "workdir": workdir, "threads": threads}
    flops = None
    try:
        if any(job.variant in ("saved_model", "tflite") for job in jobs):
            print("exporting FCN-8s to a SavedModel and TFLite (once, not timed)", flush=True)
            prepared = _spawn({"prepare": True, **count})
            flops = _counted(prepared) if "flops" in prepared else None
        if flops is None and (not jobs or jobs[0].variant not in MODEL_VARIANTS):
            flops = _counted(_spawn(count))
        for i, job in enumerate(jobs):
            result = _spawn({**asdict(job), **(count if flops is None else {"threads": threads, "workdir": workdir})})
            if flops is None:
                flops = _counted(result if "flops" in result else _spawn(count))
            rows.append(_row(job, result, flops.get(job.size)))
            _report(i + 1, len(jobs), rows[-1])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    _add_torch_ratios(rows)
    return {
        "threads": threads,
        "torch_available": _has_torch(),
        "gflop_per_image": {f"{s}x{s}": f and round(f / 1e9, 2) for s, f in sorted((flops or {}).items())},
        "rows": rows,
        "targets": _targets(rows),
        "table": [_table_row(r) for r in rows],
    }


def _counted(result: dict) -> dict[int, int]:
    """The FLOPs per image size that a worker asked to count them returned."""
    if "flops" not in result:
        raise RuntimeError(f"counting the model's FLOPs failed: {result.get('error', result)}")
    return {int(size): value for size, value in result["flops"].items()}


def _has_torch() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def _report(done: int, total: int, row: dict) -> None:
    """One line per finished measurement: the run's progress, and its figures as they come."""
    figures = (row["error"] if row["error"] else
               f"median {row['median_s']:.3f} s, efficiency {row.get('efficiency', float('nan')):.2f}, "
               f"peak RSS {row['peak_rss_mb']:.0f} MB")
    print(f"[{done}/{total}] {row['variant']} {row['batch']}x{row['size']}x{row['size']}: {figures}", flush=True)


def _spawn(spec: dict) -> dict:
    """Runs one worker in a fresh interpreter; returns its JSON result or ``{"error": ...}``."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": "tensorflow"}
    if spec.get("variant") == SYSTEM_ALLOCATOR:
        env["TF_ONEDNN_USE_SYSTEM_ALLOCATOR"] = "1"
    project = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join([project] + [p for p in [env.get("PYTHONPATH")] if p])
    cmd = [sys.executable, "-m", "bench.bench_inference", "--worker", json.dumps(spec)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=WORKER_TIMEOUT_S, cwd=project)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {WORKER_TIMEOUT_S} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        return {"error": f"exit {done.returncode}: " + " | ".join(tail)}
    return json.loads(lines[-1])


def _row(job: Job, result: dict, flops: int | None) -> dict:
    row = {"variant": job.variant, "size": job.size, "batch": job.batch, "error": result.get("error")}
    if row["error"] is not None:
        return row
    median = result["median_s"]
    row.update(
        median_s=median,
        first_call_s=result["first_call_s"],
        images_per_s=job.batch / median,
        matmul_gflops=result["matmul_flops"] / 1e9,
        peak_rss_mb=result["peak_rss_mb"],
        setup_peak_rss_mb=result["setup_peak_rss_mb"],
    )
    if flops:
        achieved = flops * job.batch / median
        row.update(gflop_per_image=flops / 1e9, achieved_gflops=achieved / 1e9,
                   efficiency=achieved / result["matmul_flops"])
    return row


def _add_torch_ratios(rows: list[dict]) -> None:
    torch = {(r["size"], r["batch"]): r for r in rows if r["variant"] == "torch" and r["error"] is None}
    for row in rows:
        peer = torch.get((row["size"], row["batch"]))
        if row["error"] is None and peer and row["variant"] != "torch":
            row["torch_speedup"] = peer["median_s"] / row["median_s"]
            # The peer ran in another process, maybe at another moment of a shared machine:
            # scaling by the two processes' matmul rates discounts what changed in between.
            row["torch_speedup_normalised"] = row["torch_speedup"] * peer["matmul_gflops"] / row["matmul_gflops"]


def _targets(rows: list[dict]) -> dict:
    """The issue's 500x500 targets, judged on the fastest Keras variant."""
    candidates = [r for r in rows if r["size"] == REFERENCE_SIZE and r["batch"] == 1 and r["error"] is None
                  and r["variant"] in KERAS_VARIANTS]
    if not candidates:
        return {}
    best = min(candidates, key=lambda r: r["median_s"])
    figures = {key: best.get(key) for key in TARGETS}
    return {
        "variant": best["variant"],
        **{key: {"measured": value, "target": TARGETS[key],
                 "met": None if value is None else (value <= TARGETS[key] if key in ("median_s", "peak_rss_mb")
                                                   else value >= TARGETS[key])}
           for key, value in figures.items()},
    }


def _table_row(row: dict) -> dict:
    if row["error"]:
        return {"variant": row["variant"], "input": f"{row['batch']}x{row['size']}x{row['size']}", "error": row["error"]}

    def fmt(key, digits):
        return None if row.get(key) is None else round(row[key], digits)

    return {
        "variant": row["variant"],
        "input": f"{row['batch']}x{row['size']}x{row['size']}",
        "median s": fmt("median_s", 3),
        "img/s": fmt("images_per_s", 2),
        "GFLOP/img": fmt("gflop_per_image", 1),
        "GFLOP/s": fmt("achieved_gflops", 1),
        "matmul GFLOP/s": fmt("matmul_gflops", 1),
        "efficiency": fmt("efficiency", 2),
        "peak RSS MB": fmt("peak_rss_mb", 0),
        "setup peak MB": fmt("setup_peak_rss_mb", 0),
        "x torch": fmt("torch_speedup", 2),
        "x torch (normalised)": fmt("torch_speedup_normalised", 2),
    }


# ---------------------------------------------------------------- worker side


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _start_peak_window() -> float:
    """Resets the kernel's peak-RSS mark (Linux ``clear_refs``) so the peak read later is the
    inference's own, not model building's (Keras' random initialisers peak well above the
    weights' size). Returns the peak so far, in MB."""
    peak = _rss_mb()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass  # then the peak includes model building: still an upper bound
    return peak


def _peak_mb() -> float:
    """Peak RSS since :func:`_start_peak_window` (``VmHWM``), in MB."""
    for line in _read_status():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return _rss_mb()


def _read_status() -> list[str]:
    try:
        with open("/proc/self/status") as f:
            return f.readlines()
    except OSError:
        return []


def _median_latency(fn, x, repeats: int) -> tuple[float, float]:
    """(first call seconds, median seconds of ``repeats`` calls after one more warm-up call)."""
    start = time.perf_counter()
    fn(x)
    first = time.perf_counter() - start
    fn(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - start)
    return first, float(np.median(times))


def _image(size: int, batch: int) -> np.ndarray:
    # The same input for every variant and the peer: preprocessed-like values.
    return (np.random.default_rng(0).normal(size=(batch, size, size, 3)) * 60).astype("float32")


def _keras_model(fast: bool = True):
    import keras
    from fcn_keras.models import build_fcn

    keras.utils.set_random_seed(0)
    return build_fcn("fcn8s", num_classes=21, fast=fast)


def _count_flops(sizes: list[int], model=None) -> dict:
    # The reference's arithmetic: counted on the layer graph, the same for the plain network and the
    # fast one (whose call() skips some of it; tests/bench checks the two counts are equal).
    from bench.flops import model_flops

    model = _keras_model(fast=False) if model is None else model
    return {"flops": {str(size): model_flops(model, size, size) for size in sizes}}


def _prepare(workdir: str, count_flops: list[int] | None = None) -> dict:
    import tensorflow as tf

    from fcn_keras.models import reference_graph

    model = _keras_model()
    model.export(os.path.join(workdir, "saved_model"), format="tf_saved_model", verbose=False)
    # As fcn_keras.export.tflite converts it: the plain layer-by-layer graph (same variables);
    # TFLite runtimes bring their own convolution kernels.
    for_tflite = os.path.join(workdir, "for_tflite")
    reference_graph(model).export(for_tflite, format="tf_saved_model", verbose=False)
    tflite = tf.lite.TFLiteConverter.from_saved_model(for_tflite).convert()
    with open(os.path.join(workdir, "model.tflite"), "wb") as f:
        f.write(tflite)
    return {"prepared": True, **(_count_flops(count_flops, model) if count_flops else {})}


def _keras_worker(job: Job, workdir: str, threads: int, count_flops: list[int] | None = None) -> dict:
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    x = _image(job.size, job.batch)
    if job.variant == "saved_model":
        loaded = tf.saved_model.load(os.path.join(workdir, "saved_model"))  # keep it: it owns the variables
        fn = lambda x: loaded.serve(x).numpy()  # noqa: E731
    elif job.variant == "tflite":
        # LiteRT, as fcn_keras.export runs files: TF 2.21's deprecated tf.lite.Interpreter
        # crashes (heap corruption) on this model's dynamic-size graph, LiteRT does not.
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(os.path.join(workdir, "model.tflite"), num_threads=threads)
        index = interpreter.get_input_details()[0]["index"]
        interpreter.resize_tensor_input(index, x.shape)
        interpreter.allocate_tensors()
        output = interpreter.get_output_details()[0]["index"]

        def fn(x):
            interpreter.set_tensor(index, x)
            interpreter.invoke()
            return interpreter.get_tensor(output)
    else:
        model = _keras_model(fast=job.variant != "plain")  # plain: the layer-by-layer network
        if job.variant == "predict":
            fn = lambda x: model.predict(x, batch_size=job.batch, verbose=0)  # noqa: E731
        else:
            call = tf.function(lambda x: model(x, training=False), jit_compile=job.variant == "xla")
            fn = lambda x: call(x).numpy()  # noqa: E731
    setup_peak = _start_peak_window()
    first, median = _median_latency(fn, x, job.repeats)
    peak = _peak_mb()

    a = tf.random.normal((job.matmul_size, job.matmul_size))
    matmul = tf.function(lambda a: tf.matmul(a, a))
    _, matmul_s = _median_latency(lambda a: matmul(a).numpy(), a, 3)
    counted = _count_flops(count_flops, model) if count_flops else {}  # after the measurements: symbolic, cheap
    return {"median_s": median, "first_call_s": first, "setup_peak_rss_mb": setup_peak, "peak_rss_mb": peak,
            "matmul_flops": 2 * job.matmul_size**3 / matmul_s, **counted}


def _torch_worker(job: Job, threads: int) -> dict:
    import torch

    from bench.torch_peer import FCN8s

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = FCN8s(num_classes=21).eval()
    x = torch.from_numpy(_image(job.size, job.batch).transpose(0, 3, 1, 2).copy())
    setup_peak = _start_peak_window()
    with torch.inference_mode():
        first, median = _median_latency(net, x, job.repeats)
        peak = _peak_mb()
        a = torch.randn(job.matmul_size, job.matmul_size)
        _, matmul_s = _median_latency(lambda a: torch.matmul(a, a), a, 3)
    return {"median_s": median, "first_call_s": first, "setup_peak_rss_mb": setup_peak, "peak_rss_mb": peak,
            "matmul_flops": 2 * job.matmul_size**3 / matmul_s}


def _worker(spec: dict) -> dict:
    workdir, threads, count_flops = spec.pop("workdir"), spec.pop("threads"), spec.pop("count_flops", None)
    if spec.pop("prepare", False):
        return _prepare(workdir, count_flops)
    if not spec:
        return _count_flops(count_flops)
    job = Job(**spec)
    if job.variant == "torch":
        return _torch_worker(job, threads)
    if count_flops and job.variant not in MODEL_VARIANTS:
        raise ValueError(f"the {job.variant} worker loads an exported file: it has no model to count FLOPs on")
    return _keras_worker(job, workdir, threads, count_flops)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "--worker":
        sys.exit("usage: python -m bench.bench_inference --worker JOB_JSON  (run the suite with: python -m bench)")
    print(json.dumps(_worker(json.loads(sys.argv[2]))), flush=True)
