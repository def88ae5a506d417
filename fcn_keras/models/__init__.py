"""Segmentation models: the model class, the FCN builders, their layers and backbones. Depends on Keras only.

Example:
    >>> model = fcn8s(num_classes=2, class_names=["background", "person"])
    >>> isinstance(model, SegmentationModel), model.class_names
    (True, ('background', 'person'))
"""

from fcn_keras.models.backbones import BACKBONES, convolutionalize
from fcn_keras.models.fcn import FCN, build_fcn, fcn8s, fcn8s_atonce, fcn16s, fcn32s
from fcn_keras.models.heads import HEADS
from fcn_keras.models.layers import (
    BilinearUpsamplingInitializer,
    CropToReference,
    PadToMultiple,
    Preprocessing,
    Scale,
    bilinear_kernel,
)
from fcn_keras.models.segmentation_model import SegmentationModel, reference_graph

__all__ = [
    "BACKBONES", "FCN", "HEADS", "BilinearUpsamplingInitializer", "CropToReference", "PadToMultiple",
    "Preprocessing", "Scale", "SegmentationModel", "bilinear_kernel", "build_fcn", "convolutionalize",
    "fcn8s", "fcn8s_atonce", "fcn16s", "fcn32s", "reference_graph",
]
