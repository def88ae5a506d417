"""Class names and colour palettes shared by data, visualisation, export and the zoo.

The VOC palette is the one PASCAL VOC's label PNGs carry: class ``i`` is coloured
by spreading the bits of ``i`` over the three channels, most significant first.
"""

from __future__ import annotations

import numpy as np

VOC_CLASSES: tuple[str, ...] = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car",
    "cat", "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person",
    "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)

IGNORE_LABEL = 255
"""Label value of void / boundary pixels, ignored by the loss and the metrics."""

VOID_COLOR = (224, 224, 192)
"""The colour VOC uses for label 255."""


def voc_palette(num_colors: int = 256) -> np.ndarray:
    """The PASCAL VOC colour map as a ``uint8`` array of shape ``(num_colors, 3)``.

    Works for any class count; entry 255 of the 256-colour map is VOC's void colour.

    >>> voc_palette()[[0, 1, 15]].tolist()
    [[0, 0, 0], [128, 0, 0], [192, 128, 128]]
    >>> voc_palette(256)[255].tolist() == list(VOID_COLOR)
    True
    """
    if num_colors < 1:
        raise ValueError(f"num_colors must be >= 1, got {num_colors}")
    index = np.arange(num_colors)
    palette = np.zeros((num_colors, 3), dtype=np.int64)
    for shift in range(8):
        for channel in range(3):
            bit = (index >> (3 * shift + channel)) & 1
            palette[:, channel] |= bit << (7 - shift)
    return palette.astype(np.uint8)
