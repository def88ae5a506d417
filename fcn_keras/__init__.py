"""fcn_keras: Fully Convolutional Networks for semantic segmentation in Keras 3.

Importing the package loads nothing heavy. The Keras model code (which never
imports TensorFlow, so it runs on every Keras backend) loads on first use of a
builder; the TensorFlow-based parts — ``fcn_keras.data``, ``fcn_keras.export``
and others — are submodules imported on first use.

Example:
    >>> import fcn_keras
    >>> fcn_keras.fcn8s(num_classes=21).name
    'fcn8s'
"""

import importlib

__version__ = "0.1.0"
__all__ = ["fcn32s", "fcn16s", "fcn8s", "fcn8s_atonce", "build_fcn", "preprocess_input", "__version__"]


# Lazy too, so that `fcn-keras --help` (fcn_keras.cli) does not wait for Keras to import.
_LAZY_NAMES = {
    "fcn32s": "fcn_keras.models", "fcn16s": "fcn_keras.models", "fcn8s": "fcn_keras.models",
    "fcn8s_atonce": "fcn_keras.models", "build_fcn": "fcn_keras.models", "preprocess_input": "fcn_keras.preprocessing",
}


def __getattr__(name):
    if name in _LAZY_NAMES:
        return getattr(importlib.import_module(_LAZY_NAMES[name]), name)
    # Lazy submodules: `fcn_keras.data`, `fcn_keras.zoo`, ... import on first access.
    try:
        return importlib.import_module(f"fcn_keras.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"fcn_keras.{name}":
            raise
        raise AttributeError(f"module 'fcn_keras' has no attribute {name!r}") from None
