"""The GPU figures, Keras on JAX against the PyTorch peer on one accelerator: what ``bench/gpu.sh`` runs.

``python -m bench.gpu [--quick] [--out DIR]`` runs, each in a fresh subprocess
(the workers of ``bench_inference`` and ``bench_train``, ``KERAS_BACKEND=jax``):

- inference, FCN-8s 500x500 batch 1: the jit'ed ``stateless_call`` in float32
  and ``mixed_bfloat16``, median latency of 50 calls, each to
  ``block_until_ready`` (input already on the device); the peer on ``cuda`` in
  float32 and ``torch.autocast`` bfloat16, each call synchronised;
- training at 320x320, batch ``FCN_KERAS_GPU_TRAIN_BATCH`` (default 32):
  ``train_on_batch`` (one jit-compiled step on JAX) in ``mixed_bfloat16`` and
  float32, and the peer's step (bfloat16 autocast and float32); images/s, and
  the bfloat16 rows' achieved FLOP/s (3x the forward count of
  ``bench/flops.py``) as a fraction of the H200's dense bfloat16 peak: the
  989 TFLOP/s of NVIDIA's specification, and the 8192x8192 bfloat16 matrix
  product measured in the same process (about 790 TFLOP/s there).

It writes ``DIR/gpu.json`` (default ``$OUT``, else ``./gpu-out``): the devices,
the versions, every row, and a ``summary`` with the issue's figures.
``--quick`` (or ``FCN_KERAS_GPU_QUICK=1``) shrinks every size to seconds, to
test the script on a CPU. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import importlib.util
import json
import os
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path

from bench.bench_inference import BF16, Job
from bench.bench_train import TrainJob
from bench.measure import spawn

H200_BF16_PEAK_TFLOPS = 989.0  # NVIDIA's H200 SXM dense bfloat16 figure (1979 with 2:4 sparsity)
TRAIN_SIZE = 320


def plan(quick: bool, device: str, train_batch: int) -> tuple[list[Job], list[TrainJob]]:
    """The inference and training jobs; ``device`` is the peer's (``"auto"``: cuda if any).

    ``quick`` (a CPU smoke test of the script) keeps one row per worker kind, in bfloat16 (the issue's GPU
    targets), at tiny sizes: the Keras model over the small ``tiny_vgg`` encoder and the peer at 1/8 width.
    VGG16's costs tens of CPU seconds a process even at 64x64 (conv1_1's 100-pixel pad makes it 264x264,
    and XLA's CPU convolutions are slow), and every row is a process that imports JAX or PyTorch.

    Example:
        >>> inference, training = plan(quick=False, device="auto", train_batch=32)
        >>> [(j.variant, j.policy[:5]) for j in inference]
        [('call', 'float'), ('call', 'mixed'), ('torch', 'float'), ('torch', 'mixed')]
        >>> [(j.framework, j.policy[:5], j.batch) for j in training]
        [('keras', 'mixed', 32), ('keras', 'float', 32), ('torch', 'mixed', 32), ('torch', 'float', 32)]
        >>> [(j.variant, j.policy[:5], j.size) for j in plan(True, "auto", 32)[0]]
        [('call', 'mixed', 64), ('torch', 'float', 64)]
    """
    if quick:
        inference = [Job(v, 64, repeats=1, matmul_size=256, backend="jax", policy=p, device=device,
                         backbone="tiny_vgg") for v, p in (("call", BF16), ("torch", "float32"))]
        training = [TrainJob(f, BF16, 32, 1, 1, 1, 256, backend="jax", device=device, backbone="tiny_vgg")
                    for f in ("keras", "torch")]
        return inference, training
    inference = [Job(v, 500, repeats=50, matmul_size=8192, backend="jax", policy=p, device=device)
                 for v in ("call", "torch") for p in ("float32", BF16)]
    training = [TrainJob(f, p, TRAIN_SIZE, train_batch, 2, 10, 8192, backend="jax", device=device)
                for f in ("keras", "torch") for p in (BF16, "float32")]
    return inference, training


def _versions() -> dict:
    versions = {}
    for package in ("keras", "jax", "jaxlib", "torch", "numpy", "tensorflow"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def _summary(inference: list[dict], training: list[dict]) -> dict:
    def find(rows, **keys):
        return next((r for r in rows if all(r.get(k) == v for k, v in keys.items()) and "error" not in r), None)

    out = {}
    for precision, policy in (("float32", "float32"), ("bfloat16", BF16)):
        keras_row, torch_row = find(inference, variant="call", policy=policy), find(inference, variant="torch",
                                                                                     policy=policy)
        out[f"inference_{precision}_ms"] = keras_row and round(1e3 * keras_row["median_s"], 3)
        out[f"torch_inference_{precision}_ms"] = torch_row and round(1e3 * torch_row["median_s"], 3)
        keras_row, torch_row = find(training, framework="keras", policy=policy), find(training, framework="torch",
                                                                                      policy=policy)
        out[f"train_{precision}_images_per_s"] = keras_row and round(keras_row["img_per_s"], 2)
        out[f"torch_train_{precision}_images_per_s"] = torch_row and round(torch_row["img_per_s"], 2)
        for name, row in (("train", keras_row), ("torch_train", torch_row)):
            if row and precision == "bfloat16" and row.get("achieved_tflops"):
                out[f"{name}_bf16_fraction_of_spec_peak"] = row["achieved_tflops"] / H200_BF16_PEAK_TFLOPS  # unrounded:
                # a CPU's (the smoke test's) is ~1e-6
                out[f"{name}_bf16_fraction_of_measured_matmul"] = row.get("fraction_of_matmul")
    return out


def run(quick: bool = False, out: str | None = None) -> dict:
    """Runs :func:`plan`'s jobs, each in its own process; writes and returns ``gpu.json``'s figures."""
    batch = int(os.environ.get("FCN_KERAS_GPU_TRAIN_BATCH", "32"))
    inference_jobs, training_jobs = plan(quick, "auto", batch)
    torch_available = importlib.util.find_spec("torch") is not None
    if not torch_available:  # the peer needs PyTorch (the bench extra), which the GPU machine has: its rows go
        inference_jobs = [job for job in inference_jobs if job.variant != "torch"]
        training_jobs = [job for job in training_jobs if job.framework != "torch"]
    started = time.perf_counter()
    inference, training, flops = [], [], {}
    for job in inference_jobs:
        spec = {**asdict(job), "threads": len(os.sched_getaffinity(0)), "workdir": "",
                **({"count_flops": [job.size]} if job.variant == "call" and not flops else {})}
        result = spawn("bench.bench_inference", spec, "jax")
        flops.update({int(k): v for k, v in result.pop("flops", {}).items()})
        inference.append(_inference_row(job, result, flops.get(job.size)))
        print(f"inference {job.variant} {job.policy} {job.batch}x{job.size}: {_brief(inference[-1], 'median_s')}",
              flush=True)
    for job in training_jobs:
        result = spawn("bench.bench_train", asdict(job), "jax")
        if "flops" in result:
            flops[job.size] = result["flops"]
        training.append(_training_row(job, result, flops.get(job.size)))
        print(f"train {job.framework} {job.policy} {job.batch}x{job.size}: {_brief(training[-1], 'img_per_s')}",
              flush=True)
    figures = {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "quick": quick,
        "torch_available": torch_available,
        "host": platform.node(),
        "devices": sorted({r["device"] for r in inference + training if "device" in r}),
        "versions": _versions(),
        "h200_bf16_peak_tflops_spec": H200_BF16_PEAK_TFLOPS,
        "gflop_per_image_forward": {str(k): round(v / 1e9, 2) for k, v in sorted(flops.items())},
        "train_flops_rule": "3 x forward",
        "inference": inference,
        "training": training,
        "summary": _summary(inference, training),
        "seconds": round(time.perf_counter() - started, 1),
    }
    folder = Path(out or os.environ.get("OUT") or "gpu-out")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "gpu.json").write_text(json.dumps(figures, indent=1) + "\n")
    print(f"wrote {folder / 'gpu.json'}", flush=True)
    return figures


def _brief(row: dict, key: str) -> str:
    return row["error"] if "error" in row else f"{row[key]:.4g} {key}"


def _inference_row(job: Job, result: dict, flops: int | None) -> dict:
    row = {"variant": job.variant, "policy": job.policy, "size": job.size, "batch": job.batch,
           **result}
    if "error" not in row and flops:
        row["achieved_tflops"] = flops * job.batch / row["median_s"] / 1e12
    return row


def _training_row(job: TrainJob, result: dict, flops: int | None) -> dict:
    row = {"framework": job.framework, "policy": job.policy, "size": job.size, "batch": job.batch,
           **result}
    row.pop("flops", None)
    if "error" not in row:
        row["img_per_s"] = job.batch / row["s_per_step"]
        if flops:
            row["achieved_tflops"] = 3 * flops * row["img_per_s"] / 1e12
            rate = row.get("matmul_bf16_flops") if job.policy == BF16 else row.get("matmul_flops")
            row["fraction_of_matmul"] = row["achieved_tflops"] * 1e12 / rate if rate else None
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", default=os.environ.get("FCN_KERAS_GPU_QUICK") == "1",
                        help="tiny sizes (also FCN_KERAS_GPU_QUICK=1): tests the script on a CPU")
    parser.add_argument("--out", help="output folder (default $OUT, else ./gpu-out)")
    args = parser.parse_args(argv)
    figures = run(args.quick, args.out)
    failed = [r for r in figures["inference"] + figures["training"] if "error" in r]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
