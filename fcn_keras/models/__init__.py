"""FCN architectures: builders, their layers and backbones. Depends on Keras only."""

from fcn_keras.models.backbones import BACKBONES, convolutionalize
from fcn_keras.models.fcn import HEADS, build_fcn, fcn8s, fcn8s_atonce, fcn16s, fcn32s
from fcn_keras.models.layers import (
    BilinearUpsamplingInitializer,
    CropToReference,
    PadToMultiple,
    Preprocessing,
    Scale,
    bilinear_kernel,
)

__all__ = [
    "BACKBONES", "HEADS", "BilinearUpsamplingInitializer", "CropToReference", "PadToMultiple",
    "Preprocessing", "Scale", "bilinear_kernel", "build_fcn", "convolutionalize",
    "fcn8s", "fcn8s_atonce", "fcn16s", "fcn32s",
]
