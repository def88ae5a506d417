"""The base of the family's architectures: a :class:`SegmentationModel` built from its arguments by one graph.

Each architecture (SegNet, DeepLab, U-Net, ...) is a subclass that names itself
(``ARCHITECTURE``, ``BACKBONE``), states its defaults (``DEFAULT_NUM_CLASSES``,
``PREPROCESSING``) and its own arguments with their defaults (``OPTIONS``), and
defines :meth:`FamilyModel.graph`: the authors' network from the (preprocessed)
input to float32 logits of the input's size. Everything else is shared: the
identity, the input checks, the optional ``Preprocessing`` layer, the dtype
policy, ``get_config`` (exactly the constructor's arguments, so a ``.keras``
file rebuilds the model in safe mode) and the builders' keras.applications-style
arguments.

Example:
    >>> class Linear(FamilyModel):
    ...     ARCHITECTURE, BACKBONE, PREPROCESSING = "linear", "none", "tf"
    ...     OPTIONS = {"alpha": 1.0}
    ...     @classmethod
    ...     def graph(cls, x, image, num_classes, alpha):
    ...         return keras.layers.Conv2D(num_classes, 1, name="score")(x)
    >>> model = Linear(num_classes=2, alpha=0.5)
    >>> model.architecture, model.options, model.get_config()["alpha"]
    ('linear', {'alpha': 0.5}, 0.5)
"""

from __future__ import annotations

from typing import Any, ClassVar, Sequence

import keras

from fcn_keras.models.layers import Preprocessing
from fcn_keras.models.segmentation_model import SegmentationModel, dtype_policy, resolve_identity
from fcn_keras.palette import IGNORE_LABEL


def width(channels: int, alpha: float) -> int:
    """``channels`` scaled by the width multiplier ``alpha`` (keras.applications' MobileNet ``alpha``), at least 1.

    Example:
        >>> width(64, 1.0), width(4096, 0.125), width(3, 0.1)
        (64, 512, 1)
    """
    return max(1, int(round(channels * alpha)))


def check_alpha(alpha) -> float:
    """``alpha`` as a float if it is a positive number, else a ``ValueError`` naming the argument.

    Example:
        >>> check_alpha(0.25)
        0.25
    """
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha > 0:
        raise ValueError(f"alpha (the width multiplier) must be a positive number, got {alpha!r}")
    return float(alpha)


def check_input_shape(input_shape) -> tuple:
    """``input_shape`` as a tuple if it is ``(height, width, 3)`` with positive or ``None`` sizes.

    Example:
        >>> check_input_shape([None, 64, 3])
        (None, 64, 3)
    """
    if input_shape is None or len(input_shape) != 3 or input_shape[-1] != 3:
        raise ValueError(f"input_shape must be (height, width, 3) for RGB images, got {input_shape!r}")
    for size in input_shape[:2]:
        if size is not None and (int(size) != size or size < 1):
            raise ValueError(f"input_shape sizes must be positive integers or None, got {input_shape!r}")
    return tuple(input_shape)


def check_weights(weights, alpha: float, architecture: str) -> None:
    """``weights`` must be None, "imagenet" or a path, and ImageNet weights need the authors' widths (alpha=1).

    Example:
        >>> check_weights("imagenet", 0.5, "segnet")
        Traceback (most recent call last):
        ...
        ValueError: segnet: weights='imagenet' needs alpha=1.0 (VGG16's own widths), got alpha=0.5
    """
    if weights is not None and not isinstance(weights, str):
        raise ValueError(f"{architecture}: weights must be None, 'imagenet' or a file path, got {weights!r}")
    if weights is not None and check_alpha(alpha) != 1.0:
        raise ValueError(f"{architecture}: weights={weights!r} needs alpha=1.0 (VGG16's own widths), got alpha={alpha}")


def check_channels_last() -> None:
    """A ``ValueError`` unless Keras' image data format is ``channels_last``, the one every fcn_keras model uses.

    Example:
        >>> check_channels_last()
    """
    if keras.config.image_data_format() != "channels_last":
        raise ValueError("fcn_keras models are channels_last; set keras.config.set_image_data_format('channels_last')")


class FamilyModel(SegmentationModel):
    """A segmentation architecture of the FCN family: identity + ``graph``; see the module docstring.

    Subclasses are registered with ``@keras.saving.register_keras_serializable(package="fcn_keras")``.
    """

    ARCHITECTURE: ClassVar[str] = ""
    BACKBONE: ClassVar[str] = "none"
    DEFAULT_NUM_CLASSES: ClassVar[int] = 21
    PREPROCESSING: ClassVar[str] = "caffe"
    OPTIONS: ClassVar[dict[str, Any]] = {}

    def __init__(
        self,
        num_classes: int | None = None,
        *,
        class_names: Sequence[str] | None = None,
        palette=None,
        ignore_label: int = IGNORE_LABEL,
        input_shape: tuple = (None, None, 3),
        include_preprocessing: bool = False,
        preprocessing: str | None = None,
        card: dict | None = None,
        name: str | None = None,
        **kwargs,
    ):
        cls = type(self)
        options = {key: kwargs.pop(key, default) for key, default in cls.OPTIONS.items()}
        if num_classes is None and class_names is None:
            num_classes = cls.DEFAULT_NUM_CLASSES
        num_classes, class_names, palette = resolve_identity(num_classes, class_names, palette)
        input_shape = check_input_shape(input_shape)
        check_channels_last()
        preprocessing = preprocessing or cls.PREPROCESSING
        with dtype_policy(kwargs.get("dtype")):
            image = keras.Input(input_shape, name="image")
            x = Preprocessing(preprocessing, name="preprocessing")(image) if include_preprocessing else image
            outputs = cls.graph(x, image, num_classes, **options)
        super().__init__(
            image, outputs, architecture=cls.ARCHITECTURE, backbone=cls.BACKBONE, class_names=class_names,
            palette=palette, ignore_label=ignore_label, preprocessing=preprocessing,
            include_preprocessing=include_preprocessing, card=card, name=name or cls.ARCHITECTURE, **kwargs,
        )
        self._input_shape_arg = input_shape
        self._options = options

    @classmethod
    def graph(cls, x, image, num_classes: int, **options):
        """The network: ``x`` (the preprocessed image) to float32 logits ``(N, H, W, num_classes)``.

        ``image`` is the model's input, for crops to its size. Raise
        ``ValueError`` naming the argument for a bad option.
        """
        raise NotImplementedError

    @property
    def options(self) -> dict[str, Any]:
        """The architecture's own arguments (``OPTIONS``) as given (a copy)."""
        return dict(self._options)

    def get_config(self) -> dict[str, Any]:
        return {**self._identity_config(), "num_classes": self.num_classes,
                "input_shape": list(self._input_shape_arg), **self._options}
