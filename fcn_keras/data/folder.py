"""Folder datasets: a split file of ``image label`` path pairs plus a small TOML metadata file.

Split file (paths relative to the split file's folder, or absolute)::

    train/0001TP_006690.jpg trainannot/0001TP_006690.png

Metadata (``num_classes`` defaults to the number of ``[[classes]]``)::

    name = "camvid32"
    ignore_value = 11              # index labels: this value is remapped to 255; optional
    ignore_colors = [[0, 0, 0]]    # colour labels: these colours become 255; optional
    [[classes]]
    name = "Building"
    color = [128, 0, 0]            # display colour; also its label colour unless label_colors is given
    label_colors = [[128, 0, 0], [192, 0, 128], [0, 128, 64], [64, 0, 64], [64, 192, 0]]  # optional

Labels are greyscale or palette PNGs of class indices (read exactly), or RGB(A)
PNGs whose colours are mapped through the classes' label colours (a colour no
class lists is an error naming the file, the pixel and the colour).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import tensorflow as tf

from fcn_keras.data.colors import LabelColors
from fcn_keras.data.decode import DataError, read_example
from fcn_keras.data.source import FileSource, check_listed_files, read_split_file

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

METADATA_DIR = Path(__file__).resolve().parent / "metadata"


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """Class names, display colours (``uint8 [num_classes, 3]``), the ignore value, a name and label colours.

    ``label_colors`` decodes colour-coded label PNGs (None when the metadata
    lists no colours).

    Example:
        >>> info = load_metadata("camvid32")
        >>> info.num_classes, info.ignore_value, info.class_names[3], len(info.label_colors.colors)
        (11, 11, 'Road', 32)
    """

    name: str
    class_names: tuple[str, ...]
    colors: np.ndarray
    ignore_value: int | None = None
    label_colors: LabelColors | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def _label_colors(name: str, classes: list[dict], names: tuple[str, ...], ignore_colors) -> LabelColors | None:
    """The colour table of the metadata: each class's ``label_colors``, else its display ``color``."""
    per_class = []
    for c in classes:
        listed = c.get("label_colors", [c["color"]] if "color" in c else [])
        if not isinstance(listed, list):
            raise ValueError(f"label_colors of class {c['name']} must be a list of [r, g, b], got {listed!r}")
        per_class.append(listed)
    if not isinstance(ignore_colors, list):
        raise ValueError(f"ignore_colors must be a list of [r, g, b], got {ignore_colors!r}")
    if not any(per_class):
        return None
    return LabelColors.build(name, per_class, names, ignore_colors)


def load_metadata(path_or_name: str | os.PathLike) -> DatasetInfo:
    """Reads a dataset metadata TOML file, or a shipped one by name (``"camvid"``, ``"camvid32"``).

    Example:
        >>> load_metadata("camvid").label_colors.to_indices(np.array([[[128, 64, 128], [0, 0, 0]]], np.uint8))
        array([[  3, 255]], dtype=uint8)
    """
    path = Path(path_or_name)
    if not path.suffix and not path.exists():
        path = METADATA_DIR / f"{path_or_name}.toml"
    if not path.is_file():
        shipped = sorted(p.stem for p in METADATA_DIR.glob("*.toml"))
        raise DataError(path, f"metadata file is missing (shipped metadata: {shipped})")
    try:
        with open(path, "rb") as f:
            meta = tomllib.load(f)
        classes = meta["classes"]
        names = tuple(str(c["name"]) for c in classes)
        colors = np.array([c.get("color", (0, 0, 0)) for c in classes], dtype=np.int64)
    except (tomllib.TOMLDecodeError, KeyError, TypeError) as exc:
        raise DataError(path, f"invalid metadata ({exc!r}); expected [[classes]] tables with name and color") from None
    if colors.shape != (len(names), 3) or colors.min(initial=0) < 0 or colors.max(initial=0) > 255:
        raise DataError(path, "every class color must be three integers in 0..255")
    if "num_classes" in meta and meta["num_classes"] != len(names):
        raise DataError(path, f"num_classes = {meta['num_classes']} but {len(names)} [[classes]] are listed")
    name = str(meta.get("name", path.stem))
    try:
        label_colors = _label_colors(name, classes, names, meta.get("ignore_colors", []))
    except ValueError as exc:  # a malformed or twice-claimed colour
        raise DataError(path, f"invalid label colours: {exc}") from None
    return DatasetInfo(name, names, colors.astype(np.uint8), meta.get("ignore_value"), label_colors)


@dataclasses.dataclass(frozen=True)
class FolderSource(FileSource):
    """A :class:`FileSource` whose label PNGs may also be colour-coded, decoded through ``label_colors``.

    Example:
        >>> table = load_metadata("camvid32").label_colors
        >>> FolderSource("demo", ("a",), ("a.jpg",), ("a.png",), label_colors=table).label_colors.name
        'camvid32'
    """

    label_colors: LabelColors | None = None

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Reads example ``index`` as NumPy ``(image uint8 [H,W,3], label uint8 [H,W])``."""
        return read_example(self.images[index], self.labels[index], self.num_classes, self.ignore_value,
                            colors=self.label_colors)


def folder_source(
    split_file: str | os.PathLike,
    *,
    metadata: str | os.PathLike | DatasetInfo | None = None,
    num_classes: int | None = None,
    ignore_value: int | None = None,
    root: str | os.PathLike | None = None,
    check_files: bool = True,
) -> FileSource:
    """Examples listed as ``image label`` pairs in ``split_file``.

    Relative paths resolve against ``root`` (default: the split file's folder).
    ``metadata`` (a TOML path, a shipped name or a :class:`DatasetInfo`) gives
    class names, ``num_classes``, ``ignore_value`` and the label colours that
    decode RGB(A) label PNGs; explicit arguments win.

    Example:
        >>> folder_source("missing.txt", num_classes=11)
        Traceback (most recent call last):
        ...
        fcn_keras.data.decode.DataError: missing.txt: split file is missing
    """
    info = metadata if isinstance(metadata, DatasetInfo) or metadata is None else load_metadata(metadata)
    if info is not None:
        num_classes = info.num_classes if num_classes is None else num_classes
        ignore_value = info.ignore_value if ignore_value is None else ignore_value
    split_file = Path(split_file)
    base = Path(root) if root is not None else split_file.parent
    ids, images, labels = [], [], []
    for n, line in enumerate(read_split_file(split_file), 1):
        parts = line.split()
        if len(parts) != 2:
            raise DataError(split_file, f"line {n} must be 'image label' (two paths), got {line!r}")
        image, label = (str(base / p) for p in parts)
        ids.append(Path(parts[0]).stem)
        images.append(image)
        labels.append(label)
    source = FolderSource(
        name=f"folder:{split_file}",
        ids=tuple(ids),
        images=tuple(images),
        labels=tuple(labels),
        num_classes=num_classes,
        ignore_value=ignore_value,
        class_names=info.class_names if info is not None else None,
        palette=info.colors if info is not None else None,
        label_colors=info.label_colors if info is not None else None,
    )
    if check_files:
        check_listed_files(source, split_file)
    return source


def load_folder(split_file: str | os.PathLike, *, with_ids: bool = False, **kwargs) -> tf.data.Dataset:
    """A folder dataset as ``(image uint8 [H,W,3], label uint8 [H,W])`` (see :func:`folder_source`).

    Example (CamVid's 11 becomes 255)::

        ds = load_folder("camvid/train.txt", metadata="camvid")
    """
    return folder_source(split_file, **kwargs).dataset(with_ids=with_ids)
