"""What the Beam tests share: a tiny real model as a .keras file and a SavedModel, and real image files."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("apache_beam", reason="the beam extra (apache-beam) is not installed")

CLASS_NAMES = ["ground", "disc", "sky"]


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    """``{"keras": path of a .keras file, "saved_model": its TF Serving base directory}``: one tiny FCN-8s.

    Its score layers get random kernels, so that its masks hold several classes (a fresh FCN's are all 0).
    """
    import keras

    import fcn_keras
    from fcn_keras.export import export_model

    work = tmp_path_factory.mktemp("models")
    keras.utils.set_random_seed(4)  # the same encoder every run (one whose masks hold all three classes)
    model = fcn_keras.fcn8s(class_names=CLASS_NAMES, backbone="tiny_vgg", include_preprocessing=True)
    rng = np.random.default_rng(0)
    for name in ("score_fr", "score_pool4", "score_pool3"):
        layer = model.get_layer(name)
        kernel, bias = layer.get_weights()
        layer.set_weights([rng.normal(0, 1, kernel.shape).astype("float32"), np.zeros_like(bias)])
    model.save(work / "model.keras")
    export_model(work / "model.keras", work / "saved_model", verbose=False)
    return {"keras": str(work / "model.keras"), "saved_model": str(work / "saved_model")}


@pytest.fixture(scope="session")
def images(tmp_path_factory):
    """``{"good": a directory of 4 images (JPEG and PNG, two sizes), "corrupt": [junk.jpg, truncated.jpg]}``."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(1)
    good = root / "good"
    good.mkdir()
    for k, (size, suffix) in enumerate([((32, 48), ".jpg"), ((32, 48), ".jpg"), ((40, 56), ".png"),
                                        ((32, 48), ".png")]):
        Image.fromarray(_rectangles(rng, size)).save(good / f"img{k}{suffix}")
    corrupt = root / "corrupt"
    corrupt.mkdir()
    (corrupt / "junk.jpg").write_bytes(b"this is not an image")
    whole = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)).save(whole, format="JPEG")
    (corrupt / "truncated.jpg").write_bytes(whole.getvalue()[: len(whole.getvalue()) // 2])
    return {"good": good, "corrupt": [corrupt / "junk.jpg", corrupt / "truncated.jpg"]}


def _rectangles(rng, size) -> np.ndarray:
    """Coloured rectangles on black: regions a random FCN tells apart (on noise its mask is one class)."""
    pixels = np.zeros((*size, 3), np.uint8)
    for _ in range(6):
        y, x = rng.integers(0, size[0]), rng.integers(0, size[1])
        pixels[y : y + size[0] // 3, x : x + size[1] // 3] = rng.integers(0, 256, 3)
    return pixels


@pytest.fixture
def fcn_keras_cmd(capsys):
    """Runs ``fcn-keras ARGV`` in this process; returns (exit status, stdout, stderr)."""
    from fcn_keras import cli

    def run(*argv) -> tuple[int, str, str]:
        status = cli.main([str(a) for a in argv])
        captured = capsys.readouterr()
        return status, captured.out, captured.err

    return run
