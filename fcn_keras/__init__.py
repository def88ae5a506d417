"""fcn_keras: Fully Convolutional Networks for semantic segmentation in Keras 3.

Importing the package loads only the Keras model code (no TensorFlow import), so
it runs on every Keras backend. The TensorFlow-based parts — ``fcn_keras.data``,
``fcn_keras.export`` and others — are submodules imported on first use.

Example:
    >>> import fcn_keras
    >>> fcn_keras.fcn8s(num_classes=21).name
    'fcn8s'
"""

import importlib

from fcn_keras.models import fcn8s, fcn8s_atonce, fcn16s, fcn32s
from fcn_keras.preprocessing import preprocess_input

__version__ = "0.1.0"
__all__ = ["fcn32s", "fcn16s", "fcn8s", "fcn8s_atonce", "preprocess_input", "__version__"]


def __getattr__(name):
    # Lazy submodules: `fcn_keras.data`, `fcn_keras.zoo`, ... import on first access.
    try:
        return importlib.import_module(f"fcn_keras.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"fcn_keras.{name}":
            raise
        raise AttributeError(f"module 'fcn_keras' has no attribute {name!r}") from None
