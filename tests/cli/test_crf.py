"""``fcn-keras predict --crf`` and ``fcn-keras evaluate --crf`` on image files: the masks are the CRF's."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

from fcn_keras.crf import DenseCRF
from fcn_keras.palette import voc_palette
from tests.test_crf import edge_example, edge_logits, edge_model


@pytest.fixture(scope="module")
def edge_files(tmp_path_factory):
    """A saved edge model, and a VOC-layout val split of edge images (PNG copies of the images too)."""
    root = tmp_path_factory.mktemp("crf")
    model = edge_model()
    model.save(root / "edge.keras")
    rng = np.random.default_rng(5)
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation", "png"):
        (root / "voc" / sub).mkdir(parents=True, exist_ok=True)
    ids = [f"edge_{i}" for i in range(3)]
    for name in ids:
        image, label = edge_example(rng)
        Image.fromarray(image).save(root / "voc" / "png" / f"{name}.png")
        Image.fromarray(image).save(root / "voc" / "JPEGImages" / f"{name}.jpg", quality=95)
        mask = Image.fromarray(label.astype(np.uint8), "P")
        mask.putpalette(voc_palette(256).tobytes())
        mask.save(root / "voc" / "SegmentationClass" / f"{name}.png")
    (root / "voc" / "ImageSets" / "Segmentation" / "val.txt").write_text("".join(f"{i}\n" for i in ids))
    return root, model


def test_predict_with_the_crf_writes_the_crfs_labels(edge_files, tmp_path, fcn_keras_cmd):
    root, model = edge_files
    images = root / "voc" / "png"
    status, out, err = fcn_keras_cmd("predict", root / "edge.keras", images, "--out", tmp_path / "crf", "--crf",
                                     "--crf-params", "max_iter=8")
    assert status == 0, err
    assert "dense CRF (max_iter=8, pos_w=3, pos_xy_std=3, bi_w=5, bi_xy_std=50, bi_rgb_std=10)" in out
    status, _, err = fcn_keras_cmd("predict", root / "edge.keras", images, "--out", tmp_path / "plain")
    assert status == 0, err
    for path in sorted(images.glob("*.png")):
        image = np.asarray(Image.open(path).convert("RGB"))
        refined = np.asarray(Image.open(tmp_path / "crf" / f"{path.stem}_mask.png"))
        plain = np.asarray(Image.open(tmp_path / "plain" / f"{path.stem}_mask.png"))
        np.testing.assert_array_equal(refined, DenseCRF(max_iter=8).labels(image, edge_logits(model, image)))
        assert (refined != plain).sum() >= 4 * image.shape[0] - 8  # the shifted columns moved back


def mean_iou(out: str) -> float:
    return float(re.search(r"mean_iou:\s+([\d.]+)", out).group(1))


def test_evaluate_with_the_crf_scores_higher_on_edges(edge_files, fcn_keras_cmd):
    root, _ = edge_files
    args = ["evaluate", root / "edge.keras", root / "voc", "--split", "val", "--num-classes", "2"]
    status, plain, err = fcn_keras_cmd(*args)
    assert status == 0, err
    status, refined, err = fcn_keras_cmd(*args, "--crf")
    assert status == 0, err
    assert "refined by the dense CRF" in refined and "dense CRF: max_iter=10" in refined
    assert mean_iou(plain) < 90 < 97 < mean_iou(refined)


@pytest.mark.parametrize("argv, message", [
    (["--crf", "--crf-params", "bi_w=4,bi_x=1"], "unknown parameter 'bi_x'"),
    (["--crf-params", "bi_w=4"], "--crf-params sets the parameters of --crf"),
    (["--crf", "--tile", "32,32"], "--crf with --tile"),
])
def test_crf_options_are_checked(edge_files, tmp_path, fcn_keras_cmd, argv, message):
    root, _ = edge_files
    for command in (["predict", root / "edge.keras", root / "voc" / "png", "--out", tmp_path / "o"],
                    ["evaluate", root / "edge.keras", root / "voc", "--num-classes", "2"]):
        status, _, err = fcn_keras_cmd(*command, *argv)
        assert status == 1 and message in err and len(err.strip().splitlines()) == 1, err
