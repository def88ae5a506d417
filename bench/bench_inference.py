"""FCN-8s inference: latency, throughput, peak memory, and efficiency against this machine's matmul rate.

Every measurement runs in a fresh subprocess (``python -m bench.bench_inference
--worker JOB``) with ``KERAS_BACKEND`` set to the job's backend, so its peak
resident memory (``ru_maxrss``) is its own, and measures, in that same process,
the float32 matmul rate (4096x4096, in the framework the job runs on) the
efficiency is relative to: achieved FLOP/s = model FLOPs / median latency,
efficiency = achieved FLOP/s / matmul FLOP/s (a bfloat16 row's: / the bfloat16
matmul rate). On a shared machine that ratio, not the absolute time, is what
compares across runs.

Variants on the TensorFlow backend: ``predict`` (``model.predict``), ``call``
(``tf.function`` of the model, XLA off), ``xla`` (``jit_compile=True``),
``saved_model`` (the exported serving signature), ``tflite`` (TFLite
interpreter, XNNPACK), ``plain`` (``call`` of ``build_fcn(..., fast=False)``, the
plain layer-by-layer network: what the exact fast formulations gain),
``call_malloc`` (``call`` with the system allocator). On the JAX backend:
``predict``, ``call`` (``jax.jit`` of the model's ``stateless_call`` over its
variables: XLA-compiled, the analogue of ``tf.function``) and ``plain``;
``saved_model``, ``tflite``, ``xla`` and ``call_malloc`` are TensorFlow's and are
left out. On both, ``call`` also runs under the ``mixed_bfloat16`` policy at
500x500 (``precision`` column). ``torch`` is the same network written plainly
in PyTorch (same input and thread count), whatever the backend.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass

import numpy as np

from bench.measure import (check_backend, matmul_flops, median_latency, peak_mb, seed, spawn, start_peak_window,
                           worker_main)

SIZES = (256, 500, 1024)
KERAS_VARIANTS = ("call", "predict", "xla", "saved_model", "tflite")
# What each backend runs of them (the others need TensorFlow: its graph runtime, SavedModel or TFLite).
BACKEND_VARIANTS = {"tensorflow": KERAS_VARIANTS, "jax": ("call", "predict")}
THROUGHPUT = (320, 8)  # images/second at batch 8 of 320x320
REFERENCE_SIZE = 500
TARGETS = {"median_s": 1.0, "efficiency": 0.8, "torch_speedup": 2.0, "peak_rss_mb": 2048}
MATMUL_SIZE = 4096
BF16 = "mixed_bfloat16"
# "call" with TF's oneDNN allocator replaced by malloc: its pool keeps the memory that random
# initialisation used (about twice the weights) for the life of the process.
SYSTEM_ALLOCATOR = "call_malloc"
# The variants whose worker builds the Keras model (the others load the exported files).
MODEL_VARIANTS = ("call", "predict", "xla", "plain", SYSTEM_ALLOCATOR)
# The peer's width for a job's backbone: VGG16 is the reference; the smoke tests' small network is 1/8 of it.
PEER_WIDTH = {"vgg16": 1.0, "tiny_vgg": 0.125}


@dataclass(frozen=True)
class Job:
    variant: str
    size: int
    batch: int = 1
    repeats: int = 5
    matmul_size: int = MATMUL_SIZE
    backend: str = "tensorflow"  # Keras' backend in the worker (the torch peer imports neither)
    policy: str = "float32"  # Keras dtype policy set before the model is built
    device: str = "cpu"  # the torch peer's ("auto": cuda where there is one); JAX runs on its default device
    backbone: str = "vgg16"  # the Keras FCN-8s's; "tiny_vgg" (smoke tests): the peer at 1/8 width (PEER_WIDTH)


def plan(quick: bool, backend: str = "tensorflow") -> list[Job]:
    """The measurements of a full (or ``quick``: tiny, for CI) run on ``backend``, in order.

    Example:
        >>> [job.variant for job in plan(quick=True, backend="jax")]
        ['call']
        >>> sorted({job.variant for job in plan(quick=False, backend="jax")})
        ['call', 'plain', 'predict', 'torch']
    """
    check_backend(backend)
    if quick:
        # The peer is left out: tests/bench checks it against the Keras model directly.
        return [Job("call", 64, repeats=1, matmul_size=512, backend=backend)]
    repeats = {256: 5, 500: 5, 1024: 3}
    variants = BACKEND_VARIANTS[backend]
    jobs = [Job(v, s, repeats=repeats[s], backend=backend) for s in SIZES for v in (*variants, "torch")]
    jobs.append(Job("call", REFERENCE_SIZE, backend=backend, policy=BF16))
    jobs.append(Job("plain", REFERENCE_SIZE, repeats=3, backend=backend))
    if backend == "tensorflow":
        jobs.append(Job(SYSTEM_ALLOCATOR, REFERENCE_SIZE))
    size, batch = THROUGHPUT
    jobs += [Job(v, size, batch, repeats=3, backend=backend) for v in ("call", "xla", "torch")
             if v in (*variants, "torch")]
    return jobs


def run(quick: bool = False, backend: str = "tensorflow") -> dict:
    """Runs every job of :func:`plan` in its own subprocess; returns figures and a table.

    Example:
        >>> figures = run(quick=True, backend="jax")  # doctest: +SKIP
        >>> figures["rows"][0]["variant"], figures["rows"][0]["efficiency"] > 0  # doctest: +SKIP
        ('call', True)
    """
    threads = len(os.sched_getaffinity(0))
    jobs = [job for job in plan(quick, backend) if job.variant != "torch" or _has_torch()]
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
            prepared = _spawn({"prepare": True, **count}, backend)
            flops = _counted(prepared) if "flops" in prepared else None
        if flops is None and (not jobs or jobs[0].variant not in MODEL_VARIANTS):
            flops = _counted(_spawn(count, backend))
        for i, job in enumerate(jobs):
            result = _spawn({**asdict(job), **(count if flops is None else {"threads": threads, "workdir": workdir})},
                            job.backend)
            if flops is None:
                flops = _counted(result if "flops" in result else _spawn(count, backend))
            rows.append(_row(job, result, flops.get(job.size)))
            _report(i + 1, len(jobs), rows[-1])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    _add_torch_ratios(rows)
    return {
        "backend": backend,
        "threads": threads,
        "torch_available": _has_torch(),
        "left_out": _left_out(backend),
        "gflop_per_image": {f"{s}x{s}": f and round(f / 1e9, 2) for s, f in sorted((flops or {}).items())},
        "rows": rows,
        "targets": _targets(rows),
        "table": [_table_row(r) for r in rows],
    }


def _left_out(backend: str) -> list[str]:
    """The variants a run on ``backend`` leaves out, with why (the report says so)."""
    missing = [v for v in (*KERAS_VARIANTS, SYSTEM_ALLOCATOR) if v not in BACKEND_VARIANTS[backend]]
    if backend == "tensorflow":
        missing.remove(SYSTEM_ALLOCATOR)
    return [f"{v}: TensorFlow backend only" for v in missing]


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
    print(f"[{done}/{total}] {row['variant']} {row['precision']} {row['batch']}x{row['size']}x{row['size']}: "
          f"{figures}", flush=True)


def _spawn(spec: dict, backend: str) -> dict:
    """Runs one worker in a fresh interpreter on ``backend``; returns its JSON result or ``{"error": ...}``."""
    env = {"TF_ONEDNN_USE_SYSTEM_ALLOCATOR": "1"} if spec.get("variant") == SYSTEM_ALLOCATOR else {}
    return spawn("bench.bench_inference", spec, backend, env)


def _precision(job: Job) -> str:
    return "bfloat16" if job.policy == BF16 else "float32"


def _row(job: Job, result: dict, flops: int | None) -> dict:
    row = {"variant": job.variant, "precision": _precision(job), "size": job.size, "batch": job.batch,
           "backend": "torch" if job.variant == "torch" else job.backend, "error": result.get("error")}
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
    if "matmul_bf16_flops" in result:
        row["matmul_bf16_gflops"] = result["matmul_bf16_flops"] / 1e9
    if flops:
        achieved = flops * job.batch / median
        row.update(gflop_per_image=flops / 1e9, achieved_gflops=achieved / 1e9,
                   efficiency=achieved / result.get("matmul_bf16_flops", result["matmul_flops"]))
    return row


def _add_torch_ratios(rows: list[dict]) -> None:
    # Against the peer's float32, whatever the row's precision: the bfloat16 target is set so.
    torch = {(r["size"], r["batch"]): r for r in rows if r["variant"] == "torch" and r["error"] is None}
    for row in rows:
        peer = torch.get((row["size"], row["batch"]))
        if row["error"] is None and peer and row["variant"] != "torch":
            row["torch_speedup"] = peer["median_s"] / row["median_s"]
            # The peer ran in another process, maybe at another moment of a shared machine:
            # scaling by the two processes' float32 matmul rates discounts what changed in between.
            row["torch_speedup_normalised"] = row["torch_speedup"] * peer["matmul_gflops"] / row["matmul_gflops"]


def _targets(rows: list[dict]) -> dict:
    """The issue's 500x500 float32 targets, judged on the fastest Keras variant."""
    candidates = [r for r in rows if r["size"] == REFERENCE_SIZE and r["batch"] == 1 and r["error"] is None
                  and r["variant"] in KERAS_VARIANTS and r["precision"] == "float32"]
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
    head = {"variant": row["variant"], "backend": row["backend"], "precision": row["precision"],
            "input": f"{row['batch']}x{row['size']}x{row['size']}"}
    if row["error"]:
        return {**head, "error": row["error"]}

    def fmt(key, digits):
        return None if row.get(key) is None else round(row[key], digits)

    return {
        **head,
        "median s": fmt("median_s", 3),
        "img/s": fmt("images_per_s", 2),
        "GFLOP/img": fmt("gflop_per_image", 1),
        "GFLOP/s": fmt("achieved_gflops", 1),
        "matmul GFLOP/s": fmt("matmul_gflops", 1),
        "bf16 matmul GFLOP/s": fmt("matmul_bf16_gflops", 1),
        "efficiency": fmt("efficiency", 2),
        "peak RSS MB": fmt("peak_rss_mb", 0),
        "setup peak MB": fmt("setup_peak_rss_mb", 0),
        "x torch": fmt("torch_speedup", 2),
        "x torch (normalised)": fmt("torch_speedup_normalised", 2),
    }


# ---------------------------------------------------------------- worker side


def _image(size: int, batch: int) -> np.ndarray:
    # The same input for every variant and the peer: preprocessed-like values.
    return (np.random.default_rng(0).normal(size=(batch, size, size, 3)) * 60).astype("float32")


def _keras_model(fast: bool = True, policy: str = "float32", backbone: str = "vgg16"):
    import keras
    from fcn_keras.models import build_fcn

    keras.config.set_dtype_policy(policy)  # before building: the layers take it then
    seed(0)
    return build_fcn("fcn8s", num_classes=21, fast=fast, backbone=backbone)


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


def _tensorflow_call(job: Job, workdir: str, threads: int):
    """(the function timed, the model or None) for a TensorFlow-backend job."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    if job.variant == "saved_model":
        loaded = tf.saved_model.load(os.path.join(workdir, "saved_model"))
        return (lambda x: loaded.serve(x).numpy()), loaded  # keep `loaded`: it owns the variables
    if job.variant == "tflite":
        # LiteRT, as fcn_keras.export runs files: TF 2.21's deprecated tf.lite.Interpreter
        # crashes (heap corruption) on this model's dynamic-size graph, LiteRT does not.
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(os.path.join(workdir, "model.tflite"), num_threads=threads)
        index = interpreter.get_input_details()[0]["index"]
        interpreter.resize_tensor_input(index, (job.batch, job.size, job.size, 3))
        interpreter.allocate_tensors()
        output = interpreter.get_output_details()[0]["index"]

        def fn(x):
            interpreter.set_tensor(index, x)
            interpreter.invoke()
            return interpreter.get_tensor(output)

        return fn, None
    model = _keras_model(job.variant != "plain", job.policy, job.backbone)  # plain: the layer-by-layer network
    if job.variant == "predict":
        return (lambda x: model.predict(x, batch_size=job.batch, verbose=0)), model
    call = tf.function(lambda x: model(x, training=False), jit_compile=job.variant == "xla")
    return (lambda x: call(x).numpy()), model


def jax_call(model):
    """``x -> model(x)`` as one ``jax.jit`` of ``model.stateless_call`` over its variables, returning once
    the output is computed (``block_until_ready``): the JAX backend's analogue of ``tf.function``."""
    import jax

    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]

    @jax.jit
    def call(trainable, non_trainable, x):
        return model.stateless_call(trainable, non_trainable, x, training=False)[0]

    return lambda x: call(trainable, non_trainable, x).block_until_ready()


def _jax_call(job: Job):
    """(the function timed, the model) for a JAX-backend job; ``call`` takes an input already on the device."""
    model = _keras_model(job.variant != "plain", job.policy, job.backbone)
    if job.variant == "predict":
        return (lambda x: model.predict(np.asarray(x), batch_size=job.batch, verbose=0)), model
    if job.variant not in ("call", "plain"):
        raise ValueError(f"variant {job.variant!r} runs on the TensorFlow backend only (JAX: call, predict, plain)")
    return jax_call(model), model


def _keras_worker(job: Job, workdir: str, threads: int, count_flops: list[int] | None = None) -> dict:
    x = _image(job.size, job.batch)
    if job.backend == "jax":
        import jax

        fn, model = _jax_call(job)
        if job.variant != "predict":
            x = jax.device_put(x)
    else:
        fn, model = _tensorflow_call(job, workdir, threads)
    setup_peak = start_peak_window()
    first, median = median_latency(fn, x, job.repeats)
    peak = peak_mb()
    result = {"median_s": median, "first_call_s": first, "setup_peak_rss_mb": setup_peak, "peak_rss_mb": peak,
              "matmul_flops": matmul_flops(job.backend, job.matmul_size)}
    if job.backend == "jax":
        result["device"] = jax_device()
    if job.policy == BF16:
        result["matmul_bf16_flops"] = matmul_flops(job.backend, job.matmul_size, "bfloat16")
    counted = _count_flops(count_flops, model) if count_flops else {}  # after the measurements: symbolic, cheap
    return {**result, **counted}


def torch_inference(job: Job, threads: int) -> dict:
    """The peer's latency (median of ``job.repeats`` after two warm-up calls) on ``job.device``; with
    ``job.policy == "mixed_bfloat16"`` under ``torch.autocast`` in bfloat16."""
    import torch

    from bench.torch_peer import FCN8s

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    device = torch_device(job.device)
    net = FCN8s(num_classes=21, width=PEER_WIDTH[job.backbone]).eval().to(device)
    x = torch.from_numpy(_image(job.size, job.batch).transpose(0, 3, 1, 2).copy()).to(device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    bf16 = job.policy == BF16

    def fn(x):
        with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=bf16):
            net(x)
        sync()

    setup_peak = start_peak_window()
    with torch.inference_mode():
        first, median = median_latency(fn, x, job.repeats)
    peak = peak_mb()
    result = {"median_s": median, "first_call_s": first, "setup_peak_rss_mb": setup_peak, "peak_rss_mb": peak,
              "matmul_flops": matmul_flops("torch", job.matmul_size, device=device), "device": _torch_name(device)}
    if bf16:
        result["matmul_bf16_flops"] = matmul_flops("torch", job.matmul_size, "bfloat16", device)
    return result


def torch_device(device: str) -> str:
    """``device``, with ``"auto"`` resolved to ``"cuda"`` where PyTorch sees a GPU, else ``"cpu"``.

    On CUDA it also turns on cuDNN's autotuner (``cudnn.benchmark``), as a PyTorch user timing fixed
    shapes would: the untimed warm-up calls pay for it, as XLA's compilation on the Keras side."""
    import torch

    device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    if device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True
    return device


def _torch_name(device: str) -> str:
    import torch

    return f"{device}: {torch.cuda.get_device_name(device)}" if device.startswith("cuda") else device


def jax_device() -> str:
    """JAX's default device, as the reports name it (``"gpu: NVIDIA H200"``, ``"cpu: cpu"``)."""
    import jax

    device = jax.devices()[0]
    return f"{device.platform}: {device.device_kind}"


def _worker(spec: dict) -> dict:
    workdir, threads, count_flops = spec.pop("workdir"), spec.pop("threads"), spec.pop("count_flops", None)
    if spec.pop("prepare", False):
        return _prepare(workdir, count_flops)
    if not spec:
        return _count_flops(count_flops)
    job = Job(**spec)
    if job.variant == "torch":
        return torch_inference(job, threads)
    if count_flops and job.variant not in MODEL_VARIANTS:
        raise ValueError(f"the {job.variant} worker loads an exported file: it has no model to count FLOPs on")
    return _keras_worker(job, workdir, threads, count_flops)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        worker_main("bench.bench_inference", _worker)
    else:
        sys.exit("usage: python -m bench.bench_inference --worker JOB_JSON  (run the suite with: python -m bench)")
