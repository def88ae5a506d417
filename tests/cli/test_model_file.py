"""A model file is self-describing: plain keras.models.load_model reads it in a fresh process, identity included."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from fcn_keras.palette import voc_palette

LOAD = """
import json, sys
import fcn_keras, keras
model = keras.models.load_model(sys.argv[1])  # Keras' default safe mode
print(json.dumps({"type": type(model).__name__, **model.identity()}))
"""


def load_in_a_fresh_process(path) -> dict:
    """``import fcn_keras`` then plain ``keras.models.load_model(path)`` in a new interpreter; the identity."""
    result = subprocess.run([sys.executable, "-c", LOAD, str(path)], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_demo_model_loads_with_plain_keras_in_a_fresh_process(demo_run):
    demo_out, _, _ = demo_run
    identity = load_in_a_fresh_process(demo_out / "model.keras")
    assert identity["type"] == "FCN"
    assert identity["class_names"] == ["background"] + [f"shape {i}" for i in range(1, 6)]
    assert identity["palette"] == voc_palette(6).tolist()
    assert (identity["architecture"], identity["backbone"]) == ("fcn8s", "tiny_vgg")
    assert identity["include_preprocessing"] and identity["input_preprocessing"] is None
    assert identity["ignore_label"] == 255 and identity["card"] is None


def test_zoo_info_shows_what_a_model_file_carries(demo_run, fcn_keras_cmd):
    demo_out, _, _ = demo_run
    status, out, err = fcn_keras_cmd("zoo", "info", demo_out / "model.keras")
    assert status == 0, err
    shown = json.loads(out)
    assert shown["class_names"][1] == "shape 1" and shown["num_classes"] == 6 and shown["card"] is None
