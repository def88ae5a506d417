"""The fully connected CRF: it pulls a misplaced boundary onto the image's edge, and evaluate(crf=...) scores that."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import keras

from fcn_keras.crf import DEEPLAB_LARGEFOV, DenseCRF, crf_segmenter, dense_crf, resolve_crf
from fcn_keras.evaluation import evaluate
from fcn_keras.models import SegmentationModel

SHIFT = 4
"""Columns by which :func:`edge_model`'s boundary lies right of the image's."""


def edge_example(rng, height: int = 48, width: int = 64):
    """A dark left part and a bright right part split at a random column (label 1 on the right), with noise."""
    edge = int(rng.integers(width // 4, 3 * width // 4))
    image = np.full((height, width, 3), 40.0)
    image[:, edge:] = 200
    image = np.clip(image + rng.normal(0, 6, image.shape), 0, 255).astype(np.uint8)
    label = np.zeros((height, width), np.int32)
    label[:, edge:] = 1
    return image, label


def edge_model() -> SegmentationModel:
    """Class 1 where the red channel is bright, but SHIFT columns late: a prediction blurred off the true edge."""
    image = keras.Input((None, None, 3), name="image")
    bright = keras.layers.Conv2D(2, 1, name="bright", kernel_initializer=keras.initializers.Constant(
        np.array([[[[0.0, 4.0], [0.0, 0.0], [0.0, 0.0]]]], np.float32).reshape(1, 1, 3, 2)))(image)
    shifted = keras.layers.ZeroPadding2D(((0, 0), (SHIFT, 0)))(bright)
    scores = keras.layers.Cropping2D(((0, 0), (0, SHIFT)), dtype="float32", name="score")(shifted)
    return SegmentationModel(image, scores, architecture="edge", backbone="none", class_names=["dark", "bright"],
                             preprocessing="tf")


def edge_logits(model, image: np.ndarray) -> np.ndarray:
    from fcn_keras.preprocessing import preprocess

    return keras.ops.convert_to_numpy(model(preprocess(image[None].astype(np.float32), "tf")))[0]


@pytest.fixture(scope="module")
def model():
    return edge_model()


def test_the_crf_moves_a_misplaced_boundary_onto_the_images_edge(model):
    rng = np.random.default_rng(0)
    for _ in range(3):
        image, label = edge_example(rng)
        logits = edge_logits(model, image)
        logits += rng.normal(0, 1.0, logits.shape).astype(np.float32)  # and speckle
        before = (logits.argmax(-1) == label).mean()
        refined = DenseCRF().labels(image, logits)
        after = (refined == label).mean()
        assert before < 0.9 and after > 0.98, (before, after)
        probabilities = DenseCRF().probabilities(image, logits)
        assert probabilities.dtype == np.float32 and probabilities.shape == logits.shape
        np.testing.assert_allclose(probabilities.sum(-1), 1, atol=1e-5)
        np.testing.assert_array_equal(probabilities.argmax(-1), refined)


def test_without_pairwise_terms_it_is_the_softmax():
    """The unary is -logits and inference starts from their softmax, as DeepLab's DENSE_CRF layer."""
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (9, 11, 3)).astype(np.uint8)
    logits = rng.normal(0, 2, (9, 11, 4)).astype(np.float32)
    q = DenseCRF(pos_w=0, bi_w=0, max_iter=3).probabilities(image, logits)
    softmax = np.exp(logits - logits.max(-1, keepdims=True))
    np.testing.assert_allclose(q, softmax / softmax.sum(-1, keepdims=True), atol=1e-4)
    # A per-pixel constant added to the logits changes nothing (so -logits is -log softmax for mean field).
    shifted = logits + rng.normal(0, 5, (9, 11, 1)).astype(np.float32)
    np.testing.assert_allclose(DenseCRF().probabilities(image, shifted), DenseCRF().probabilities(image, logits),
                               atol=1e-4)


def test_defaults_are_deeplab_largefovs_released_test_prototxt():
    assert DEEPLAB_LARGEFOV.params() == {"max_iter": 10, "pos_w": 3.0, "pos_xy_std": 3.0, "bi_w": 5.0,
                                         "bi_xy_std": 50.0, "bi_rgb_std": 10.0}


def test_parameters_are_validated():
    with pytest.raises(ValueError, match="unknown parameter 'bi_x'.*max_iter, pos_w"):
        DenseCRF.parse("bi_w=4,bi_x=3")
    with pytest.raises(ValueError, match="unknown parameter 'sigma'"):
        resolve_crf({"sigma": 3})
    with pytest.raises(ValueError, match="unknown parameter 'iterations'"):
        dense_crf(np.zeros((2, 2, 3), np.uint8), np.zeros((2, 2, 2), np.float32), iterations=3)
    with pytest.raises(ValueError, match="'bi_w' is not KEY=VALUE"):
        DenseCRF.parse("bi_w")
    with pytest.raises(ValueError, match=r"bi_w='four' is not a number"):
        DenseCRF.parse("bi_w=four")
    with pytest.raises(ValueError, match="bi_xy_std must be a positive number"):
        DenseCRF(bi_xy_std=0)
    with pytest.raises(ValueError, match="pos_w must be a non-negative number"):
        DenseCRF(pos_w=-1)
    with pytest.raises(ValueError, match="max_iter must be a positive integer"):
        DenseCRF.parse("max_iter=2.5")
    with pytest.raises(ValueError, match="crf must be None, True"):
        resolve_crf(3)
    assert DenseCRF.parse("max_iter=5, bi_w=4").params() == {**DEEPLAB_LARGEFOV.params(), "max_iter": 5, "bi_w": 4.0}
    crf = DenseCRF()
    with pytest.raises(ValueError, match="image must be uint8"):
        crf.labels(np.zeros((2, 2, 3), np.float32), np.zeros((2, 2, 2), np.float32))
    with pytest.raises(ValueError, match=r"logits must be \(H, W, C\) of the image's size \(2, 2\)"):
        crf.labels(np.zeros((2, 2, 3), np.uint8), np.zeros((2, 3, 2), np.float32))
    with pytest.raises(ValueError, match="must be finite"):
        crf.labels(np.zeros((2, 2, 3), np.uint8), np.full((2, 2, 2), np.nan, np.float32))


def test_without_pydensecrf2_the_error_names_the_extra(monkeypatch, model):
    monkeypatch.setitem(sys.modules, "pydensecrf", None)
    monkeypatch.setitem(sys.modules, "pydensecrf.densecrf", None)
    with pytest.raises(ImportError, match=r"pydensecrf2.*pip install 'fcn_keras\[crf\]'"):
        DenseCRF().labels(np.zeros((2, 2, 3), np.uint8), np.zeros((2, 2, 2), np.float32))
    # evaluate says so before running any image.
    with pytest.raises(ImportError, match=r"fcn_keras\[crf\]"):
        evaluate(model, iter(()), crf=True, verbose=0)


def test_evaluate_with_the_crf_scores_the_refined_labels(model, tmp_path):
    rng = np.random.default_rng(2)
    pairs = [edge_example(rng) for _ in range(4)]
    plain = evaluate(model, pairs, verbose=0)
    refined = evaluate(model, pairs, crf={"max_iter": 10}, batch_size=2, verbose=0, out_json=tmp_path / "m.json")
    assert plain["mean_iou"] < 0.9 < 0.97 < refined["mean_iou"], (plain["mean_iou"], refined["mean_iou"])
    assert refined["crf"] == DEEPLAB_LARGEFOV.params() and "crf" not in plain
    assert '"bi_xy_std": 50.0' in (tmp_path / "m.json").read_text()
    want = np.zeros((2, 2), np.int64)
    for image, label in pairs:
        got = DenseCRF().labels(image, edge_logits(model, image))
        want += np.bincount(2 * label.ravel() + got.ravel(), minlength=4).reshape(2, 2)
    np.testing.assert_array_equal(refined["confusion_matrix"], want)
    with pytest.raises(ValueError, match="crf with tile"):
        evaluate(model, pairs, crf=True, tile=(32, 32), verbose=0)


def test_crf_segmenter_segments_with_the_crf(model):
    from fcn_keras.segmenter import keras_segmenter

    image, _ = edge_example(np.random.default_rng(3))
    segmenter = crf_segmenter(keras_segmenter(model), True)
    np.testing.assert_array_equal(segmenter.segment(image), DenseCRF().labels(image, edge_logits(model, image)))
    assert segmenter.receptive_field is None and "dense CRF" in segmenter.description
    assert crf_segmenter(keras_segmenter(model), None).receptive_field is not None


def test_read_only_arrays_are_accepted():
    """np.asarray of a PIL image is read-only, which pydensecrf's buffers refuse on their own."""
    image = np.zeros((4, 5, 3), np.uint8)
    logits = np.zeros((4, 5, 2), np.float32)
    image.flags.writeable = logits.flags.writeable = False
    assert DenseCRF(max_iter=1).labels(image, logits).shape == (4, 5)
