"""The Semantic Boundaries Dataset (SBD, Hariharan et al. 2011) in its release layout.

    benchmark_RELEASE/dataset/img/<id>.jpg
    benchmark_RELEASE/dataset/cls/<id>.mat     GTcls.Segmentation: class indices 0..20
    benchmark_RELEASE/dataset/{train,val}.txt  8,498 / 2,857 ids

The reference FCNs train on SBD train and validate on VOC's seg11valid
(:mod:`fcn_keras.data.splits`, which builds on this module and :mod:`~fcn_keras.data.voc`).
"""

from __future__ import annotations

import os
from pathlib import Path

import tensorflow as tf

from fcn_keras.data.source import FileSource, check_listed_files, read_split_file
from fcn_keras.palette import VOC_CLASSES


def _dataset_dir(root: str | os.PathLike) -> Path:
    root = Path(root)
    # Accept benchmark_RELEASE/ as well as benchmark_RELEASE/dataset/.
    return root / "dataset" if (root / "dataset" / "cls").is_dir() else root


def sbd_split_file(root: str | os.PathLike, split: str) -> Path:
    """Path of SBD's ``<split>.txt``."""
    return _dataset_dir(root) / f"{split}.txt"


def sbd_source(root: str | os.PathLike, split: str = "train", *, check_files: bool = True) -> FileSource:
    """SBD examples (``img/<id>.jpg``, ``cls/<id>.mat``) of a split name or split file.

    Example:
        >>> sbd_source("/nonexistent")
        Traceback (most recent call last):
        ...
        fcn_keras.data.decode.DataError: /nonexistent/train.txt: split file is missing
    """
    base = _dataset_dir(root)
    split_file = Path(split) if str(split).endswith(".txt") else sbd_split_file(root, split)
    ids = tuple(read_split_file(split_file))
    source = FileSource(
        name=f"sbd:{split_file}",
        ids=ids,
        images=tuple(str(base / "img" / f"{i}.jpg") for i in ids),
        labels=tuple(str(base / "cls" / f"{i}.mat") for i in ids),
        num_classes=len(VOC_CLASSES),
        class_names=VOC_CLASSES,
    )
    if check_files:
        check_listed_files(source, split_file)
    return source


def load_sbd(root: str | os.PathLike, split: str = "train", *, with_ids: bool = False) -> tf.data.Dataset:
    """SBD as ``(image uint8 [H,W,3], label uint8 [H,W])``, in split order (see :func:`load_voc`)."""
    return sbd_source(root, split).dataset(with_ids=with_ids)


def train_aug_source(
    voc_root: str | os.PathLike, sbd_root: str | os.PathLike, split_file: str | os.PathLike
) -> FileSource:
    """The train_aug examples: each id's VOC label PNG where VOC has one, else its SBD ``.mat``.

    ``split_file`` is a list such as the ``train_aug.txt`` written by
    :func:`fcn_keras.data.splits.write_reference_splits`.
    """
    voc_root, base = Path(voc_root), _dataset_dir(sbd_root)
    ids = tuple(read_split_file(split_file))
    images, labels = [], []
    for i in ids:
        voc_label = voc_root / "SegmentationClass" / f"{i}.png"
        voc_image = voc_root / "JPEGImages" / f"{i}.jpg"
        labels.append(str(voc_label if voc_label.is_file() else base / "cls" / f"{i}.mat"))
        images.append(str(voc_image if voc_image.is_file() else base / "img" / f"{i}.jpg"))
    source = FileSource(f"train_aug:{split_file}", ids, tuple(images), tuple(labels),
                        num_classes=len(VOC_CLASSES), class_names=VOC_CLASSES)
    check_listed_files(source, split_file)
    return source
