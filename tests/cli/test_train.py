"""`fcn-keras train`: a recipe file run for real, resumed, and its errors."""

from __future__ import annotations

import csv

import pytest

RECIPE = """
description = "CLI test: FCN-32s over tiny_vgg on synthetic shapes"
[model]
architecture = "fcn32s"
backbone = "tiny_vgg"
num_classes = 3
[init]
source = "none"
[data]
dataset = "synthetic"
batch_size = 2
crop_size = [32, 32]
synthetic_images = 6
synthetic_size = [32, 32]
[loss]
reduction = "mean"
[optimizer]
name = "caffe_sgd"
learning_rate = 0.01
momentum = 0.9
[training]
steps = 1
steps_per_epoch = 1
checkpoint_every = 1
"""


@pytest.fixture
def recipe(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(RECIPE)
    return path


def test_train_runs_a_recipe(recipe, tmp_path, fcn_keras_cmd):
    # One step: the training machinery (and its exact resume) is tested in tests/training.
    out = tmp_path / "run"
    status, stdout, err = fcn_keras_cmd("train", recipe, "--out", out)
    assert status == 0, err
    assert "trained tiny to step 1" in stdout and "best validation mean IU" in stdout
    assert (out / "model.keras").is_file() and (out / "resume").is_dir()
    with open(out / "train_log.csv") as f:
        assert "val_mean_iou" in next(csv.DictReader(f))
    # Calling it again resumes (nothing left to do) instead of refusing the directory.
    status, stdout, err = fcn_keras_cmd("train", recipe, "--out", out)
    assert status == 0 and "to step 1" in stdout, err


def test_train_errors_are_one_line(recipe, tmp_path, fcn_keras_cmd):
    bad = tmp_path / "bad.toml"
    bad.write_text(RECIPE.replace("[model]", "[model]\nlayers = 3"))
    status, _, err = fcn_keras_cmd("train", bad, "--out", tmp_path / "a")
    assert status == 1 and err.count("\n") == 1 and str(bad) in err and "'layers'" in err
    status, _, err = fcn_keras_cmd("train", "no_such_recipe", "--out", tmp_path / "a")
    assert status == 1 and "no recipe named 'no_such_recipe'" in err and "tiny_synthetic" in err
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "x").write_text("")
    status, _, err = fcn_keras_cmd("train", recipe, "--out", taken)
    assert status == 1 and "already exists and is not empty; pass --overwrite" in err
    status, _, err = fcn_keras_cmd("train", recipe, "--out", tmp_path / "b", "--data", tmp_path / "nowhere")
    assert status == 1 and err == f"fcn-keras: error: --data {tmp_path / 'nowhere'} does not exist\n"


def test_train_refuses_an_init_model_with_another_class_count(demo_run, recipe, tmp_path, fcn_keras_cmd):
    demo_out, _, _ = demo_run  # its model has 6 classes, the recipe 3
    status, _, err = fcn_keras_cmd("train", recipe, "--out", tmp_path / "c", "--init", demo_out / "model.keras")
    assert status == 1 and err.count("\n") == 1
    assert "score_fr" in err, err
