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
- The few layer parameters a conversion reads (:data:`LAYER_PARAMS`), by layer
  type: BVLC Caffe's ``batch_norm_param`` = 139 and ``scale_param`` = 142, and
  caffe-segnet's ``bn_param`` = 45 and ``upsample_param`` = 137 (that fork's
  ``caffe.proto``). Caffe's ``Net::ToProto`` writes every layer's parameters
  into the ``.caffemodel`` beside its blobs.

Example:
    >>> import numpy as np
    >>> CaffeLayer("score", "Convolution", blobs=[np.zeros((2, 3, 1, 1), "float32")]).blob_shapes
    [(2, 3, 1, 1)]
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["CaffeLayer", "CaffeModelError", "LAYER_PARAMS"]


class CaffeModelError(ValueError):
    """A ``.caffemodel`` file is unreadable, corrupt, or does not fit the model."""


@dataclass
class CaffeLayer:
    """One layer of a ``.caffemodel``: its name, type and parameter blobs (Caffe layouts).

    ``blob_shapes`` is always filled; ``blobs`` holds float32 arrays only for
    the layers that were asked for (see :func:`read_caffemodel`). ``params``
    holds the layer parameters of :data:`LAYER_PARAMS` that the file sets
    (``{"upsample_h": 45, ...}``); others are not decoded.
    """

    name: str
    type: str = ""
    bottoms: tuple[str, ...] = ()
    tops: tuple[str, ...] = ()
    blobs: list[np.ndarray] = field(default_factory=list)
    blob_shapes: list[tuple[int, ...]] = field(default_factory=list)
    params: dict = field(default_factory=dict)  # the fields of LAYER_PARAMS[type] the file sets

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
    43: "BN",  # caffe-segnet's V1 enum
}
V1_TYPE_IDS = {name: number for number, name in V1_TYPES.items()}

VARINT, FIXED64, BYTES, FIXED32 = 0, 1, 2, 5

_BN_MODES = {0: "LEARN", 1: "INFERENCE"}
LAYER_PARAMS: dict[str, tuple[int, dict[int, tuple[str, object]]]] = {
    # BVLC Caffe: BatchNormParameter, ScaleParameter.
    "BatchNorm": (139, {1: ("use_global_stats", bool), 2: ("moving_average_fraction", float), 3: ("eps", float)}),
    "Scale": (142, {1: ("axis", int), 2: ("num_axes", int), 4: ("bias_term", bool)}),
    # caffe-segnet (alexgkendall/caffe-segnet src/caffe/proto/caffe.proto): BNParameter, UpsampleParameter.
    "BN": (45, {3: ("bn_mode", _BN_MODES)}),
    "Upsample": (137, {1: ("scale", int), 2: ("scale_h", int), 3: ("scale_w", int), 4: ("pad_out_h", bool),
                       5: ("pad_out_w", bool), 6: ("upsample_h", int), 7: ("upsample_w", int)}),
}
"""Layer type -> (its parameter message's field in ``LayerParameter``, {field: (name, kind)}).

A kind is ``int``, ``bool``, ``float`` (a 32-bit float) or an enum's {value: name}."""
UNPACKED_FLOAT_TAG = (5 << 3) | FIXED32  # BlobProto.data written one value at a time
