"""`fcn-keras predict` and `export` on the reduced demo's real model, SavedModel and images."""

from __future__ import annotations

import numpy as np
from PIL import Image

from fcn_keras.palette import voc_palette


def _masks(directory):
    return {p.name: np.asarray(Image.open(p)) for p in sorted(directory.glob("*_mask.png"))}


def test_predict_with_a_keras_file_and_the_saved_model_agree(demo_run, tmp_path, fcn_keras_cmd):
    demo_out, _, _ = demo_run
    images = demo_out / "data" / "JPEGImages"
    names = sorted(p.stem for p in images.glob("*.jpg"))
    status, out, err = fcn_keras_cmd("predict", demo_out / "model.keras", images, "--out", tmp_path / "k")
    assert status == 0, err
    assert f"wrote {3 * len(names)} files" in out
    assert sorted(p.name for p in (tmp_path / "k").iterdir()) == sorted(
        f"{n}_{kind}.png" for n in names for kind in ("mask", "color", "overlay"))
    first = Image.open(tmp_path / "k" / f"{names[0]}_overlay.png")
    assert first.height == 32 and first.width > 48  # image plus legend
    mask = np.asarray(Image.open(tmp_path / "k" / f"{names[0]}_mask.png"))
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "k" / f"{names[0]}_color.png")),
                                  voc_palette(256)[mask])
    # A glob and a TF Serving base directory (its highest version) give the same masks.
    status, _, err = fcn_keras_cmd("predict", demo_out / "saved_model", str(images / "*.jpg"), "--out", tmp_path / "s")
    assert status == 0, err
    keras_masks, saved_masks = _masks(tmp_path / "k"), _masks(tmp_path / "s")
    assert keras_masks.keys() == saved_masks.keys()
    for name in keras_masks:
        np.testing.assert_array_equal(keras_masks[name], saved_masks[name])


def test_predict_refuses_an_unknown_model(demo_run, tmp_path, monkeypatch, fcn_keras_cmd):
    demo_out, _, _ = demo_run
    image = next((demo_out / "data" / "JPEGImages").glob("*.jpg"))
    # A zoo name resolves to the zoo; offline, its weights cannot come, and the one line says where to put them.
    monkeypatch.setenv("FCN_KERAS_HOME", str(tmp_path / "home"))
    status, _, err = fcn_keras_cmd("predict", "fcn8s_voc", image, "--out", tmp_path / "z")
    assert status == 1 and err.count("\n") == 1
    assert "fcn8s-heavy-pascal.caffemodel" in err and str(tmp_path / "home" / "downloads") in err
    status, _, err = fcn_keras_cmd("predict", "fcn99s_voc", image, "--out", tmp_path / "o")
    assert status == 1 and err.count("\n") == 1
    assert err.startswith("fcn-keras: error: model 'fcn99s_voc' is not a zoo name (known: ") and "fcn16s_voc, " in err
    status, _, err = fcn_keras_cmd("predict", tmp_path / "missing.keras", image, "--out", tmp_path / "o")
    assert status == 1 and err == f"fcn-keras: error: model file {tmp_path / 'missing.keras'} does not exist\n"


def test_export_tflite_with_parity(demo_run, tmp_path, fcn_keras_cmd):
    demo_out, _, _ = demo_run
    target = tmp_path / "m.tflite"
    status, out, err = fcn_keras_cmd("export", demo_out / "model.keras", "--tflite", target,
                                     "--parity-images", demo_out / "data" / "JPEGImages")
    assert status == 0, err
    assert f"TFLite (float32): {target}" in out and "[ok]" in out
    assert target.read_bytes()[4:8] == b"TFL3"
    status, _, err = fcn_keras_cmd("export", demo_out / "model.keras", "--tflite", target)
    assert status == 1 and err == f"fcn-keras: error: {target} already exists; pass --overwrite to replace it\n"
    status, _, err = fcn_keras_cmd("export", demo_out / "model.keras")
    assert status == 1 and "nothing to export" in err


def test_export_refuses_a_saved_model_as_input(demo_run, fcn_keras_cmd, tmp_path):
    demo_out, _, _ = demo_run
    status, _, err = fcn_keras_cmd("export", demo_out / "saved_model" / "1", "--tflite", tmp_path / "x.tflite")
    assert status == 1 and "is a SavedModel; this command needs a Keras model" in err
