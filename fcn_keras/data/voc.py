"""PASCAL VOC segmentation in its directory layout.

    root/JPEGImages/<id>.jpg
    root/SegmentationClass/<id>.png        palette PNG: values 0..20, 255 = void
    root/ImageSets/Segmentation/<split>.txt
"""

from __future__ import annotations

import os
from pathlib import Path

import tensorflow as tf

from fcn_keras.data.source import FileSource, check_listed_files, read_split_file
from fcn_keras.palette import VOC_CLASSES


def voc_split_file(root: str | os.PathLike, split: str) -> Path:
    """Path of ``ImageSets/Segmentation/<split>.txt`` under a VOC root."""
    return Path(root) / "ImageSets" / "Segmentation" / f"{split}.txt"


def voc_source(
    root: str | os.PathLike,
    split: str = "train",
    *,
    num_classes: int = 21,
    label_dir: str = "SegmentationClass",
    check_files: bool = True,
) -> FileSource:
    """The examples of a VOC split as a :class:`FileSource` (file names, not yet decoded).

    ``split`` is a name under ``ImageSets/Segmentation`` or the path of a split
    file of ids. A missing split file, an empty split or a listed id without
    its files raises :class:`~fcn_keras.data.DataError` naming the file.

    Example:
        >>> import tempfile
        >>> from fcn_keras.data import write_synthetic_voc
        >>> root = write_synthetic_voc(tempfile.mkdtemp(), num_images=4)
        >>> len(voc_source(root, "trainval"))
        4
    """
    root = Path(root)
    split_file = Path(split) if str(split).endswith(".txt") else voc_split_file(root, split)
    ids = tuple(read_split_file(split_file))
    source = FileSource(
        name=f"voc:{split_file}",
        ids=ids,
        images=tuple(str(root / "JPEGImages" / f"{i}.jpg") for i in ids),
        labels=tuple(str(root / label_dir / f"{i}.png") for i in ids),
        num_classes=num_classes,
        class_names=VOC_CLASSES if num_classes == len(VOC_CLASSES) else None,
    )
    if check_files:
        check_listed_files(source, split_file)
    return source


def load_voc(
    root: str | os.PathLike, split: str = "train", *, num_classes: int = 21, with_ids: bool = False
) -> tf.data.Dataset:
    """PASCAL VOC segmentation as a ``tf.data.Dataset`` of ``(image, label)``.

    ``image`` is ``uint8 [H, W, 3]`` RGB and ``label`` is ``uint8 [H, W]`` holding the
    exact palette indices (0..num_classes-1, 255 = void), at native size, in
    the order of the split file. ``with_ids=True`` adds the id string.

    Example:
        >>> import tempfile
        >>> from fcn_keras.data import write_synthetic_voc
        >>> root = write_synthetic_voc(tempfile.mkdtemp(), num_images=4)
        >>> image, label = next(iter(load_voc(root, "train")))
        >>> image.dtype.name, label.dtype.name, image.shape[:2] == label.shape
        ('uint8', 'uint8', True)
    """
    return voc_source(root, split, num_classes=num_classes).dataset(with_ids=with_ids)
