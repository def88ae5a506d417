"""``SegmentImages``: a Beam PTransform writing what ``fcn-keras predict`` writes, for every image a pattern matches.

Applied to a PCollection of file patterns on any Beam filesystem
(``/data/*.jpg``, ``gs://bucket/photos/*``, ``s3://bucket/a.png``; a pattern
ending in ``/`` means the files in that directory), it

* matches the patterns and keeps the image files (:data:`fcn_keras.files.IMAGE_SUFFIXES`);
* reads and decodes each as :func:`fcn_keras.data.read_image` does (the same pixels);
* segments them with ``RunInference`` over a :class:`~fcn_keras.beam.handler.SegmenterModelHandler`
  (one model per worker, batched, never padding two sizes together);
* writes ``NAME_mask.png``, ``NAME_color.png`` and ``NAME_overlay.png`` to the output
  directory, byte for byte the files ``fcn-keras predict`` writes, each whole or not at all
  (:mod:`fcn_keras.beam.filesystem`);
* writes ``counts.jsonl``, one JSON line per image: ``{"image": its path, "mask": the mask's
  path, "height": H, "width": W, "class_pixels": {class name: pixels}}`` (every class of the
  model, in its order; the lines in no particular order);
* writes ``failures.jsonl``, one JSON line ``{"image": path, "error": message}`` per image
  that could not be segmented (a corrupt or unreadable file, an image the model refused, two
  inputs whose outputs would share a name): such an image is reported and the others go on.

An image whose three pictures are all in the output already is skipped (not read, not
segmented) unless ``overwrite``; its line in ``counts.jsonl`` is counted again from its mask,
so the file always covers every image. The transform returns ``{"counts": ..., "failures": ...}``,
PCollections of those records, and counts ``segmented``, ``skipped`` and ``failed`` images in
the Beam metrics namespace :data:`METRICS_NAMESPACE`.

Example:
    >>> import apache_beam as beam
    >>> import tempfile
    >>> root = tempfile.mkdtemp()
    >>> with beam.Pipeline() as pipeline:  # doctest: +SKIP
    ...     _ = pipeline | beam.Create([f"{root}/photos/*.jpg"]) | SegmentImages(f"{root}/model.keras", f"{root}/masks")
    >>> output_paths("s3://bucket/masks", "photo")["overlay"]
    's3://bucket/masks/photo_overlay.png'
"""

from __future__ import annotations

import io
import json
import os
from typing import Iterator

import apache_beam as beam
import numpy as np
from apache_beam.io import fileio
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import KeyedModelHandler, PredictionResult, RunInference

from fcn_keras.beam.filesystem import make_directory, read_file, write_file
from fcn_keras import viz
from fcn_keras.beam.handler import ImageFailure, ModelIdentity, SegmenterModelHandler, model_identity
from fcn_keras.beam.progress import logger
from fcn_keras.files import IMAGE_SUFFIXES

METRICS_NAMESPACE = "fcn_keras.beam"
"""The Beam metrics namespace of the ``segmented``, ``skipped`` and ``failed`` counters."""
COUNTS_FILE = "counts.jsonl"
FAILURES_FILE = "failures.jsonl"
KINDS = viz.PREDICTION_KINDS
_FAILED = "failed"
_SKIPPED = "skipped"



def stem(path: str) -> str:
    """The name an image's outputs are called after: its file name without the last suffix (as ``Path.stem``).

    Example:
        >>> stem("s3://bucket/street/0001.v2.jpg")
        '0001.v2'
    """
    return os.path.splitext(FileSystems.split(path)[1])[0]


def is_image(path: str) -> bool:
    """Whether ``path`` ends like an image file (:data:`fcn_keras.files.IMAGE_SUFFIXES`, any case).

    Example:
        >>> is_image("s3://b/a.JPG"), is_image("/data/notes.txt")
        (True, False)
    """
    return os.path.splitext(path)[1].lower() in IMAGE_SUFFIXES


def output_paths(output_dir: str, name: str) -> dict[str, str]:
    """The paths of the pictures of the image called ``name``, by kind (``mask``, ``color``, ``overlay``).

    Example:
        >>> output_paths("/out", "0001")["mask"]
        '/out/0001_mask.png'
    """
    return {kind: FileSystems.join(output_dir, viz.prediction_file_name(name, kind)) for kind in KINDS}


def class_pixels(mask: np.ndarray, class_names) -> dict[str, int]:
    """The number of pixels of each class in ``mask``, by class name (every class, in order).

    Example:
        >>> class_pixels(np.array([[0, 1], [1, 1]]), ["ground", "disc", "sky"])
        {'ground': 1, 'disc': 3, 'sky': 0}
    """
    counts = np.bincount(np.asarray(mask).ravel(), minlength=len(class_names))
    if len(counts) > len(class_names):
        raise ValueError(f"the mask holds class {len(counts) - 1}; the model has {len(class_names)} classes")
    return {name: int(n) for name, n in zip(class_names, counts)}


def _failure(path: str, error: Exception | str) -> dict:
    problem = getattr(error, "problem", None) or " ".join(str(error).split()) or type(error).__name__
    return {"image": path, "error": problem}


class _OneSourcePerStem(beam.DoFn):
    """``(stem, paths)`` -> ``(stem, path)``; two files of one stem are both failures, never overwritten."""

    def process(self, element) -> Iterator:
        name, paths = element
        paths = sorted(set(paths))  # a file two patterns match is one source
        if len(paths) == 1:
            yield name, paths[0]
            return
        for path in paths:
            others = ", ".join(p for p in paths if p != path)
            yield beam.pvalue.TaggedOutput(_FAILED, _failure(
                path, f"{others} would write the same outputs ({name}_*); rename one or segment them into "
                      f"different output directories"))


class _SkipDone(beam.DoFn):
    """Sends on the images to segment; those whose pictures are all present go to ``skipped``."""

    def __init__(self, output_dir: str, overwrite: bool):
        self._output_dir, self._overwrite = output_dir, overwrite

    def process(self, element) -> Iterator:
        name, _ = element
        if not self._overwrite and all(FileSystems.exists(p) for p in output_paths(self._output_dir, name).values()):
            yield beam.pvalue.TaggedOutput(_SKIPPED, element)
        else:
            yield element


class _Decode(beam.DoFn):
    """``(stem, path)`` -> ``((stem, path), image uint8 (H, W, 3))``, or a failure naming the file."""

    def process(self, element) -> Iterator:
        from fcn_keras.data.decode import DataError, decode_image

        _, path = element
        try:
            image = decode_image(read_file(path), path)
        except (DataError, OSError) as exc:  # a corrupt, truncated or unreadable file: this image's failure
            yield beam.pvalue.TaggedOutput(_FAILED, _failure(path, exc))
            return
        yield element, image


class _Write(beam.DoFn):
    """``((stem, path), PredictionResult(image, mask))`` -> the three pictures written, and the image's counts."""

    def __init__(self, output_dir: str, alpha: float):
        self._output_dir, self._alpha = output_dir, alpha

    def process(self, element, identity: ModelIdentity) -> Iterator:
        (name, path), result = element
        result: PredictionResult
        if isinstance(result.inference, ImageFailure):
            yield beam.pvalue.TaggedOutput(_FAILED, _failure(path, str(result.inference)))
            return
        try:
            pictures = viz.prediction_pictures(result.example, result.inference, name, identity.palette,
                                               identity.class_names, self._alpha)
            counts = class_pixels(result.inference, identity.class_names)
        except ValueError as exc:
            yield beam.pvalue.TaggedOutput(_FAILED, _failure(path, exc))
            return
        outputs = output_paths(self._output_dir, name)
        for kind in KINDS:
            write_file(outputs[kind], viz.png_bytes(pictures[kind], outputs[kind]))
        logger.info("%s -> %s", path, outputs["mask"])
        yield _counts_line(path, outputs["mask"], result.inference.shape, counts)


class _Recount(beam.DoFn):
    """``(stem, path)`` of a skipped image -> its counts, read from the mask already written."""

    def __init__(self, output_dir: str):
        self._output_dir = output_dir

    def process(self, element, identity: ModelIdentity) -> Iterator:
        from PIL import Image

        name, path = element
        mask_path = output_paths(self._output_dir, name)["mask"]
        try:
            with Image.open(io.BytesIO(read_file(mask_path))) as picture:
                mask = np.asarray(picture)
            counts = class_pixels(mask, identity.class_names)
        except (OSError, ValueError) as exc:
            yield beam.pvalue.TaggedOutput(_FAILED, _failure(
                path, f"its mask {mask_path} is there but unusable ({exc}); segment it again with overwrite"))
            return
        yield _counts_line(path, mask_path, mask.shape, counts)


def _counts_line(path: str, mask_path: str, shape, counts: dict[str, int]) -> dict:
    return {"image": path, "mask": mask_path, "height": int(shape[0]), "width": int(shape[1]),
            "class_pixels": counts}


def _counted(name: str):
    counter = Metrics.counter(METRICS_NAMESPACE, name)

    def count(element):
        counter.inc()
        return element

    return count


class SegmentImages(beam.PTransform):
    """File patterns -> ``fcn-keras predict``'s pictures, ``counts.jsonl`` and ``failures.jsonl`` in ``output_dir``.

    Args:
        model: a ``.keras`` file or an fcn_keras SavedModel directory, on any Beam filesystem.
        output_dir: where the pictures and the two JSON-lines files go (any Beam filesystem).
        alpha: the mask's opacity in overlays (``fcn-keras predict --alpha``).
        overwrite: segment every image again, even those whose outputs are all present.
        min_batch_size, max_batch_size, tile, overlap, large_model:
            :class:`~fcn_keras.beam.handler.SegmenterModelHandler`'s.

    Example:
        >>> SegmentImages("model.keras", "/tmp/masks", max_batch_size=4).handler().batch_elements_kwargs()
        {'min_batch_size': 1, 'max_batch_size': 4}
    """

    def __init__(self, model: str | os.PathLike, output_dir: str | os.PathLike, *, alpha: float = 0.5,
                 overwrite: bool = False, min_batch_size: int = 1, max_batch_size: int = 8,
                 tile: tuple[int, int] | None = None, overlap: int | None = None, large_model: bool = False):
        super().__init__()
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        self.model = os.fspath(model)
        self.output_dir = os.fspath(output_dir)
        self.alpha = alpha
        self.overwrite = overwrite
        self._batching = {"min_batch_size": min_batch_size, "max_batch_size": max_batch_size}
        self._handler_args = {"tile": tile, "overlap": overlap, "large_model": large_model}

    def handler(self) -> SegmenterModelHandler:
        """The model handler RunInference uses (errors kept per image)."""
        return SegmenterModelHandler(self.model, **self._batching, **self._handler_args, per_image_errors=True)

    def expand(self, patterns: beam.PCollection) -> dict[str, beam.PCollection]:
        """The pipeline: match, one source per name, skip the done, decode, segment, write (see the module)."""
        make_directory(self.output_dir)
        out = self.output_dir
        files = (patterns
                 | "Match" >> fileio.MatchAll(fileio.EmptyMatchTreatment.DISALLOW)
                 | "Path" >> beam.Map(lambda metadata: metadata.path)
                 | "Images" >> beam.Filter(is_image))
        sources = (files
                   | "ByStem" >> beam.Map(lambda path: (stem(path), path))
                   | "GroupByStem" >> beam.GroupByKey()
                   | "OneSourcePerStem" >> _split(_OneSourcePerStem(), "images"))
        todo = sources.images | "SkipDone" >> beam.ParDo(_SkipDone(out, self.overwrite)).with_outputs(
            _SKIPPED, main="todo")
        decoded = todo.todo | "Decode" >> _split(_Decode(), "images")
        # The class names and colours, for the pictures and for recounting skipped images' masks.
        identity = beam.pvalue.AsSingleton(
            patterns.pipeline | "Model" >> beam.Create([self.model]) | "Identity" >> beam.Map(model_identity))
        written = (decoded.images
                   | "Segment" >> RunInference(KeyedModelHandler(self.handler()))
                   | "Write" >> _split(_Write(out, self.alpha), "counts", identity))
        recounted = (todo[_SKIPPED]
                     | "CountSkipped" >> beam.Map(_counted("skipped"))
                     | "Recount" >> _split(_Recount(out), "counts", identity))
        _ = written.counts | "CountSegmented" >> beam.Map(_counted("segmented"))
        counts = (written.counts, recounted.counts) | "Counts" >> beam.Flatten()
        failures = ((sources[_FAILED], decoded[_FAILED], written[_FAILED], recounted[_FAILED])
                    | "Failures" >> beam.Flatten()
                    | "CountFailed" >> beam.Map(_counted("failed")))
        for name, records, file_name in (("Counts", counts, COUNTS_FILE), ("Failures", failures, FAILURES_FILE)):
            _ = (records
                 | f"{name}Json" >> beam.Map(json.dumps)
                 # One file, written under a temporary name and renamed by Beam's sink.
                 | f"{name}File" >> beam.io.WriteToText(FileSystems.join(out, file_name), shard_name_template="",
                                                        num_shards=1))
        return {"counts": counts, "failures": failures}


def _split(dofn: beam.DoFn, main: str, *side_inputs) -> beam.ParDo:
    """``ParDo(dofn)`` whose failures (tagged ``failed``) go to an output of their own."""
    return beam.ParDo(dofn, *side_inputs).with_outputs(_FAILED, main=main)
