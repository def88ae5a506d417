"""A dataset on disk as a list of (id, image file, label file), streamed through tf.data.

Every file-based source (VOC, SBD, folder datasets) is a :class:`FileSource`.
Keeping the file list separate from the decoding lets the training pipeline
shuffle and shard cheap file names before any image is decoded.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import tensorflow as tf

from fcn_keras.data.decode import DataError, read_example

@dataclasses.dataclass(frozen=True)
class FileSource:
    """Examples stored as one image file and one label file each.

    Attributes:
        name: a short description used in messages (e.g. ``"voc:train"``).
        ids: example ids, in the split's order.
        images, labels: file paths, parallel to ``ids``.
        num_classes: labels must hold values in ``[0, num_classes)`` or 255.
        ignore_value: a label value remapped to 255 (e.g. CamVid's 11), or None.
        class_names: optional names of the classes.
        palette: optional display colour of each class (``uint8 [num_classes, 3]``), e.g. a folder
            dataset's metadata colours; models trained on the source carry it.

    Example:
        >>> src = FileSource("demo", ("a",), ("a.jpg",), ("a.png",), num_classes=21)
        >>> len(src)
        1
    """

    name: str
    ids: tuple[str, ...]
    images: tuple[str, ...]
    labels: tuple[str, ...]
    num_classes: int | None = None
    ignore_value: int | None = None
    class_names: tuple[str, ...] | None = None
    palette: np.ndarray | None = dataclasses.field(default=None, compare=False)

    def __post_init__(self):
        if not (len(self.ids) == len(self.images) == len(self.labels)):
            raise ValueError(f"{self.name}: ids, images and labels must have the same length")
        if not self.ids:
            raise DataError(self.name, "the split is empty (no examples)")

    def __len__(self) -> int:
        return len(self.ids)

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Reads example ``index`` as NumPy ``(image uint8 [H,W,3], label uint8 [H,W])``."""
        return read_example(self.images[index], self.labels[index], self.num_classes, self.ignore_value)

    def missing_files(self) -> list[str]:
        """Every listed image or label file that does not exist."""
        return [p for pair in zip(self.images, self.labels) for p in pair if not os.path.isfile(p)]

    def index_dataset(self) -> tf.data.Dataset:
        """The example indices ``0..len-1`` as an int64 dataset (cheap to shuffle and shard)."""
        return tf.data.Dataset.range(len(self))

    def decode(self, index: tf.Tensor, with_ids: bool = False):
        """Decodes the example at a scalar int64 ``index`` tensor (for ``Dataset.map``)."""

        @tf.autograph.experimental.do_not_convert
        def _read(i):
            return self.read(int(i))

        image, label = tf.numpy_function(_read, [index], (tf.uint8, tf.uint8), stateful=False)
        image.set_shape([None, None, 3])
        label.set_shape([None, None])
        if with_ids:
            return image, label, tf.gather(tf.constant(self.ids), index)
        return image, label

    def dataset(self, with_ids: bool = False, num_parallel_calls: int | None = tf.data.AUTOTUNE) -> tf.data.Dataset:
        """``tf.data.Dataset`` of ``(image, label)`` (plus ``id`` with ``with_ids``) in split order.

        A broken file raises, while iterating, an error whose message names it.
        """
        return self.index_dataset().map(
            lambda i: self.decode(i, with_ids), num_parallel_calls=num_parallel_calls, deterministic=True
        )


def read_split_file(path: str | os.PathLike) -> list[str]:
    """Non-empty, stripped lines of a split file; raises :class:`DataError` if missing or empty.

    Example:
        >>> read_split_file("no/such/train.txt")
        Traceback (most recent call last):
        ...
        fcn_keras.data.decode.DataError: no/such/train.txt: split file is missing
    """
    path = str(path)
    if not os.path.isfile(path):
        raise DataError(path, "split file is missing")
    with open(path, encoding="utf-8") as f:
        lines = [line.strip() for line in f]
    lines = [line for line in lines if line and not line.startswith("#")]
    if not lines:
        raise DataError(path, "the split is empty (no examples)")
    return lines


def check_listed_files(source: FileSource, split_file: str | os.PathLike) -> None:
    """Raises :class:`DataError` naming the split file and the first missing file it lists."""
    missing = source.missing_files()
    if missing:
        raise DataError(missing[0], f"file listed in {split_file} is missing ({len(missing)} missing in all)")

