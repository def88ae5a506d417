"""Scanning a whole dataset and listing every problem with its file (``fcn-keras data check``).

Unlike the loaders, which stop at the first bad file, :func:`check_dataset`
reads everything and returns all problems: missing or empty split files,
duplicate entries, missing files, undecodable or truncated images and labels,
colour labels, label values out of range, image/label size mismatches, and for
prepared datasets damaged shards or records.
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from pathlib import Path

import keras
import tensorflow as tf

from fcn_keras.data.decode import DataError, label_to_indices
from fcn_keras.data.detect import dataset_kind, dataset_source, dataset_splits
from fcn_keras.data.prepared import _parse, read_manifest
from fcn_keras.data.source import FileSource


@dataclasses.dataclass(frozen=True)
class Problem:
    """One problem found by :func:`check_dataset`: the file and what is wrong with it."""

    path: str
    problem: str

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


def _problem(error: DataError) -> Problem:
    return Problem(error.path, error.problem)


def check_source(source: FileSource, *, verbose: int = 0, indices: list[int] | None = None) -> list[Problem]:
    """Reads every example of a source (or those at ``indices``); returns one :class:`Problem` per bad file.

    Example:
        >>> import tempfile, os
        >>> from fcn_keras.data import voc_source, write_synthetic_voc
        >>> root = write_synthetic_voc(tempfile.mkdtemp(), num_images=2)
        >>> os.remove(root / "JPEGImages" / "synth_000000.jpg")
        >>> [p.problem for p in check_source(voc_source(root, "trainval", check_files=False))]
        ['image file is missing']
    """
    problems = [
        Problem(source.name, f"id {example_id!r} is listed {count} times")
        for example_id, count in Counter(source.ids).items() if count > 1
    ]
    indices = range(len(source)) if indices is None else indices
    progress = keras.utils.Progbar(len(indices), unit_name="example") if verbose else None
    for done, index in enumerate(indices, 1):
        missing = [p for p in (source.images[index], source.labels[index]) if not os.path.isfile(p)]
        if missing:
            problems += [Problem(p, f"{'image' if p == source.images[index] else 'label'} file is missing")
                         for p in missing]
        else:
            try:
                source.read(index)
            except DataError as error:
                problems.append(_problem(error))
        if progress is not None:
            progress.update(done)
    return problems


def _check_prepared(out_dir: Path, num_classes: int | None = None) -> list[Problem]:
    """Every record of every shard decodes, the counts agree, and labels are classes or 255.

    ``num_classes`` defaults to the manifest's; without either, label values are not checked.
    """
    try:
        manifest = read_manifest(out_dir)
    except DataError as error:
        return [_problem(error)]
    num_classes = num_classes or manifest.get("num_classes")
    problems = []
    for shard in manifest["shards"]:
        path = out_dir / shard["file"]
        count = 0
        try:
            for count, record in enumerate(tf.data.TFRecordDataset(str(path)), 1):
                try:
                    _, label, example_id = _parse(record, with_ids=True)
                except (tf.errors.OpError, ValueError) as exc:
                    problems.append(Problem(str(path), f"record {count - 1} does not decode: {exc.message if hasattr(exc, 'message') else exc}"))
                    continue
                if num_classes is not None:
                    try:
                        label_to_indices(label.numpy(), path, num_classes)
                    except DataError as error:
                        where = f"record {count - 1} (id {example_id.numpy().decode('utf-8', 'replace')!r})"
                        problems.append(Problem(str(path), f"{where}: {error.problem}"))
        except tf.errors.OpError as exc:
            problems.append(Problem(str(path), f"unreadable after record {count}: {exc.message}"))
            continue
        if count != shard["num_examples"]:
            problems.append(Problem(str(path), f"holds {count} records, the manifest says {shard['num_examples']}"))
    return problems


def _sources(path: Path, split: str | None, num_classes: int | None, metadata):
    """The sources a path denotes (VOC/SBD root: every split unless one is named), plus split-level problems."""
    splits = [split] if split else list(dataset_splits(path)) or [None]
    sources, problems = [], []
    for name in splits:
        try:
            sources.append(dataset_source(path, name, num_classes=num_classes, metadata=metadata, check_files=False))
        except DataError as error:  # missing or empty split file, bad metadata
            problems.append(_problem(error))
    return sources, problems


def check_dataset(
    path: str | os.PathLike | FileSource,
    split: str | None = None,
    *,
    num_classes: int | None = None,
    metadata: str | os.PathLike | None = None,
    verbose: int = 0,
) -> list[Problem]:
    """Scans a dataset and returns every problem found (an empty list when it is clean).

    ``path`` is a :class:`FileSource`, a VOC root (every split under
    ``ImageSets/Segmentation`` unless ``split`` names one), an SBD root, a
    prepared directory (``manifest.json``; label values are checked against
    ``num_classes``, default the manifest's), or a split file of ``image label``
    pairs (with optional ``metadata`` TOML for ``num_classes``/``ignore_value``
    and the colours of colour-coded labels).
    Each :class:`Problem` names its file; ``str(problem)`` is ``"<file>: <problem>"``.

    Example:
        >>> import tempfile
        >>> from fcn_keras.data import write_synthetic_voc
        >>> check_dataset(write_synthetic_voc(tempfile.mkdtemp(), num_images=2))
        []
    """
    if isinstance(path, FileSource):
        return check_source(path, verbose=verbose)
    path = Path(path)
    try:
        if dataset_kind(path) == "prepared":
            return _check_prepared(path, num_classes)
        sources, problems = _sources(path, split, num_classes, metadata)
    except DataError as error:
        return [_problem(error)]
    checked: set[tuple[str, str]] = set()
    for source in sources:
        # VOC's trainval repeats train and val: read each image/label pair once.
        fresh = [k for k, pair in enumerate(zip(source.images, source.labels)) if pair not in checked]
        checked.update(zip(source.images, source.labels))
        problems += [p for p in check_source(source, verbose=verbose, indices=fresh) if p not in problems]
    return problems
