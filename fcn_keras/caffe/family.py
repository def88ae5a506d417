"""How the family's published caffemodels name their layers, against the Keras models' names.

:func:`fcn_keras.caffe.load_caffe_weights` matches blobs to layers by name; an
architecture whose Keras names differ from its authors' caffemodel, or which
has layers Caffe computes without blobs, has a :class:`CaffeRules` entry here.

- **DeepLab** (deeplab-public, ``DeepLab-LargeFOV/train.prototxt``; v2's ASPP):
  conv1_1 ... conv5_3, fc6, fc7 as ours; the dataset-tagged score layer
  ``fc8_voc12`` (ASPP: ``fc8_voc12_1`` ... ``fc8_voc12_4``) is our ``fc8``
  (``fc8_1`` ...); the test net's ``Interp`` (zoom 8) has no blobs, and our
  ``fc8_interp`` is its fixed bilinear equivalent, left as built.
- **SegNet** (SegNet-Tutorial ``segnet_train.prototxt``, caffe-segnet):
  conv1_1, conv1_1_bn, ..., conv1_1_D as ours. Its ``BN`` layers hold two
  blobs, scale and shift (each ``(1, C, 1, 1)``). The published inference
  weights are the output of ``Scripts/compute_bn_statistics.py``, which folds
  the training-set statistics into them (``scale = gamma / sqrt(var + 1e-9)``,
  ``shift = beta - gamma * mean / sqrt(var + 1e-9)``) and then runs the BN in
  ``INFERENCE`` mode: ``y = scale * x + shift``. So a Keras
  ``BatchNormalization`` takes ``gamma = scale``, ``beta = shift``, mean 0 and
  variance ``1 - epsilon``. The file cannot say whether it was folded (the
  script saves the net it loaded, whose ``bn_mode`` still reads LEARN), so
  ``bn_folded=True`` is the rule; a training snapshot is not an inference model.
  ``Upsample`` layers (unpooling by the pooling's indices) have no blobs.

Example:
    >>> rules("deeplab_largefov").renames["fc8_voc12"]
    'fc8'
    >>> rules("fcn8s").renames
    {}
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["CaffeRules", "RULES", "rules"]


@dataclass(frozen=True)
class CaffeRules:
    """How one architecture's Keras layers meet its authors' caffemodel.

    ``renames``: Caffe layer -> Keras layer, for the layers with blobs whose
    names differ. ``blobless``: Keras layers that Caffe computes without blobs
    (Interp), which must be non-trainable and are left as built.
    ``bn_folded``: a caffe-segnet ``BN`` layer's two blobs are folded inference
    scale and shift (the published files), see the module docstring.
    ``source``: the definition the rules follow.
    """

    source: str
    renames: dict[str, str] = field(default_factory=dict)
    blobless: tuple[str, ...] = ()
    bn_folded: bool = True


_DEEPLAB = "deeplab-public exper/voc12/config/DeepLab-LargeFOV/{train,test}.prototxt (Chen et al., ICLR 2015)"
RULES: dict[str, CaffeRules] = {
    "deeplab_largefov": CaffeRules(_DEEPLAB, renames={"fc8_voc12": "fc8"}, blobless=("fc8_interp",)),
    "deeplab_aspp": CaffeRules(
        "deeplab-public-ver2 DeepLab-v2 VGG16 ASPP-L prototxt (Chen et al., PAMI 2017)",
        renames={f"fc8_voc12_{i}": f"fc8_{i}" for i in range(1, 5)}, blobless=("fc8_interp",)),
    "segnet": CaffeRules("SegNet-Tutorial Models/segnet_train.prototxt and caffe-segnet's BN and Upsample layers"),
}
"""Architecture -> its rules; an architecture not listed maps by name, as the reference FCNs do."""

_BY_NAME = CaffeRules("the reference's layer names (shelhamer/fcn.berkeleyvision.org net.py)")


def rules(architecture: str) -> CaffeRules:
    """The :class:`CaffeRules` of ``architecture`` (plain by-name matching if it has none).

    Example:
        >>> rules("segnet").bn_folded, rules("fcn16s_two_heads").blobless
        (True, ())
    """
    return RULES.get(architecture, _BY_NAME)
