"""The sidecar JSON next to a TFLite or ONNX file: the model's identity, which those formats cannot carry.

``fcn8s.tflite`` gets ``fcn8s.tflite.json``: class names, palette, ignore label,
preprocessing (the model's, and what the file applies itself), architecture,
backbone, zoo card, and the file's input and output in words. It is written
atomically with plain modes, before the file it describes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import keras

from fcn_keras.export.graph import export_identity
from fcn_keras.files import write_text
from fcn_keras.models import SegmentationModel


def sidecar_path(path: str | os.PathLike) -> Path:
    """Where the identity of the exported file ``path`` is written: ``path`` + ``.json``.

    Example:
        >>> sidecar_path("models/fcn8s.tflite").name
        'fcn8s.tflite.json'
    """
    path = Path(path)
    return path.with_name(path.name + ".json")


def write_sidecar(model: SegmentationModel, path: str | os.PathLike, fmt: str, **extra) -> Path:
    """Writes the sidecar of the exported file ``path``: ``model``'s identity plus ``extra``; returns its path.

    Example:
        >>> import tempfile, pathlib
        >>> x = keras.Input((None, None, 3))
        >>> m = SegmentationModel(x, keras.layers.Conv2D(2, 1)(x), architecture="linear", backbone="none")
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "m.tflite"
        >>> written = write_sidecar(m, target, "toy")
        >>> written.name, read_sidecar(target)["class_names"]
        ('m.tflite.json', ['class 0', 'class 1'])
    """
    info = {"format": fmt, "file": Path(path).name, **export_identity(model), **extra,
            "keras_version": keras.__version__}
    return write_text(sidecar_path(path), json.dumps(info, indent=2) + "\n")


def read_sidecar(path: str | os.PathLike) -> dict:
    """The sidecar of an exported ``.tflite`` or ``.onnx`` file (no TensorFlow needed).

    Keys as :func:`fcn_keras.export.read_export_info` (``class_names``,
    ``palette``, ``ignore_label``, ``preprocessing``, ``preprocessing_added``,
    ``card``, ...) plus ``format``, ``file``, ``input`` and ``output`` (and
    ``quantization`` for TFLite).

    Example:
        >>> read_sidecar("/nonexistent/fcn.tflite")
        Traceback (most recent call last):
        ...
        FileNotFoundError: /nonexistent/fcn.tflite has no sidecar /nonexistent/fcn.tflite.json (not written by fcn_keras.export)
    """
    sidecar = sidecar_path(path)
    if not sidecar.is_file():
        raise FileNotFoundError(f"{path} has no sidecar {sidecar} (not written by fcn_keras.export)")
    return json.loads(sidecar.read_text(encoding="utf-8"))
