"""Input preprocessing: RGB images with values 0-255 to what a network was trained on.

The one definition of every mode. The model's ``Preprocessing`` layer, the data
pipeline, the exports and the CLI all call :func:`preprocess`; a model says
which mode it needs (``model.preprocessing``) and whether it applies it itself
(``model.input_preprocessing`` is ``None`` then). Only slicing and arithmetic
are used, so the same function runs on NumPy arrays, ``tf.Tensor`` (tf.data,
SavedModel signatures) and every Keras backend's tensors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

REFERENCE_BGR_MEAN: tuple[float, float, float] = (104.00699, 116.66877, 122.67892)
"""Mean pixel (B, G, R) subtracted by the reference Caffe FCNs on PASCAL VOC (voc_layers.py)."""

CAFFE_BGR_MEAN: tuple[float, float, float] = (103.939, 116.779, 123.68)
"""keras.applications' "caffe" mode (ImageNet VGG16/ResNet50): BGR minus this mean."""

IMAGENET_RGB_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_RGB_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Mode:
    """One preprocessing: BGR minus ``bgr_mean`` (Caffe models), or a scaling (``"tf"``, ``"torch"``)."""

    description: str
    bgr_mean: tuple[float, float, float] | None = None


MODES: dict[str, Mode] = {
    "fcn": Mode("RGB->BGR, minus the reference FCN mean on PASCAL VOC (voc_layers.py)", REFERENCE_BGR_MEAN),
    "pascalcontext": Mode("RGB->BGR, minus the reference FCN mean on PASCAL-Context (pascalcontext_layers.py)",
                          (104.007, 116.669, 122.679)),
    "nyud": Mode("RGB->BGR, minus the reference FCN mean on NYUDv2 (nyud_layers.py)", (116.190, 97.203, 92.318)),
    "siftflow": Mode("RGB->BGR, minus the reference FCN mean on SIFT Flow (siftflow_layers.py)",
                     (114.578, 115.294, 108.353)),
    "deeplab": Mode("RGB->BGR, minus DeepLab's mean on PASCAL VOC (deeplab-public's LargeFOV train.prototxt)",
                    (104.008, 116.669, 122.675)),
    "caffe": Mode("RGB->BGR, minus the ImageNet mean (keras.applications VGG16, ResNet50)", CAFFE_BGR_MEAN),
    "segnet": Mode("RGB->BGR, values 0-255 as they are (SegNet-Tutorial's DenseImageData: OpenCV BGR, no mean, no "
                   "scale)", (0.0, 0.0, 0.0)),
    "tf": Mode("scaled to [-1, 1] (keras.applications MobileNetV2)"),
    "torch": Mode("scaled to [0, 1], minus the ImageNet mean, divided by its std"),
}
"""The preprocessing modes by name: the authors' dataset means, and keras.applications' modes."""


def check_mode(mode: str, argument: str = "preprocessing") -> str:
    """``mode`` if it is a key of :data:`MODES`, else a ``ValueError`` naming ``argument``.

    Example:
        >>> check_mode("bgr")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: preprocessing must be one of ['caffe', 'deeplab', 'fcn', ...], got 'bgr'
    """
    if mode not in MODES:
        raise ValueError(f"{argument} must be one of {sorted(MODES)}, got {mode!r}")
    return mode


def preprocess(images, mode: str = "fcn"):
    """Maps float RGB images with values 0-255 (channels last) to the network input of ``mode``.

    NumPy (or list) input of any dtype is converted to float32; tensors must be
    floating point already (``tf.cast``/``keras.ops.cast`` them first) and keep
    their type and dtype.

    Example:
        >>> import numpy as np
        >>> x = preprocess(np.full((1, 2, 2, 3), 255, "uint8"), "fcn")
        >>> [round(float(v), 3) for v in x[0, 0, 0]]
        [150.993, 138.331, 132.321]
        >>> float(preprocess(np.zeros((1, 1, 1, 3)), "tf")[0, 0, 0, 0])
        -1.0
    """
    check_mode(mode)
    if isinstance(images, (np.ndarray, list, tuple, int, float)):
        images = np.asarray(images, np.float32)
    if images.shape[-1] != 3:
        raise ValueError(f"preprocess: images must have 3 channels on the last axis, got shape {tuple(images.shape)}")
    dtype = getattr(images.dtype, "as_numpy_dtype", images.dtype)  # tf.DType -> its NumPy twin

    def constant(values):
        return np.asarray(values, dtype=dtype)

    if MODES[mode].bgr_mean is not None:
        return images[..., ::-1] - constant(MODES[mode].bgr_mean)
    if mode == "tf":
        return images / constant(127.5) - constant(1.0)
    return (images / constant(255.0) - constant(IMAGENET_RGB_MEAN)) / constant(IMAGENET_RGB_STD)


def preprocess_input(images):
    """The reference FCN weights' preprocessing (mode ``"fcn"``) of RGB 0-255 images.

    Example:
        >>> import numpy as np
        >>> preprocess_input(np.zeros((2, 4, 4, 3))).shape
        (2, 4, 4, 3)
    """
    return preprocess(images, "fcn")
