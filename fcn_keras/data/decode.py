"""Reading one image file and one label file exactly, with errors that name the file.

Labels are class-index maps. PASCAL VOC stores them as palette ("P") PNGs whose
pixel values are the indices; ``tf.io.decode_png`` would expand the palette to
RGB (and ``channels=1`` gives luma), so labels are read with PIL, which returns
the raw indices. RGB(A) colour-coded labels are read only through a colour table
(:class:`~fcn_keras.data.colors.LabelColors`, from a dataset's metadata).
Images are converted to 8-bit RGB; an unusual mode (greyscale, RGBA, 16-bit,
CMYK, palette) is converted and reported once per mode in the log.
"""

from __future__ import annotations

import io
import logging
import os
import threading
from pathlib import Path

import numpy as np
from PIL import Image

from fcn_keras.data.colors import LabelColors, UnknownColorError
from fcn_keras.palette import IGNORE_LABEL

logger = logging.getLogger("fcn_keras.data")

_WARNED_MODES: set[str] = set()
_WARN_LOCK = threading.Lock()  # tf.data decodes in parallel threads
_INDEX_LABEL_MODES = ("P", "L", "I;16", "I;16B", "I;16L", "I", "1")
_COLOR_LABEL_MODES = ("RGB", "RGBA")


class DataError(ValueError):
    """A problem with one dataset file; ``path`` names it.

    Example:
        >>> str(DataError("a.png", "label is RGB"))
        'a.png: label is RGB'
    """

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


def _open(path: str | os.PathLike, what: str) -> Image.Image:
    path = str(path)
    if not os.path.isfile(path):
        raise DataError(path, f"{what} file is missing")
    return _decode(path, path, what)


def _decode(file, path: str | os.PathLike, what: str) -> Image.Image:
    """``file`` (a path or a binary stream) decoded in full by PIL; a broken one raises naming ``path``."""
    try:
        image = Image.open(file)
        image.load()  # forces the full decode, so truncated files fail here
    except Exception as exc:  # PIL raises several unrelated types for broken files
        # PIL names a stream by its repr; the message names the file, as for a path.
        raise DataError(path, f"cannot decode {what}: {str(exc).replace(repr(file), repr(str(path)))}") from None
    return image


def _warn_once(mode: str, path: str) -> None:
    with _WARN_LOCK:
        if mode in _WARNED_MODES:
            return
        _WARNED_MODES.add(mode)
    logger.warning("image %s has mode %r; converting it (and every later %r image) to 8-bit RGB", path, mode, mode)


def image_to_rgb(image: Image.Image, path: str | os.PathLike = "<image>") -> np.ndarray:
    """Converts a PIL image of any common mode to ``uint8 [H, W, 3]`` RGB.

    16-bit images keep their 8 most significant bits; alpha is dropped.

    Example:
        >>> image_to_rgb(Image.new("L", (4, 2), 7)).shape
        (2, 4, 3)
    """
    mode = image.mode
    if mode == "RGB":
        return np.asarray(image, dtype=np.uint8)
    _warn_once(mode, str(path))
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        values = np.asarray(image).astype(np.int64)
        peak = 65535 if mode != "I" or values.max(initial=0) > 255 else 255
        grey = (values * 255 // peak).clip(0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=-1)
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Reads an image file as ``uint8 [H, W, 3]`` RGB; raises :class:`DataError` naming it.

    Example:
        >>> read_image("missing.jpg")
        Traceback (most recent call last):
        ...
        fcn_keras.data.decode.DataError: missing.jpg: image file is missing
    """
    return image_to_rgb(_open(path, "image"), path)


def decode_image(content: bytes, path: str | os.PathLike) -> np.ndarray:
    """An image file's bytes (read from any filesystem) as :func:`read_image` decodes the file; ``path`` names it.

    Example:
        >>> decode_image(b"not an image", "gs://bucket/a.jpg")
        Traceback (most recent call last):
        ...
        fcn_keras.data.decode.DataError: gs://bucket/a.jpg: cannot decode image: cannot identify image file 'gs://bucket/a.jpg'
    """
    return image_to_rgb(_decode(io.BytesIO(content), path, "image"), path)


def label_to_indices(
    label: np.ndarray,
    path: str | os.PathLike,
    num_classes: int | None,
    ignore_value: int | None = None,
) -> np.ndarray:
    """Validates a class-index map and returns it as ``uint8 [H, W]`` with void = 255.

    ``ignore_value`` (e.g. CamVid's 11) is remapped to 255. Values outside
    ``[0, num_classes) ∪ {255}`` raise :class:`DataError`.

    Example:
        >>> label_to_indices(np.array([[0, 11]]), "a.png", 11, ignore_value=11).tolist()
        [[0, 255]]
    """
    label = np.asarray(label)
    if ignore_value is not None and ignore_value != IGNORE_LABEL:
        label = np.where(label == ignore_value, IGNORE_LABEL, label)
    if num_classes is not None:
        bad = (label >= num_classes) & (label != IGNORE_LABEL) | (label < 0)
        if bad.any():
            values = np.unique(label[bad])
            raise DataError(
                path,
                f"label values {values[:10].tolist()} are outside [0, {num_classes}) and not {IGNORE_LABEL} (void)",
            )
    else:
        bad = (label < 0) | (label > 255)
        if bad.any():
            raise DataError(path, f"label values {np.unique(label[bad])[:10].tolist()} do not fit in 0..255")
    return label.astype(np.uint8)


def read_sbd_mat(path: str | os.PathLike) -> np.ndarray:
    """The class map of an SBD ``cls/<id>.mat`` file (``GTcls.Segmentation``), as stored."""
    try:
        from scipy.io import loadmat  # noqa: PLC0415 - only SBD needs SciPy
    except ImportError:
        raise ImportError("reading SBD .mat labels needs SciPy: pip install scipy") from None
    if not os.path.isfile(path):
        raise DataError(path, "label file is missing")
    try:
        segmentation = loadmat(str(path), squeeze_me=False)["GTcls"][0, 0]["Segmentation"]
    except Exception as exc:  # broken or foreign .mat files fail in many ways
        raise DataError(path, f"cannot read GTcls.Segmentation from SBD .mat label: {exc!r}") from None
    if segmentation.ndim != 2:
        raise DataError(path, f"GTcls.Segmentation has shape {segmentation.shape}, expected 2-D")
    return segmentation


def read_label(
    path: str | os.PathLike,
    num_classes: int | None = None,
    ignore_value: int | None = None,
    *,
    colors: LabelColors | None = None,
) -> np.ndarray:
    """Reads a label PNG as its raw class indices, ``uint8 [H, W]``.

    Palette PNGs give their indices (not colours), greyscale PNGs their values,
    SBD ``.mat`` files their ``GTcls.Segmentation`` map. RGB(A) colour labels
    are mapped through ``colors`` (alpha is ignored; ``ignore_value`` applies to
    index labels only, the table's ignore colours already give 255); without
    ``colors`` they are refused: they are colours, not indices.

    Example:
        >>> from fcn_keras.palette import voc_palette
        >>> import tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "l.png")
        >>> im = Image.fromarray(np.array([[0, 15, 255]], np.uint8), "P")
        >>> im.putpalette(voc_palette().tobytes()); im.save(p)
        >>> read_label(p, 21).tolist()
        [[0, 15, 255]]
        >>> Image.fromarray(np.array([[[0, 0, 0], [9, 9, 9]]], np.uint8)).save(p)
        >>> read_label(p, 2, colors=LabelColors.build("toy", [[(0, 0, 0)], [(9, 9, 9)]], ("a", "b"))).tolist()
        [[0, 1]]
    """
    if str(path).endswith(".mat"):
        return label_to_indices(read_sbd_mat(path), path, num_classes, ignore_value)
    image = _open(path, "label")
    if image.mode in _COLOR_LABEL_MODES and colors is not None:
        rgb = np.asarray(image if image.mode == "RGB" else image.convert("RGB"), dtype=np.uint8)
        try:
            indices = colors.to_indices(rgb)
        except UnknownColorError as exc:
            raise DataError(path, str(exc)) from None
        return label_to_indices(indices, path, num_classes)
    if image.mode not in _INDEX_LABEL_MODES:
        raise DataError(
            path,
            f"label has mode {image.mode!r} (colour); expected a palette or greyscale PNG of class indices"
            " — convert colour labels to indices first, or give metadata whose classes list their colours",
        )
    return label_to_indices(np.asarray(image), path, num_classes, ignore_value)


def read_example(
    image_path: str | os.PathLike,
    label_path: str | os.PathLike,
    num_classes: int | None = None,
    ignore_value: int | None = None,
    *,
    colors: LabelColors | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Reads an image and its label (see :func:`read_label`), checking that their sizes agree.

    Example:
        >>> read_example("a.jpg", "a.png")
        Traceback (most recent call last):
        ...
        fcn_keras.data.decode.DataError: a.jpg: image file is missing
    """
    image = read_image(image_path)
    label = read_label(label_path, num_classes, ignore_value, colors=colors)
    if image.shape[:2] != label.shape:
        raise DataError(
            label_path,
            f"label size {label.shape[1]}x{label.shape[0]} differs from image {Path(image_path).name} "
            f"size {image.shape[1]}x{image.shape[0]}",
        )
    return image, label
