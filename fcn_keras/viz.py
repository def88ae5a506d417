"""Pictures of segmentations: coloured masks, overlays with a legend, comparisons and charts.

Every function returns an RGB ``uint8`` array of shape ``(height, width, 3)``;
:func:`save_image` writes one as a PNG (atomically, with plain 0644 modes under
umask 022). Colours, names and the void label come from a model
(``model=``, a :class:`fcn_keras.models.SegmentationModel`: its ``palette``,
``class_names`` and ``ignore_label``), or from ``palette=`` / ``class_names=``
given by hand (default: the PASCAL VOC palette and names). Masks, overlays and side-by-side
comparisons need only Pillow. The charts — confusion matrix, per-class IoU bars
and training curves — need matplotlib, the ``viz`` extra
(``pip install "fcn_keras[viz]"``); without it they raise an ``ImportError``
that says so.

Example:
    >>> import numpy as np
    >>> mask = np.array([[0, 15], [255, 15]], dtype=np.uint8)
    >>> colorize(mask)[0, 1].tolist()  # class 15 ("person") in the VOC palette
    [192, 128, 128]
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from fcn_keras.files import atomic_path
from fcn_keras.palette import IGNORE_LABEL, VOC_CLASSES, VOID_COLOR, voc_palette

if TYPE_CHECKING:  # viz needs only Pillow (and matplotlib for charts): no Keras import at run time
    from fcn_keras.models import SegmentationModel

_WHITE = (255, 255, 255)
_TEXT = (0, 0, 0)
_FONT_SIZE = 12
_ROW = 18  # legend row height in pixels
_SWATCH = 12
_PAD = 6


def _font() -> ImageFont.ImageFont:
    return ImageFont.load_default(_FONT_SIZE)


def _as_mask(mask) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim == 3 and mask.shape[-1] == 1:
        mask = mask[..., 0]
    if mask.ndim != 2:
        raise ValueError(f"a mask must have shape (height, width), got {mask.shape}")
    if not np.issubdtype(mask.dtype, np.integer):
        raise ValueError(f"a mask must hold integer class indices, got dtype {mask.dtype}")
    if mask.size and mask.min() < 0:
        raise ValueError(f"a mask must hold class indices >= 0, found {int(mask.min())}")
    return mask


def _as_image(image) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"an image must have shape (height, width, 3), got {image.shape}")
    if image.dtype != np.uint8:
        image = np.clip(np.round(image), 0, 255).astype(np.uint8)
    return image


def _identity(model, palette, class_names) -> tuple:
    """``(palette, class_names, void label)``: the model's when ``model`` is given, else the arguments'."""
    if model is None:
        return palette, class_names, IGNORE_LABEL
    if palette is not None or class_names is not None:
        raise ValueError("give model= (its palette and class names are used) or palette=/class_names=, not both")
    return model.palette, model.class_names, model.ignore_label


def _palette_for(mask: np.ndarray, palette, void: int = IGNORE_LABEL) -> np.ndarray:
    if palette is None:
        # The VOC map covers any class count; entry 255 is VOC's void colour.
        palette = voc_palette(max(256, int(mask.max(initial=0)) + 1))
        if void != IGNORE_LABEL and 0 <= void < len(palette):
            palette[void] = VOID_COLOR
        return palette
    palette = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)
    labels = np.unique(mask)
    missing = labels[(labels >= len(palette)) & (labels != void)]
    if missing.size:
        raise ValueError(f"the mask holds class {int(missing[0])} but the palette has only {len(palette)} colours")
    if 0 <= void and len(palette) <= void:
        palette = np.concatenate([palette, np.zeros((void + 1 - len(palette), 3), np.uint8)])
        palette[void] = VOID_COLOR
    return palette


def colorize(mask, palette=None, *, model: SegmentationModel | None = None) -> np.ndarray:
    """Colours a mask of class indices: an ``(H, W)`` integer array to ``(H, W, 3)`` RGB.

    Args:
        mask: class index per pixel; 255 (or the model's ignore label) is void.
        palette: ``(num_colors, 3)`` RGB colours, one per class; defaults to the
            PASCAL VOC palette (any class count). Void gets VOC's void colour
            unless the palette has an entry 255 of its own.
        model: take the palette and void label from this model instead.

    Example:
        >>> colorize(np.array([[1, 255]]), palette=[[0, 0, 0], [10, 200, 30]]).tolist()
        [[[10, 200, 30], [224, 224, 192]]]
    """
    mask = _as_mask(mask)
    palette, _, void = _identity(model, palette, None)
    return _palette_for(mask, palette, void)[mask]


def class_name(index: int, class_names: Sequence[str] | None = None, void: int = IGNORE_LABEL) -> str:
    """The display name of a class index: from ``class_names`` (VOC's by default), ``"void"`` for ``void``.

    Example:
        >>> class_name(15), class_name(255), class_name(30)
        ('person', 'void', 'class 30')
    """
    names = VOC_CLASSES if class_names is None else class_names
    if index == void and not 0 <= index < len(names):
        return "void"
    return names[index] if index < len(names) else f"class {index}"


def legend(classes: Sequence[int], class_names: Sequence[str] | None = None, palette=None, *,
           model: SegmentationModel | None = None) -> np.ndarray:
    """A white panel listing each class of ``classes`` as a colour swatch and its name.

    Names and colours come from ``model`` when given, else from ``class_names`` and ``palette``.

    Example:
        >>> legend([0, 15]).shape[0]  # one row per class plus padding
        48
    """
    palette, class_names, void = _identity(model, palette, class_names)
    return _draw_legend([int(c) for c in classes], class_names, palette, void)


def _draw_legend(classes: list[int], class_names, palette, void: int) -> np.ndarray:
    colours = _palette_for(np.array(classes or [0]), palette, void)
    names = [class_name(c, class_names, void) for c in classes]
    font = _font()
    text_width = max((int(font.getlength(n)) for n in names), default=0)
    width = _PAD + _SWATCH + _PAD + text_width + _PAD
    height = 2 * _PAD + _ROW * len(classes)
    panel = Image.new("RGB", (width, height), _WHITE)
    draw = ImageDraw.Draw(panel)
    for row, (index, name) in enumerate(zip(classes, names)):
        top = _PAD + row * _ROW + (_ROW - _SWATCH) // 2
        draw.rectangle([_PAD, top, _PAD + _SWATCH - 1, top + _SWATCH - 1],
                       fill=tuple(int(v) for v in colours[index]), outline=_TEXT)
        draw.text((2 * _PAD + _SWATCH, _PAD + row * _ROW + _ROW // 2), name, fill=_TEXT, font=font, anchor="lm")
    return np.asarray(panel)


def _hstack(panels: Sequence[np.ndarray], gap: int = 0) -> np.ndarray:
    """Places panels left to right on white, top-aligned, ``gap`` pixels apart."""
    height = max(p.shape[0] for p in panels)
    width = sum(p.shape[1] for p in panels) + gap * (len(panels) - 1)
    out = np.full((height, width, 3), 255, np.uint8)
    x = 0
    for p in panels:
        out[: p.shape[0], x : x + p.shape[1]] = p
        x += p.shape[1] + gap
    return out


def _present(*masks: np.ndarray) -> list[int]:
    return sorted(set().union(*(np.unique(m).tolist() for m in masks)))


def overlay(image, mask, alpha: float = 0.5, palette=None, class_names: Sequence[str] | None = None,
            show_legend: bool = True, *, model: SegmentationModel | None = None) -> np.ndarray:
    """Blends the coloured mask over the image, with a legend of the classes present on the right.

    Colours and names come from ``model`` when given, else from ``palette`` and ``class_names``.
    Each pixel is ``(1 - alpha) * image + alpha * colour``. The image occupies
    the top-left ``(H, W)`` corner of the result; the legend, when shown, lies to
    its right (the result grows taller only if the legend needs it).

    Example:
        >>> image = np.full((4, 4, 3), 200, np.uint8)
        >>> mask = np.zeros((4, 4), np.uint8); mask[:2] = 15
        >>> out = overlay(image, mask, alpha=0.5, show_legend=False)
        >>> out[0, 0].tolist(), out[3, 3].tolist()  # person over grey, background over grey
        ([196, 164, 164], [100, 100, 100])
    """
    palette, class_names, void = _identity(model, palette, class_names)
    image, mask = _as_image(image), _as_mask(mask)
    if image.shape[:2] != mask.shape:
        raise ValueError(f"image {image.shape[:2]} and mask {mask.shape} sizes differ")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    colours = _palette_for(mask, palette, void)[mask]
    blended = np.round((1.0 - alpha) * image + alpha * colours.astype(np.float64)).astype(np.uint8)
    if not show_legend:
        return blended
    return _hstack([blended, _draw_legend(_present(mask), class_names, palette, void)])


def _titled(title: str, panel: np.ndarray) -> np.ndarray:
    strip = Image.new("RGB", (panel.shape[1], _ROW), _WHITE)
    ImageDraw.Draw(strip).text((panel.shape[1] // 2, _ROW // 2), title, fill=_TEXT, font=_font(), anchor="mm")
    return np.concatenate([np.asarray(strip), panel], axis=0)


def side_by_side(image, label=None, prediction=None, palette=None,
                 class_names: Sequence[str] | None = None, *, model: SegmentationModel | None = None) -> np.ndarray:
    """Image, ground truth and prediction next to each other, titled, with one legend.

    Colours and names come from ``model`` when given, else from ``palette`` and ``class_names``.

    ``label`` or ``prediction`` may be ``None`` to leave that panel out. Panels
    are separated by 4 white pixels and sit under an 18-pixel title strip.

    Example:
        >>> image = np.zeros((20, 30, 3), np.uint8)
        >>> gt = np.ones((20, 30), np.uint8)
        >>> out = side_by_side(image, gt, gt)
        >>> out[18 + 5, 30 + 4 + 5].tolist()  # inside the ground-truth panel: aeroplane red
        [128, 0, 0]
    """
    palette, class_names, void = _identity(model, palette, class_names)
    image = _as_image(image)
    panels, masks = [_titled("image", image)], []
    for title, mask in (("ground truth", label), ("prediction", prediction)):
        if mask is None:
            continue
        mask = _as_mask(mask)
        if mask.shape != image.shape[:2]:
            raise ValueError(f"{title} {mask.shape} and image {image.shape[:2]} sizes differ")
        panels.append(_titled(title, _palette_for(mask, palette, void)[mask]))
        masks.append(mask)
    if masks:
        panels.append(_draw_legend(_present(*masks), class_names, palette, void))
    return _hstack(panels, gap=4)


def png_bytes(image, name: str = "image") -> bytes:
    """An RGB array (or a 2-D index mask) encoded as PNG: the bytes :func:`save_image` writes.

    ``name`` identifies the picture in the error for a mask that does not fit 8 bits.

    Example:
        >>> png_bytes(np.zeros((2, 3, 3), np.uint8))[:8]
        b'\\x89PNG\\r\\n\\x1a\\n'
    """
    array = np.asarray(image)
    if array.ndim == 2 and array.dtype != np.uint8:
        if array.size and (array.min() < 0 or array.max() > 255):
            raise ValueError(f"{name}: an index mask saved as PNG must hold values 0..255")
        array = array.astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def save_image(image, path: str | os.PathLike) -> Path:
    """Writes an RGB array (or a 2-D index mask) as a PNG, atomically; returns the path.

    Readers never see a half-written file: the PNG is written to a temporary
    name in the same directory, then renamed.

    Example:
        >>> import tempfile, os
        >>> path = save_image(np.zeros((2, 3, 3), np.uint8), os.path.join(tempfile.mkdtemp(), "a.png"))
        >>> Image.open(path).size
        (3, 2)
    """
    path = Path(path)
    content = png_bytes(image, str(path))
    with atomic_path(path) as tmp:
        tmp.write_bytes(content)
    return path


PREDICTION_KINDS: tuple[str, ...] = ("mask", "color", "overlay")


def prediction_file_name(stem: str, kind: str) -> str:
    """The file name of one of :func:`save_prediction`'s pictures.

    Example:
        >>> prediction_file_name("0001", "overlay")
        '0001_overlay.png'
    """
    return f"{stem}_{kind}.png"
"""The pictures of one prediction, in the order written: ``<stem>_<kind>.png``."""


def prediction_pictures(image, mask, stem: str, palette=None, class_names: Sequence[str] | None = None,
                        alpha: float = 0.5, *, model: SegmentationModel | None = None) -> dict[str, np.ndarray]:
    """The three pictures :func:`save_prediction` writes, as arrays keyed by :data:`PREDICTION_KINDS`.

    ``mask`` is the raw class indices (uint8), ``color`` the coloured mask, ``overlay`` the mask
    over the image with a legend; ``stem`` names the image in errors.

    Example:
        >>> pictures = prediction_pictures(np.zeros((4, 4, 3), np.uint8), np.full((4, 4), 15), "x")
        >>> {kind: picture.shape for kind, picture in pictures.items()}
        {'mask': (4, 4), 'color': (4, 4, 3), 'overlay': (30, 72, 3)}
    """
    mask = _as_mask(mask)
    if mask.size and mask.max() > 255:
        raise ValueError(f"{stem}: class indices above 255 do not fit an 8-bit mask PNG")
    _identity(model, palette, class_names)  # refuses model= with palette=/class_names=
    same = {"model": model} if model is not None else {}
    return {
        "mask": mask.astype(np.uint8),
        "color": colorize(mask, palette, **same),
        "overlay": overlay(image, mask, alpha, palette, class_names, **same),
    }


def save_prediction(image, mask, out_dir: str | os.PathLike, stem: str, palette=None,
                    class_names: Sequence[str] | None = None, alpha: float = 0.5, *,
                    model: SegmentationModel | None = None) -> dict[str, Path]:
    """Writes a prediction three ways: ``<stem>_mask.png`` (raw class indices, greyscale),
    ``<stem>_color.png`` (coloured) and ``<stem>_overlay.png`` (over the image, with a legend).

    Colours and names come from ``model`` when given, else from ``palette`` and ``class_names``
    (the pictures of :func:`prediction_pictures`).

    Returns ``{"mask": path, "color": path, "overlay": path}``.

    Example:
        >>> import tempfile
        >>> paths = save_prediction(np.zeros((4, 4, 3), np.uint8), np.full((4, 4), 15), tempfile.mkdtemp(), "x")
        >>> np.asarray(Image.open(paths["mask"]))[0, 0], Image.open(paths["color"]).getpixel((0, 0))
        (np.uint8(15), (192, 128, 128))
    """
    pictures = prediction_pictures(image, mask, stem, palette, class_names, alpha, model=model)
    out_dir = Path(out_dir)
    return {kind: save_image(picture, out_dir / prediction_file_name(stem, kind)) for kind, picture in pictures.items()}


# Charts (matplotlib) ------------------------------------------------------------------------


def _figure(width_in: float, height_in: float):
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError(
            'charts need matplotlib: pip install "fcn_keras[viz]" (masks and overlays work without it)'
        ) from None
    # A bare Figure (no pyplot): no global state, no GUI backend.
    return Figure(figsize=(width_in, height_in), dpi=100, layout="constrained")


def _render(fig) -> np.ndarray:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def _names(count: int, class_names: Sequence[str] | None) -> list[str]:
    if class_names is not None and len(class_names) != count:
        raise ValueError(f"got {len(class_names)} class names for {count} classes")
    return [class_name(i, class_names) for i in range(count)]


def confusion_matrix_image(confusion, class_names: Sequence[str] | None = None, normalize: bool = True, *,
                           model: SegmentationModel | None = None) -> np.ndarray:
    """A heat map of a confusion matrix (rows: ground truth, columns: prediction).

    Class names come from ``model`` when given, else from ``class_names``.

    With ``normalize`` each row is divided by its total, so a cell reads as the
    fraction of that class's pixels predicted as the column's class (rows
    without pixels stay empty). Needs matplotlib.

    Example:
        >>> confusion_matrix_image(np.diag([5, 3, 2]), ["a", "b", "c"]).shape[2]
        3
    """
    _, class_names, _ = _identity(model, None, class_names)
    confusion = np.asarray(confusion)
    if confusion.ndim != 2 or confusion.shape[0] != confusion.shape[1]:
        raise ValueError(f"a confusion matrix must be square, got shape {confusion.shape}")
    n = confusion.shape[0]
    names = _names(n, class_names)
    values = confusion.astype(np.float64)
    if normalize:
        totals = values.sum(axis=1, keepdims=True)
        values = np.divide(values, totals, out=np.full_like(values, np.nan), where=totals > 0)
    side = min(max(4.0, 0.35 * n + 2.0), 14.0)
    fig = _figure(side + 1.2, side)
    ax = fig.add_subplot()
    shown = ax.imshow(values, cmap="Blues", vmin=0.0, vmax=1.0 if normalize else None, interpolation="nearest")
    fig.colorbar(shown, ax=ax, shrink=0.8, label="fraction of the row's pixels" if normalize else "pixels")
    ax.set_xticks(range(n), names, rotation=90, fontsize=8)
    ax.set_yticks(range(n), names, fontsize=8)
    ax.set_xlabel("prediction")
    ax.set_ylabel("ground truth")
    ax.set_title("confusion matrix")
    if n <= 12:
        for (row, col), value in np.ndenumerate(values):
            if not np.isnan(value):
                text = f"{value:.2f}" if normalize else f"{int(confusion[row, col])}"
                dark = value > (0.5 if normalize else np.nanmax(values) / 2)
                ax.text(col, row, text, ha="center", va="center", fontsize=7, color="white" if dark else "black")
    return _render(fig)


def iou_bars_image(per_class_iou: Sequence[float] | Mapping[str, float | None],
                   class_names: Sequence[str] | None = None, *, palette=None,
                   model: SegmentationModel | None = None) -> np.ndarray:
    """Horizontal bars of each class's IoU (0-1), coloured by the class's palette colour.

    ``per_class_iou`` is a sequence (names from ``class_names``) or a mapping
    ``{name: IoU or None}``. Names and colours come from ``model`` when given,
    else from ``class_names`` (or the mapping's keys) and ``palette`` (default VOC's).

    Classes with no IoU (``nan``: absent from ground truth and prediction) are
    labelled "n/a". The mean over the others is a dashed line, its value in the title. Needs matplotlib.

    Example:
        >>> iou_bars_image([0.9, 0.5, float("nan")]).dtype
        dtype('uint8')
        >>> iou_bars_image({"background": 0.9, "cat": None}).shape[2]
        3
    """
    palette, class_names, _ = _identity(model, palette, class_names)
    if isinstance(per_class_iou, Mapping):  # {name: IoU or None}, as fcn_keras.evaluation reports it
        if model is not None and tuple(per_class_iou) != tuple(class_names):
            raise ValueError(f"per_class_iou names {list(per_class_iou)} are not the model's {list(class_names)}")
        class_names = list(per_class_iou)
        per_class_iou = [np.nan if v is None else v for v in per_class_iou.values()]
    iou = np.asarray(per_class_iou, dtype=np.float64).reshape(-1)
    n = iou.size
    names = _names(n, class_names)
    if palette is None:
        palette = voc_palette(max(n, 1))
    palette = np.asarray(palette, np.uint8).reshape(-1, 3)
    if len(palette) < n:
        raise ValueError(f"the palette has {len(palette)} colours for {n} classes")
    colours = palette[:max(n, 1)] / 255.0
    fig = _figure(6.0, max(2.5, 0.28 * n + 1.2))
    ax = fig.add_subplot()
    rows = np.arange(n)
    ax.barh(rows, np.nan_to_num(iou), color=colours, edgecolor="black", linewidth=0.5)
    for row, value in zip(rows, iou):
        ax.text(min(np.nan_to_num(value), 1.0) + 0.01, row, "n/a" if np.isnan(value) else f"{value:.3f}",
                va="center", fontsize=8)
    title = "per-class IoU"
    if np.isfinite(iou).any():
        mean = float(np.nanmean(iou))
        ax.axvline(mean, color="black", linestyle="--", linewidth=1)
        title += f" (dashed: mean IU {mean:.3f})"
    ax.set_yticks(rows, names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0.0, 1.12)
    ax.set_xlabel("IoU")
    ax.set_title(title)
    return _render(fig)


def read_training_log(path: str | os.PathLike) -> dict[str, list[float]]:
    """Reads a Keras ``CSVLogger`` file into ``{column: values}`` (``epoch`` included).

    Example:
        >>> import tempfile, os
        >>> log = os.path.join(tempfile.mkdtemp(), "log.csv")
        >>> _ = open(log, "w").write("epoch,loss\\n0,1.5\\n1,0.5\\n")
        >>> read_training_log(log)
        {'epoch': [0.0, 1.0], 'loss': [1.5, 0.5]}
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"training log {path} does not exist")
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"training log {path} has no rows")
    columns: dict[str, list[float]] = {}
    for line, row in enumerate(rows, start=2):
        for key, value in row.items():
            try:
                columns.setdefault(key, []).append(float(value))
            except (TypeError, ValueError):
                raise ValueError(f"training log {path}, line {line}: column {key!r} is not a number: {value!r}") from None
    return columns


def training_curves_image(log: str | os.PathLike | dict[str, Sequence[float]]) -> np.ndarray:
    """Loss (left) and every other logged metric (right) per epoch, training and validation.

    ``log`` is a Keras ``CSVLogger`` file or the dict :func:`read_training_log`
    returns. ``val_<name>`` columns are drawn dashed in ``<name>``'s colour. Needs matplotlib.

    Example:
        >>> training_curves_image({"epoch": [0, 1], "loss": [2.0, 1.0], "val_loss": [2.1, 1.3]}).ndim
        3
    """
    columns = read_training_log(log) if not isinstance(log, dict) else {k: list(v) for k, v in log.items()}
    epochs = columns.pop("epoch", None)
    if not columns:
        raise ValueError("the training log has no metric columns")
    length = len(next(iter(columns.values())))
    epochs = np.arange(1, length + 1) if epochs is None else np.asarray(epochs) + 1
    losses = [k for k in columns if k.removeprefix("val_") == "loss" or k.removeprefix("val_").endswith("_loss")]
    others = [k for k in columns if k not in losses and k not in ("learning_rate", "lr")]
    from matplotlib.ticker import MaxNLocator

    fig = _figure(10.0 if others else 5.5, 3.6)
    axes = fig.subplots(1, 2 if others else 1, squeeze=False)[0]
    bases = list(dict.fromkeys(k.removeprefix("val_") for k in columns))
    for ax, keys, title in ((axes[0], losses, "loss"), (axes[-1], others, "metrics")):
        if not keys:
            continue
        for key in keys:
            # A metric and its validation twin share a colour; validation is dashed.
            colour = f"C{bases.index(key.removeprefix('val_')) % 10}"
            ax.plot(epochs, columns[key], marker="o", markersize=3, label=key, color=colour,
                    linestyle="--" if key.startswith("val_") else "-")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _render(fig)
