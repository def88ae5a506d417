"""Training throughput: FCN-8s (VGG16) at 320x320, batch 8, float32 and mixed precision, with FLOP rates.

Each policy builds FCN-8s, compiles it with the reference loss (summed) and
Caffe SGD, and times ``train_on_batch`` after warm-up steps. FLOPs per image
are the forward FLOPs of :func:`bench.flops.model_flops` (the project's one
counter, from the layer shapes); a training step is taken as 3x forward.
``quick`` runs a 32x32 batch of 1 in float32 only (a smoke test of seconds).
"""

from __future__ import annotations

import time

import numpy as np
import keras

SIZE, BATCH = 320, 8


def _measure(policy: str, size: int, batch: int, warmup: int, steps: int) -> dict:
    from bench.flops import model_flops
    from fcn_keras.losses import SegmentationCrossEntropy
    from fcn_keras.models import fcn8s
    from fcn_keras.optimizers import CaffeSGD

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        keras.utils.set_random_seed(0)
        model = fcn8s(num_classes=21, input_shape=(size, size, 3))
        model.compile(optimizer=CaffeSGD(learning_rate=1e-10), loss=SegmentationCrossEntropy("sum"))
        rng = np.random.default_rng(0)
        x = rng.normal(0, 50, (batch, size, size, 3)).astype("float32")
        y = rng.integers(0, 21, (batch, size, size)).astype("int32")
        for _ in range(warmup):
            model.train_on_batch(x, y)
        start = time.perf_counter()
        for _ in range(steps):
            loss = model.train_on_batch(x, y)
        elapsed = (time.perf_counter() - start) / steps
        flops = model_flops(model, size, size)
    finally:
        keras.config.set_dtype_policy(previous)
    return {
        "policy": policy,
        "size": size,
        "batch": batch,
        "s_per_step": round(elapsed, 4),
        "img_per_s": round(batch / elapsed, 3),
        "gflops_per_image_forward": round(flops / 1e9, 2),
        "achieved_tflops": round(3 * flops * batch / elapsed / 1e12, 4),
        "finite_loss": bool(np.isfinite(float(np.asarray(loss).ravel()[0]))),
    }


def run(quick: bool = False) -> dict:
    """Times training steps per policy; returns the figures and a ``table`` of rows."""
    import os

    if quick:
        rows = [_measure("float32", 32, 1, warmup=1, steps=1)]
    else:
        rows = [_measure(p, SIZE, BATCH, warmup=1, steps=2) for p in ("float32", "mixed_bfloat16", "mixed_float16")]
    return {
        "model": "fcn8s (VGG16), 21 classes",
        "backend": keras.backend.backend(),
        "cpus": os.cpu_count(),
        "train_flops_rule": "3 x forward",
        "table": rows,
    }


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(quick="--quick" in sys.argv), indent=1))
