"""`--precision bfloat16` on `fcn-keras predict` and `fcn-keras export`: outputs, refusals, the bfloat16 SavedModel."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from PIL import Image

import fcn_keras
from bench.bench_export import randomize_scores
from fcn_keras import hardware
from tests.test_precision import CASCADE_LAKE, NO_GPU, ZEN4


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A tiny FCN-8s file (RGB 0-255 in, random score layers) and one image it gives three classes."""
    root = tmp_path_factory.mktemp("precision")
    keras.utils.set_random_seed(2)
    randomize_scores(fcn_keras.fcn8s(num_classes=4, backbone="tiny_vgg", include_preprocessing=True),
                     seed=2).save(root / "m.keras")
    (root / "images").mkdir()
    coarse = np.random.default_rng(1).uniform(0, 255, (4, 5, 3))
    Image.fromarray(np.kron(coarse, np.ones((32, 32, 1)))[:117, :150].astype(np.uint8)).save(root / "images" / "a.png")
    return root


@pytest.fixture
def cpu(monkeypatch, tmp_path):
    """Makes the detection read a cpuinfo file with the given text."""
    monkeypatch.delenv(hardware.ALLOW_SLOW_ENV, raising=False)

    def use(text: str) -> None:
        (tmp_path / "cpuinfo").write_text(text)
        monkeypatch.setattr(hardware, "CPUINFO", str(tmp_path / "cpuinfo"))

    return use


def mask(directory) -> np.ndarray:
    return np.asarray(Image.open(directory / "a_mask.png"))


def test_predict_in_bfloat16_writes_the_float32_masks(fcn_keras_cmd, work, tmp_path, cpu):
    cpu(ZEN4)
    status, out, _ = fcn_keras_cmd("predict", work / "m.keras", work / "images", "--out", tmp_path / "bf16",
                                   "--precision", "bfloat16")
    assert status == 0 and "fcn8s_tiny_vgg (" in out and ", bfloat16 into" in out
    assert sorted(p.name for p in (tmp_path / "bf16").iterdir()) == ["a_color.png", "a_mask.png", "a_overlay.png"]
    assert fcn_keras_cmd("predict", work / "m.keras", work / "images", "--out", tmp_path / "fp32")[0] == 0
    reference = mask(tmp_path / "fp32")
    assert len(np.unique(reference)) > 1 and np.mean(mask(tmp_path / "bf16") == reference) >= 0.98


@NO_GPU
def test_predict_refuses_bfloat16_where_it_is_emulated(fcn_keras_cmd, work, tmp_path, cpu):
    cpu(CASCADE_LAKE)
    status, _, err = fcn_keras_cmd("predict", work / "m.keras", work / "images", "--out", tmp_path / "out",
                                   "--precision", "bfloat16")
    assert status == 1 and "--precision bfloat16" in err and "emulated and slower than float32" in err
    assert hardware.ALLOW_SLOW_ENV in err and not any((tmp_path / "out").glob("*.png"))


def test_export_bfloat16_saved_model(fcn_keras_cmd, work, tmp_path, cpu):
    import tensorflow as tf

    cpu(ZEN4)
    status, _, err = fcn_keras_cmd("export", work / "m.keras", "--saved-model", tmp_path / "sm", "--tflite",
                                   tmp_path / "m.tflite", "--precision", "bfloat16")
    assert status == 1 and "--precision bfloat16 applies to --saved-model only" in err
    assert not (tmp_path / "sm").exists() and not (tmp_path / "m.tflite").exists()

    status, out, _ = fcn_keras_cmd("export", work / "m.keras", "--saved-model", tmp_path / "sm",
                                   "--precision", "bfloat16")
    assert status == 0 and f"SavedModel (bfloat16): {tmp_path / 'sm' / '1'}" in out
    assert json.loads((tmp_path / "sm" / "1" / "assets" / "export.json").read_text())["precision"] == "bfloat16"
    # The signature (a tf.Module's function: no Keras object is saved) takes and gives what float32's does, and
    # computes what the model's bfloat16 copy computes, not the float32 model's values.
    image = np.asarray(Image.open(work / "images" / "a.png"))
    signature = tf.saved_model.load(str(tmp_path / "sm" / "1")).signatures["predict_images"]
    assert signature.structured_input_signature[1]["images"].dtype == tf.uint8
    logits = signature(images=tf.constant(image[None]))["logits"]
    assert logits.dtype == tf.float32
    model = keras.models.load_model(work / "m.keras")
    reference = model.predict_on_batch(image[None].astype(np.float32))
    fast = fcn_keras.models.with_precision(model, "bfloat16").predict_on_batch(image[None].astype(np.float32))
    scale = np.abs(reference).max()
    errors = [np.abs(logits.numpy() - other).max() / scale for other in (fast, reference)]
    print("relative errors vs the bfloat16 copy, vs float32:", errors)
    # bfloat16's rounding (8-bit mantissa; the graphs round at different points), not float32's parity (1e-4).
    assert errors[1] > 1e-4 and max(errors) < 0.05

    status, _, err = fcn_keras_cmd("predict", tmp_path / "sm", work / "images", "--out", tmp_path / "masks",
                                   "--precision", "bfloat16")
    assert status == 1 and "computes in the precision it was exported in" in err
    assert fcn_keras_cmd("predict", tmp_path / "sm", work / "images", "--out", tmp_path / "masks")[0] == 0
    assert np.mean(mask(tmp_path / "masks") == reference[0].argmax(-1)) >= 0.98
