"""The reference data splits: seg11valid and train_aug, by their documented rules.

* ``seg11valid``: the PASCAL VOC 2011 segmentation val images that are not in
  SBD train — 736 ids; the reference FCN models are evaluated on it.
* ``train_aug``: VOC train ∪ SBD train ∪ SBD val, minus VOC val — the common
  augmented training set (10,582 ids with VOC 2012).

``seg11valid.txt`` ships with the package (the reference repository's list of
736 ids). ``train_aug``, SBD train and SBD val need the datasets' own lists:
:func:`write_reference_splits` generates them from VOC and SBD on disk.

This module sits above :mod:`~fcn_keras.data.voc` and :mod:`~fcn_keras.data.sbd`
(it combines their lists); neither imports it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from fcn_keras.data.sbd import sbd_split_file
from fcn_keras.data.source import FileSource, read_split_file
from fcn_keras.data.voc import voc_source, voc_split_file
from fcn_keras.files import write_text

SPLITS_DIR = Path(__file__).resolve().parent
SHIPPED = ("seg11valid",)


def make_seg11valid(voc2011_val_ids: Iterable[str], sbd_train_ids: Iterable[str]) -> list[str]:
    """VOC 2011 seg val minus SBD train, in the order of the VOC list.

    Example:
        >>> make_seg11valid(["2007_000033", "2007_000042", "2008_000002"], ["2007_000042"])
        ['2007_000033', '2008_000002']
    """
    exclude = set(sbd_train_ids)
    return [i for i in dict.fromkeys(voc2011_val_ids) if i not in exclude]


def make_train_aug(
    voc_train_ids: Iterable[str],
    sbd_train_ids: Iterable[str],
    sbd_val_ids: Iterable[str],
    voc_val_ids: Iterable[str],
) -> list[str]:
    """(VOC train ∪ SBD train ∪ SBD val) minus VOC val, sorted.

    Example:
        >>> make_train_aug(["a", "b"], ["b", "c", "v"], ["d"], ["v"])
        ['a', 'b', 'c', 'd']
    """
    union = set(voc_train_ids) | set(sbd_train_ids) | set(sbd_val_ids)
    return sorted(union - set(voc_val_ids))


def reference_split_path(name: str) -> Path:
    """Path of a split file shipped with the package (``"seg11valid"``).

    Example:
        >>> reference_split_path("seg11valid").name
        'seg11valid.txt'
    """
    if name not in SHIPPED:
        raise ValueError(
            f"no shipped split {name!r}; shipped: {SHIPPED}. Generate the others from VOC and SBD on disk"
            " with fcn_keras.data.splits.write_reference_splits(out_dir, voc_root=..., sbd_root=...)"
        )
    return SPLITS_DIR / f"{name}.txt"


def reference_split(name: str) -> list[str]:
    """The ids of a shipped split.

    Example:
        >>> len(reference_split("seg11valid"))
        736
    """
    return read_split_file(reference_split_path(name))


def seg11valid_source(voc_root: str | os.PathLike) -> FileSource:
    """The reference validation set: the VOC images and labels listed in the shipped seg11valid.

    Example:
        >>> seg11valid_source("/nonexistent")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        fcn_keras.data.decode.DataError: /nonexistent/JPEGImages/2007_000033.jpg: file listed in .../seg11valid.txt is missing (1472 missing in all)
    """
    return voc_source(voc_root, str(reference_split_path("seg11valid")))


def _write_ids(path: Path, ids: list[str]) -> Path:
    return write_text(path, "".join(f"{i}\n" for i in ids))


def write_reference_splits(
    out_dir: str | os.PathLike,
    *,
    voc_root: str | os.PathLike,
    sbd_root: str | os.PathLike,
    voc2011_val: str | os.PathLike | None = None,
) -> dict[str, Path]:
    """Generates ``train_aug.txt``, ``sbd_train.txt``, ``sbd_val.txt`` and ``seg11valid.txt``.

    ``voc_root`` is a VOC root (``ImageSets/Segmentation/{train,val}.txt``; VOC 2012
    for the usual train_aug), ``sbd_root`` the SBD ``dataset`` folder (``train.txt``,
    ``val.txt``). seg11valid needs the VOC **2011** val list: pass it as
    ``voc2011_val`` (a split file), else ``voc_root``'s val list is used and the
    result is only seg11valid when ``voc_root`` is VOC 2011. Files are written
    atomically; returns ``{name: path}``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    voc_train = read_split_file(voc_split_file(voc_root, "train"))
    voc_val = read_split_file(voc_split_file(voc_root, "val"))
    sbd_train = read_split_file(sbd_split_file(sbd_root, "train"))
    sbd_val = read_split_file(sbd_split_file(sbd_root, "val"))
    val11 = read_split_file(voc2011_val) if voc2011_val is not None else voc_val
    lists = {
        "train_aug": make_train_aug(voc_train, sbd_train, sbd_val, voc_val),
        "sbd_train": sbd_train,
        "sbd_val": sbd_val,
        "seg11valid": make_seg11valid(val11, sbd_train),
    }
    return {name: _write_ids(out_dir / f"{name}.txt", ids) for name, ids in lists.items()}
