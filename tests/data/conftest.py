"""Fixtures for the data tests: synthetic VOC-layout datasets written to tmp dirs."""

from __future__ import annotations

import pytest

from fcn_keras.data import write_synthetic_voc


@pytest.fixture(scope="session")
def synthetic_voc(tmp_path_factory):
    """8 synthetic images of mixed sizes (VOC layout); read-only for tests."""
    return write_synthetic_voc(
        tmp_path_factory.mktemp("synthetic_voc"), num_images=8, seed=0, image_size=[(96, 128), (70, 50)]
    )
