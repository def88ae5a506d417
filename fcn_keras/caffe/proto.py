"""The parts of Caffe's ``caffe.proto`` a weights file needs, and the layer record both directions share.

A ``.caffemodel`` is a protobuf ``NetParameter``. Only the few fields that carry
weights are decoded (field numbers from Caffe's ``caffe.proto``):

- ``NetParameter``: ``layer`` = 100 (``LayerParameter``), deprecated ``layers`` = 2
  (``V1LayerParameter``).
- ``LayerParameter``: name = 1, type = 2 (string), bottom = 3, top = 4, blobs = 7.
- ``V1LayerParameter``: bottom = 2, top = 3, name = 4, type = 5 (an enum), blobs = 6.
- ``BlobProto``: num/channels/height/width = 1-4 (legacy 4-D shape), data = 5
  (float, packed or not), double_data = 8, shape = 7 (``BlobShape``: dim = 1,
  packed int64).

Example:
    >>> import numpy as np
    >>> CaffeLayer("score", "Convolution", blobs=[np.zeros((2, 3, 1, 1), "float32")]).blob_shapes
    [(2, 3, 1, 1)]
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["CaffeLayer", "CaffeModelError"]


class CaffeModelError(ValueError):
    """A ``.caffemodel`` file is unreadable, corrupt, or does not fit the model."""


@dataclass
class CaffeLayer:
    """One layer of a ``.caffemodel``: its name, type and parameter blobs (Caffe layouts).

    ``blob_shapes`` is always filled; ``blobs`` holds float32 arrays only for
    the layers that were asked for (see :func:`read_caffemodel`).
    """

    name: str
    type: str = ""
    bottoms: tuple[str, ...] = ()
    tops: tuple[str, ...] = ()
    blobs: list[np.ndarray] = field(default_factory=list)
    blob_shapes: list[tuple[int, ...]] = field(default_factory=list)

    def __post_init__(self):
        if self.blobs and not self.blob_shapes:
            self.blob_shapes = [tuple(np.shape(b)) for b in self.blobs]


@dataclass(frozen=True)
class LayerForm:
    """Where one of the two layer messages keeps its fields (protobuf field numbers)."""

    field: int  # in NetParameter
    name: int
    type: int
    bottom: int
    top: int
    blobs: int
    type_is_enum: bool


NEW_FORM = LayerForm(field=100, name=1, type=2, bottom=3, top=4, blobs=7, type_is_enum=False)
V1_FORM = LayerForm(field=2, name=4, type=5, bottom=2, top=3, blobs=6, type_is_enum=True)
V0_LAYER_FIELD = 1  # V1LayerParameter.layer: the even older V0 form, which we do not read

# V1LayerParameter.LayerType values of the layers an FCN file contains.
V1_TYPES = {
    1: "Accuracy", 3: "Concat", 4: "Convolution", 5: "Data", 6: "Dropout", 8: "Flatten",
    12: "ImageData", 14: "InnerProduct", 15: "LRN", 17: "Pooling", 18: "ReLU", 20: "Softmax",
    21: "SoftmaxWithLoss", 22: "Split", 25: "Eltwise", 39: "Deconvolution",
}
V1_TYPE_IDS = {name: number for number, name in V1_TYPES.items()}

VARINT, FIXED64, BYTES, FIXED32 = 0, 1, 2, 5
UNPACKED_FLOAT_TAG = (5 << 3) | FIXED32  # BlobProto.data written one value at a time
