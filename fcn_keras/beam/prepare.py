"""``fcn-keras data prepare --beam``: the prepared TFRecord shards and manifest, written by a Beam pipeline.

The same files as the single-process :func:`fcn_keras.data.prepare`, byte for
byte: the plan (which example goes to which shard), the verified record of
each example, the shard writer and the manifest are
:mod:`fcn_keras.data.prepared`'s own. The pipeline reads, encodes and verifies
the examples in parallel, groups the records by shard and writes each shard in
source order; the manifest, which marks the dataset complete, is written
after the pipeline has succeeded. Re-running on the same input is a no-op, and a
prepared directory of another input is refused unless ``overwrite``, as for
the single-process version.

The dataset and ``out_dir`` are read and written with local file access (what a
:class:`~fcn_keras.data.FileSource` and the shard writer use): every worker must
see them at the same paths, as on the DirectRunner or over a shared mount.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator, Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from fcn_keras.beam.options import pipeline_options
from fcn_keras.beam.progress import logger, printed
from fcn_keras.data.prepared import ShardPlan, plan_shards, source_record, write_manifest, write_shard
from fcn_keras.data.source import FileSource



class _Encode(beam.DoFn):
    """Example index -> ``(shard, (index, verified record))``."""

    def __init__(self, source: FileSource, plan: ShardPlan):
        self._source, self._plan = source, plan

    def process(self, index: int) -> Iterator:
        yield self._plan.shard_of(index), (index, source_record(self._source, index))


class _WriteShard(beam.DoFn):
    """``(shard, [(index, record), ...])`` -> the shard file written in index order; its manifest entry."""

    def __init__(self, plan: ShardPlan):
        self._plan = plan

    def process(self, element) -> Iterator:
        k, records = element
        entry = write_shard(self._plan, k, (record for _, record in sorted(records, key=lambda r: r[0])))
        logger.info("wrote %s (%d examples)", entry["file"], entry["num_examples"])
        yield entry


def prepare(source: FileSource, out_dir: str | os.PathLike, num_shards: int | None = None, *,
            num_classes: int | None = None, class_names: tuple[str, ...] | None = None, overwrite: bool = False,
            options: PipelineOptions | Sequence[str] = (), verbose: int = 1) -> Path:
    """:func:`fcn_keras.data.prepare` of a :class:`~fcn_keras.data.FileSource` as a Beam pipeline; returns ``out_dir``.

    ``options`` is a ``PipelineOptions`` or a Beam command line (:func:`~fcn_keras.beam.options.pipeline_options`).
    The other arguments are :func:`fcn_keras.data.prepare`'s; with ``verbose`` each shard is printed when written
    (by workers in this process).

    Example:
        >>> import tempfile
        >>> from fcn_keras.data import read_manifest, voc_source, write_synthetic_voc
        >>> root = write_synthetic_voc(tempfile.mkdtemp(), num_images=4, image_size=(24, 32))
        >>> out = prepare(voc_source(root, "trainval"), tempfile.mkdtemp(), num_shards=2, verbose=0)
        >>> read_manifest(out)["num_shards"]
        2
    """
    if not isinstance(source, FileSource):
        raise TypeError(f"the Beam prepare reads a FileSource (a dataset on disk), got {type(source)!r}; "
                        f"fcn_keras.data.prepare converts a tf.data.Dataset")
    plan = plan_shards(source, out_dir, num_shards, num_classes=num_classes, class_names=class_names,
                       overwrite=overwrite)
    if plan is None:
        return Path(out_dir)
    if not isinstance(options, PipelineOptions):
        options = pipeline_options(options)
    shards_written = []
    with printed() if verbose else contextlib.nullcontext(), beam.Pipeline(options=options) as pipeline:
        _ = (pipeline
             | "Indices" >> beam.Create(range(plan.num_examples))
             | "Spread" >> beam.Reshuffle()
             | "Encode" >> beam.ParDo(_Encode(source, plan))
             | "ByShard" >> beam.GroupByKey()
             | "WriteShards" >> beam.ParDo(_WriteShard(plan)))
    for k in range(plan.num_shards):  # the pipeline succeeded: every shard is there, whole
        path = plan.out_dir / plan.shard_name(k)
        shards_written.append({"file": path.name, "num_examples": plan.bounds[k + 1] - plan.bounds[k],
                               "bytes": path.stat().st_size})
    return write_manifest(plan, shards_written)
