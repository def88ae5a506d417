"""The reference FCN input preprocessing: RGB 0-255 to mean-subtracted BGR.

Pure ``keras.ops``: usable on NumPy arrays and on any Keras backend.
"""

from __future__ import annotations

from keras import ops

REFERENCE_BGR_MEAN: tuple[float, float, float] = (104.00699, 116.66877, 122.67892)
"""Mean pixel (B, G, R) subtracted by the reference Caffe models (voc_layers.py)."""


def preprocess_input(images, dtype: str = "float32"):
    """Converts RGB images with values 0-255 to the reference networks' input.

    Reverses the channel order (RGB to BGR) and subtracts
    :data:`REFERENCE_BGR_MEAN`. The last axis must hold the 3 channels.

    Example:
        >>> import numpy as np
        >>> x = preprocess_input(np.full((1, 2, 2, 3), 255, "uint8"))
        >>> [round(float(v), 5) for v in x[0, 0, 0]]
        [150.99301, 138.33123, 132.32108]
    """
    images = ops.cast(ops.convert_to_tensor(images), dtype)
    if images.shape[-1] != 3:
        raise ValueError(
            f"preprocess_input: images must have 3 channels on the last axis, got shape {tuple(images.shape)}"
        )
    bgr = ops.flip(images, axis=-1)
    return bgr - ops.convert_to_tensor(REFERENCE_BGR_MEAN, dtype=dtype)
