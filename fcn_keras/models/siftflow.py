"""The FCN paper's SIFT Flow network: one VGG16 trunk, two FCN-16s heads (semantic and geometric).

The reference (``siftflow-fcn16s/net.py``) scores ``drop7`` and ``pool4`` twice:
``score_fr_sem``, ``upscore2_sem``, ``score_pool4_sem`` (cropped as
``score_pool4_semc``), ``fuse_pool4_sem``, ``upscore16_sem``, ``score_sem``
for the 33 semantic classes, and the same layers ending in ``_geo`` for the 3
geometric classes (sky, horizontal, vertical); it trains with both losses
summed. Each head is exactly the FCN-16s head of :data:`fcn_keras.models.HEADS`.

:class:`TwoHeadFCN16s` is a :class:`~fcn_keras.models.SegmentationModel` whose
output is the semantic logits (the primary task: ``predict``, ``evaluate``,
exports and the zoo see a 33-class model). The geometric head's layers belong
to the model too (``model.auxiliary_layers``): they count in
``count_params()``, are saved in its ``.keras`` and ``.weights.h5`` files and
come back with them. Two more views share every variable:

- :meth:`TwoHeadFCN16s.geometric`: the geometric logits as a
  ``SegmentationModel`` (classes sky / horizontal / vertical);
- :meth:`TwoHeadFCN16s.two_heads`: a two-output ``keras.Model``
  (``{"semantic": ..., "geometric": ...}``) for training with both losses.

Example:
    >>> import numpy as np
    >>> model = fcn16s_two_heads(backbone="tiny_vgg")
    >>> model.num_classes, model.geometric().class_names
    (33, ('sky', 'horizontal', 'vertical'))
    >>> sorted(model.two_heads()(np.zeros((1, 40, 50, 3), "float32")))
    ['geometric', 'semantic']
"""

from __future__ import annotations

from typing import Sequence

import keras
from keras import ops

from fcn_keras.models import backbones
from fcn_keras.models.family_model import check_channels_last, check_input_shape
from fcn_keras.models.fast import program as fast_program
from fcn_keras.models.heads import HEADS, fcn_head, head_layers
from fcn_keras.models.layers import Preprocessing
from fcn_keras.models.segmentation_model import SegmentationModel, dtype_policy, resolve_identity
from fcn_keras.palette import IGNORE_LABEL

__all__ = ["SIFTFLOW_CLASSES", "GEOMETRIC_CLASSES", "GEOMETRIC_PALETTE", "TwoHeadFCN16s", "fcn16s_two_heads",
           "task_layer_name"]

SIFTFLOW_CLASSES: tuple[str, ...] = (
    "awning", "balcony", "bird", "boat", "bridge", "building", "bus", "car", "cow", "crosswalk", "desert", "door",
    "fence", "field", "grass", "moon", "mountain", "person", "plant", "pole", "river", "road", "rock", "sand", "sea",
    "sidewalk", "sign", "sky", "staircase", "streetlight", "sun", "tree", "window",
)
"""SIFT Flow's 33 semantic classes in label order (siftflow_layers.py: the .mat labels 1-33 minus one)."""

GEOMETRIC_CLASSES: tuple[str, ...] = ("sky", "horizontal", "vertical")
"""SIFT Flow's 3 geometric classes in label order (GeoLabels 1-3 minus one)."""

GEOMETRIC_PALETTE: tuple[tuple[int, int, int], ...] = ((70, 130, 180), (128, 64, 128), (70, 70, 70))
"""Colours for the geometric classes (ours; the reference defines none): sky blue, ground purple, wall grey."""

_HEAD = HEADS["fcn16s"]
_TASKS = ("sem", "geo")


def task_layer_name(name: str, task: str) -> str:
    """The reference's name of FCN-16s head layer ``name`` in head ``task`` (``"sem"`` or ``"geo"``).

    net.py appends the task to each layer, and to a crop's scores before its ``c``.

    Example:
        >>> task_layer_name("score_fr", "sem"), task_layer_name("score_pool4c", "geo")
        ('score_fr_sem', 'score_pool4_geoc')
    """
    if task not in _TASKS:
        raise ValueError(f"task must be one of {_TASKS}, got {task!r}")
    if name.endswith("c") and name[:-1] in {skip.score for skip in _HEAD.skips}:
        return f"{name[:-1]}_{task}c"
    return f"{name}_{task}"


def _task_head_layers(num_classes: int, task: str, reference: bool, trainable_upsampling: bool) -> dict:
    """The FCN-16s head's layers of :func:`head_layers`, each renamed for ``task`` (same definitions)."""
    table = head_layers(_HEAD, num_classes, reference, trainable_upsampling)
    return {key: type(layer).from_config({**layer.get_config(), "name": task_layer_name(key, task)})
            for key, layer in table.items()}


@keras.saving.register_keras_serializable(package="fcn_keras")
class TwoHeadFCN16s(SegmentationModel):
    """SIFT Flow's FCN-16s: semantic logits out, the geometric head held beside them (see the module docstring).

    Arguments are those of :func:`fcn16s_two_heads` plus ``fast`` (calls run the
    exact fast formulation of :mod:`fcn_keras.models.fast` for the semantic
    output; VGG16 only) and ``backbone_weights`` (for a keras.applications
    backbone, at construction; not part of the config).

    Example:
        >>> model = TwoHeadFCN16s(backbone="tiny_vgg")
        >>> model.output_shape, model.geometric().output_shape
        ((None, None, None, 33), (None, None, None, 3))
    """

    def __init__(
        self,
        num_classes: int | None = None,
        *,
        class_names: Sequence[str] | None = None,
        palette=None,
        geometric_class_names: Sequence[str] = GEOMETRIC_CLASSES,
        geometric_palette=GEOMETRIC_PALETTE,
        ignore_label: int = IGNORE_LABEL,
        backbone: str = "vgg16",
        input_shape: tuple = (None, None, 3),
        include_preprocessing: bool = False,
        preprocessing: str | None = None,
        trainable_upsampling: bool = False,
        fast: bool = True,
        card: dict | None = None,
        backbone_weights: str | None = None,
        name: str | None = None,
        **kwargs,
    ):
        spec = backbones.get_backbone(backbone)
        if class_names is None and num_classes in (None, len(SIFTFLOW_CLASSES)):
            class_names = SIFTFLOW_CLASSES
        num_classes, class_names, palette = resolve_identity(num_classes, class_names, palette)
        geo_classes, geo_names, geo_palette = resolve_identity(None, geometric_class_names, geometric_palette)
        check_input_shape(input_shape)
        check_channels_last()
        preprocessing = preprocessing or ("siftflow" if spec.reference else spec.preprocessing)

        with dtype_policy(kwargs.get("dtype")):
            inputs = keras.Input(tuple(input_shape), name="image")
            x = Preprocessing(preprocessing, name="preprocessing")(inputs) if include_preprocessing else inputs
            features = backbones.trunk(spec, x, backbone_weights)
            semantic = _task_head_layers(num_classes, "sem", spec.reference, trainable_upsampling)
            geometric = _task_head_layers(geo_classes, "geo", spec.reference, trainable_upsampling)
            semantic_scores = fcn_head(_HEAD, features, inputs, semantic.__getitem__, spec.reference)
            geometric_scores = fcn_head(_HEAD, features, inputs, geometric.__getitem__, spec.reference)
        super().__init__(
            inputs, semantic_scores, architecture="fcn16s_two_heads", backbone=backbone, class_names=class_names,
            palette=palette, ignore_label=ignore_label, preprocessing=preprocessing,
            include_preprocessing=include_preprocessing, card=card,
            name=name or ("fcn16s_two_heads" if spec.reference else f"fcn16s_two_heads_{backbone}"), **kwargs,
        )
        # A tracked list: Keras saves and loads its layers' variables with the model's, and counts them.
        self._geometric_layers = [geometric[key] for key in sorted(geometric)]
        self._geometric_scores = geometric_scores
        self._geometric_identity = (geo_names, geo_palette)
        self._reference_trunk = spec.reference
        self._input_shape_arg = tuple(input_shape)
        self._trainable_upsampling = bool(trainable_upsampling)
        self._fast = bool(fast)

    @property
    def fast(self) -> bool:
        """Whether calls run the trunk by the exact fast formulation (VGG16 backbone; others run the graph).

        The heads run as their layers read: 33- and 3-class upsampling costs
        little beside the trunk."""
        return self._fast and self._reference_trunk

    @property
    def auxiliary_layers(self) -> tuple[keras.layers.Layer, ...]:
        """The layers the model holds outside its output's graph: the geometric head (``*_geo``)."""
        return tuple(self._geometric_layers)

    @property
    def geometric_class_names(self) -> tuple[str, ...]:
        return self._geometric_identity[0]

    @property
    def geometric_palette(self):
        """``uint8 (3, 3)`` RGB colours of the geometric classes (a copy)."""
        return self._geometric_identity[1].copy()

    def geometric(self) -> SegmentationModel:
        """The geometric head as a :class:`SegmentationModel` over this model's variables.

        Its output is ``score_geo``; its classes, palette and name come from the
        geometric identity, the rest (preprocessing, card) from this model. It
        runs the plain graph; training it trains the trunk and this head.

        Example:
            >>> model = fcn16s_two_heads(backbone="tiny_vgg")
            >>> geo = model.geometric()
            >>> geo.name, geo.get_layer("score_fr_geo") in model.auxiliary_layers
            ('fcn16s_two_heads_tiny_vgg_geometric', True)
        """
        names, palette = self._geometric_identity
        return SegmentationModel(
            self.inputs[0], self._geometric_scores, architecture=self.architecture, backbone=self.backbone,
            class_names=names, palette=palette, ignore_label=self.ignore_label, preprocessing=self.preprocessing,
            include_preprocessing=self.include_preprocessing, card=self.card, name=f"{self.name}_geometric",
        )

    def two_heads(self) -> keras.Model:
        """Both heads as one ``keras.Model`` with outputs ``{"semantic": ..., "geometric": ...}``, same variables.

        For training with both losses, as the reference does (its two
        ``SoftmaxWithLoss`` layers, summed): compile it with a loss per output,
        fit it on ``(images, {"semantic": labels, "geometric": labels})``, and
        this model (and a later ``save``) holds the trained weights. It runs the
        plain graph.

        Example:
            >>> model = fcn16s_two_heads(backbone="tiny_vgg")
            >>> sorted((k, v.shape[-1]) for k, v in model.two_heads().output.items())
            [('geometric', 3), ('semantic', 33)]
        """
        return keras.Model(self.inputs[0], {"semantic": self.outputs[0], "geometric": self._geometric_scores},
                           name=f"{self.name}_two_heads")

    def call(self, inputs, training=None, mask=None):
        if not self.fast:
            return super().call(inputs, training=training, mask=mask)
        if isinstance(inputs, dict):
            inputs = next(iter(inputs.values()))
        elif isinstance(inputs, (list, tuple)):
            (inputs,) = inputs
        image = ops.cast(inputs, self.inputs[0].dtype)
        x = self.get_layer("preprocessing")(image) if self.include_preprocessing else image
        features = fast_program.vgg16_trunk(self.get_layer, x, training)
        return fcn_head(_HEAD, features, image, lambda name: self.get_layer(task_layer_name(name, "sem")),
                        reference=True)

    def get_config(self) -> dict:
        names, palette = self._geometric_identity
        return {
            **self._identity_config(),
            "num_classes": self.num_classes, "geometric_class_names": list(names),
            "geometric_palette": palette.tolist(), "backbone": self.backbone,
            "input_shape": list(self._input_shape_arg), "trainable_upsampling": self._trainable_upsampling,
            "fast": self._fast,
        }


def fcn16s_two_heads(
    num_classes: int | None = None,
    input_shape: tuple = (None, None, 3),
    include_preprocessing: bool = False,
    trainable_upsampling: bool = False,
    weights: str | None = None,
    backbone: str = "vgg16",
    name: str | None = None,
    *,
    class_names: Sequence[str] | None = None,
    palette=None,
    geometric_class_names: Sequence[str] = GEOMETRIC_CLASSES,
    geometric_palette=GEOMETRIC_PALETTE,
    ignore_label: int = IGNORE_LABEL,
    preprocessing: str | None = None,
    card: dict | None = None,
) -> TwoHeadFCN16s:
    """Builds the SIFT Flow FCN-16s: one trunk, a semantic and a geometric FCN-16s head (siftflow-fcn16s).

    Source: Long, Shelhamer, Darrell, "Fully Convolutional Networks for
    Semantic Segmentation" (PAMI 2016, section 5, SIFT Flow), and the reference
    ``siftflow-fcn16s/net.py`` (shelhamer/fcn.berkeleyvision.org), whose layer
    names the model keeps. Any input size is accepted, as for every FCN.

    Args:
        num_classes: semantic classes (default 33, SIFT Flow's, named by
            :data:`SIFTFLOW_CLASSES`).
        input_shape, include_preprocessing, trainable_upsampling, backbone,
            name, palette, ignore_label, card: as for :func:`fcn_keras.models.fcn16s`.
        weights: ``None``, ``"imagenet"`` or a keras.applications VGG16 ``.h5``
            path (conv1_1 ... fc7 from ImageNet, as :func:`fcn_keras.models.fcn16s`).
        class_names: the semantic class names.
        geometric_class_names: the geometric classes (default sky, horizontal,
            vertical); their number is the geometric head's width.
        geometric_palette: their colours (default :data:`GEOMETRIC_PALETTE`).
        preprocessing: the input mode (default ``"siftflow"``, SIFT Flow's BGR
            mean, for VGG16; the backbone's own otherwise).

    Returns:
        A :class:`TwoHeadFCN16s` giving float32 semantic logits
        ``(N, H, W, num_classes)`` of the input's size; ``.geometric()`` and
        ``.two_heads()`` give the other views.

    Example:
        >>> model = fcn16s_two_heads(backbone="tiny_vgg")
        >>> model.preprocessing, model.get_layer("upscore16_sem").output.shape
        ('tf', (None, None, None, 33))
    """
    if weights is not None and not isinstance(weights, str):
        raise ValueError(f"weights must be None, 'imagenet' or a file path, got {weights!r}")
    reference = backbones.get_backbone(backbone).reference
    model = TwoHeadFCN16s(
        num_classes, class_names=class_names, palette=palette, geometric_class_names=geometric_class_names,
        geometric_palette=geometric_palette, ignore_label=ignore_label, backbone=backbone, input_shape=input_shape,
        include_preprocessing=include_preprocessing, preprocessing=preprocessing,
        trainable_upsampling=trainable_upsampling, card=card, backbone_weights=None if reference else weights,
        name=name)
    if weights is not None and reference:
        backbones.load_vgg16_weights(model, weights)
    return model
