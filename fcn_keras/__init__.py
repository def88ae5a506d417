"""fcn_keras: Fully Convolutional Networks for semantic segmentation in Keras 3.

Importing the package registers every serializable class with Keras (the
models, their layers, the loss, the metric and the optimizer), so that plain
``keras.models.load_model(path)`` reads any fcn_keras file afterwards, in safe
mode. Those modules depend on Keras only. The TensorFlow-based parts —
``fcn_keras.data``, ``fcn_keras.export``, ``fcn_keras.training`` and others —
are submodules imported on first use.

Example:
    >>> import fcn_keras
    >>> model = fcn_keras.fcn8s(num_classes=21)
    >>> model.name, model.num_classes
    ('fcn8s', 21)
"""

import importlib

# Registration: each of these modules registers its classes when imported.
from fcn_keras import losses, metrics, optimizers  # noqa: F401
from fcn_keras.models import (
    FCN, SegmentationModel, build_fcn, cam_vgg16, deconvnet, deeplab_aspp, deeplab_largefov, fcn8s, fcn8s_atonce, fcn16s,
    fcn16s_two_heads, fcn32s, pspnet, segnet, unet,
)
from fcn_keras.preprocessing import preprocess, preprocess_input

__version__ = "0.1.0"
__all__ = ["FCN", "SegmentationModel", "fcn32s", "fcn16s", "fcn8s", "fcn8s_atonce", "build_fcn", "cam_vgg16",
           "deeplab_largefov", "deeplab_aspp", "deconvnet", "segnet", "unet", "pspnet",
           "fcn16s_two_heads",
           "preprocess", "preprocess_input", "__version__"]


def __getattr__(name):
    # Lazy submodules: `fcn_keras.data`, `fcn_keras.zoo`, ... import on first access.
    try:
        return importlib.import_module(f"fcn_keras.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"fcn_keras.{name}":
            raise
        raise AttributeError(f"module 'fcn_keras' has no attribute {name!r}") from None
