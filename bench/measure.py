"""What the benchmarks' workers share: a fresh interpreter per measurement, on a chosen Keras backend,
timing, peak memory, and the matrix-product rate a measurement is compared with.

The parent side (:func:`spawn`) imports nothing heavy; the worker side imports a framework only inside
the function that needs it, so that a JAX worker never imports TensorFlow (the GPU machine has none)
and a PyTorch worker imports neither.

Example:
    >>> first, median = median_latency(lambda x: x * 2, 3, repeats=3)
    >>> first >= 0 and median >= 0
    True
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time

BACKENDS = ("tensorflow", "jax")
PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER_TIMEOUT_S = 1800


def check_backend(backend: str) -> str:
    """``backend`` if it is one the benchmarks run Keras on, else a ``ValueError`` naming it.

    Example:
        >>> check_backend("jax")
        'jax'
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    return backend


def spawn(module: str, spec: dict, backend: str = "tensorflow", env: dict | None = None,
          timeout_s: float = WORKER_TIMEOUT_S) -> dict:
    """Runs ``python -m module --worker SPEC_JSON`` with ``KERAS_BACKEND=backend`` in a fresh interpreter.

    Returns the JSON object the worker printed last, or ``{"error": ...}`` with its exit status and the
    tail of its output: one failed measurement is a row that says why, not a lost run.
    """
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": check_backend(backend), **(env or {})}
    full_env["PYTHONPATH"] = os.pathsep.join([PROJECT] + [p for p in [full_env.get("PYTHONPATH")] if p])
    cmd = [sys.executable, "-m", module, "--worker", json.dumps(spec)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=timeout_s, cwd=PROJECT)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout_s} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        return {"error": f"exit {done.returncode}: " + " | ".join(tail)}
    return json.loads(lines[-1])


def worker_main(module_doc: str, worker) -> None:
    """The ``__main__`` of a worker module: ``--worker JSON`` runs ``worker(spec)`` and prints its JSON, with
    the process's CPU seconds (``worker_cpu_s``: what a measurement costs on a shared machine) and whether
    it imported TensorFlow (``tensorflow_imported``)."""
    if len(sys.argv) != 3 or sys.argv[1] != "--worker":
        sys.exit(f"usage: python -m {module_doc} --worker JOB_JSON  (run the suite with: python -m bench)")
    result = worker(json.loads(sys.argv[2]))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["worker_cpu_s"] = round(usage.ru_utime + usage.ru_stime, 2)
    result["tensorflow_imported"] = sys.modules.get("tensorflow") is not None  # False is the JAX workers' due
    print(json.dumps(result), flush=True)


def seed(value: int = 0) -> None:
    """``keras.utils.set_random_seed(value)`` without importing TensorFlow on another backend.

    Keras seeds TensorFlow too whenever it is importable (``keras/src/utils/rng_utils.py``: ``if
    tf.available``), so on a machine that has it a JAX worker would import it: seconds of CPU and hundreds
    of MB in every measurement, and not what runs on the GPU machine, which has none. Where TensorFlow is
    not already loaded on a non-TensorFlow backend it is hidden for the call (``sys.modules`` entry
    ``None``: "not importable"), and Keras seeds Python, NumPy and its own generator only.

    Example:
        >>> seed(0)
    """
    import keras

    if keras.backend.backend() == "tensorflow" or sys.modules.get("tensorflow") is not None:
        keras.utils.set_random_seed(value)
        return
    hidden = "tensorflow" not in sys.modules
    sys.modules.setdefault("tensorflow", None)
    try:
        keras.utils.set_random_seed(value)
    finally:
        if hidden:
            del sys.modules["tensorflow"]


def median_latency(fn, x, repeats: int) -> tuple[float, float]:
    """(first call seconds, median seconds of ``repeats`` calls after one more warm-up call).

    ``fn`` must return only once its work is done (``.numpy()``, ``block_until_ready``, a CUDA sync).
    """
    start = time.perf_counter()
    fn(x)
    first = time.perf_counter() - start
    fn(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - start)
    times.sort()
    middle = len(times) // 2
    return first, (times[middle] if len(times) % 2 else (times[middle - 1] + times[middle]) / 2)


def matmul_flops(framework: str, size: int, dtype: str = "float32", device: str = "cpu") -> float:
    """FLOP/s of a ``size`` x ``size`` matrix product in ``framework`` (``tensorflow``, ``jax`` or
    ``torch``), in this process: the yardstick a measurement's efficiency is relative to.

    On JAX the product is ``jax.jit(jnp.matmul)`` on the default device (the GPU where there is one),
    timed to ``block_until_ready``; ``device`` is PyTorch's (``"cuda"`` is synchronised).

    Example:
        >>> matmul_flops("torch", 64) > 0
        True
    """
    if framework == "jax":
        import jax
        import jax.numpy as jnp

        a = jax.random.normal(jax.random.key(0), (size, size), dtype=jnp.dtype(dtype))
        product = jax.jit(jnp.matmul)
        _, seconds = median_latency(lambda a: product(a, a).block_until_ready(), a, 3)
    elif framework == "tensorflow":
        import tensorflow as tf

        a = tf.cast(tf.random.normal((size, size)), dtype)
        product = tf.function(lambda a: tf.matmul(a, a))
        _, seconds = median_latency(lambda a: product(a).numpy(), a, 3)
    elif framework == "torch":
        import torch

        a = torch.randn(size, size, device=device).to(getattr(torch, dtype))
        sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

        def product(a):
            with torch.inference_mode():
                torch.matmul(a, a)
            sync()

        _, seconds = median_latency(product, a, 3)
    else:
        raise ValueError(f"framework must be tensorflow, jax or torch, got {framework!r}")
    return 2 * size**3 / seconds


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def start_peak_window() -> float:
    """Resets the kernel's peak-RSS mark (Linux ``clear_refs``) so the peak read later is the
    measurement's own, not model building's (Keras' random initialisers peak well above the
    weights' size). Returns the peak so far, in MB."""
    peak = _rss_mb()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass  # then the peak includes model building: still an upper bound
    return peak


def peak_mb() -> float:
    """Peak RSS since :func:`start_peak_window` (``VmHWM``), in MB."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return _rss_mb()
