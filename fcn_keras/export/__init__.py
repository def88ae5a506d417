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

import importlib

# Lazy, so that running an export (saved_model_logits) needs neither Keras nor the model code.
_NAMES = {
    "export_model": "command",
    # The function parity() is fcn_keras.export.parity.parity: a lazy package attribute cannot share
    # the name of a submodule (importing the submodule binds its name on the package).
    "ParityReport": "parity", "keras_logits": "parity", "tflite_parity": "parity",
    "DEFAULT_MAX_IMAGE_SIZE": "saved_model", "MASK_PAD_VALUE": "saved_model", "existing_versions": "saved_model",
    "export_saved_model": "saved_model", "read_export_info": "saved_model",
    "saved_model_logits": "runner",
    "read_sidecar": "sidecar", "sidecar_path": "sidecar",
    "TFLiteModel": "tflite", "export_tflite": "tflite", "tflite_ops": "tflite",
}

__all__ = sorted(_NAMES)


def __getattr__(name):
    if name in _NAMES:
        return getattr(importlib.import_module(f"fcn_keras.export.{_NAMES[name]}"), name)
    raise AttributeError(f"module 'fcn_keras.export' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_NAMES))
