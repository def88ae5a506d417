"""The paper's metrics: a direct transcription of score.py, the Keras metric, 64-bit counts."""

from __future__ import annotations

import numpy as np
import pytest
import keras

from fcn_keras.losses import SegmentationCrossEntropy
from fcn_keras.metrics import SegmentationMetrics, segmentation_scores

pytestmark = pytest.mark.backend_agnostic


def _score_py(labels, predictions, n):
    """score.py's fast_hist and compute_hist formulas, written out independently."""
    hist = np.zeros((n, n), np.int64)
    for a, b in zip(labels, predictions):
        a, b = a.ravel(), b.ravel()
        k = (a >= 0) & (a < n)
        hist += np.bincount(n * a[k].astype(int) + b[k], minlength=n**2).reshape(n, n)
    with np.errstate(divide="ignore", invalid="ignore"):
        acc = np.diag(hist).sum() / hist.sum()
        macc = np.nanmean(np.diag(hist) / hist.sum(1))
        iu = np.diag(hist) / (hist.sum(1) + hist.sum(0) - np.diag(hist))
        freq = hist.sum(1) / hist.sum()
    return hist, acc, macc, np.nanmean(iu), (freq[freq > 0] * iu[freq > 0]).sum(), iu


def _random_maps(seed, n=5, shapes=((17, 23), (9, 31), (20, 20))):
    rng = np.random.default_rng(seed)
    labels, preds = [], []
    for shape in shapes:
        lab = rng.integers(0, n - 1, size=shape)  # the last class is absent from the labels
        lab[rng.random(shape) < 0.2] = 255
        pred = np.where(rng.random(shape) < 0.6, np.where(lab == 255, 0, lab), rng.integers(0, n, size=shape))
        labels.append(lab)
        preds.append(pred)
    return labels, preds


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_segmentation_scores_equal_score_py(seed):
    labels, preds = _random_maps(seed)
    hist, acc, macc, miu, fwiu, iu = _score_py(labels, preds, 5)
    s = segmentation_scores(labels, preds, 5)
    np.testing.assert_array_equal(s["confusion_matrix"], hist)
    assert s["confusion_matrix"].dtype == np.int64
    np.testing.assert_allclose(
        [s["pixel_accuracy"], s["mean_accuracy"], s["mean_iou"], s["frequency_weighted_iou"]],
        [acc, macc, miu, fwiu], rtol=1e-12)
    np.testing.assert_allclose(s["per_class_iou"], iu, rtol=1e-12)
    assert s["confusion_matrix"].sum() == sum(int((l != 255).sum()) for l in labels)  # 255 skipped


def _one_hot_logits(pred, n):
    return np.eye(n, dtype="float32")[pred] * 5.0 - 1.0


@pytest.mark.parametrize("logit_dtype", ["float32", "float16"])
def test_keras_metric_equals_numpy_scores(logit_dtype):
    labels, preds = _random_maps(3, shapes=((17, 23),) * 4)
    metric = SegmentationMetrics(num_classes=5)
    for i in range(0, 4, 2):  # two batches of two
        metric.update_state(np.stack(labels[i:i + 2]), _one_hot_logits(np.stack(preds[i:i + 2]), 5).astype(logit_dtype))
    expected = segmentation_scores(labels, preds, 5)
    np.testing.assert_array_equal(metric.confusion_matrix(), expected["confusion_matrix"])
    result = metric.result()
    for name in ("pixel_accuracy", "mean_accuracy", "mean_iou", "frequency_weighted_iou"):
        np.testing.assert_allclose(float(result[name]), expected[name], rtol=1e-5)
    np.testing.assert_allclose(metric.scores()["per_class_iou"], expected["per_class_iou"], rtol=1e-12)
    metric.reset_state()
    assert metric.confusion_matrix().sum() == 0
    assert np.isnan(float(metric.result()["mean_iou"]))


def test_counts_are_exact_past_2_to_the_31():
    metric = SegmentationMetrics(num_classes=2)
    start = 2**31 - 5
    # Put the matrix in the state 2**31 - 5 counts in cell (1, 0) and 2**40 + 3 in (0, 0)...
    metric.add_counts(np.zeros((2, 2), "int32"))
    for _ in range(0, 4):  # ... by adding counts below 2**31 each time, as update_state does
        metric.add_counts(np.array([[2**30 - 2**28, 0], [start // 4, 0]], "int32"))
    metric.add_counts(np.array([[0, 0], [start - 4 * (start // 4), 0]], "int32"))
    assert metric.confusion_matrix()[1, 0] == start
    # ... then count 10 more pixels of label 1 predicted 0 through update_state.
    labels = np.ones((1, 2, 5), "int32")
    logits = _one_hot_logits(np.zeros((1, 2, 5), int), 2)
    metric.update_state(labels, logits)
    hist = metric.confusion_matrix()
    assert hist.dtype == np.int64
    assert hist[1, 0] == 2**31 + 5 and hist[0, 0] == 4 * (2**30 - 2**28)
    np.testing.assert_allclose(float(metric.result()["pixel_accuracy"]), hist[0, 0] / hist.sum(), rtol=1e-6)


def test_metric_in_fit_and_evaluate_logs_the_four_scores():
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(3, 1, kernel_initializer="zeros")(inputs))
    model.compile(optimizer="sgd", loss=SegmentationCrossEntropy("mean"),
                  metrics=[SegmentationMetrics(3)])
    x = np.random.default_rng(0).random((4, 8, 8, 3)).astype("float32")
    y = np.zeros((4, 8, 8), "int32")
    y[:, 0, 0] = 255
    history = model.fit(x, y, epochs=1, batch_size=2, validation_data=(x, y), verbose=0)
    for key in ("mean_iou", "pixel_accuracy", "val_mean_iou", "val_frequency_weighted_iou"):
        assert key in history.history
    logs = model.evaluate(x, y, batch_size=2, return_dict=True, verbose=0)
    # predictions all class 0 (zero logits argmax), labels all 0 except the ignored pixel
    assert logs["pixel_accuracy"] == pytest.approx(1.0)
    assert logs["mean_iou"] == pytest.approx(1.0)


def test_config_and_bad_arguments():
    metric = SegmentationMetrics(4, ignore_label=0)
    clone = SegmentationMetrics.from_config(metric.get_config())
    assert (clone.num_classes, clone.ignore_label) == (4, 0)
    with pytest.raises(ValueError, match="num_classes"):
        SegmentationMetrics(0)
    with pytest.raises(ValueError, match="sample_weight"):
        metric.update_state(np.zeros((1, 2, 2)), np.zeros((1, 2, 2, 4)), sample_weight=np.ones(1))


def test_absent_classes_are_nan_and_left_out_and_no_class_present_is_nan():
    """score.py's definition: a class absent from truth and prediction has IoU NaN, not 0 or 1."""
    labels = np.array([[0, 0], [255, 255]])
    preds = np.array([[0, 2], [1, 1]])  # class 1 is predicted only on ignored pixels: not counted
    s = segmentation_scores(labels, preds, 4)
    _, acc, macc, miu, fwiu, iu = _score_py([labels], [preds], 4)
    np.testing.assert_array_equal(s["per_class_iou"], [0.5, np.nan, 0.0, np.nan])  # 2: predicted, never true
    assert s["mean_iou"] == miu == 0.25 and s["mean_accuracy"] == macc == 0.5
    assert s["pixel_accuracy"] == acc == 0.5 and s["frequency_weighted_iou"] == fwiu == 0.5

    nothing = segmentation_scores(np.full((2, 3), 255), np.zeros((2, 3), int), 3)  # no labelled pixel
    assert nothing["confusion_matrix"].sum() == 0 and np.isnan(nothing["per_class_iou"]).all()
    for name in ("pixel_accuracy", "mean_accuracy", "mean_iou", "frequency_weighted_iou"):
        assert np.isnan(nothing[name]), name
    metric = SegmentationMetrics(3)  # the Keras metric says the same
    metric.update_state(np.full((1, 2, 3), 255), _one_hot_logits(np.zeros((1, 2, 3), int), 3))
    assert all(np.isnan(float(v)) for v in metric.result().values())
