"""`fcn-keras evaluate` and `zoo evaluate`: the demo's model on its held-out split, and the errors."""

from __future__ import annotations

import json

import pytest
from PIL import Image

import fcn_keras.data


# fcn_keras.data.dataset_source (the one dataset detection) is written by the data helper; until it
# lands these tests must fail, and once it does they run as usual.
needs_dataset_source = pytest.mark.xfail(not hasattr(fcn_keras.data, "dataset_source"), strict=True,
                                         reason="fcn_keras.data.dataset_source is not on this branch yet")


@needs_dataset_source
def test_evaluate_writes_scores_and_pictures(demo_run, tmp_path, fcn_keras_cmd):
    demo_out, _, _ = demo_run
    out = tmp_path / "eval"
    status, stdout, err = fcn_keras_cmd("evaluate", demo_out / "model.keras", demo_out / "data", "--split", "val",
                                        "--num-classes", "6", "--out", out)
    assert status == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    for name in ("pixel_accuracy", "mean_accuracy", "mean_iou", "frequency_weighted_iou"):
        assert 0.0 <= metrics[name] <= 1.0 and name in stdout
    # The same figures the demo computed on the same split with the same model.
    demo_metrics = json.loads((demo_out / "metrics.json").read_text())
    assert abs(metrics["mean_iou"] - demo_metrics["mean_iou"]) < 1e-9
    for name in ("confusion_matrix.png", "per_class_iou.png"):
        assert Image.open(out / name).format == "PNG"


@needs_dataset_source
def test_evaluate_refuses_a_class_count_mismatch(demo_run, tmp_path, fcn_keras_cmd):
    demo_out, _, _ = demo_run
    status, _, err = fcn_keras_cmd("evaluate", demo_out / "model.keras", demo_out / "data", "--split", "val")
    assert status == 1 and err.count("\n") == 1
    assert "predicts 6 classes but dataset" in err and "has 21" in err
    status, _, err = fcn_keras_cmd("evaluate", demo_out / "saved_model", demo_out / "data")
    assert status == 1 and "is a SavedModel; this command needs a Keras model" in err
    status, _, err = fcn_keras_cmd("evaluate", demo_out / "model.keras", tmp_path / "none")
    assert status == 1 and err == f"fcn-keras: error: {tmp_path / 'none'}: does not exist\n"  # a DataError


def test_zoo_evaluate_errors(demo_run, tmp_path, monkeypatch, fcn_keras_cmd):
    demo_out, _, _ = demo_run
    status, _, err = fcn_keras_cmd("zoo", "evaluate", "fcn8s_voc", "--voc", tmp_path / "none")
    assert status == 1 and err == f"fcn-keras: error: --voc {tmp_path / 'none'} is not a directory\n"
    monkeypatch.setenv("FCN_KERAS_HOME", str(tmp_path / "home"))
    status, _, err = fcn_keras_cmd("zoo", "evaluate", "fcn8s_voc", "--voc", demo_out / "data", "--split", "val")
    assert status == 1 and err.count("\n") == 1 and "fcn8s-heavy-pascal.caffemodel" in err
