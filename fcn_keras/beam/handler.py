"""A Beam RunInference model handler: one :class:`~fcn_keras.segmenter.Segmenter` per worker, images in, masks out.

``RunInference(SegmenterModelHandler("model.keras"))`` turns a PCollection of
RGB ``uint8 (H, W, 3)`` images into ``PredictionResult(image, mask)``, the mask
being ``Segmenter.segment``'s int64 ``(H, W)`` class indices, exactly what
``fcn-keras predict`` computes. The model is a ``.keras`` file (loaded in
Keras' safe mode) or an fcn_keras SavedModel export (a version directory, or a
TF Serving base directory: its highest version), on any Beam filesystem; a
remote one is copied to the worker first. RunInference loads it once per
worker process and batches elements between ``min_batch_size`` and
``max_batch_size``; within a batch every image runs on its own, so images of
different sizes are never padded together (padding changes an FCN's output).

Example:
    >>> handler = SegmenterModelHandler("model.keras", min_batch_size=2, max_batch_size=16)
    >>> handler.batch_elements_kwargs()
    {'min_batch_size': 2, 'max_batch_size': 16}
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np
from apache_beam.io.filesystems import FileSystems
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from fcn_keras.beam.filesystem import local_copy, read_file
from fcn_keras.segmenter import Segmenter


@dataclass(frozen=True)
class ModelIdentity:
    """What a model segments into: its class names and their colours (``uint8 (C, 3)``).

    Example:
        >>> ModelIdentity(("ground", "disc"), np.zeros((2, 3), np.uint8)).class_names
        ('ground', 'disc')
    """

    class_names: tuple[str, ...]
    palette: np.ndarray


@dataclass(frozen=True)
class ImageFailure:
    """The inference of an image that raised (with ``per_image_errors``): the error, in one line.

    Example:
        >>> str(ImageFailure("image is 3000x20 pixels, above the export's 2048"))
        "image is 3000x20 pixels, above the export's 2048"
    """

    error: str

    def __str__(self) -> str:
        return self.error


def saved_model_version(path: str) -> str | None:
    """``path`` if it holds a SavedModel, or its highest numbered version (a TF Serving base directory); else ``None``.

    Example:
        >>> import tempfile
        >>> base = tempfile.mkdtemp()
        >>> for version in ("2", "10"):
        ...     os.makedirs(os.path.join(base, version))
        ...     _ = open(os.path.join(base, version, "saved_model.pb"), "wb").close()
        >>> os.path.basename(saved_model_version(base))
        '10'
    """
    path = path.rstrip("/")
    if FileSystems.exists(FileSystems.join(path, "saved_model.pb")):
        return path
    found = FileSystems.match([FileSystems.join(path, "*", "saved_model.pb")])[0].metadata_list
    versions = []
    for metadata in found:
        version = FileSystems.split(FileSystems.split(metadata.path)[0])[1]
        if re.fullmatch(r"\d+", version):
            versions.append((int(version), FileSystems.split(metadata.path)[0]))
    return max(versions)[1] if versions else None


def load_segmenter(model: str) -> Segmenter:
    """The :class:`Segmenter` of a ``.keras`` file (safe mode) or an fcn_keras SavedModel on any Beam filesystem.

    Example:
        >>> load_segmenter("/nonexistent/model.keras")
        Traceback (most recent call last):
        ...
        FileNotFoundError: model /nonexistent/model.keras does not exist
    """
    from fcn_keras.segmenter import keras_segmenter, saved_model_segmenter

    if model.endswith(".keras"):
        if not FileSystems.exists(model):
            raise FileNotFoundError(f"model {model} does not exist")
        from fcn_keras.export.command import load_model

        loaded = load_model(local_copy(model))
        return keras_segmenter(loaded, f"{loaded.name} ({model})")
    version = saved_model_version(model)
    if version is None:
        raise FileNotFoundError(f"model {model} is neither a .keras file nor a SavedModel directory "
                                f"(no saved_model.pb in it or in a numbered version below it)")
    return saved_model_segmenter(local_copy(version))


def model_identity(model: str) -> ModelIdentity:
    """The class names and palette of a model :func:`load_segmenter` loads (a SavedModel's without TensorFlow).

    Example:
        >>> model_identity("/nonexistent/model/1")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        FileNotFoundError: model /nonexistent/model/1 is neither a .keras file nor a SavedModel directory ...
    """
    import json

    version = None if model.endswith(".keras") else saved_model_version(model)
    if version is not None:
        info = json.loads(read_file(FileSystems.join(version, "assets", "export.json")))
        return ModelIdentity(tuple(info["class_names"]), np.asarray(info["palette"], np.uint8))
    segmenter = load_segmenter(model)
    return ModelIdentity(tuple(segmenter.class_names), np.asarray(segmenter.palette, np.uint8))


class SegmenterModelHandler(ModelHandler[np.ndarray, PredictionResult, Segmenter]):
    """RunInference's handler for an fcn_keras model: ``image uint8 (H, W, 3) -> PredictionResult(image, mask)``.

    Args:
        model: a ``.keras`` file or a SavedModel directory (a version or a TF Serving base), any Beam filesystem.
        min_batch_size, max_batch_size: the bounds of RunInference's batches (``beam.BatchElements``).
        tile, overlap: segment in ``tile = (height, width)`` windows overlapping by ``overlap`` pixels (None: the exact overlap)
            (:func:`fcn_keras.tiling.tiled`), for images larger than memory or an export's size cap.
        per_image_errors: an image whose inference raises gets an :class:`ImageFailure` as its inference
            instead of failing its batch (and, after retries, the pipeline).
        large_model: load one copy per machine, shared by its processes (Beam's ``large_model``).

    Example:
        >>> import pathlib, tempfile, fcn_keras
        >>> path = str(pathlib.Path(tempfile.mkdtemp()) / "m.keras")
        >>> fcn_keras.fcn32s(class_names=["ground", "disc"], backbone="tiny_vgg").save(path)
        >>> handler = SegmenterModelHandler(path)
        >>> images = [np.zeros((24, 32, 3), np.uint8), np.zeros((40, 16, 3), np.uint8)]  # sizes may differ
        >>> [r.inference.shape for r in handler.run_inference(images, handler.load_model())]
        [(24, 32), (40, 16)]
        >>> model_identity(path).class_names
        ('ground', 'disc')
    """

    def __init__(self, model: str | os.PathLike, *, min_batch_size: int = 1, max_batch_size: int = 8,
                 tile: tuple[int, int] | None = None, overlap: int | None = None, per_image_errors: bool = False,
                 large_model: bool = False):
        if not 1 <= min_batch_size <= max_batch_size:
            raise ValueError(f"need 1 <= min_batch_size <= max_batch_size, got {min_batch_size} and {max_batch_size}")
        super().__init__(min_batch_size=min_batch_size, max_batch_size=max_batch_size, large_model=large_model)
        self._model = os.fspath(model)
        self._tile = None if tile is None else (int(tile[0]), int(tile[1]))
        self._overlap = None if overlap is None else int(overlap)
        self._per_image_errors = per_image_errors

    def load_model(self) -> Segmenter:
        """The model's :class:`Segmenter` (tiled when ``tile`` is given); RunInference calls it once per worker."""
        segmenter = load_segmenter(self._model)
        if self._tile is not None:
            from fcn_keras.tiling import tiled

            segmenter = tiled(segmenter, self._tile, self._overlap)
        return segmenter

    def run_inference(self, batch: Sequence[np.ndarray], model: Segmenter,
                      inference_args: dict[str, Any] | None = None) -> Iterable[PredictionResult]:
        """Each image's mask, one image at a time (never two sizes in one tensor)."""
        results = []
        for image in batch:
            try:
                mask = model.segment(image)
            except Exception as exc:  # with per_image_errors: this image's failure, not its batch's
                if not self._per_image_errors:
                    raise
                mask = ImageFailure(" ".join(str(exc).split()) or type(exc).__name__)
            results.append(PredictionResult(image, mask, model_id=self._model))
        return results

    def get_num_bytes(self, batch: Sequence[np.ndarray]) -> int:
        """The bytes of a batch's pixels (RunInference's throughput metric)."""
        return sum(np.asarray(image).nbytes for image in batch)

    def get_metrics_namespace(self) -> str:
        """RunInference's metrics (inference counts and times) appear under ``fcn_keras``."""
        return "fcn_keras"
