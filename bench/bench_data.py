"""Input pipeline throughput: images/second delivered to the model.

VOC-sized images (500x375, synthetic JPEG + palette PNG), random scale 0.5-2.0,
crop to 320x320 with padding, horizontal flip, batch 8, reference preprocessing;
from raw files (PIL decoding in tf.data) and from prepared TFRecord shards
(native TF decoding). The machine's core count is part of the result: tf.data
uses every core it is given.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

BATCH = 8
CROP = 320
VOC_SIZE = (375, 500)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _throughput(data, batches: int, warmup: int, preprocessing: str | None = "fcn") -> tuple[float, float]:
    """(images per wall-clock second, images per CPU-second of this process)."""
    from fcn_keras.data import make_pipeline

    pipeline = make_pipeline(
        data, training=True, batch_size=BATCH, crop_size=CROP, scale_range=(0.5, 2.0), flip=True, seed=0, repeat=True,
        preprocessing=preprocessing,
    )
    iterator = iter(pipeline)
    for _ in range(warmup):
        next(iterator)
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(batches):
        images, _ = next(iterator)
    images.numpy()  # the last batch is materialised
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return batches * BATCH / wall, batches * BATCH / cpu


def run(quick: bool = False) -> dict:
    """Measures raw-file and prepared-shard throughput; quick mode takes a few seconds."""
    from fcn_keras.data import prepare, voc_source, write_synthetic_voc

    num_images, batches, warmup = (8, 2, 1) if quick else (96, 60, 5)
    with tempfile.TemporaryDirectory() as tmp:
        root = write_synthetic_voc(Path(tmp) / "voc", num_images=num_images, seed=0, image_size=VOC_SIZE)
        source = voc_source(root, "trainval")
        start = time.perf_counter()
        prepared = prepare(source, Path(tmp) / "prepared", num_shards=4, verbose=0)
        prepare_rate = num_images / (time.perf_counter() - start)
        rates = {
            "raw files (PIL decode)": _throughput(source, batches, warmup),
            "prepared shards (TFRecord)": _throughput(str(prepared), batches, warmup),
            # Models built with include_preprocessing=True do the BGR/mean step on the accelerator.
            "prepared shards, preprocessing in the model": _throughput(str(prepared), batches, warmup, None),
        }
    cores = _cores()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    table = [
        {"source": name, "images/s": round(rate, 1), "images/CPU-s": round(per_cpu, 1), "cores": cores,
         "batch": BATCH, "crop": f"{CROP}x{CROP}"}
        for name, (rate, per_cpu) in rates.items()
    ]
    raw, shards = rates["raw files (PIL decode)"], rates["prepared shards (TFRecord)"]
    return {
        "cores": cores,
        "load_average_1min": load,  # other processes competing for those cores
        "image_size": f"{VOC_SIZE[1]}x{VOC_SIZE[0]}",
        "raw_images_per_s": round(raw[0], 1),
        "prepared_images_per_s": round(shards[0], 1),
        # CPU-seconds are independent of other load: cores x this bounds an idle machine's rate.
        "raw_images_per_cpu_s": round(raw[1], 1),
        "prepared_images_per_cpu_s": round(shards[1], 1),
        "prepared_no_preprocessing_images_per_s": round(rates["prepared shards, preprocessing in the model"][0], 1),
        "prepare_images_per_s": round(prepare_rate, 1),
        "quick": quick,
        "table": table,
    }


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(quick="--quick" in sys.argv), indent=1))
