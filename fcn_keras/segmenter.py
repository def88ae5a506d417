"""One trained model behind one interface: an RGB image in, class scores or a mask out.

``predict``, ``evaluate``, the Beam transform and tiled inference all go
through a :class:`Segmenter`, so a ``.keras`` model and an exported
SavedModel (run without Keras, as TF Serving runs it) segment the same way.

Example:
    >>> import numpy as np, fcn_keras
    >>> segmenter = keras_segmenter(fcn_keras.fcn32s(class_names=["ground", "disc"], backbone="tiny_vgg"))
    >>> segmenter.logits(np.zeros((24, 32, 3), np.uint8)).shape
    (24, 32, 2)
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

if TYPE_CHECKING:
    from fcn_keras.models import SegmentationModel
    from fcn_keras.models.receptive_field import ReceptiveField


@dataclass
class Segmenter:
    """``logits(image uint8 (H, W, 3)) -> float32 (H, W, C)``, with the model's classes and colours.

    ``segment`` is the per-pixel argmax of ``logits``. ``receptive_field``, when
    known, returns the network's stride and receptive field (computed on first
    call); tiled inference (:mod:`fcn_keras.tiling`) needs them.

    Example:
        >>> s = Segmenter(lambda image: np.zeros(image.shape[:2] + (2,), np.float32), ["a", "b"],
        ...               np.zeros((2, 3), np.uint8), "zeros")
        >>> s.segment(np.zeros((2, 3, 3), np.uint8)).shape
        (2, 3)
    """

    logits: Callable[[np.ndarray], np.ndarray]
    class_names: list[str]
    palette: np.ndarray  # uint8 (num_classes, 3)
    description: str
    receptive_field: Callable[[], ReceptiveField] | None = None

    def segment(self, image: np.ndarray) -> np.ndarray:
        """The class index of every pixel of one RGB image ``(H, W, 3)``: int64 ``(H, W)``."""
        return np.asarray(self.logits(image)).argmax(-1)


def keras_segmenter(model: SegmentationModel, description: str | None = None, *, precision: str = "float32",
                    allow_slow: bool = False) -> Segmenter:
    """A :class:`Segmenter` running a Keras segmentation model, with the preprocessing it asks for.

    ``precision="bfloat16"`` runs the model's ``mixed_bfloat16`` copy
    (:func:`fcn_keras.models.with_precision`; logits stay float32) where the
    machine computes bfloat16 natively, and refuses elsewhere unless
    ``allow_slow`` (:func:`fcn_keras.hardware.require_bfloat16`).

    Example:
        >>> import fcn_keras
        >>> keras_segmenter(fcn_keras.fcn32s(num_classes=3, backbone="tiny_vgg")).description
        'fcn32s_tiny_vgg'
        >>> keras_segmenter(fcn_keras.fcn32s(num_classes=3, backbone="tiny_vgg"), precision="bfloat16",
        ...                 allow_slow=True).description
        'fcn32s_tiny_vgg, bfloat16'
    """
    import keras

    from fcn_keras.models import require_segmentation_model
    from fcn_keras.models.precision import check_precision, with_precision
    from fcn_keras.models.receptive_field import receptive_field
    from fcn_keras.preprocessing import preprocess

    model = require_segmentation_model(model)
    mode = model.input_preprocessing
    description = description or model.name
    network = model
    if check_precision(precision) == "bfloat16":
        from fcn_keras.hardware import require_bfloat16

        require_bfloat16(allow_slow=allow_slow)
        network = with_precision(model, precision)
        description = f"{description}, bfloat16"

    def logits(image: np.ndarray) -> np.ndarray:
        x = np.asarray(image, np.float32)[None]
        # predict_on_batch, not an eager call: its compiled function frees each map when no longer needed
        # (a 1024x1024 MobileNetV2 FCN-8s call peaks at 1.1 GB instead of 2.7 GB, in 1.1 s instead of 2.7 s)
        # and, after two sizes, runs any size without tracing again.
        out = network.predict_on_batch(x if mode is None else preprocess(x, mode))
        return keras.ops.convert_to_numpy(out)[0].astype(np.float32, copy=False)

    return Segmenter(logits, list(model.class_names), np.asarray(model.palette, np.uint8), description,
                     functools.cache(lambda: receptive_field(model)))


def saved_model_segmenter(version_dir: str | os.PathLike) -> Segmenter:
    """A :class:`Segmenter` running an fcn_keras SavedModel export (one version directory) without Keras.

    Its receptive field is that of the architecture and backbone the export
    records (:func:`fcn_keras.models.receptive_field.architecture_receptive_field`,
    which builds that network once, with Keras, when tiling first asks).

    Example:
        >>> saved_model_segmenter("/nonexistent/1")
        Traceback (most recent call last):
        ...
        FileNotFoundError: /nonexistent/1 is not a SavedModel directory (no saved_model.pb)
    """
    from fcn_keras.export import read_export_info, saved_model_logits

    run = saved_model_logits(version_dir)
    info = read_export_info(version_dir)
    return Segmenter(run, list(info["class_names"]), np.asarray(info["palette"], np.uint8),
                     f"SavedModel {Path(version_dir)}",
                     functools.partial(_export_receptive_field, info["architecture"], info["backbone"]))


def _export_receptive_field(architecture: str, backbone: str) -> ReceptiveField:
    from fcn_keras.models.receptive_field import architecture_receptive_field

    return architecture_receptive_field(architecture, backbone)
