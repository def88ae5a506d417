"""Every architecture by name: the builder that makes it, for recipes, zoo cards and the CLI.

Example:
    >>> model = build("fcn32s", num_classes=3, backbone="tiny_vgg")
    >>> model.architecture, "deeplab_largefov" in ARCHITECTURES
    ('fcn32s', True)
"""

from __future__ import annotations

from typing import Callable

from fcn_keras.models.deconvnet import deconvnet
from fcn_keras.models.deeplab import deeplab_aspp, deeplab_largefov
from fcn_keras.models.fcn import fcn8s, fcn8s_atonce, fcn16s, fcn32s
from fcn_keras.models.pspnet import pspnet
from fcn_keras.models.segmentation_model import SegmentationModel
from fcn_keras.models.segnet import segnet
from fcn_keras.models.siftflow import fcn16s_two_heads
from fcn_keras.models.unet import unet

ARCHITECTURES: dict[str, Callable[..., SegmentationModel]] = {
    "fcn32s": fcn32s, "fcn16s": fcn16s, "fcn8s": fcn8s, "fcn8s_atonce": fcn8s_atonce,
    "fcn16s_two_heads": fcn16s_two_heads, "deeplab_largefov": deeplab_largefov, "deeplab_aspp": deeplab_aspp,
    "deconvnet": deconvnet, "segnet": segnet, "unet": unet, "pspnet": pspnet,
}
"""Architecture name -> its keras.applications-style builder."""


def build(architecture: str, **kwargs) -> SegmentationModel:
    """The model ``ARCHITECTURES[architecture](**kwargs)``, with an error that lists the known names.

    Example:
        >>> build("fcn64s")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: Unknown architecture='fcn64s'; choose one of ['deconvnet', ...]
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(f"Unknown architecture={architecture!r}; choose one of {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[architecture](**kwargs)
