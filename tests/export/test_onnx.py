"""ONNX export (optional extra): parity with Keras under onnxruntime, on images of several sizes."""

from __future__ import annotations

import pytest

for _module in ("onnx", "onnxruntime", "tf2onnx"):
    pytest.importorskip(_module, reason="the optional ONNX extra is not installed (pip install 'fcn_keras[onnx]')")

from fcn_keras.export import export_model, read_sidecar  # noqa: E402
from fcn_keras.export.onnx import ONNXModel  # noqa: E402


def test_onnx_matches_keras_on_any_size(tmp_path, tiny_model, images, image_files):
    tiny_model.save(tmp_path / "tiny.keras")  # through the CLI entry point, from a checkpoint
    result = export_model(tmp_path / "tiny.keras", tmp_path / "tiny.onnx", "onnx", check_images=image_files,
                          verbose=False)
    report = result["parity"]
    assert report["kind"] == "onnx" and report["images"] == 3
    assert report["max_relative_error"] <= 1e-4 and report["pixel_agreement"] == 1.0 and report["passed"]
    assert ONNXModel(result["path"]).logits(images[1]).shape == (*images[1].shape[:2], 3)
    assert read_sidecar(result["path"])["class_names"] == list(tiny_model.class_names)
    with pytest.raises(FileExistsError, match="already exists"):
        export_model(tiny_model, tmp_path / "tiny.onnx", "onnx", verbose=False)
