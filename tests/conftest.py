"""Shared fixtures. The real datasets live outside the project, in ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("FCN_KERAS_SHARED_DATA", PROJECT_ROOT.parent / "shared" / "data"))


def _shared(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"real dataset {path} is absent (only development machines have ../shared/data)")
    return path


@pytest.fixture(scope="session")
def voc_mini() -> Path:
    """The 18 real PASCAL VOC 2012 images with official labels (VOC layout)."""
    return _shared("voc-mini")


@pytest.fixture(scope="session")
def camvid() -> Path:
    """CamVid road scenes, 11 classes, SegNet split (image/label pair lists)."""
    return _shared("camvid")
