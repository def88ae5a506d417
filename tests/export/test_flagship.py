"""The flagship model, VGG16 FCN-8s (134M parameters), through every export format against Keras.

One seeded model, built once; Keras runs its exact fast formulation (``model(x)``), the SavedModel
is loaded without keras in a fresh process (serving_default on JPEG bytes, predict_images on
pixels), TFLite runs under LiteRT and ONNX under onnxruntime, all at 64x80.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import fcn_keras
from bench.bench_export import randomize_scores
from fcn_keras.data import read_image
from fcn_keras.export import export_saved_model, export_tflite
from fcn_keras.export.parity import compare, keras_logits
from tests.export.conftest import encode, synthetic_image

pytestmark = pytest.mark.slow  # a 0.5 GB model written three times

ROOT = Path(__file__).resolve().parents[2]
SIZE = (64, 80)

SERVE_SCRIPT = """
import json, sys
for name in ("keras", "tf_keras", "fcn_keras"):
    sys.modules[name] = None  # any import of them now raises ImportError
import numpy as np
import tensorflow as tf
export_dir, jpeg, pixels = sys.argv[1:]
loaded = tf.saved_model.load(export_dir)
served = loaded.signatures["serving_default"](image_bytes=tf.constant([open(jpeg, "rb").read()]))
logits = loaded.signatures["predict_images"](images=tf.constant(np.load(pixels)[None]))["logits"]
print(json.dumps({"mask": served["mask"].numpy()[0].tolist(), "logits": logits.numpy()[0].tolist()}))
"""


@pytest.fixture(scope="module")
def flagship():
    """Seeded FCN-8s with random score layers, centred: random VGG16 features give one class everywhere,
    so pool3's score bias (upsampled 8x by weights summing to 1) takes off each class's mean logit."""
    keras.utils.set_random_seed(0)
    model = randomize_scores(fcn_keras.fcn8s(num_classes=5), seed=0)
    mean = keras_logits(model, [synthetic_image(*SIZE, seed=12)])[0].mean(axis=(0, 1))
    layer = model.get_layer("score_pool3")
    kernel, bias = layer.get_weights()
    layer.set_weights([kernel, bias - mean])
    return model


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    """A 64x80 JPEG on disk and its pixels as the training pipeline (PIL) decodes them."""
    path = tmp_path_factory.mktemp("flagship") / "image.jpg"
    path.write_bytes(encode(synthetic_image(*SIZE, seed=11), "JPEG"))
    return path, read_image(path)


@pytest.fixture(scope="module")
def reference(flagship, image):
    """Keras' logits: the model's call, i.e. the fast formulation the exports are checked against."""
    logits = keras_logits(flagship, [image[1]])[0]
    assert len(np.unique(logits.argmax(-1))) > 1  # random scores: masks are not constant
    return logits


@pytest.fixture(scope="module")
def served(flagship, image, tmp_path_factory):
    """The SavedModel's answers, from a process where keras and fcn_keras cannot be imported."""
    work = tmp_path_factory.mktemp("flagship_saved_model")
    path = export_saved_model(flagship, work / "fcn8s", verbose=False)
    np.save(work / "pixels.npy", image[1])
    result = subprocess.run([sys.executable, "-c", SERVE_SCRIPT, path, str(image[0]), str(work / "pixels.npy")],
                            cwd=work, env={"PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "3"},
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_keras_call_is_the_layer_graph(flagship, image, reference):
    """The exports run the plain layer graph (TFLite, ONNX) or the call (SavedModel): they agree."""
    from fcn_keras.export.graph import logits_function

    plain, _, _ = logits_function(flagship, reference=True)
    report = compare("float32", [reference], [keras.ops.convert_to_numpy(plain(image[1][None].astype("float32")))[0]])
    assert report.max_relative_error <= 1e-4, str(report)


def test_saved_model_serves_jpeg_bytes_as_keras_segments_the_decoded_image(served, reference):
    np.testing.assert_array_equal(np.array(served["mask"]), reference.argmax(-1))
    report = compare("savedmodel", [reference], [np.array(served["logits"], np.float32)])
    assert report.passed and report.pixel_agreement == 1.0, str(report)


def test_tflite_float32_matches_keras(flagship, image, reference, tmp_path):
    pytest.importorskip("ai_edge_litert", reason="the LiteRT interpreter (pip install ai-edge-litert) runs the file")
    from fcn_keras.export.tflite import TFLiteModel

    runner = TFLiteModel(export_tflite(flagship, tmp_path / "fcn8s.tflite", verbose=False))
    report = compare("float32", [reference], [runner.logits(image[1])])
    assert report.passed and report.pixel_agreement == 1.0, str(report)


def test_onnx_loads_in_onnxruntime_and_matches_keras(flagship, image, reference, tmp_path):
    for module in ("onnx", "onnxruntime", "tf2onnx"):
        pytest.importorskip(module, reason="the optional ONNX extra is not installed (pip install 'fcn_keras[onnx]')")
    import onnx

    from fcn_keras.export.onnx import ONNXModel, export_onnx

    path = export_onnx(flagship, tmp_path / "fcn8s.onnx")
    ops = {node.op_type for node in onnx.load(path, load_external_data=False).graph.node}
    assert "ConvTranspose" in ops and "If" not in ops  # the plain upsampling, no fast-path branch
    report = compare("onnx", [reference], [ONNXModel(path).logits(image[1])])
    assert report.passed and report.pixel_agreement == 1.0, str(report)
