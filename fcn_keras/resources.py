"""Locates the project's declarative files: model cards and training recipes under ``zoo/``.

In a source checkout they are read from the top-level ``zoo/`` folder; an
installed wheel carries the same folder as the package ``fcn_keras.zoo_files``.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

_CHECKOUT_ZOO = Path(__file__).resolve().parents[1] / "zoo"


def zoo_path(*parts: str) -> Path:
    """Path of ``zoo/<parts...>``, e.g. ``zoo_path("cards", "fcn8s_voc.toml")``.

    Example:
        >>> zoo_path("cards").name
        'cards'
    """
    if _CHECKOUT_ZOO.is_dir():
        return _CHECKOUT_ZOO.joinpath(*parts)
    return Path(str(importlib.resources.files("fcn_keras.zoo_files").joinpath(*parts)))
