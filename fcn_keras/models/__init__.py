"""Segmentation models: the model class, the FCN family's builders, their layers and backbones. Depends on Keras only.

Example:
    >>> model = fcn8s(num_classes=2, class_names=["background", "person"])
    >>> isinstance(model, SegmentationModel), model.class_names
    (True, ('background', 'person'))
"""

from fcn_keras.models.architectures import ARCHITECTURES, build
from fcn_keras.models.backbones import BACKBONES, convolutionalize
from fcn_keras.models.cam import cam_classifier, cam_vgg16, class_activation_model
from fcn_keras.models.deconvnet import deconvnet
from fcn_keras.models.deeplab import deeplab_aspp, deeplab_largefov
from fcn_keras.models.family_model import FamilyModel
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
from fcn_keras.models.precision import PRECISIONS, with_precision
from fcn_keras.models.pspnet import auxiliary_model, pspnet
from fcn_keras.models.segmentation_model import SegmentationModel, reference_graph, require_segmentation_model
from fcn_keras.models.segnet import segnet
from fcn_keras.models.shift_and_stitch import rarefy, shift_and_stitch
from fcn_keras.models.siftflow import fcn16s_two_heads
from fcn_keras.models.unet import unet

__all__ = [
    "ARCHITECTURES", "BACKBONES", "FCN", "PRECISIONS", "HEADS", "BilinearUpsamplingInitializer", "CropToReference", "FamilyModel",
    "PadToMultiple", "Preprocessing", "Scale", "SegmentationModel", "auxiliary_model", "bilinear_kernel", "build",
    "build_fcn", "cam_classifier", "cam_vgg16", "class_activation_model", "convolutionalize", "deconvnet",
    "deeplab_aspp", "deeplab_largefov", "fcn8s", "fcn8s_atonce", "fcn16s", "fcn16s_two_heads", "fcn32s", "pspnet",
    "rarefy", "reference_graph", "require_segmentation_model", "segnet", "shift_and_stitch", "unet",
    "with_precision",
]
