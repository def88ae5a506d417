"""``fcn-keras predict --beam``: one pipeline of :class:`~fcn_keras.beam.segment.SegmentImages`, run to the end.

:func:`segment_images` builds the pipeline over the inputs, runs it on the
runner the options name (the DirectRunner by default) and returns what
happened from the pipeline's metrics: how many images were segmented,
skipped (their outputs were there) and failed (each one in ``failures.jsonl``).

Example:
    >>> SegmentReport(segmented=3, skipped=2, failed=1, output_dir="masks").summary()
    'segmented 3 image(s), skipped 2 whose outputs were all present, 1 failed (listed in masks/failures.jsonl)'
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Sequence

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions

from fcn_keras.beam.filesystem import read_file
from fcn_keras.beam.options import pipeline_options
from fcn_keras.beam.progress import printed
from fcn_keras.beam.segment import COUNTS_FILE, FAILURES_FILE, METRICS_NAMESPACE, SegmentImages


@dataclass(frozen=True)
class SegmentReport:
    """What a :func:`segment_images` run did: image counts and where its JSON-lines files are.

    Example:
        >>> SegmentReport(segmented=0, skipped=4, failed=0, output_dir="s3://b/masks").counts_file
        's3://b/masks/counts.jsonl'
    """

    segmented: int
    skipped: int
    failed: int
    output_dir: str

    @property
    def counts_file(self) -> str:
        """``counts.jsonl``: a line per image with its class pixel counts."""
        return FileSystems.join(self.output_dir, COUNTS_FILE)

    @property
    def failures_file(self) -> str:
        """``failures.jsonl``: a line per image that failed, with its error."""
        return FileSystems.join(self.output_dir, FAILURES_FILE)

    def failures(self) -> list[dict]:
        """The failed images' records ``{"image": path, "error": message}``, read from :attr:`failures_file`."""
        text = read_file(self.failures_file).decode("utf-8")
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def summary(self) -> str:
        """One line: segmented, skipped and failed images."""
        failed = f"{self.failed} failed (listed in {self.failures_file})" if self.failed else "none failed"
        return (f"segmented {self.segmented} image(s), skipped {self.skipped} whose outputs were all present, "
                f"{failed}")


def segment_images(model: str | os.PathLike, inputs: Sequence[str], output_dir: str | os.PathLike, *,
                   options: PipelineOptions | Sequence[str] = (), alpha: float = 0.5, overwrite: bool = False,
                   min_batch_size: int = 1, max_batch_size: int = 8, tile: tuple[int, int] | None = None,
                   overlap: int | None = None) -> SegmentReport:
    """Segments the images matched by ``inputs`` (file patterns, any Beam filesystem) into ``output_dir``.

    ``options`` is a ``PipelineOptions`` or a Beam command line (:func:`~fcn_keras.beam.options.pipeline_options`);
    the other arguments are :class:`~fcn_keras.beam.segment.SegmentImages`'. Waits for the pipeline to finish.

    Example:
        >>> segment_images("m.keras", [], "masks")
        Traceback (most recent call last):
        ...
        ValueError: no inputs to segment
    """
    if not inputs:
        raise ValueError("no inputs to segment")
    if not isinstance(options, PipelineOptions):
        options = pipeline_options(options)
    transform = SegmentImages(model, output_dir, alpha=alpha, overwrite=overwrite, min_batch_size=min_batch_size,
                              max_batch_size=max_batch_size, tile=tile, overlap=overlap)
    pipeline = beam.Pipeline(options=options)
    _ = pipeline | "Inputs" >> beam.Create([os.fspath(i) for i in inputs]) | "SegmentImages" >> transform
    result = pipeline.run()
    result.wait_until_finish()
    counters = {name: 0 for name in ("segmented", "skipped", "failed")}
    for counter in result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))["counters"]:
        if counter.key.metric.name in counters:
            value = counter.committed if counter.committed is not None else counter.attempted
            counters[counter.key.metric.name] += int(value or 0)
    return SegmentReport(**counters, output_dir=os.fspath(output_dir))


def run_predict(model: str, inputs: Sequence[str], output_dir: str, beam_args: Sequence[str], *,
                alpha: float = 0.5, overwrite: bool = False, tile: tuple[int, int] | None = None,
                overlap: int | None = None) -> int:
    """What ``fcn-keras predict MODEL INPUT... --out DIR --beam [BEAM_OPTION...]`` does; returns the exit status.

    Local inputs are found as ``predict`` finds them (files, directories, globs; two images
    that would write the same outputs are refused up front); inputs on other filesystems
    (``gs://...``) are Beam file patterns, a directory written with a trailing ``/``, each
    refused up front when it matches nothing. The images segmented, skipped and failed are
    printed, each failure with its file and error; the status is 1 when any failed.

    Example:
        >>> run_predict("fcn8s_voc", ["a.jpg"], "masks", [])
        Traceback (most recent call last):
        ...
        ValueError: --beam needs a .keras file or a SavedModel directory that every worker can read, not the zoo name fcn8s_voc: save it first (fcn-keras export fcn8s_voc --saved-model DIR)
    """
    import sys

    from fcn_keras.beam.filesystem import is_local

    if is_local(model) and not os.path.exists(model):
        from fcn_keras import zoo

        if model in zoo.list_models():
            raise ValueError(f"--beam needs a .keras file or a SavedModel directory that every worker can read, "
                             f"not the zoo name {model}: save it first (fcn-keras export {model} --saved-model DIR)")
        raise ValueError(f"model {model} does not exist")
    options = pipeline_options(beam_args)
    local = [i for i in inputs if is_local(i)]
    if local:
        from fcn_keras.files import find_images

        local = [str(p) for p in find_images(local, unique_stems=True)]
    remote = [i for i in inputs if not is_local(i)]
    for pattern in remote:  # here, before a job is started on a cluster only to fail there
        if not FileSystems.match([pattern], limits=[1])[0].metadata_list:
            raise ValueError(f"no file matches the pattern {pattern}")
    patterns = local + remote
    runner = options.get_all_options()["runner"]
    print(f"segmenting {len(local)} local image(s)" + (f" and {len(patterns) - len(local)} pattern(s)"
                                                        if len(patterns) > len(local) else "")
          + f" with {model} into {output_dir} on the {runner}")
    with printed():
        report = segment_images(model, patterns, output_dir, options=options, alpha=alpha, overwrite=overwrite,
                                tile=tile, overlap=overlap)
    if report.failed:
        for failure in report.failures():
            print(f"{failure['image']}: {failure['error']}", file=sys.stderr)
    print(report.summary())
    print(f"class pixel counts: {report.counts_file}")
    return 1 if report.failed else 0
