"""zoo.load end to end at full size: download -> verify -> convert -> cache -> fast reload,
and load(weights_path=...) -> predict on real photos -> colourised mask.

The .caffemodel files are written here with random weights in Caffe's layouts
(the published ones cannot be downloaded on this machine).
"""

from __future__ import annotations

import gc
import json

import keras
import numpy as np
import pytest
from PIL import Image

import fcn_keras.zoo as zoo
from fcn_keras.caffe import write_caffemodel
from fcn_keras.files import current_umask
from fcn_keras.palette import voc_palette

from tests.zoo.caffe_layouts import assert_converted, caffe_layers
from tests.zoo.zoo_env import TmpZoo


def _flip_a_byte(path):
    with open(path, "r+b") as f:
        f.seek(path.stat().st_size // 2)
        byte = f.read(1)[0]
        f.seek(-1, 1)
        f.write(bytes([byte ^ 0xFF]))


def _free():
    keras.backend.clear_session()
    gc.collect()


def test_placed_file_is_verified_converted_cached_and_reused(tmp_path, monkeypatch):
    """A download placed by hand where the offline error says (the HTTP and file:// fetch
    itself is tested on small files in test_download.py): verified by structure, converted,
    cached with its hash; later loads use the cached conversion; a changed file is refused."""
    tmp_zoo = TmpZoo(tmp_path, monkeypatch)
    file = tmp_zoo.add_card("fcn32s_voc", url="http://127.0.0.1:9/fcn32s-heavy-pascal.caffemodel")
    placed = tmp_zoo.downloads / file
    placed.parent.mkdir(parents=True)
    written = caffe_layers("fcn32s", seed=32, inner_product_fc=True)
    write_caffemodel(placed, written, form="layer", legacy_dims=True)  # old-style blob dims and fc matrices

    model = zoo.load("fcn32s_voc", include_preprocessing=False)
    assert_converted(model, written)
    assert model.input_preprocessing == "fcn" and model.card["weights"] == "published"
    registry = json.loads((tmp_zoo.home / "registry.json").read_text())
    sha256 = registry["sources"][file]["sha256"]
    assert registry["sources"][file]["verified"].startswith("structure")
    (converted,) = (tmp_zoo.home / "converted").iterdir()
    assert converted.stat().st_mode & 0o777 == 0o666 & ~current_umask()  # readable by others, like a plain write
    assert registry["converted"]["fcn32s_voc"][sha256]["file"] == converted.name
    assert sorted(p.name for p in tmp_zoo.home.rglob("*") if p.is_file()) == sorted([file, converted.name, "registry.json"])
    del model
    _free()

    # Later loads use the cached conversion: the .caffemodel is not even needed.
    aside = placed.rename(tmp_path / "aside.caffemodel")
    model = zoo.load("fcn32s_voc")  # with preprocessing this time: the same weights
    assert model.get_layer("preprocessing") is not None and model.input_preprocessing is None
    assert_converted(model, [layer for layer in written if layer.name in ("conv1_1", "score_fr", "upscore")])
    del model
    _free()

    # A changed converted file is not used (its hash no longer matches), and the
    # file has no published checksum: a changed copy is refused against the hash
    # recorded at its first verified download, and deleted.
    for path in (converted, aside):
        _flip_a_byte(path)
    aside.rename(placed)
    with pytest.raises(zoo.ChecksumError, match=f"expected {sha256} \\(the hash recorded at its first verified download\\)"):
        zoo.load("fcn32s_voc")
    assert not placed.exists()


def test_weights_path_predicts_a_colourised_mask_on_real_photos(tmp_path, monkeypatch, voc_mini):
    monkeypatch.setenv("FCN_KERAS_HOME", str(tmp_path / "home"))
    path = tmp_path / "my-fcn8s.caffemodel"
    written = caffe_layers("fcn8s", seed=8)
    write_caffemodel(path, written)
    with pytest.raises(zoo.ChecksumError):  # not the published file
        zoo.load("fcn8s_voc", weights_path=path)
    model = zoo.load("fcn8s_voc", weights_path=path, verify=False)
    path.unlink()
    assert_converted(model, written)
    assert model.class_names[15] == "person" and model.card["weights"] == "unverified file"

    for jpeg in sorted((voc_mini / "JPEGImages").glob("*.jpg"))[:1]:
        image = Image.open(jpeg).convert("RGB")
        image.thumbnail((96, 96))  # a real photo, kept small for the CPU
        pixels = np.asarray(image)
        logits = model.predict(pixels[None].astype("float32"), verbose=0)
        assert logits.shape == (1, *pixels.shape[:2], 21) and logits.dtype == np.float32
        assert np.isfinite(logits).all()
        mask = logits.argmax(-1)[0]
        colour = model.palette[mask]
        assert colour.dtype == np.uint8 and colour.shape == pixels.shape
        np.testing.assert_array_equal(colour, voc_palette(21)[mask])
        Image.fromarray(colour).save(tmp_path / f"{jpeg.stem}_mask.png")
    del model
    _free()


@pytest.mark.slow
def test_a_saved_zoo_model_keeps_its_card_in_a_fresh_process(tmp_path, monkeypatch):
    """A zoo model saved as .keras (544 MB) loads with `import fcn_keras` and plain keras.models.load_model
    in a new interpreter, in safe mode, with its classes, palette, preprocessing and provenance."""
    import os
    import subprocess
    import sys

    monkeypatch.setenv("FCN_KERAS_HOME", str(tmp_path / "home"))
    path = tmp_path / "fcn32s_voc.keras"
    model = zoo.load("fcn32s_voc", weights=False)
    model.save(path)
    expected = model.identity()
    del model
    _free()
    code = ("import json, sys, fcn_keras, keras; m = keras.models.load_model(sys.argv[1]); "
            "print(json.dumps({'type': type(m).__name__, **m.identity()}))")
    result = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded.pop("type") == "FCN" and loaded == expected
    assert loaded["card"]["name"] == "fcn32s_voc" and loaded["card"]["checksum"] == "none"
    assert loaded["class_names"][15] == "person" and loaded["input_preprocessing"] is None
