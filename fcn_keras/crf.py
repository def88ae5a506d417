"""The fully connected CRF (Krähenbühl & Koltun, NIPS 2011) on a network's upsampled scores, as DeepLab applies it.

Mean-field inference with a Gaussian position kernel (weight ``pos_w``,
``pos_xy_std``) and a bilateral position + colour kernel (``bi_w``,
``bi_xy_std``, ``bi_rgb_std``), Potts compatibility, run by pydensecrf2 (the
``crf`` extra: ``pip install 'fcn_keras[crf]'``). It follows DeepLab's Caffe
``DENSE_CRF`` layer (deeplab-public ``densecrf_layer.cpp``): the unary is
``-logits`` (a per-pixel constant away from ``-log softmax``, which mean field
cannot see), inference starts from the softmax, each kernel is normalised per
pixel after filtering (pydensecrf's ``NORMALIZE_AFTER``), and ``max_iter``
updates follow. The defaults are the released DeepLab-LargeFOV
``test.prototxt``'s ``dense_crf_param`` (:data:`DEEPLAB_LARGEFOV`); the papers
cross-validate w1, σα, σβ per dataset on val (docs/family/deeplab.md).

Example:
    >>> import numpy as np
    >>> image = np.zeros((8, 8, 3), np.uint8); image[:, 4:] = 255
    >>> logits = np.zeros((8, 8, 2), np.float32); logits[:, :3, 0] = 1; logits[:, 3:, 1] = 1  # one column off
    >>> logits.argmax(-1)[0].tolist(), DenseCRF().labels(image, logits)[0].tolist()
    ([0, 0, 0, 1, 1, 1, 1, 1], [0, 0, 0, 0, 1, 1, 1, 1])
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Mapping

import numpy as np

EXTRA = "crf"
"""The optional dependency group that installs pydensecrf2."""


@dataclass(frozen=True)
class DenseCRF:
    """The CRF's parameters, named as DeepLab's ``dense_crf_param``; call :meth:`labels` or :meth:`probabilities`.

    Example:
        >>> DenseCRF(bi_w=4, bi_xy_std=49, bi_rgb_std=5).bi_xy_std
        49.0
        >>> DenseCRF(max_iter=0)
        Traceback (most recent call last):
        ...
        ValueError: DenseCRF: max_iter must be a positive integer, got 0
    """

    max_iter: int = 10
    pos_w: float = 3.0
    pos_xy_std: float = 3.0
    bi_w: float = 5.0
    bi_xy_std: float = 50.0
    bi_rgb_std: float = 10.0

    def __post_init__(self):
        if isinstance(self.max_iter, bool) or not isinstance(self.max_iter, (int, np.integer)) or self.max_iter < 1:
            raise ValueError(f"DenseCRF: max_iter must be a positive integer, got {self.max_iter!r}")
        object.__setattr__(self, "max_iter", int(self.max_iter))
        for name in ("pos_w", "pos_xy_std", "bi_w", "bi_xy_std", "bi_rgb_std"):
            value = getattr(self, name)
            weight = name.endswith("_w")
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not np.isfinite(value) \
                    or value < 0 or (not weight and value == 0):
                kind = "a non-negative number" if weight else "a positive number"
                raise ValueError(f"DenseCRF: {name} must be {kind}, got {value!r}")
            object.__setattr__(self, name, float(value))

    def probabilities(self, image: np.ndarray, logits: np.ndarray) -> np.ndarray:
        """The CRF's marginals for an RGB uint8 image ``(H, W, 3)`` and float logits ``(H, W, C)``: float32 ``(H, W, C)``."""
        densecrf = _pydensecrf()
        image, logits = _check_inputs(image, logits)
        height, width, classes = logits.shape
        crf = densecrf.DenseCRF2D(width, height, classes)
        crf.setUnaryEnergy(np.ascontiguousarray(-logits.reshape(-1, classes).T))
        if self.pos_w > 0:
            crf.addPairwiseGaussian(sxy=self.pos_xy_std, compat=self.pos_w, kernel=densecrf.DIAG_KERNEL,
                                    normalization=densecrf.NORMALIZE_AFTER)
        if self.bi_w > 0:
            crf.addPairwiseBilateral(sxy=self.bi_xy_std, srgb=self.bi_rgb_std, rgbim=image, compat=self.bi_w,
                                     kernel=densecrf.DIAG_KERNEL, normalization=densecrf.NORMALIZE_AFTER)
        q = np.asarray(crf.inference(self.max_iter), np.float32)
        return np.ascontiguousarray(q.T.reshape(height, width, classes))

    def labels(self, image: np.ndarray, logits: np.ndarray) -> np.ndarray:
        """The refined label map: int64 ``(H, W)``, the argmax of :meth:`probabilities`."""
        return self.probabilities(image, logits).argmax(-1)

    def log_probabilities(self, image: np.ndarray, logits: np.ndarray) -> np.ndarray:
        """``log`` of :meth:`probabilities`, floored at float32's smallest normal (the Caffe layer's output)."""
        return np.log(np.maximum(self.probabilities(image, logits), np.finfo(np.float32).tiny))

    def params(self) -> dict:
        """The parameters as a dict (for metrics.json).

        Example:
            >>> DenseCRF().params()["bi_xy_std"]
            50.0
        """
        return dataclasses.asdict(self)

    def replace(self, **changes) -> "DenseCRF":
        """A copy with some parameters changed; an unknown name is one ``ValueError`` naming it and the known ones.

        Example:
            >>> DenseCRF().replace(bi_w=4).bi_w
            4.0
        """
        known = [f.name for f in dataclasses.fields(self)]
        for key in changes:
            if key not in known:
                raise ValueError(f"DenseCRF: unknown parameter {key!r}; the parameters are {', '.join(known)}")
        return dataclasses.replace(self, **changes)

    @classmethod
    def parse(cls, text: str) -> "DenseCRF":
        """Parameters from ``"bi_w=4,bi_xy_std=49"`` (the CLI's ``--crf-params``) over the defaults.

        Example:
            >>> DenseCRF.parse("bi_w=4, bi_xy_std=49,max_iter=5")
            DenseCRF(max_iter=5, pos_w=3.0, pos_xy_std=3.0, bi_w=4.0, bi_xy_std=49.0, bi_rgb_std=10.0)
            >>> DenseCRF.parse("bi_x=4")
            Traceback (most recent call last):
            ...
            ValueError: DenseCRF: unknown parameter 'bi_x'; the parameters are max_iter, pos_w, pos_xy_std, bi_w, bi_xy_std, bi_rgb_std
        """
        changes = {}
        for item in (part.strip() for part in text.split(",")):
            if not item:
                continue
            key, sep, value = (s.strip() for s in item.partition("="))
            if not sep or not key or not value:
                raise ValueError(f"DenseCRF: {item!r} is not KEY=VALUE (e.g. bi_w=4,bi_xy_std=49)")
            try:
                number = float(value)
            except ValueError:
                raise ValueError(f"DenseCRF: {key}={value!r} is not a number") from None
            changes[key] = int(number) if key == "max_iter" and number.is_integer() else number
        return cls().replace(**changes)


DEEPLAB_LARGEFOV = DenseCRF()
"""The released DeepLab-LargeFOV test.prototxt: max_iter 10, pos_w 3, pos_xy_std 3, bi_w 5, bi_xy_std 50, bi_rgb_std 10."""
DEEPLAB_V2_LARGEFOV = DenseCRF(bi_w=4, bi_xy_std=49, bi_rgb_std=5)
"""deeplab-public-ver2's exper/run_densecrf.sh for its VGG16 LargeFOV: bi_w 4, bi_xy_std 49, bi_rgb_std 5."""


def resolve_crf(crf) -> DenseCRF | None:
    """What ``crf=`` arguments mean: ``None``/``False`` off, ``True`` the defaults, a mapping or ``"k=v,..."`` string of
    overrides, or a :class:`DenseCRF`. Anything else is one ``ValueError``.

    Example:
        >>> resolve_crf(None), resolve_crf(True) == DenseCRF(), resolve_crf({"bi_w": 4}).bi_w
        (None, True, 4.0)
    """
    if crf is None or crf is False:
        return None
    if crf is True:
        return DenseCRF()
    if isinstance(crf, DenseCRF):
        return crf
    if isinstance(crf, Mapping):
        return DenseCRF().replace(**dict(crf))
    if isinstance(crf, str):
        return DenseCRF.parse(crf)
    raise ValueError(f"crf must be None, True, a DenseCRF, a dict of its parameters or 'key=value,...', got {crf!r}")


def dense_crf(image: np.ndarray, logits: np.ndarray, **params) -> np.ndarray:
    """The refined label map of :class:`DenseCRF` ``(**params)`` for one image: int64 ``(H, W)``.

    Example:
        >>> dense_crf(np.zeros((2, 3, 3), np.uint8), np.ones((2, 3, 4), np.float32), max_iter=1).shape
        (2, 3)
    """
    return DenseCRF().replace(**params).labels(image, logits)


def crf_segmenter(segmenter, crf=True):
    """A :class:`fcn_keras.segmenter.Segmenter` whose logits are the CRF's log-marginals over ``segmenter``'s logits.

    Its ``segment`` is therefore the CRF's labels; ``crf`` is anything
    :func:`resolve_crf` takes. It has no receptive field: the CRF connects
    the whole image, so it does not tile.

    Example:
        >>> from fcn_keras.segmenter import Segmenter
        >>> flat = Segmenter(lambda image: np.zeros(image.shape[:2] + (2,), np.float32), ["a", "b"],
        ...                  np.zeros((2, 3), np.uint8), "zeros")
        >>> crf_segmenter(flat, {"max_iter": 2}).description
        'zeros + dense CRF (max_iter=2, pos_w=3, pos_xy_std=3, bi_w=5, bi_xy_std=50, bi_rgb_std=10)'
    """
    from fcn_keras.segmenter import Segmenter

    crf = resolve_crf(crf)
    if crf is None:
        return segmenter
    require_pydensecrf()
    network = segmenter.logits

    def logits(image: np.ndarray) -> np.ndarray:
        return crf.log_probabilities(to_uint8_image(image), network(image))

    described = ", ".join(f"{k}={v:g}" for k, v in crf.params().items())
    return Segmenter(logits, segmenter.class_names, segmenter.palette, f"{segmenter.description} + dense CRF ({described})")


def to_uint8_image(image: np.ndarray) -> np.ndarray:
    """An RGB 0-255 image (any dtype) as the contiguous uint8 array the bilateral kernel reads.

    Example:
        >>> to_uint8_image(np.array([[[0.4, 254.6, 300.0]]])).tolist()
        [[[0, 255, 255]]]
    """
    return np.ascontiguousarray(np.clip(np.rint(np.asarray(image, np.float64)), 0, 255).astype(np.uint8))


def _check_inputs(image: np.ndarray, logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    image, logits = np.asarray(image), np.asarray(logits, np.float32)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"DenseCRF: image must be RGB (H, W, 3), got shape {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"DenseCRF: image must be uint8 (the colours the bilateral kernel compares), got {image.dtype}")
    if logits.ndim != 3 or logits.shape[:2] != image.shape[:2] or logits.shape[2] < 1:
        raise ValueError(f"DenseCRF: logits must be (H, W, C) of the image's size {image.shape[:2]}, "
                         f"got shape {logits.shape}")
    if not np.isfinite(logits).all():
        raise ValueError("DenseCRF: logits must be finite")
    # pydensecrf's typed memoryviews refuse read-only buffers, such as np.asarray of a PIL image.
    image = np.ascontiguousarray(image) if image.flags.writeable else np.array(image, order="C")
    return image, logits


def require_pydensecrf() -> None:
    """Nothing if pydensecrf2 is importable, else the ``ImportError`` naming the ``crf`` extra (checked up front).

    Example:
        >>> require_pydensecrf()
    """
    _pydensecrf()


def _pydensecrf():
    try:
        import pydensecrf.densecrf as densecrf
    except ImportError as exc:
        raise ImportError(f"the dense CRF needs pydensecrf2, which is not installed: pip install 'fcn_keras[{EXTRA}]' "
                          f"(or pip install pydensecrf2)") from exc
    return densecrf
