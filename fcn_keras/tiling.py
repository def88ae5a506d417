"""Sliding-window inference: a :class:`~fcn_keras.segmenter.Segmenter` run tile by tile over images too large for one pass.

``tiled(segmenter, tile=(H, W), overlap=P)`` cuts the image into windows of at
most ``H x W`` whose neighbours share ``P`` rows or columns, runs the network on
each, and keeps from each window the part in which it sees the most context:
an overlap is split down its middle, each side taken from the window it lies
deeper in. Windows are cut off exactly at the image border (the network sees
the border where the whole image has it), never padded.

The result equals the whole image's output, to float rounding, when

1. every window starts on the network's pooling grid: ``tile - overlap`` is a
   multiple of the network's total stride (32 for every fcn_keras FCN, read from
   its layers by :func:`fcn_keras.models.receptive_field.receptive_field`), and
2. ``overlap >= 2 * radius``, the receptive field's half-width, so every kept pixel
   has its whole receptive field inside its window: :func:`exact_overlap`.

The first is required (else :func:`tiled` refuses); with a smaller overlap the
output differs only within ``radius - overlap // 2`` pixels of the cuts
(docs/tiling.md measures how much). ``segment`` holds one window's scores at a
time besides the mask; ``logits`` returns the whole image's scores.

Example:
    >>> import numpy as np, fcn_keras
    >>> from fcn_keras.segmenter import keras_segmenter
    >>> model = fcn_keras.fcn32s(num_classes=3, backbone="tiny_vgg")
    >>> score = model.get_layer("score_fr")  # zero-initialised: random weights, so that the logits vary
    >>> score.set_weights([np.random.default_rng(0).normal(size=w.shape) for w in score.get_weights()])
    >>> whole = keras_segmenter(model)
    >>> exact_overlap(whole, (320, 320))
    224
    >>> tiles = tiled(whole, (320, 320), overlap=224)
    >>> image = np.random.default_rng(0).integers(0, 256, (300, 420, 3), dtype=np.uint8)
    >>> len(tiles.windows(300, 420)), bool(np.allclose(tiles.logits(image), whole.logits(image), atol=1e-4))
    (3, True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, NamedTuple, Sequence

import numpy as np

from fcn_keras.segmenter import Segmenter


class Window(NamedTuple):
    """One window along an axis: the network sees ``[start, stop)`` and ``[keep_start, keep_stop)`` is kept."""

    start: int
    stop: int
    keep_start: int
    keep_stop: int


def windows(length: int, tile: int, overlap: int) -> list[Window]:
    """The windows covering ``length`` pixels: starts ``0, tile - overlap, ...``, the last cut at the border.

    The kept parts partition ``[0, length)``: each overlap is split in its middle
    (its first ``overlap // 2`` pixels are kept from the earlier window, the rest
    from the later one), so a kept pixel sits at least ``overlap // 2`` pixels
    inside its window wherever the window does not end at the image border. An
    axis no longer than ``tile`` is one window.

    Example:
        >>> [tuple(w) for w in windows(600, 256, 64)]
        [(0, 256, 0, 224), (192, 448, 224, 416), (384, 600, 416, 600)]
    """
    if not 0 <= overlap < tile:
        raise ValueError(f"windows: overlap must be at least 0 and smaller than the tile {tile}, got {overlap}")
    if length <= tile:
        return [Window(0, length, 0, length)]
    step = tile - overlap
    count = math.ceil((length - tile) / step) + 1
    starts = [k * step for k in range(count)]
    return [Window(start, min(start + tile, length),
                   start + overlap // 2 if k > 0 else 0,
                   start + tile - (overlap - overlap // 2) if k < count - 1 else length)
            for k, start in enumerate(starts)]


@dataclass(kw_only=True)
class TiledSegmenter(Segmenter):
    """A :class:`Segmenter` that runs ``base`` window by window (built by :func:`tiled`).

    ``logits(image)`` is the whole image's ``(H, W, C)`` float32 scores, assembled
    from the windows' kept parts; ``segment(image)`` writes each window's argmax
    straight into the mask (uint8 for up to 256 classes, else int32), so besides
    the image and the mask it holds one window's scores at a time. ``base`` only
    ever sees windows of at most ``tile`` pixels. ``progress``, if given, is called
    with ``(windows done, windows in all)`` after each window.

    Example:
        >>> import fcn_keras
        >>> from fcn_keras.segmenter import keras_segmenter
        >>> tiles = tiled(keras_segmenter(fcn_keras.fcn8s(num_classes=3, backbone="tiny_vgg")), (256, 256), 64)
        >>> tiles.segment(np.zeros((200, 300, 3), np.uint8)).dtype, tiles.description
        (dtype('uint8'), 'fcn8s_tiny_vgg, tiles 256x256 overlapping 64 (exact from 256)')
    """

    base: Segmenter
    tile: tuple[int, int]
    overlap: int
    stride: int
    progress: Callable[[int, int], None] | None = None

    def segment(self, image: np.ndarray) -> np.ndarray:
        """The class index of every pixel of one RGB image ``(H, W, 3)``, computed window by window."""
        mask = None
        for rows, cols, scores in self._scores(image):
            if mask is None:
                mask = np.empty(np.shape(image)[:2], np.uint8 if scores.shape[-1] <= 256 else np.int32)
            mask[rows.keep_start:rows.keep_stop, cols.keep_start:cols.keep_stop] = scores.argmax(-1)
        return mask

    def _assemble(self, image: np.ndarray) -> np.ndarray:
        """The whole image's scores from the windows' kept parts (``logits``)."""
        out = None
        for rows, cols, scores in self._scores(image):
            if out is None:
                out = np.empty(np.shape(image)[:2] + scores.shape[-1:], np.float32)
            out[rows.keep_start:rows.keep_stop, cols.keep_start:cols.keep_stop] = scores
        return out

    def windows(self, height: int, width: int) -> list[tuple[Window, Window]]:
        """The ``(rows, cols)`` windows of a ``height`` x ``width`` image, in the order they are run.

        Example:
            >>> import fcn_keras
            >>> from fcn_keras.segmenter import keras_segmenter
            >>> tiles = tiled(keras_segmenter(fcn_keras.fcn8s(num_classes=3, backbone="tiny_vgg")), (256, 256), 64)
            >>> len(tiles.windows(300, 500))
            6
        """
        return [(r, c) for r in windows(height, self.tile[0], self.overlap)
                for c in windows(width, self.tile[1], self.overlap)]

    def _scores(self, image: np.ndarray):
        """Each window's kept scores: ``(rows, cols, scores of the kept part)``, rows top to bottom."""
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[-1] != 3 or 0 in image.shape:
            raise ValueError(f"tiled inference takes one RGB image (H, W, 3) with pixels, got shape {image.shape}")
        plan = self.windows(*image.shape[:2])
        for done, (rows, cols) in enumerate(plan, start=1):
            scores = np.asarray(self.base.logits(image[rows.start:rows.stop, cols.start:cols.stop]))
            expected = (rows.stop - rows.start, cols.stop - cols.start)
            if scores.ndim != 3 or scores.shape[:2] != expected:
                raise ValueError(f"{self.base.description} gave scores of shape {scores.shape} for a "
                                 f"{expected[0]}x{expected[1]} window: tiling needs (H, W, C) scores of the window's size")
            yield rows, cols, scores[rows.keep_start - rows.start:rows.keep_stop - rows.start,
                                     cols.keep_start - cols.start:cols.keep_stop - cols.start]
            if self.progress is not None:
                self.progress(done, len(plan))


def tiled(segmenter: Segmenter, tile: Sequence[int], overlap: int | None = None, *,
          progress: Callable[[int, int], None] | None = None) -> TiledSegmenter:
    """``segmenter`` run in windows of at most ``tile = (height, width)`` pixels overlapping by ``overlap``.

    ``tile - overlap`` must be a multiple of the network's stride on both axes
    (then every window starts on its pooling grid); ``overlap=None`` takes
    :func:`exact_overlap`, the smallest overlap for which the output equals the
    whole image's. The network's stride and receptive field come from
    ``segmenter.receptive_field`` (models and fcn_keras SavedModels know theirs).
    Bad arguments raise one ``ValueError`` naming the argument.

    Example:
        >>> import fcn_keras
        >>> from fcn_keras.segmenter import keras_segmenter
        >>> whole = keras_segmenter(fcn_keras.fcn8s(num_classes=3, backbone="tiny_vgg"))
        >>> tiled(whole, (256, 256), 256)
        Traceback (most recent call last):
        ...
        ValueError: overlap must be smaller than the tile (256, 256), got 256
        >>> tiled(whole, (256, 256), 100)
        Traceback (most recent call last):
        ...
        ValueError: overlap: tile (256, 256) minus overlap 100 must be a multiple of the network's stride 32 so that every window starts on its pooling grid; e.g. overlap 96 or 128
    """
    tile = _check_tile(tile)
    field = _field(segmenter)
    exact = exact_overlap(field, tile)
    if overlap is None:
        if exact >= min(tile):
            raise ValueError(f"tile {tile} is too small for exact tiling: {segmenter.description}'s exact overlap is "
                             f"{exact} (its receptive field reaches {field.radius} pixels); take a larger tile or "
                             f"give a smaller overlap")
        overlap = exact
    if isinstance(overlap, bool) or not isinstance(overlap, (int, np.integer)) or overlap < 0:
        raise ValueError(f"overlap must be a non-negative integer number of pixels, got {overlap!r}")
    overlap = int(overlap)
    if overlap >= min(tile):
        raise ValueError(f"overlap must be smaller than the tile {tile}, got {overlap}")
    stride = field.stride
    if any((size - overlap) % stride for size in tile):
        raise ValueError(f"overlap: tile {tile} minus overlap {overlap} must be a multiple of the network's stride "
                         f"{stride} so that every window starts on its pooling grid; {_suggest(tile, overlap, stride)}")
    tiles = TiledSegmenter(
        logits=lambda image: tiles._assemble(image),  # the segmenter built here runs the windows
        class_names=list(segmenter.class_names), palette=segmenter.palette, receptive_field=segmenter.receptive_field,
        description=f"{segmenter.description}, tiles {tile[0]}x{tile[1]} overlapping {overlap} (exact from {exact})",
        base=segmenter, tile=tile, overlap=overlap, stride=stride, progress=progress)
    return tiles


def exact_overlap(segmenter, tile: Sequence[int]) -> int:
    """The smallest overlap at which ``tiled(segmenter, tile, overlap)`` equals the untiled output:
    at least twice the receptive field's radius, with ``tile - overlap`` on the stride's grid.

    ``segmenter`` is a :class:`Segmenter` or a
    :class:`~fcn_keras.models.receptive_field.ReceptiveField`. The tile must
    exceed the result for windows to advance; :func:`tiled` says so otherwise.

    Example:
        >>> from fcn_keras.models.receptive_field import ReceptiveField
        >>> exact_overlap(ReceptiveField(32, before=(233, 233), after=(233, 233)), (1024, 1024))
        480
    """
    field = segmenter if hasattr(segmenter, "stride") and hasattr(segmenter, "radius") else _field(segmenter)
    tile = _check_tile(tile)
    if (tile[0] - tile[1]) % field.stride:
        raise ValueError(f"tile {tile}: its height and width must differ by a multiple of the network's stride "
                         f"{field.stride}, so that one overlap puts both axes on its grid")
    need = 2 * field.radius
    return need + (tile[0] - need) % field.stride


def _field(segmenter: Segmenter):
    find = getattr(segmenter, "receptive_field", None)
    if find is None:
        raise ValueError(f"segmenter {segmenter.description!r} does not know its network's stride and receptive "
                         f"field (receptive_field is None), so it cannot be tiled exactly")
    return find()


def _check_tile(tile) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in tile)
        ok = all(int(v) == v for v in tile) and height > 0 and width > 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"tile must be (height, width) with two positive integers, got {tile!r}")
    return height, width


def _suggest(tile: tuple[int, int], overlap: int, stride: int) -> str:
    if (tile[0] - tile[1]) % stride:
        return (f"no overlap can do that for both axes: make the tile's height and width differ by a multiple of "
                f"{stride}")
    below = tile[0] - overlap - (tile[0] - overlap) % stride  # the step rounded down: a larger overlap
    options = [tile[0] - s for s in (below + stride, below) if 0 <= tile[0] - s < min(tile) and s > 0]
    return "e.g. overlap " + " or ".join(str(o) for o in sorted(set(options))) if options else \
        f"make the tile larger than {overlap + stride}"
