"""Parity of an exported model against Keras on given images: logits error, mask agreement, mean IU.

The reference is the Keras model run on each image alone (float32, its call —
the exact fast formulation —, ``model.input_preprocessing`` in front, as the
exports have it). Figures:

- ``max_relative_error``: ``max |candidate - keras| / max |keras|`` over each
  image's logits, worst image (float32 exports: should be <= 1e-4);
  bfloat16 SavedModels (kind ``"bfloat16"``) pass on pixel agreement >= 99.5 % instead;
- ``pixel_agreement``: fraction of pixels whose arg-max class agrees;
- ``mean_iu_vs_keras``: mean IU of the candidate's masks taking Keras' masks as truth;
- with ``labels``: Keras' and the candidate's mean IU against them (pixels
  labelled ``model.ignore_label`` not counted) and the change.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import keras
import numpy as np

from fcn_keras.export.graph import logits_function, require_segmentation_model
from fcn_keras.metrics import confusion_matrix, scores_from_confusion
from fcn_keras.models import SegmentationModel
from fcn_keras.palette import IGNORE_LABEL

FLOAT32_RELATIVE_TOLERANCE = 1e-4
QUANTIZED_MIN_AGREEMENT = 0.98
BFLOAT16_MIN_AGREEMENT = 0.995  # issue 16's target for a trained model (bfloat16 rounds after every layer)


def mean_iu(confusion: np.ndarray) -> float:
    """Mean IU of a confusion matrix, as :func:`fcn_keras.metrics.scores_from_confusion` defines it.

    Classes absent from both truth and prediction are left out; with no class
    present at all (no labelled pixel) the mean IU is NaN, as in score.py.

    Example:
        >>> mean_iu(np.array([[2, 0], [1, 1]]))
        0.5833333333333333
        >>> mean_iu(np.zeros((2, 2), np.int64))
        nan
    """
    return scores_from_confusion(confusion)["mean_iou"]


@dataclass
class ParityReport:
    """Agreement of an exported model with Keras; ``passed`` applies the targets of its ``kind``.

    Example:
        >>> report = ParityReport("int8", images=2, max_relative_error=0.03, pixel_agreement=0.99, mean_iu_vs_keras=0.97)
        >>> report.passed, report.as_dict()["passed"]
        (True, True)
    """

    kind: str
    images: int
    max_relative_error: float
    pixel_agreement: float
    mean_iu_vs_keras: float
    mean_iu_keras: float | None = None
    mean_iu_export: float | None = None
    per_image_agreement: list[float] = field(default_factory=list)

    @property
    def mean_iu_change(self) -> float | None:
        if self.mean_iu_keras is None:
            return None
        return self.mean_iu_export - self.mean_iu_keras

    @property
    def passed(self) -> bool:
        if self.kind in ("float32", "savedmodel", "onnx"):
            return self.max_relative_error <= FLOAT32_RELATIVE_TOLERANCE
        if self.kind == "bfloat16":
            return self.pixel_agreement >= BFLOAT16_MIN_AGREEMENT
        return self.pixel_agreement >= QUANTIZED_MIN_AGREEMENT

    def as_dict(self) -> dict:
        """The figures, ``mean_iu_change`` and ``passed`` as plain values (for JSON)."""
        return {**asdict(self), "mean_iu_change": self.mean_iu_change, "passed": self.passed}

    def __str__(self) -> str:
        text = (f"{self.kind}: {self.images} images, max relative logits error {self.max_relative_error:.2e}, "
                f"pixel agreement {100 * self.pixel_agreement:.2f}%, mean IU vs Keras {self.mean_iu_vs_keras:.4f}")
        if self.mean_iu_change is not None:
            text += f", mean IU {self.mean_iu_keras:.4f} -> {self.mean_iu_export:.4f} ({self.mean_iu_change:+.4f})"
        return text + (" [ok]" if self.passed else " [FAILED]")


def compare(
    kind: str,
    reference_logits: Sequence[np.ndarray],
    export_logits: Sequence[np.ndarray],
    labels: Sequence[np.ndarray] | None = None,
    ignore_label: int = IGNORE_LABEL,
) -> ParityReport:
    """A :class:`ParityReport` from per-image logits ``(H, W, C)`` of Keras and of an export.

    Example:
        >>> logits = [np.array([[[1.0, 0.0], [0.0, 2.0]]], np.float32)]
        >>> str(compare("float32", logits, logits))
        'float32: 1 images, max relative logits error 0.00e+00, pixel agreement 100.00%, mean IU vs Keras 1.0000 [ok]'
    """
    if len(reference_logits) != len(export_logits) or not reference_logits:
        raise ValueError(f"need the same non-zero number of reference and export logits, got "
                         f"{len(reference_logits)} and {len(export_logits)}")
    if labels is not None and len(labels) != len(reference_logits):
        raise ValueError(f"labels has {len(labels)} entries for {len(reference_logits)} images")
    c = reference_logits[0].shape[-1]
    agreement = np.zeros((c, c), np.int64)
    vs_labels = [np.zeros((c, c), np.int64), np.zeros((c, c), np.int64)]
    errors, per_image = [], []
    for i, (ref, out) in enumerate(zip(reference_logits, export_logits)):
        if ref.shape != out.shape:
            raise ValueError(f"image {i}: export logits have shape {out.shape}, Keras' {ref.shape}")
        errors.append(float(np.max(np.abs(out - ref)) / max(float(np.max(np.abs(ref))), 1e-12)))
        ref_mask, out_mask = ref.argmax(-1), out.argmax(-1)
        per_image.append(float(np.mean(ref_mask == out_mask)))
        agreement += confusion_matrix(ref_mask, out_mask, c)
        if labels is not None:
            vs_labels[0] += confusion_matrix(labels[i], ref_mask, c, ignore_label)
            vs_labels[1] += confusion_matrix(labels[i], out_mask, c, ignore_label)
    pixels = [r.shape[0] * r.shape[1] for r in reference_logits]
    return ParityReport(
        kind=kind,
        images=len(reference_logits),
        max_relative_error=max(errors),
        pixel_agreement=float(np.average(per_image, weights=pixels)),
        mean_iu_vs_keras=mean_iu(agreement),
        mean_iu_keras=None if labels is None else mean_iu(vs_labels[0]),
        mean_iu_export=None if labels is None else mean_iu(vs_labels[1]),
        per_image_agreement=per_image,
    )


def keras_logits(model: SegmentationModel, images: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The Keras reference: float32 logits ``(H, W, C)`` of each RGB 0-255 image run alone.

    Example:
        >>> x = keras.Input((None, None, 3))
        >>> m = SegmentationModel(x, keras.layers.Conv2D(2, 1)(x), architecture="linear", backbone="none")
        >>> [l.shape for l in keras_logits(m, [np.zeros((3, 4, 3), np.uint8)])]
        [(3, 4, 2)]
    """
    logits_fn, _, _ = logits_function(model, check=False)  # compare() checks the shapes
    return [keras.ops.convert_to_numpy(logits_fn(np.asarray(image, np.float32)[None]))[0] for image in images]


def parity(
    kind: str,
    run: Callable[[np.ndarray], np.ndarray],
    model: SegmentationModel,
    images: Sequence[np.ndarray],
    labels: Sequence[np.ndarray] | None = None,
) -> ParityReport:
    """Compares ``run(image) -> logits (H, W, C)`` of an export with ``model`` on ``images``.

    Example:
        >>> x = keras.Input((None, None, 3))
        >>> m = SegmentationModel(x, keras.layers.Conv2D(2, 1)(x), architecture="linear", backbone="none")
        >>> same = lambda image: keras_logits(m, [image])[0]
        >>> parity("float32", same, m, [np.zeros((3, 4, 3), np.uint8)]).passed
        True
    """
    model = require_segmentation_model(model)
    images = [np.asarray(image) for image in images]
    reference = keras_logits(model, images)
    return compare(kind, reference, [np.asarray(run(image), np.float32) for image in images], labels,
                   model.ignore_label)


def tflite_parity(
    path: str,
    model: SegmentationModel,
    images: Sequence[np.ndarray],
    labels: Sequence[np.ndarray] | None = None,
) -> ParityReport:
    """:func:`parity` of a ``.tflite`` file run with LiteRT; the kind is read from its input type.

    Example:
        >>> import tempfile
        >>> from fcn_keras.export import export_tflite
        >>> x = keras.Input((None, None, 3))
        >>> m = SegmentationModel(x, keras.layers.Conv2D(2, 1)(x), architecture="linear", backbone="none")
        >>> path = export_tflite(m, f"{tempfile.mkdtemp()}/linear.tflite", verbose=False)
        >>> tflite_parity(path, m, [np.full((3, 4, 3), 9, np.uint8)]).kind
        'float32'
    """
    from fcn_keras.export.tflite import TFLiteModel

    runner = TFLiteModel(path)
    kind = "int8" if np.issubdtype(runner.input_dtype, np.integer) else _float_kind(path)
    return parity(kind, runner.logits, model, images, labels)


def _float_kind(path: str) -> str:
    from fcn_keras.export.tflite import tflite_ops

    with open(path, "rb") as f:
        ops = tflite_ops(f.read())
    # float16 files keep float16 weights and DEQUANTIZE them to float32 at load time.
    return "float16" if "DEQUANTIZE" in ops else "float32"
