"""Batch work on Apache Beam: segmenting images from any filesystem, and preparing datasets (the ``beam`` extra).

``pip install "fcn_keras[beam]"``; ``import fcn_keras`` never imports Beam, only this package does.
Pipelines run on the DirectRunner by default, or on any runner the pipeline
options name (Dataflow, Flink, Spark): see ``docs/beam.md``.

    SegmentImages(model, output_dir, ...)      PTransform: file patterns -> predict's pictures,
                                               counts.jsonl and failures.jsonl (fcn_keras.beam.segment)
    segment_images(model, inputs, output_dir, options=[...]) -> SegmentReport
                                               runs it to the end (what `fcn-keras predict --beam` does)
    SegmenterModelHandler(model, min_batch_size=1, max_batch_size=8, tile=None, overlap=None)
                                               RunInference's handler: one Segmenter per worker
    prepare(source, out_dir, num_shards=None, options=[...])
                                               fcn_keras.data.prepare's shards and manifest, as a pipeline
    pipeline_options(args)                     a Beam command line, passed through and checked

Modules: filesystem (atomic writes on any Beam filesystem) -> handler -> segment -> predict;
options; prepare.

Example:
    >>> from fcn_keras.beam import pipeline_options
    >>> pipeline_options(["--direct_num_workers", "2"]).get_all_options()["direct_num_workers"]
    2
"""

try:
    import apache_beam  # noqa: F401  (the one place the extra's absence is reported)
except ModuleNotFoundError as exc:
    raise ModuleNotFoundError('fcn_keras.beam needs Apache Beam: pip install "fcn_keras[beam]"',
                              name=exc.name) from None

from fcn_keras.beam.handler import ModelIdentity, SegmenterModelHandler, load_segmenter, model_identity
from fcn_keras.beam.options import pipeline_options
from fcn_keras.beam.predict import SegmentReport, segment_images
from fcn_keras.beam.prepare import prepare
from fcn_keras.beam.segment import SegmentImages, class_pixels, output_paths

__all__ = [
    "ModelIdentity",
    "SegmentImages",
    "SegmentReport",
    "SegmenterModelHandler",
    "class_pixels",
    "load_segmenter",
    "model_identity",
    "output_paths",
    "pipeline_options",
    "prepare",
    "segment_images",
]
