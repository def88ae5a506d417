"""Training steps: FCN-8s (VGG16) at 320x320, Keras on the chosen backend against the PyTorch peer, one run.

Each measurement runs in a fresh subprocess (``python -m bench.bench_train
--worker JOB``, ``KERAS_BACKEND`` set to the run's backend), so its memory is
its own and the two frameworks take turns on the machine, and times, in that
same process, a 4096x4096 float32 matrix product (and a bfloat16 one for
bfloat16 rows) in the framework it runs on. Keras: FCN-8s compiled with the
reference loss (pixel cross-entropy summed, ``SegmentationCrossEntropy("sum")``)
and Caffe SGD (momentum 0.99, weight decay 5e-4, biases at twice the rate),
timed over ``train_on_batch`` after a warm-up step (on JAX ``train_on_batch`` is
one jit-compiled step; the warm-up compiles it). The peer (``bench/torch_peer.py``)
runs the same step: summed ``cross_entropy`` (ignore label 255), ``torch.optim.SGD``
with the same momentum, decay and bias rate, the fixed bilinear upsampling left
out of the update as in the Keras model, dropout on; bfloat16 there is
``torch.autocast``.

FLOPs per image are the forward FLOPs of :func:`bench.flops.model_flops` (the
project's one counter, from the layer shapes; the same network for the peer);
a training step is taken as 3x forward. ``ratio`` is the Keras step's time over
the peer's float32 step at the same batch (the issue's target: at most 0.5 at
batch 1, float32); *normalised* scales it by the two processes' float32 matmul
rates. ``quick`` runs one 32x32 Keras step in float32 over the small ``tiny_vgg`` encoder (a smoke test of
seconds).
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np

from bench.measure import check_backend, matmul_flops, peak_mb, seed, spawn, start_peak_window, worker_main

SIZE = 320
BF16 = "mixed_bfloat16"
MATMUL_SIZE = 4096
IGNORE_LABEL = 255


@dataclass(frozen=True)
class TrainJob:
    framework: str  # "keras" (on `backend`) or "torch"
    policy: str = "float32"  # Keras dtype policy; for torch, BF16 means bfloat16 autocast
    size: int = SIZE
    batch: int = 1
    warmup: int = 1
    steps: int = 3
    matmul_size: int = MATMUL_SIZE
    backend: str = "tensorflow"
    device: str = "cpu"  # the peer's ("auto": cuda where there is one); Keras on JAX runs on JAX's default device
    backbone: str = "vgg16"  # the Keras FCN-8s's; "tiny_vgg" (smoke tests): the peer at 1/8 width


def plan(quick: bool, backend: str = "tensorflow") -> list[TrainJob]:
    """The measurements of a full (or ``quick``) run, in order: batch 1, then batch 8.

    Example:
        >>> [(j.framework, j.policy[:5], j.batch) for j in plan(quick=False)][:4]
        [('keras', 'float', 1), ('keras', 'mixed', 1), ('torch', 'float', 1), ('torch', 'mixed', 1)]
    """
    check_backend(backend)
    if quick:
        return [TrainJob("keras", size=32, warmup=1, steps=1, matmul_size=256, backend=backend, backbone="tiny_vgg")]
    one = [TrainJob(f, p, batch=1, steps=3, backend=backend) for f in ("keras", "torch") for p in ("float32", BF16)]
    eight = [TrainJob("keras", p, batch=8, steps=2, backend=backend) for p in ("float32", BF16)]
    eight.append(TrainJob("torch", "float32", batch=8, steps=2, backend=backend))
    return one + eight


def run(quick: bool = False, backend: str = "tensorflow") -> dict:
    """Runs every job of :func:`plan` in its own subprocess; returns the figures and a ``table`` of rows.

    Example:
        >>> figures = run(quick=True, backend="jax")  # doctest: +SKIP
        >>> figures["rows"][0]["s_per_step"] > 0  # doctest: +SKIP
        True
    """
    import importlib.util

    has_torch = importlib.util.find_spec("torch") is not None
    jobs = [job for job in plan(quick, backend) if job.framework == "keras" or has_torch]
    rows = []
    for i, job in enumerate(jobs):
        rows.append(_row(job, spawn("bench.bench_train", asdict(job), backend)))
        print(f"[{i + 1}/{len(jobs)}] train {rows[-1]['framework']} {rows[-1]['precision']} "
              f"{job.batch}x{job.size}x{job.size}: "
              f"{rows[-1]['error'] or str(rows[-1]['s_per_step']) + ' s/step'}", flush=True)
    _add_flops_and_ratios(rows)
    return {
        "model": "fcn8s (VGG16), 21 classes",
        "backend": backend,
        "cpus": len(os.sched_getaffinity(0)),
        "torch_available": has_torch,
        "train_flops_rule": "3 x forward",
        "rows": rows,
        "table": [_table_row(r) for r in rows],
    }


def _row(job: TrainJob, result: dict) -> dict:
    row = {"framework": job.framework, "backend": job.backend if job.framework == "keras" else "torch",
           "precision": "bfloat16" if job.policy == BF16 else "float32", "size": job.size, "batch": job.batch,
           "error": result.get("error")}
    if row["error"] is None:
        row.update({k: result[k] for k in ("s_per_step", "first_step_s", "finite_loss", "peak_rss_mb")})
        row["img_per_s"] = job.batch / result["s_per_step"]
        row["matmul_gflops"] = result["matmul_flops"] / 1e9
        if "matmul_bf16_flops" in result:
            row["matmul_bf16_gflops"] = result["matmul_bf16_flops"] / 1e9
        if "flops" in result:
            row["flops_per_image"] = result["flops"]
    return row


def _add_flops_and_ratios(rows: list[dict]) -> None:
    # The peer is the same network: its FLOPs are those the Keras rows counted at the same size.
    flops = {r["size"]: r["flops_per_image"] for r in rows if "flops_per_image" in r}
    peers = {r["batch"]: r for r in rows
             if r["framework"] == "torch" and r["precision"] == "float32" and r["error"] is None}
    for row in rows:
        if row["error"] is not None:
            continue
        per_image = row.pop("flops_per_image", None) or flops.get(row["size"])
        if per_image:
            achieved = 3 * per_image * row["img_per_s"]
            row["gflop_per_image_forward"] = per_image / 1e9
            row["achieved_gflops"] = achieved / 1e9
            row["efficiency"] = achieved / 1e9 / row.get("matmul_bf16_gflops", row["matmul_gflops"])
        peer = peers.get(row["batch"])
        if peer and row is not peer:
            row["ratio"] = row["s_per_step"] / peer["s_per_step"]
            row["ratio_normalised"] = row["ratio"] * row["matmul_gflops"] / peer["matmul_gflops"]


def _table_row(row: dict) -> dict:
    head = {"framework": row["framework"], "backend": row["backend"], "precision": row["precision"],
            "input": f"{row['batch']}x{row['size']}x{row['size']}"}
    if row["error"]:
        return {**head, "error": row["error"]}

    def fmt(key, digits):
        return None if row.get(key) is None else round(row[key], digits)

    return {
        **head,
        "s/step": fmt("s_per_step", 3),
        "img/s": fmt("img_per_s", 3),
        "GFLOP/s (3x fwd)": fmt("achieved_gflops", 1),
        "matmul GFLOP/s": fmt("matmul_gflops", 1),
        "bf16 matmul GFLOP/s": fmt("matmul_bf16_gflops", 1),
        "efficiency": fmt("efficiency", 2),
        "peak RSS MB": fmt("peak_rss_mb", 0),
        "ratio to torch f32": fmt("ratio", 2),
        "ratio (normalised)": fmt("ratio_normalised", 2),
        "finite loss": row["finite_loss"],
    }


# ---------------------------------------------------------------- worker side


def _batch(size: int, batch: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(0, 50, (batch, size, size, 3)).astype("float32")
    y = rng.integers(0, 21, (batch, size, size)).astype("int32")
    return x, y


def _timed(step, warmup: int, steps: int) -> tuple[float, float, float]:
    """(first step seconds, mean seconds per step after ``warmup`` steps, last loss); ``step`` must return
    only once its update is done (a host float)."""
    start = time.perf_counter()
    loss = step()
    first = time.perf_counter() - start
    for _ in range(warmup - 1):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        loss = step()
    return first, (time.perf_counter() - start) / steps, loss


def keras_train(job: TrainJob) -> dict:
    """Times ``train_on_batch`` of FCN-8s under ``job.policy`` on this process's Keras backend."""
    import keras

    from bench.flops import model_flops
    from fcn_keras.losses import SegmentationCrossEntropy
    from fcn_keras.models import build_fcn
    from fcn_keras.optimizers import CaffeSGD

    keras.config.set_dtype_policy(job.policy)
    seed(0)
    model = build_fcn("fcn8s", num_classes=21, input_shape=(job.size, job.size, 3), backbone=job.backbone)
    model.compile(optimizer=CaffeSGD(learning_rate=1e-10), loss=SegmentationCrossEntropy("sum"))
    x, y = _batch(job.size, job.batch)
    setup_peak = start_peak_window()
    first, seconds, loss = _timed(lambda: float(np.asarray(model.train_on_batch(x, y)).ravel()[0]),
                                  job.warmup, job.steps)
    result = {"s_per_step": seconds, "first_step_s": first, "finite_loss": bool(np.isfinite(loss)),
              "setup_peak_rss_mb": setup_peak, "peak_rss_mb": peak_mb(),
              "matmul_flops": matmul_flops(job.backend, job.matmul_size)}
    if job.backend == "jax":
        from bench.bench_inference import jax_device

        result["device"] = jax_device()
    if job.policy == BF16:
        result["matmul_bf16_flops"] = matmul_flops(job.backend, job.matmul_size, "bfloat16")
    return {**result, "flops": model_flops(model, job.size, job.size)}


def torch_train(job: TrainJob, threads: int | None = None) -> dict:
    """Times the peer's training step (forward, summed cross-entropy, backward, SGD) on ``job.device``."""
    import torch

    from bench.bench_inference import PEER_WIDTH, _torch_name, torch_device
    from bench.torch_peer import FCN8s

    device = torch_device(job.device)
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = FCN8s(num_classes=21, width=PEER_WIDTH[job.backbone]).train().to(device)
    # As the Keras model: the bilinear upsampling is fixed; biases learn at twice the rate, undecayed.
    weights, biases = [], []
    for name, parameter in net.named_parameters():
        if name.startswith("upscore"):
            parameter.requires_grad_(False)
        else:
            (biases if name.endswith("bias") else weights).append(parameter)
    lr = 1e-10
    optimizer = torch.optim.SGD([{"params": weights, "weight_decay": 5e-4}, {"params": biases, "lr": 2 * lr}],
                                lr=lr, momentum=0.99)
    x, y = _batch(job.size, job.batch)
    x = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).to(device)
    y = torch.from_numpy(y).long().to(device)
    kind = device.split(":")[0]

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(kind, dtype=torch.bfloat16, enabled=job.policy == BF16):
            scores = net(x)
        loss = torch.nn.functional.cross_entropy(scores.float(), y, reduction="sum", ignore_index=IGNORE_LABEL)
        loss.backward()
        optimizer.step()
        return loss.item()  # a host float: the step is done (synchronises CUDA)

    setup_peak = start_peak_window()
    first, seconds, loss = _timed(step, job.warmup, job.steps)
    result = {"s_per_step": seconds, "first_step_s": first, "finite_loss": bool(np.isfinite(loss)),
              "setup_peak_rss_mb": setup_peak, "peak_rss_mb": peak_mb(),
              "matmul_flops": matmul_flops("torch", job.matmul_size, device=device), "device": _torch_name(device)}
    if job.policy == BF16:
        result["matmul_bf16_flops"] = matmul_flops("torch", job.matmul_size, "bfloat16", device)
    return result


def _worker(spec: dict) -> dict:
    job = TrainJob(**spec)
    if job.framework == "torch":
        return torch_train(job, len(os.sched_getaffinity(0)))
    if job.framework != "keras":
        raise ValueError(f"framework must be keras or torch, got {job.framework!r}")
    return keras_train(job)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        worker_main("bench.bench_train", _worker)
    else:
        sys.exit("usage: python -m bench.bench_train --worker JOB_JSON  (run the suite with: python -m bench)")
