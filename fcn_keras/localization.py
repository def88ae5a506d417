"""Weak localization from class activation maps (Zhou et al., CVPR 2016, §3.1), and pictures of it.

The paper's rule: keep the region whose value is above 20 % of the map's
maximum, and take the bounding box of its largest connected component
(:func:`localize`). Connected components are labelled here with NumPy alone
(runs of each row joined by union-find, :func:`label_components`), so the
package needs no SciPy. :func:`cam_overlay` draws a map as a jet heat map
blended on the image, with the box.

The authors' released box generator (``bboxgenerator/dt_box.cpp``) differs from
the paper's text: it thresholds the map (scaled to 0-255) at three levels
(20, 100, 110 in ``generate_bbox.m``), applies a distance transform, and keeps
every contour's box after merging overlapping ones. This module follows the
paper.

Example:
    >>> import numpy as np
    >>> cam = np.zeros((6, 8)); cam[1:3, 1:4] = 1.0; cam[4, 6] = 0.5
    >>> localize(cam)
    Box(left=1, top=1, right=4, bottom=3)
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from PIL import Image, ImageDraw

PAPER_THRESHOLD = 0.2
"""The fraction of the map's maximum above which the paper keeps pixels."""

BOX_COLOR = (0, 255, 0)
"""The box's colour in :func:`cam_overlay`: green, which the jet heat map never shows at full strength."""


class Box(NamedTuple):
    """A pixel box: columns ``left <= x < right``, rows ``top <= y < bottom`` (PIL's crop-box convention)."""

    left: int
    top: int
    right: int
    bottom: int

    @property
    def area(self) -> int:
        return (self.right - self.left) * (self.bottom - self.top)


def _as_map(cam) -> np.ndarray:
    cam = np.asarray(cam, dtype=np.float64)
    if cam.ndim != 2 or not cam.size:
        raise ValueError(f"a class activation map must be a non-empty (height, width) array, got shape {cam.shape}")
    if not np.isfinite(cam).all():
        raise ValueError("the class activation map holds non-finite values")
    return cam


def label_components(mask, connectivity: int = 8) -> tuple[np.ndarray, int]:
    """Labels the connected components of a boolean mask: ``(labels, count)``, background 0, others 1..count.

    ``connectivity`` 8 joins diagonal neighbours (OpenCV's contours, which the
    authors' box generator uses, do), 4 only edge neighbours. Components are
    numbered in the raster order of their first pixel, as ``scipy.ndimage.label`` does.

    Example:
        >>> mask = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]], bool)
        >>> label_components(mask)[1], label_components(mask, connectivity=4)[1]
        (1, 3)
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"a mask must have shape (height, width), got {mask.shape}")
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity!r}")
    reach = 1 if connectivity == 8 else 0  # how far past a run's ends a run of the next row may start
    rows, starts, ends = [], [], []
    padded = np.zeros((mask.shape[0], mask.shape[1] + 2), np.int8)
    padded[:, 1:-1] = mask
    edges = np.diff(padded, axis=1)
    for y in range(mask.shape[0]):
        run_starts, run_ends = np.flatnonzero(edges[y] == 1), np.flatnonzero(edges[y] == -1)
        rows += [y] * len(run_starts)
        starts += run_starts.tolist()
        ends += run_ends.tolist()
    parent = list(range(len(rows)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    # Runs of consecutive rows touch when their column ranges, widened by `reach`, overlap.
    previous: list[int] = []
    i = 0
    while i < len(rows):
        y = rows[i]
        current = []
        while i < len(rows) and rows[i] == y:
            current.append(i)
            i += 1
        if previous and rows[previous[0]] == y - 1:
            k = 0
            for run in current:
                while k < len(previous) and ends[previous[k]] + reach <= starts[run]:
                    k += 1
                j = k
                while j < len(previous) and starts[previous[j]] < ends[run] + reach:
                    a, b = root(run), root(previous[j])
                    if a != b:
                        parent[max(a, b)] = min(a, b)
                    j += 1
        previous = current
    labels = np.zeros(mask.shape, np.int32)
    numbers: dict[int, int] = {}
    for run in range(len(rows)):  # runs are in raster order, so are the first runs of the components
        number = numbers.setdefault(root(run), len(numbers) + 1)
        labels[rows[run], starts[run]:ends[run]] = number
    return labels, len(numbers)


def localize(cam, threshold: float = PAPER_THRESHOLD, connectivity: int = 8) -> Box | None:
    """The paper's weak localization: the box of the largest component of ``cam > threshold * cam.max()``.

    ``cam`` is one class's map at the image's size. Returns ``None`` when the
    map's maximum is not positive (no pixel is above a fraction of it). Of
    equally large components, the first in raster order wins.

    Example:
        >>> cam = np.zeros((5, 5)); cam[0, 0] = 1.0; cam[2:5, 2:5] = 0.3
        >>> localize(cam), localize(cam, threshold=0.5)
        (Box(left=2, top=2, right=5, bottom=5), Box(left=0, top=0, right=1, bottom=1))
    """
    cam = _as_map(cam)
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold is a fraction of the map's maximum in [0, 1), got {threshold!r}")
    peak = cam.max()
    if peak <= 0:
        return None
    labels, count = label_components(cam > threshold * peak, connectivity)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    largest = int(np.argmax(sizes[1:])) + 1
    ys, xs = np.nonzero(labels == largest)
    return Box(int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)


def jet(values) -> np.ndarray:
    """MATLAB's ``jet`` colour map (the authors' ``map2jpg.m``): values in [0, 1] to RGB ``uint8``.

    Example:
        >>> jet(np.array([0.0, 0.5, 1.0])).tolist()
        [[0, 0, 128], [128, 255, 128], [128, 0, 0]]
    """
    t = np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0)[..., None]
    rgb = np.clip(1.5 - np.abs(4.0 * t - np.array([3.0, 2.0, 1.0])), 0.0, 1.0)
    return np.round(rgb * 255).astype(np.uint8)


def heatmap(cam) -> np.ndarray:
    """A map in the jet colours, scaled from its minimum (blue) to its maximum (red), as ``map2jpg.m`` does.

    Example:
        >>> heatmap(np.array([[0.0, 2.0]])).tolist()
        [[[0, 0, 128], [128, 0, 0]]]
    """
    cam = _as_map(cam)
    span = cam.max() - cam.min()
    return jet((cam - cam.min()) / span if span > 0 else np.zeros_like(cam))


def cam_overlay(image, cam, box: Box | None = None, alpha: float = 0.5, line_width: int = 2) -> np.ndarray:
    """The heat map of ``cam`` blended on ``image`` (``(1 - alpha) * image + alpha * heat``), with ``box`` drawn.

    ``cam`` has the image's height and width. Returns RGB ``uint8``.

    Example:
        >>> image = np.full((6, 8, 3), 100, np.uint8)
        >>> cam = np.zeros((6, 8)); cam[2:4, 2:6] = 1.0
        >>> out = cam_overlay(image, cam, localize(cam), alpha=0.5)
        >>> out[2, 2].tolist(), out[0, 0].tolist()  # the box's corner, a cold pixel
        ([0, 255, 0], [50, 50, 114])
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"an image must have shape (height, width, 3), got {image.shape}")
    cam = _as_map(cam)
    if cam.shape != image.shape[:2]:
        raise ValueError(f"the map {cam.shape} and the image {image.shape[:2]} sizes differ")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    blended = np.round((1.0 - alpha) * image.astype(np.float64) + alpha * heatmap(cam)).astype(np.uint8)
    if box is None:
        return blended
    picture = Image.fromarray(blended)
    ImageDraw.Draw(picture).rectangle((box.left, box.top, box.right - 1, box.bottom - 1), outline=BOX_COLOR,
                                      width=line_width)
    return np.asarray(picture).copy()
