"""What the REST and gRPC clients share: reading images, cropping and colouring masks.

A mask row from ``serving_default`` is padded to the largest image of the batch
(with -1); ``height``/``width`` say how much of it belongs to the image.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from fcn_keras.files import atomic_path
from fcn_keras.palette import voc_palette


def read_images(paths: list[str]) -> list[bytes]:
    """The encoded bytes of each JPEG/PNG file, sent as they are (the server decodes)."""
    data = []
    for path in paths:
        try:
            data.append(Path(path).read_bytes())
        except OSError as exc:
            raise SystemExit(f"cannot read image {path!r}: {exc}") from exc
    return data


def colour_mask(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """The image's part of a padded mask, as VOC-palette RGB ``(height, width, 3)`` uint8."""
    mask = np.asarray(mask)[:height, :width]
    if mask.size and mask.min() < 0:
        raise ValueError(f"mask has padding (-1) inside the image's {height}x{width}: server and client disagree")
    return voc_palette(max(256, int(mask.max(initial=0)) + 1))[mask]


def save_masks(paths: list[str], masks, heights, widths, out_dir: str) -> list[Path]:
    """Writes ``<out_dir>/<image stem>_mask.png`` for each image; returns the written paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path, mask, h, w in zip(paths, masks, heights, widths):
        target = out / f"{Path(path).stem}_mask.png"
        with atomic_path(target) as tmp:  # a viewer polling out_dir never sees half a PNG
            Image.fromarray(colour_mask(mask, int(h), int(w))).save(tmp, format="PNG")
        written.append(target)
    return written


def parser(description: str, default_address: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("images", nargs="+", help="JPEG or PNG files")
    p.add_argument("--server", default=default_address, help=f"server address (default {default_address})")
    p.add_argument("--model", default="fcn", help="model name in models.config (default fcn)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--version", type=int, help="a model version number")
    which.add_argument("--label", help="a version label from models.config, e.g. stable")
    p.add_argument("--out", default="masks", help="directory for the coloured masks (default masks/)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the server")
    return p


def run(description: str, default_address: str, segment: Callable, argv: list[str] | None = None) -> list[Path]:
    """A client's command line: parse ``argv``, ``segment(args, images) -> (masks, heights, widths)``, save.

    Server errors (``RuntimeError``) end the program with their message when run as a script.
    """
    args = parser(description, default_address).parse_args(argv)
    try:
        masks, heights, widths = segment(args, read_images(args.images))
    except RuntimeError as exc:
        if argv is None:
            sys.exit(str(exc))
        raise
    written = save_masks(args.images, masks, heights, widths, args.out)
    for path in written:
        print(path)
    return written
