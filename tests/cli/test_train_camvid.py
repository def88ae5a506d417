"""The shipped CamVid recipes from the shell: train from a folder of split files, evaluate, and fail offline clearly.

The folder is written here in CamVid's layout (JPEG images, greyscale index
PNGs with 11 = void); the real CamVid run and its figures are in bench/README.md.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from fcn_keras.data import load_metadata


def write_camvid_like(root: Path, counts=(("train", 3), ("val", 1), ("test", 2)), size=(360, 480)) -> Path:
    """A CamVid-layout folder: ``<split>/<name>.jpg``, ``<split>annot/<name>.png`` and ``<split>.txt``."""
    rng = np.random.default_rng(0)
    for split, count in counts:
        (root / split).mkdir(parents=True)
        (root / f"{split}annot").mkdir()
        lines = []
        for i in range(count):
            label = np.full(size, 3, np.uint8)  # road, with a sky band, a car and void
            label[: size[0] // 3] = 0
            label[size[0] // 2:, i * 40: i * 40 + 120] = 8
            label[-10:] = 11
            image = (np.asarray([[128, 128, 128], [128, 0, 0], [0, 0, 0], [128, 64, 128]] + [[64, 0, 128]] * 8,
                                np.uint8)[np.minimum(label, 11)] + rng.integers(0, 30, size + (3,))).astype(np.uint8)
            Image.fromarray(image).save(root / split / f"f{i}.jpg", quality=95)
            Image.fromarray(label).save(root / f"{split}annot" / f"f{i}.png")
            lines.append(f"{split}/f{i}.jpg {split}annot/f{i}.png")
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.mark.slow
def test_camvid_recipe_trains_from_a_folder_and_evaluates(tmp_path, fcn_keras_cmd):
    root = write_camvid_like(tmp_path / "camvid")
    run = tmp_path / "run"
    status, stdout, err = fcn_keras_cmd("train", "camvid_mobilenet_v2_scratch", "--data", root, "--out", run,
                                        "--steps", "1")
    assert status == 0, err
    assert "trained camvid_mobilenet_v2_scratch to step 1" in stdout and (run / "best.keras").is_file()
    # The first validation comes after one step here: BatchNorm momentum is chosen for that.
    assert "on 52 layers: their moving statistics must settle within one epoch (1 steps)" in stdout
    # The model carries the dataset's identity: CamVid's class names and colours.
    model = keras.models.load_model(run / "best.keras")
    assert model.class_names == load_metadata("camvid").class_names
    assert model.palette.tolist() == load_metadata("camvid").colors.tolist()
    status, stdout, err = fcn_keras_cmd("evaluate", run / "best.keras", root / "test.txt", "--metadata", "camvid",
                                        "--out", tmp_path / "eval")
    assert status == 0, err
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert 0.0 <= metrics["mean_iou"] <= 1.0 and metrics["num_images"] == 2
    assert list(metrics["per_class_iou"]) == list(load_metadata("camvid").class_names)


def test_the_imagenet_recipe_fails_offline_in_one_clear_line(tmp_path, fcn_keras_cmd, monkeypatch):
    cached = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"
    if (cached / "vgg16_weights_tf_dim_ordering_tf_kernels.h5").is_file():
        pytest.skip("the ImageNet VGG16 weights are in Keras' cache: the recipe would train, not fail")
    root = write_camvid_like(tmp_path / "camvid", counts=(("train", 1), ("val", 1)))
    status, _, err = fcn_keras_cmd("train", "camvid_fcn8s_vgg16", "--data", root, "--out", tmp_path / "run")
    assert status == 1 and err.count("\n") == 1, err
    assert "Could not download the ImageNet VGG16 weights" in err and "--init <path>" in err
    assert not (tmp_path / "run" / "model.keras").exists()
