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


def _camvid_folder(root, labels):
    """A tiny folder dataset in CamVid's layout: RGB JPEGs, greyscale label PNGs (11 = void), a split file."""
    import numpy as np

    (root / "images").mkdir(parents=True)
    (root / "annot").mkdir()
    lines = []
    for i, label in enumerate(labels):
        rng = np.random.default_rng(i)
        Image.fromarray(rng.integers(0, 256, (*label.shape, 3), dtype=np.uint8)).save(root / "images" / f"{i}.jpg")
        Image.fromarray(label.astype(np.uint8)).save(root / "annot" / f"{i}.png")
        lines.append(f"images/{i}.jpg annot/{i}.png")
    (root / "test.txt").write_text("\n".join(lines) + "\n")
    return root / "test.txt"


@pytest.fixture(scope="module")
def camvid_model(tmp_path_factory):
    """An untrained 11-class model with CamVid's class names, saved as .keras."""
    import fcn_keras
    from fcn_keras.data import load_metadata

    path = tmp_path_factory.mktemp("camvid_model") / "camvid.keras"
    fcn_keras.fcn32s(class_names=list(load_metadata("camvid").class_names), backbone="tiny_vgg").save(path)
    return path


@needs_dataset_source
def test_evaluate_a_folder_split_with_metadata_writes_metrics_json(camvid_model, tmp_path, fcn_keras_cmd):
    import numpy as np

    from fcn_keras.data import load_metadata

    labels = [np.arange(24 * 32).reshape(24, 32) % 12 for _ in range(3)]  # every class and the void 11
    split = _camvid_folder(tmp_path / "camvid", labels)
    out = tmp_path / "E"
    status, stdout, err = fcn_keras_cmd("evaluate", camvid_model, split, "--metadata", "camvid", "--out", out)
    assert status == 0, err
    assert "(3 images)" in stdout
    metrics = json.loads((out / "metrics.json").read_text())
    for name in ("mean_iou", "pixel_accuracy", "mean_accuracy", "frequency_weighted_iou"):
        assert 0.0 <= metrics[name] <= 1.0, name
    names = list(load_metadata("camvid").class_names)
    assert list(metrics["per_class_iou"]) == names and metrics["class_names"] == names
    # CamVid's void 11 is remapped to the ignore label and not counted: 11 of every 12 pixels are.
    assert np.array(metrics["confusion_matrix"]).sum() == sum(int((l != 11).sum()) for l in labels)
    assert metrics["num_images"] == 3


@needs_dataset_source
def test_evaluate_refuses_a_split_with_nothing_to_score(camvid_model, tmp_path, fcn_keras_cmd):
    import numpy as np

    empty = tmp_path / "empty.txt"
    empty.write_text("# no examples yet\n\n")
    status, _, err = fcn_keras_cmd("evaluate", camvid_model, empty, "--metadata", "camvid")
    assert status == 1 and err == f"fcn-keras: error: {empty}: the split is empty (no examples)\n"
    # Listed examples whose every pixel is void (CamVid's 11): no NaN scores, one line naming the split.
    split = _camvid_folder(tmp_path / "void", [np.full((24, 32), 11) for _ in range(2)])
    out = tmp_path / "E"
    status, _, err = fcn_keras_cmd("evaluate", camvid_model, split, "--metadata", "camvid", "--out", out)
    assert status == 1 and err.count("\n") == 1
    assert err.startswith(f"fcn-keras: error: evaluate: dataset 'folder:{split}' has 2 images but no pixel labelled")
    assert not (out / "metrics.json").exists()


@needs_dataset_source
def test_evaluate_checks_a_local_weights_file(tmp_path, fcn_keras_cmd):
    """--weights must be the published weights; --no-verify accepts others, whose layers are still checked."""
    import numpy as np

    import fcn_keras

    split = _camvid_folder(tmp_path / "camvid", [np.zeros((24, 32), int)])
    small = tmp_path / "small.weights.h5"
    fcn_keras.fcn32s(num_classes=21, backbone="tiny_vgg").save_weights(small)
    status, _, err = fcn_keras_cmd("evaluate", "fcn32s_voc", split, "--metadata", "camvid", "--weights", small)
    assert status == 1 and err.count("\n") == 1
    assert err.startswith(f"fcn-keras: error: {small}: sha256 is ") and err.endswith("On the command line: --no-verify.\n")
    status, _, err = fcn_keras_cmd("evaluate", "fcn32s_voc", split, "--metadata", "camvid", "--weights", small,
                                   "--no-verify")
    assert status == 1 and err == (f"fcn-keras: error: weights_path {small} does not fit model 'fcn32s_voc': layer "
                                   "'conv1_1' has no weights in the file (15 of the model's 17 layers with weights are "
                                   "missing)\n")
