"""The model class every fcn_keras architecture is: a Keras model that knows what it segments.

A :class:`SegmentationModel` is a functional ``keras.Model`` (its layers, names
and maps are the authors' network) that also carries its identity in its
config, so a ``.keras`` file, an export or a zoo download is self-describing:

- ``class_names`` and ``palette`` (one RGB colour per class), and the
  ``ignore_label`` of void pixels;
- ``preprocessing``: the input mode the network was trained on (a key of
  :data:`fcn_keras.preprocessing.MODES`), and ``include_preprocessing``: whether
  the model applies it itself, i.e. takes RGB 0-255 images;
- ``architecture`` and ``backbone``;
- ``card``: for zoo models, the provenance (name, source file, checksum,
  published metrics).

Subclasses build their graph in ``__init__`` from constructor arguments only,
and their ``get_config`` returns exactly those arguments, so
``keras.models.load_model`` rebuilds the same class (in safe mode: nothing but
plain values is stored) and then loads the weights.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any, Iterator, Sequence

import numpy as np
import keras

from fcn_keras.palette import IGNORE_LABEL, voc_palette
from fcn_keras.preprocessing import check_mode


def default_class_names(num_classes: int) -> tuple[str, ...]:
    """``("class 0", ..., "class N-1")``, the names of a model built without ``class_names``.

    Example:
        >>> default_class_names(3)
        ('class 0', 'class 1', 'class 2')
    """
    return tuple(f"class {i}" for i in range(num_classes))


def resolve_identity(num_classes: int | None, class_names: Sequence[str] | None, palette) -> tuple:
    """``(num_classes, class_names, palette)`` checked against each other, with the defaults filled in.

    ``num_classes`` may be ``None`` when ``class_names`` gives it. The default
    palette is the VOC colour map (:func:`fcn_keras.palette.voc_palette`), which
    gives any number of classes distinct colours.

    Example:
        >>> n, names, palette = resolve_identity(None, ["road", "car"], None)
        >>> n, names, palette.tolist()
        (2, ('road', 'car'), [[0, 0, 0], [128, 0, 0]])
    """
    if class_names is not None:
        if isinstance(class_names, str) or not all(isinstance(c, str) and c for c in class_names):
            raise ValueError(f"class_names must be a list of non-empty strings, got {class_names!r}")
        class_names = tuple(class_names)
        if len(set(class_names)) != len(class_names):
            raise ValueError(f"class_names has repeated names: {class_names!r}")
        if num_classes is None:
            num_classes = len(class_names)
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"num_classes must be an integer >= 1, got {num_classes!r}")
    num_classes = int(num_classes)
    if class_names is None:
        class_names = default_class_names(num_classes)
    elif len(class_names) != num_classes:
        raise ValueError(f"class_names has {len(class_names)} names but num_classes={num_classes}")
    if palette is None:
        palette = voc_palette(num_classes)
    else:
        values = np.asarray(palette)
        if values.ndim != 2 or values.shape[1] != 3 or not np.issubdtype(values.dtype, np.integer) and \
                not np.array_equal(values, np.round(values)):
            raise ValueError(f"palette must be integer RGB rows of shape (num_classes, 3), got shape {values.shape}")
        if values.shape[0] != num_classes:
            raise ValueError(f"palette has {values.shape[0]} colours but the model has {num_classes} classes "
                             f"(fcn_keras.palette.voc_palette({num_classes}) gives {num_classes})")
        if values.min() < 0 or values.max() > 255:
            raise ValueError("palette values must be in [0, 255]")
        palette = values.astype(np.uint8)
    return num_classes, class_names, palette


@contextlib.contextmanager
def dtype_policy(policy) -> Iterator[None]:
    """Sets the global dtype policy inside the block (a name, a ``DTypePolicy`` or its config; ``None``: unchanged).

    Example:
        >>> with dtype_policy("mixed_bfloat16"):
        ...     keras.config.dtype_policy().name
        'mixed_bfloat16'
        >>> keras.config.dtype_policy().name
        'float32'
    """
    if policy is None:
        yield
        return
    if isinstance(policy, dict):
        policy = keras.dtype_policies.deserialize(policy)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def reference_graph(model: keras.Model) -> keras.Model:
    """The model's functional graph as a plain ``keras.Model``: its layers as they read, same variables.

    An :class:`~fcn_keras.models.FCN` computes calls by an exact fast
    formulation; this runs the reference layer by layer instead — for runtimes
    that bring their own convolution kernels (TFLite), for feature extraction
    and for checking the fast formulation.

    Example:
        >>> from fcn_keras.models import fcn32s
        >>> model = fcn32s(num_classes=2)
        >>> plain = reference_graph(model)
        >>> type(plain).__name__, plain.get_layer("fc6") is model.get_layer("fc6")
        ('Functional', True)
    """
    return keras.Model(model.input, model.output, name=model.name)


@keras.saving.register_keras_serializable(package="fcn_keras")
class SegmentationModel(keras.Model):
    """A functional segmentation model with its classes, palette, preprocessing and provenance.

    Subclasses (:class:`fcn_keras.models.FCN`) build ``inputs`` and ``outputs``
    and pass them here with the identity; ``outputs`` are float32 logits
    ``(N, H, W, num_classes)``. Read the identity through the properties; it is
    fixed at construction.

    Example:
        >>> import keras
        >>> x = keras.Input((None, None, 3))
        >>> model = SegmentationModel(x, keras.layers.Conv2D(2, 1)(x), architecture="linear", backbone="none",
        ...                           class_names=["sky", "ground"], preprocessing="tf")
        >>> model.class_names, model.num_classes, model.input_preprocessing
        (('sky', 'ground'), 2, 'tf')
    """

    def __init__(
        self,
        inputs,
        outputs,
        *,
        architecture: str,
        backbone: str,
        class_names: Sequence[str] | None = None,
        palette=None,
        ignore_label: int = IGNORE_LABEL,
        preprocessing: str = "fcn",
        include_preprocessing: bool = False,
        card: dict | None = None,
        **kwargs,
    ):
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        classes = self.output_shape[-1]
        self._num_classes, self._class_names, self._palette = resolve_identity(classes, class_names, palette)
        if isinstance(ignore_label, bool) or not isinstance(ignore_label, (int, np.integer)):
            raise ValueError(f"ignore_label must be an integer, got {ignore_label!r}")
        if 0 <= ignore_label < classes:
            raise ValueError(f"ignore_label={ignore_label} is one of the {classes} class indices")
        self._ignore_label = int(ignore_label)
        self._preprocessing = check_mode(preprocessing)
        self._include_preprocessing = bool(include_preprocessing)
        self._architecture, self._backbone = str(architecture), str(backbone)
        if card is not None:
            try:
                card = json.loads(json.dumps(card))  # plain JSON values only: what a .keras config can hold
            except (TypeError, ValueError) as exc:
                raise ValueError(f"card must be a JSON-serialisable dict: {exc}") from None
            if not isinstance(card, dict):
                raise ValueError(f"card must be a dict, got {type(card).__name__}")
        self._card = card

    # -- identity, read-only
    @property
    def class_names(self) -> tuple[str, ...]:
        """The class names, index order."""
        return self._class_names

    @property
    def num_classes(self) -> int:
        return self._num_classes

    @property
    def palette(self) -> np.ndarray:
        """``uint8 (num_classes, 3)`` RGB colours, one per class (a copy)."""
        return self._palette.copy()

    @property
    def ignore_label(self) -> int:
        """The label value of void pixels, ignored by the loss and the metrics."""
        return self._ignore_label

    @property
    def preprocessing(self) -> str:
        """The input mode the network expects (a key of :data:`fcn_keras.preprocessing.MODES`)."""
        return self._preprocessing

    @property
    def include_preprocessing(self) -> bool:
        """Whether the model applies :attr:`preprocessing` itself (it then takes RGB 0-255)."""
        return self._include_preprocessing

    @property
    def input_preprocessing(self) -> str | None:
        """The mode a caller applies to RGB 0-255 images before calling the model; ``None`` if the model does."""
        return None if self._include_preprocessing else self._preprocessing

    @property
    def architecture(self) -> str:
        return self._architecture

    @property
    def backbone(self) -> str:
        return self._backbone

    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None):
        """``keras.Model.predict``; images that fit one batch run as ``predict_on_batch``, the same compiled step.

        Keras feeds arrays through an input pipeline it builds anew on every call: on TensorFlow a
        tf.data graph whose functions are traced each time, about 0.3 s per call (measured on a 2-core
        AMD EPYC: FCN-8s' 500x500 ``predict`` 1.30 s, ``predict_on_batch`` 1.03 s). One batch needs
        no pipeline. Datasets, generators, several batches, ``steps``, callbacks and several
        replicas take Keras' own path; no progress bar is shown for the single batch.

        Example:
            >>> import keras, numpy as np
            >>> x = keras.Input((None, None, 3))
            >>> m = SegmentationModel(x, keras.layers.Conv2D(2, 1)(x), architecture="linear", backbone="none")
            >>> images = np.ones((3, 4, 5, 3), "float32")
            >>> np.array_equal(m.predict(images), m.predict(images, batch_size=1, verbose=0))
            True
        """
        if steps is None and not callbacks and self._one_batch(x, batch_size):
            return self.predict_on_batch(x)
        return super().predict(x, batch_size=batch_size, verbose=verbose, steps=steps, callbacks=callbacks)

    def _one_batch(self, x, batch_size) -> bool:
        strategy = getattr(self, "distribute_strategy", None)  # TensorFlow's
        if (strategy is not None and strategy.num_replicas_in_sync != 1) or keras.distribution.distribution():
            return False
        if not (isinstance(x, np.ndarray) or keras.ops.is_tensor(x)) or len(x.shape) != 4:
            return False
        return x.shape[0] is not None and 0 < x.shape[0] <= (batch_size or 32)

    @property
    def card(self) -> dict | None:
        """Zoo provenance (name, source, checksum, published metrics), or ``None`` (a copy)."""
        return None if self._card is None else json.loads(json.dumps(self._card))

    def identity(self) -> dict[str, Any]:
        """The identity as plain JSON values: what exports write next to the network.

        Example:
            >>> import keras
            >>> x = keras.Input((None, None, 3))
            >>> m = SegmentationModel(x, keras.layers.Conv2D(2, 1)(x), architecture="linear", backbone="none")
            >>> sorted(m.identity())  # doctest: +NORMALIZE_WHITESPACE
            ['architecture', 'backbone', 'card', 'class_names', 'ignore_label', 'include_preprocessing',
             'input_preprocessing', 'num_classes', 'palette', 'preprocessing']
        """
        return {
            "architecture": self.architecture, "backbone": self.backbone,
            "num_classes": self.num_classes, "class_names": list(self.class_names),
            "palette": self._palette.tolist(), "ignore_label": self.ignore_label,
            "preprocessing": self.preprocessing, "include_preprocessing": self.include_preprocessing,
            "input_preprocessing": self.input_preprocessing, "card": self.card,
        }

    def _identity_config(self) -> dict[str, Any]:
        config = {"name": self.name, "trainable": self.trainable,
                  "class_names": list(self.class_names), "palette": self._palette.tolist(),
                  "ignore_label": self.ignore_label, "preprocessing": self.preprocessing,
                  "include_preprocessing": self.include_preprocessing, "card": self.card,
                  # Always: a file saved under one global policy loads with its own under any other.
                  "dtype": keras.dtype_policies.serialize(self.dtype_policy)}
        return config

    def get_config(self) -> dict[str, Any]:
        """The identity, plus (here) the functional graph; subclasses add their constructor arguments instead."""
        config = self._identity_config()
        if type(self) is SegmentationModel:
            config.update(keras.Model(self.input, self.output, name=self.name).get_config())
            config.update({"architecture": self.architecture, "backbone": self.backbone})
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        if cls is not SegmentationModel:
            return cls(**config)  # subclasses build their layers under the config's dtype policy themselves
        identity = {k: config[k] for k in ("architecture", "backbone", "class_names", "palette", "ignore_label",
                                           "preprocessing", "include_preprocessing", "card") if k in config}
        functional = keras.Model.from_config({k: v for k, v in config.items() if k not in identity},
                                             custom_objects=custom_objects)
        return cls(functional.input, functional.output, name=functional.name, **identity)


def require_segmentation_model(model) -> SegmentationModel:
    """``model`` if it is a :class:`~fcn_keras.models.SegmentationModel`, else a ``TypeError`` saying how to make one.

    Exports, parity checks and :func:`fcn_keras.evaluation.evaluate` read the
    class names, palette, ignore label and preprocessing from the model.

    Example:
        >>> x = keras.Input((None, None, 3))
        >>> require_segmentation_model(keras.Model(x, x))
        Traceback (most recent call last):
        ...
        TypeError: need an fcn_keras.models.SegmentationModel, which knows its classes and preprocessing; got a Functional. Wrap a plain Keras model: SegmentationModel(model.input, model.output, architecture=..., backbone=..., class_names=[...], preprocessing=..., include_preprocessing=...)
    """
    if not isinstance(model, SegmentationModel):
        raise TypeError(
            f"need an fcn_keras.models.SegmentationModel, which knows its classes and preprocessing; got a "
            f"{type(model).__name__}. Wrap a plain Keras model: SegmentationModel(model.input, model.output, "
            f"architecture=..., backbone=..., class_names=[...], preprocessing=..., include_preprocessing=...)"
        )
    return model
