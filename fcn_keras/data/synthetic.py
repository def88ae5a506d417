"""A small synthetic dataset written to disk in the PASCAL VOC layout.

Real JPEG images and palette label PNGs of simple shapes (rectangles, ellipses,
triangles) on textured backgrounds, with a void (255) band along every object
boundary as in VOC. Each class has its own colour, the same for every seed, so a
model trained on one seed's images can be evaluated on another's. It is input
to the real readers, not a mock of them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from fcn_keras.files import atomic_path, write_text
from fcn_keras.palette import IGNORE_LABEL, voc_palette

Size = tuple[int, int]


def class_colors(num_classes: int) -> np.ndarray:
    """The fixed RGB colour of each class's objects (``uint8 [num_classes, 3]``), seed-independent."""
    rng = np.random.default_rng(12345)
    return rng.integers(40, 256, size=(num_classes, 3)).astype(np.uint8)


def _save(image: Image.Image, path: Path, **kwargs) -> None:
    with atomic_path(path) as tmp:
        image.save(tmp, **kwargs)


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    # Low-frequency noise plus a gradient and faint stripes: texture, not a flat colour.
    coarse = rng.uniform(60, 180, size=(max(height // 16, 2), max(width // 16, 2), 3))
    texture = np.asarray(
        Image.fromarray(coarse.astype(np.uint8)).resize((width, height), Image.BILINEAR), dtype=np.float32
    )
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    stripes = 12 * np.sin((xx * np.cos(angle) + yy * np.sin(angle)) / rng.uniform(3, 8))
    gradient = 30 * (yy / max(height - 1, 1) - 0.5)
    image = texture + (stripes + gradient)[..., None] + rng.normal(0, 6, size=texture.shape)
    return image


def _draw_object(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A boolean mask of one random rectangle, ellipse or triangle."""
    mask = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(mask)
    h = rng.integers(max(height // 5, 4), max(height // 2, 5))
    w = rng.integers(max(width // 5, 4), max(width // 2, 5))
    y0 = rng.integers(0, max(height - h, 1))
    x0 = rng.integers(0, max(width - w, 1))
    box = [int(x0), int(y0), int(x0 + w), int(y0 + h)]
    kind = rng.integers(3)
    if kind == 0:
        draw.rectangle(box, fill=1)
    elif kind == 1:
        draw.ellipse(box, fill=1)
    else:
        apex = int(x0 + rng.integers(0, w))
        draw.polygon([(apex, box[1]), (box[0], box[3]), (box[2], box[3])], fill=1)
    return np.asarray(mask, dtype=bool)


def synthetic_example(
    rng: np.random.Generator, height: int, width: int, num_classes: int, max_objects: int, void_width: int
) -> tuple[np.ndarray, np.ndarray]:
    """One ``(image uint8 [H,W,3], label uint8 [H,W])`` pair drawn from ``rng``."""
    colors = class_colors(num_classes).astype(np.float32)
    image = _background(rng, height, width)
    label = np.zeros((height, width), np.uint8)
    for _ in range(int(rng.integers(1, max_objects + 1))):
        cls = int(rng.integers(1, num_classes))
        mask = _draw_object(rng, height, width)
        shade = colors[cls] + rng.normal(0, 10, size=(height, width, 3))
        image[mask] = shade[mask]
        label[mask] = cls
    if void_width > 0:
        # VOC marks a void band along object boundaries: pixels whose neighbourhood mixes classes.
        size = 2 * void_width + 1
        as_image = Image.fromarray(label, "L")
        high = np.asarray(as_image.filter(ImageFilter.MaxFilter(size)))
        low = np.asarray(as_image.filter(ImageFilter.MinFilter(size)))
        label = np.where(high != low, IGNORE_LABEL, label).astype(np.uint8)
    return np.clip(image, 0, 255).astype(np.uint8), label


def write_synthetic_voc(
    root: str | os.PathLike,
    num_images: int = 16,
    seed: int = 0,
    *,
    image_size: Size | Sequence[Size] = (96, 128),
    num_classes: int = 21,
    val_fraction: float = 0.25,
    max_objects: int = 3,
    void_width: int = 1,
    jpeg_quality: int = 90,
) -> Path:
    """Writes a VOC-layout synthetic dataset under ``root`` and returns ``root``.

    Creates ``JPEGImages/<id>.jpg``, ``SegmentationClass/<id>.png`` (palette PNGs
    with the VOC colour map; values 0..num_classes-1 and 255 on object borders)
    and ``ImageSets/Segmentation/{train,val,trainval}.txt``. Ids are
    ``synth_000000``, ...; every ``round(1/val_fraction)``-th image is in ``val``
    (at least one when ``num_images > 1``).
    ``image_size`` is one ``(height, width)`` or a list to draw sizes from.
    The output depends only on the arguments (deterministic from ``seed``).

    Example:
        >>> import tempfile
        >>> root = write_synthetic_voc(tempfile.mkdtemp(), num_images=8, seed=0)
        >>> sorted(p.name for p in (root / "ImageSets" / "Segmentation").iterdir())
        ['train.txt', 'trainval.txt', 'val.txt']
    """
    if num_images < 1:
        raise ValueError(f"num_images must be >= 1, got {num_images}")
    if not 2 <= num_classes <= 255:
        raise ValueError(f"num_classes must be in [2, 255], got {num_classes}")
    sizes = [tuple(image_size)] if isinstance(image_size[0], int) else [tuple(s) for s in image_size]
    root = Path(root)
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    palette = voc_palette(256).tobytes()
    ids = [f"synth_{i:06d}" for i in range(num_images)]
    every = max(int(round(1 / val_fraction)), 2) if val_fraction > 0 else 0
    val = [i for n, i in enumerate(ids) if every and n % every == every - 1]
    if every and not val and num_images > 1:
        val = ids[-1:]  # small datasets still get a non-empty val split
    train = [i for i in ids if i not in set(val)]
    for example_id in ids:
        height, width = sizes[int(rng.integers(len(sizes)))]
        image, label = synthetic_example(rng, height, width, num_classes, max_objects, void_width)
        _save(Image.fromarray(image, "RGB"), root / "JPEGImages" / f"{example_id}.jpg",
              format="JPEG", quality=jpeg_quality)
        label_image = Image.fromarray(label, "P")
        label_image.putpalette(palette)
        _save(label_image, root / "SegmentationClass" / f"{example_id}.png", format="PNG")
    splits = root / "ImageSets" / "Segmentation"
    for name, members in (("train", train), ("val", val), ("trainval", ids)):
        write_text(splits / f"{name}.txt", "".join(f"{i}\n" for i in members))
    return root
