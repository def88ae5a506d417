"""The one SavedModel runner: an exported version directory as ``image -> logits``, without Keras.

It loads the export with ``tf.saved_model.load`` and calls its
``predict_images`` signature, so it works where only TensorFlow is installed
(this module imports neither Keras nor the rest of fcn_keras: it can be copied
into a serving container as it is), the same way TF Serving runs the export.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np

SIGNATURE = "predict_images"


def _as_uint8(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim not in (3, 4) or images.shape[-1] != 3:
        raise ValueError(f"expected an RGB image (H, W, 3) or a batch (N, H, W, 3), got shape {images.shape}")
    if images.dtype == np.uint8:
        return images
    if images.size and (not np.issubdtype(images.dtype, np.number) or images.min() < 0 or images.max() > 255
                        or not np.array_equal(images, np.round(images))):
        raise ValueError(f"images must hold whole pixel values 0-255 (the export takes uint8), got dtype {images.dtype}")
    return images.astype(np.uint8)


def saved_model_logits(version_dir: str | os.PathLike) -> Callable[[np.ndarray], np.ndarray]:
    """``images -> float32 logits`` through the ``predict_images`` signature of an exported version.

    The returned function takes one RGB 0-255 image ``(H, W, 3)`` (giving
    ``(H, W, C)``) or a batch of equal-size images ``(N, H, W, 3)`` (giving
    ``(N, H, W, C)``); whole-valued float arrays are accepted as uint8.
    ``version_dir`` is one version (``base/1``), not TF Serving's base directory.

    Example:
        >>> saved_model_logits("/nonexistent/1")
        Traceback (most recent call last):
        ...
        FileNotFoundError: /nonexistent/1 is not a SavedModel directory (no saved_model.pb)
        >>> run = saved_model_logits("fcn-demo/saved_model/1")  # doctest: +SKIP
        >>> run(image).shape  # doctest: +SKIP
        (96, 128, 6)
    """
    path = Path(version_dir)
    if not (path / "saved_model.pb").is_file():
        versions = sorted(p.name for p in path.iterdir() if p.name.isdigit()) if path.is_dir() else []
        hint = f"; it holds versions {', '.join(versions)}: pass one of them" if versions else ""
        raise FileNotFoundError(f"{version_dir} is not a SavedModel directory (no saved_model.pb){hint}")
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    if SIGNATURE not in loaded.signatures:
        raise KeyError(f"{version_dir} has no {SIGNATURE!r} signature (signatures: {sorted(loaded.signatures)}); "
                       f"it is not an fcn_keras export")
    signature = loaded.signatures[SIGNATURE]

    def logits(images: np.ndarray) -> np.ndarray:
        batch = _as_uint8(images)
        single = batch.ndim == 3
        out = signature(images=tf.constant(batch[None] if single else batch))["logits"].numpy()
        return out[0] if single else out

    logits.saved_model = loaded  # keeps the loaded object (and so its variables) alive with the function
    return logits
