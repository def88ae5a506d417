"""The running metrics of a resume state written under another number of replicas (in-process).

Killed and resumed runs, on one device and under tf.distribute, are in test_training.py.
"""

from __future__ import annotations

import json

import keras
import numpy as np

from fcn_keras.losses import SegmentationCrossEntropy
from fcn_keras.metrics import SegmentationMetrics
from fcn_keras.training import BestCheckpoint, ResumeState, build_training_state, variable_values


def test_a_state_from_two_replicas_resumes_its_running_metrics_on_one_device(tmp_path):
    model = keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(3, 1)])
    model.compile(optimizer="sgd", loss=SegmentationCrossEntropy(), metrics=[SegmentationMetrics(3)])
    build_training_state(model)
    rng = np.random.default_rng(0)
    model.fit(rng.normal(size=(2, 4, 4, 3)).astype("float32"), rng.integers(0, 3, (2, 4, 4)), verbose=0)
    metrics = [v for m in model.metrics for v in m.variables]
    totals = variable_values(metrics)
    named = dict(zip([v.name for v in metrics], totals))
    assert named["total"] and named["count"] and named["confusion_low"].sum() == 2 * 4 * 4, named
    state = ResumeState(tmp_path, steps_per_epoch=4, every=1, best=BestCheckpoint(tmp_path / "best.keras"))
    state.set_model(model)
    state.epoch, state.step_in_epoch = 0, 1
    state.save()
    # As two replicas would have written it: each held a part of every running total.
    path = tmp_path / json.loads((tmp_path / "latest.json").read_text())["path"] / "variables.npz"
    with np.load(path) as saved:
        arrays = dict(saved)
    parts = [key for key in arrays if key.startswith("metric_replicas/")]
    assert len(parts) == len(metrics)
    for key in parts:
        whole = arrays[key][0]
        half = whole // 2 if whole.dtype.kind == "i" else whole / 2
        arrays[key] = np.stack([whole - half, half])
    np.savez(path, **arrays)
    for metric in model.metrics:
        metric.reset_state()

    resumed = ResumeState(tmp_path, steps_per_epoch=4, every=1, best=BestCheckpoint(tmp_path / "best.keras"))
    assert resumed.load()
    resumed.set_model(model)
    resumed.on_train_begin()
    resumed.on_epoch_begin(0)  # where Keras has just reset the metrics
    for name, value, total in zip([v.path for v in metrics], variable_values(metrics), totals):
        np.testing.assert_array_equal(value, total, err_msg=name)
