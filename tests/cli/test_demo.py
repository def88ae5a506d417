"""`fcn-keras demo` in a reduced configuration: every artefact exists and is well-formed."""

from __future__ import annotations

import doctest
import json

import numpy as np
from PIL import Image

from fcn_keras import demo
from fcn_keras.files import prepare_output_dir
from fcn_keras.palette import voc_palette


def test_demo_writes_every_artefact(demo_run):
    out, status, stdout = demo_run
    assert status == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for name in ("mean_iou", "pixel_accuracy", "mean_accuracy", "frequency_weighted_iou"):
        assert 0.0 <= metrics[name] <= 1.0, name
    assert set(metrics["per_class_iou"]) == {"background", "shape 1", "shape 2", "shape 3", "shape 4", "shape 5"}
    confusion = np.array(metrics["confusion_matrix"])
    assert confusion.shape == (6, 6) and confusion.sum() > 0
    # The printed summary names every artefact, and each exists.
    for role, name in demo.ARTEFACTS.items():
        assert (out / name).exists(), role
        assert f"{role}" in stdout and str(out / name) in stdout
    for printed in ("pixel_accuracy", "mean_accuracy", "mean_iou", "frequency_weighted_iou", "shape 5"):
        assert printed in stdout


def test_demo_exports_load_and_agree_with_keras(demo_run):
    out, _, _ = demo_run
    version = out / "saved_model" / "1"
    assert (version / "saved_model.pb").is_file()
    assert json.loads((version / "assets" / "export.json").read_text())["class_names"][1] == "shape 1"
    assert (out / "model.tflite").read_bytes()[4:8] == b"TFL3"
    parity = json.loads((out / "parity.json").read_text())
    assert parity["savedmodel"]["passed"] and parity["savedmodel"]["max_relative_error"] <= 1e-4
    assert parity["tflite"]["passed"] and parity["tflite"]["pixel_agreement"] == 1.0


def test_demo_pictures_are_well_formed(demo_run):
    out, _, _ = demo_run
    for name in ("confusion_matrix.png", "per_class_iou.png", "training_curves.png"):
        picture = Image.open(out / name)
        assert picture.format == "PNG" and picture.width > 200 and picture.height > 100, name
    log = (out / "training_log.csv").read_text().splitlines()
    assert log[0].startswith("epoch,") and "val_mean_iou" in log[0] and len(log) == 3  # header + 2 epochs
    sample = sorted(p.name for p in (out / "sample").iterdir())
    stem = sample[0].rsplit("_", 1)[0]
    assert sample == [f"{stem}_{kind}.png" for kind in ("color", "comparison", "mask", "overlay")]
    mask = np.asarray(Image.open(out / "sample" / f"{stem}_mask.png"))
    colour = np.asarray(Image.open(out / "sample" / f"{stem}_color.png"))
    assert mask.shape == (32, 48) and mask.max() < 6
    np.testing.assert_array_equal(colour, voc_palette(256)[mask])


def test_demo_is_deterministic_for_a_seed(demo_run, tmp_path, capsys):
    # The dataset is the same for the same seed (training determinism is checked on the full demo run).
    out, _, _ = demo_run
    from fcn_keras.data import write_synthetic_voc

    again = write_synthetic_voc(tmp_path / "again", num_images=8, seed=0, image_size=(32, 48), num_classes=6,
                                val_fraction=0.2)
    first = sorted((out / "data" / "SegmentationClass").iterdir())
    assert [p.read_bytes() for p in first] == [(again / "SegmentationClass" / p.name).read_bytes() for p in first]


def test_overwrite_replaces_only_the_demo_artefacts(tmp_path):
    out = tmp_path / "d"
    (out / "sample").mkdir(parents=True)
    (out / "metrics.json").write_text("{}")
    (out / "notes.txt").write_text("mine")
    prepare_output_dir(out, overwrite=True, remove=list(demo.ARTEFACTS.values()))
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_docstring_examples_run():
    result = doctest.testmod(demo, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 3 and result.failed == 0
