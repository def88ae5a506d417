"""ONNX export (optional extra: ``pip install fcn_keras[onnx]``) and an onnxruntime runner.

The ONNX graph takes float32 RGB 0-255 images ``(N, H, W, 3)`` of any size and
returns float32 logits, like the other formats; it is written by Keras 3's own
``model.export(format="onnx")`` (tf2onnx on the TensorFlow backend) from a
float32 wrapper of the model's plain layer-by-layer graph
(:func:`fcn_keras.models.reference_graph`, as for TFLite) that puts
``model.input_preprocessing`` first. The model's
identity goes into the sidecar ``<file>.onnx.json``, as for TFLite.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import keras
import numpy as np

from fcn_keras.export.graph import logits_function, require_segmentation_model
from fcn_keras.files import atomic_path
from fcn_keras.models import SegmentationModel

if TYPE_CHECKING:
    from fcn_keras.export.parity import ParityReport


def _require(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"ONNX export needs {module}: pip install 'fcn_keras[onnx]' (onnx, onnxruntime, tf2onnx)") from exc


def export_onnx(model: SegmentationModel, path: str | os.PathLike, *, opset: int | None = None) -> str:
    """Writes ``model`` as an ONNX file at ``path`` and its identity at ``path + ".json"`` (atomically).

    Returns the path.

    Example:
        >>> import fcn_keras
        >>> export_onnx(fcn_keras.fcn8s(num_classes=5, backbone="mobilenet_v2"), "fcn.onnx")  # doctest: +SKIP
        'fcn.onnx'
    """
    from fcn_keras.export.sidecar import write_sidecar

    model = require_segmentation_model(model)
    _require("tf2onnx")
    _require("onnx")
    logits_fn, _, _ = logits_function(model, reference=True)  # onnxruntime brings its own convolution kernels
    inputs = keras.Input((None, None, 3), name="image", dtype="float32")
    wrapper = keras.Model(inputs, logits_fn(inputs), name=f"{model.name}_rgb")
    with atomic_path(path) as tmp:
        wrapper.export(str(tmp), format="onnx", opset_version=opset, verbose=False,
                       input_signature=[keras.InputSpec(shape=(None, None, None, 3), dtype="float32", name="image")])
    write_sidecar(model, path, "fcn_keras ONNX", input="float32 [N, H, W, 3]: RGB images, values 0-255",
                  output=f"float32 [N, H, W, {model.num_classes}]: per-class logits")
    return str(path)


class ONNXModel:
    """Runs an exported ``.onnx`` FCN with onnxruntime (CPU), one image at a time.

    Example:
        >>> ONNXModel("fcn.onnx").logits(image).shape  # doctest: +SKIP
        (375, 500, 5)
    """

    def __init__(self, path: str | os.PathLike):
        ort = _require("onnxruntime")
        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def logits(self, image) -> np.ndarray:
        """Float32 logits ``(H, W, C)`` of one RGB 0-255 image ``(H, W, 3)``."""
        x = np.asarray(image, np.float32)[None]
        return self.session.run(None, {self.input_name: x})[0][0]


def onnx_parity(path: str, model: SegmentationModel, images, labels=None) -> ParityReport:
    """:func:`fcn_keras.export.parity.parity` of an ONNX file run with onnxruntime.

    Example (needs the ``onnx`` extra):
        >>> onnx_parity("fcn.onnx", model, images).passed  # doctest: +SKIP
        True
    """
    from fcn_keras.export.parity import parity

    return parity("onnx", ONNXModel(path).logits, model, images, labels)
