"""Export FCNs for serving: TF Serving SavedModels, TFLite files and ONNX, with parity checks.

Every format takes raw RGB images (0-255) with the preprocessing inside, computes
in float32 and is checked against Keras by :mod:`fcn_keras.export.parity`.

Example:
    >>> import fcn_keras
    >>> from fcn_keras.export import export_saved_model, export_tflite
    >>> model = fcn_keras.fcn8s(num_classes=21, backbone="mobilenet_v2")
    >>> export_saved_model(model, "models/fcn")  # doctest: +SKIP
    'models/fcn/1'
    >>> export_tflite(model, "fcn.tflite", quantization="float16")  # doctest: +SKIP
    'fcn.tflite'
"""

from fcn_keras.export.command import export_model
from fcn_keras.export.parity import ParityReport, keras_logits, parity, tflite_parity
from fcn_keras.export.saved_model import (
    DEFAULT_MAX_IMAGE_SIZE,
    MASK_PAD_VALUE,
    existing_versions,
    export_saved_model,
    read_export_info,
)
from fcn_keras.export.tflite import TFLiteModel, export_tflite, tflite_ops

__all__ = [
    "DEFAULT_MAX_IMAGE_SIZE", "MASK_PAD_VALUE", "ParityReport", "TFLiteModel", "existing_versions",
    "export_model", "export_saved_model", "export_tflite", "keras_logits", "parity", "read_export_info",
    "tflite_ops", "tflite_parity",
]
