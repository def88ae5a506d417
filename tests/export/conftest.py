"""Export test fixtures: a light FCN, a tiny per-pixel model, real PNG/JPEG files, one shared export."""
# Also imported by the fresh processes of test_saved_model.py (tiny_segmenter).

from __future__ import annotations

import contextlib
import io
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

import fcn_keras
# A small per-pixel model of fcn_keras layers with its own preprocessing, and random score layers.
from bench.bench_export import randomize_scores, tiny_fcn
from fcn_keras.models import SegmentationModel

SIZES = [(48, 64), (37, 50), (61, 45)]  # (height, width): odd sizes, not multiples of 32


def synthetic_image(height: int, width: int, seed: int) -> np.ndarray:
    """A smooth RGB image with a few blobs: structured like a photo, not noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    image = np.stack([np.sin(6 * xx + c) * np.cos(5 * yy - c) for c in rng.uniform(0, 3, 3)], -1) * 90 + 128
    for _ in range(3):
        cy, cx, r = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(4, 12)
        image[(np.mgrid[0:height, 0:width][0] - cy) ** 2 + (np.mgrid[0:height, 0:width][1] - cx) ** 2 < r * r] = \
            rng.uniform(0, 255, 3)
    return np.clip(image, 0, 255).astype(np.uint8)


def encode(image: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def tiny_segmenter(num_classes: int = 3, dtype: str | None = None, name: str = "tiny_fcn",
                   class_names=None) -> SegmentationModel:
    """bench's tiny per-pixel model (same weights every time) as a SegmentationModel: it takes RGB 0-255
    (its own "tf" preprocessing layer) and knows its classes."""
    plain = tiny_fcn(num_classes, dtype=dtype, name=name)
    return SegmentationModel(plain.input, plain.output, architecture="tiny_fcn", backbone="tiny",
                             class_names=class_names, preprocessing="tf", include_preprocessing=True, name=name)


@pytest.fixture(scope="session")
def light_model() -> keras.Model:
    """FCN-8s over MobileNetV2, 5 classes, random score layers, no preprocessing layer ("tf" is added)."""
    keras.utils.set_random_seed(0)
    return randomize_scores(fcn_keras.fcn8s(num_classes=5, backbone="mobilenet_v2"))


@pytest.fixture(scope="session")
def tiny_model() -> SegmentationModel:
    return tiny_segmenter()


@pytest.fixture(scope="session")
def images() -> list[np.ndarray]:
    return [synthetic_image(h, w, seed) for seed, (h, w) in enumerate(SIZES)]


@pytest.fixture(scope="session")
def light_logits(light_model, images) -> list[np.ndarray]:
    """Keras' logits of light_model on each of ``images`` (computed once: several tests compare with them)."""
    from fcn_keras.export.parity import keras_logits

    return keras_logits(light_model, images)


@pytest.fixture(scope="session")
def image_files(tmp_path_factory, images) -> list:
    """The images as real PNG files (lossless: decoded pixels are exactly ``images``)."""
    directory = tmp_path_factory.mktemp("images")
    paths = []
    for i, image in enumerate(images):
        path = directory / f"image{i}.png"
        path.write_bytes(encode(image, "PNG"))
        paths.append(path)
    return paths


@contextlib.contextmanager
def umask(mask: int):
    """Runs the block under the process umask ``mask`` (restored after)."""
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def tree_modes(root) -> dict[str, int]:
    """``{relative path: permission bits}`` of ``root`` and everything below it."""
    root = Path(root)
    return {str(p.relative_to(root)): mode(p) for p in [root, *root.rglob("*")]}


def assert_other_user_can_read(root) -> None:
    """Every directory of ``root`` is 0755 and every file 0644 (a plain write under umask 022); when this
    process may, a real reader running as user ``nobody`` then reads every file."""
    modes = tree_modes(root)
    wrong = {p: oct(m) for p, m in modes.items() if m != (0o755 if (Path(root) / p).is_dir() else 0o644)}
    assert not wrong, f"not plain modes under umask 022: {wrong}"
    if os.geteuid() == 0 and shutil.which("find") and shutil.which("cat"):
        reader = subprocess.run(["find", str(root), "-type", "f", "-exec", "cat", "{}", "+"], user=65534,
                                group=65534, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        assert reader.returncode == 0, reader.stderr


@pytest.fixture(scope="session")
def model_dir(light_model, tiny_model):
    """One serving base directory: version 1 = light FCN (with scores), version 2 = tiny model.

    It is exported under umask 022 into a directory anyone may enter (pytest's own temporary
    directories are 0700), so tests can read it as another user, as TF Serving would.
    """
    from fcn_keras.export import export_saved_model

    parent = Path(tempfile.mkdtemp(prefix="fcn-keras-serving-"))
    parent.chmod(0o755)
    base = parent / "fcn"
    with umask(0o022):
        export_saved_model(light_model, base, scores=True, verbose=False)
        export_saved_model(tiny_segmenter(class_names=["sky", "road", "car"]), base, verbose=False)
    yield base
    shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture(scope="session")
def loaded(model_dir):
    import tensorflow as tf

    return tf.saved_model.load(str(model_dir / "1"))
