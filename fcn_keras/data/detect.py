"""What a dataset path is, and its examples: the one place that tells the layouts apart.

    prepared   a directory with ``manifest.json`` (or ``shard-*.tfrecord`` files): :func:`load_prepared`
    voc        a PASCAL VOC root: ``ImageSets/Segmentation/<split>.txt``
    sbd        an SBD root: ``cls/`` (or ``dataset/cls/``) and ``<split>.txt``
    folder     a split file of ``image label`` pairs (CamVid layout), optionally with metadata TOML

The command line (``fcn-keras data/evaluate/train``) and :func:`~fcn_keras.data.check_dataset`
both go through :func:`dataset_kind` and :func:`dataset_source`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from fcn_keras.data.decode import DataError
from fcn_keras.data.folder import DatasetInfo, folder_source
from fcn_keras.data.prepared import MANIFEST
from fcn_keras.data.sbd import sbd_source
from fcn_keras.data.source import FileSource
from fcn_keras.data.voc import voc_source

DatasetKind = Literal["voc", "sbd", "folder", "prepared"]
KINDS: tuple[str, ...] = ("voc", "sbd", "folder", "prepared")
_EXPECTED = ("expected a VOC root (with ImageSets/Segmentation), an SBD root (with cls/), "
             "a prepared directory (with manifest.json) or an 'image label' split file")


def dataset_kind(path: str | os.PathLike) -> DatasetKind:
    """Which layout ``path`` is: ``"voc"``, ``"sbd"``, ``"folder"`` (a split file) or ``"prepared"``.

    Raises :class:`~fcn_keras.data.DataError` naming the path when it does not
    exist or is none of them.

    Example:
        >>> import tempfile
        >>> from fcn_keras.data import write_synthetic_voc
        >>> root = write_synthetic_voc(tempfile.mkdtemp(), num_images=2)
        >>> dataset_kind(root), dataset_kind(root / "ImageSets" / "Segmentation" / "val.txt")
        ('voc', 'folder')
        >>> dataset_kind("/nonexistent")
        Traceback (most recent call last):
        ...
        fcn_keras.data.decode.DataError: /nonexistent: does not exist
    """
    path = Path(path)
    if path.is_file():
        return "folder"
    if not path.is_dir():
        raise DataError(path, "does not exist")
    if (path / MANIFEST).is_file() or any(path.glob("shard-*.tfrecord")):
        return "prepared"
    if (path / "ImageSets" / "Segmentation").is_dir():
        return "voc"
    if (path / "cls").is_dir() or (path / "dataset" / "cls").is_dir():
        return "sbd"
    raise DataError(path, f"is not a dataset: {_EXPECTED}")


def dataset_splits(path: str | os.PathLike) -> tuple[str, ...]:
    """The split names a dataset offers: VOC's ``ImageSets/Segmentation/*.txt``, SBD's train and val.

    A split file or a prepared directory is one split and gives ``()``.

    Example:
        >>> import tempfile
        >>> from fcn_keras.data import write_synthetic_voc
        >>> dataset_splits(write_synthetic_voc(tempfile.mkdtemp(), num_images=2))
        ('train', 'trainval', 'val')
    """
    kind, path = dataset_kind(path), Path(path)
    if kind == "voc":
        return tuple(sorted(p.stem for p in (path / "ImageSets" / "Segmentation").glob("*.txt")))
    if kind == "sbd":
        return ("train", "val")
    return ()


def dataset_source(
    path: str | os.PathLike,
    split: str | None = None,
    *,
    num_classes: int | None = None,
    metadata: str | os.PathLike | DatasetInfo | None = None,
    check_files: bool = True,
) -> FileSource:
    """The :class:`~fcn_keras.data.FileSource` of a VOC root, SBD root or split file.

    ``split`` is a split name or split file of a VOC/SBD root (default
    ``"train"``); a split file is its own split and ignores it. ``num_classes``
    applies to VOC and split files (SBD has VOC's 21 classes), ``metadata`` to
    split files. ``check_files=False`` skips checking that every listed file
    exists. A prepared directory is not a file source (read it with
    :func:`~fcn_keras.data.load_prepared`): it raises, like every other problem,
    a :class:`~fcn_keras.data.DataError` naming the path.

    Example:
        >>> import tempfile
        >>> from fcn_keras.data import write_synthetic_voc
        >>> root = write_synthetic_voc(tempfile.mkdtemp(), num_images=4)
        >>> len(dataset_source(root, "val")), dataset_source(root).num_classes
        (1, 21)
        >>> dataset_source(root / "JPEGImages")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        fcn_keras.data.decode.DataError: ...JPEGImages: is not a dataset: expected a VOC root ...
    """
    kind = dataset_kind(path)
    options = {} if num_classes is None else {"num_classes": num_classes}
    if kind == "folder":
        return folder_source(path, metadata=metadata, check_files=check_files, **options)
    if kind == "voc":
        return voc_source(path, split or "train", check_files=check_files, **options)
    if kind == "sbd":
        if num_classes not in (None, 21):
            raise DataError(path, f"is an SBD root: its labels have 21 classes, not num_classes={num_classes}")
        return sbd_source(path, split or "train", check_files=check_files)
    raise DataError(path, "is a prepared dataset (manifest.json), not a file source: read it with load_prepared()")
