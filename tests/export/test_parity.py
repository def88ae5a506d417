"""Parity reports: their mean IU is fcn_keras.metrics' (one definition), NaN when no class is present."""

from __future__ import annotations

import numpy as np

from fcn_keras.export.parity import compare, mean_iu
from fcn_keras.metrics import confusion_matrix, segmentation_scores


def _logits(mask: np.ndarray, n: int) -> np.ndarray:
    return np.eye(n, dtype=np.float32)[mask] * 4.0


def test_mean_iu_is_the_metrics_module_one():
    rng = np.random.default_rng(0)
    truth, prediction = rng.integers(0, 4, (9, 11)), rng.integers(0, 3, (9, 11))  # class 3 never predicted
    truth[0] = 255
    assert mean_iu(confusion_matrix(truth, prediction, 5)) == segmentation_scores(truth, prediction, 5)["mean_iou"]
    assert np.isnan(mean_iu(np.zeros((3, 3), np.int64)))  # not 1.0: nothing was scored


def test_report_against_labels_without_any_labelled_pixel_is_nan():
    reference = [_logits(np.array([[0, 1], [1, 1]]), 3)]
    report = compare("float32", reference, [r.copy() for r in reference], labels=[np.full((2, 2), 255)])
    assert report.passed and report.pixel_agreement == 1.0 and report.mean_iu_vs_keras == 1.0
    assert np.isnan(report.mean_iu_keras) and np.isnan(report.mean_iu_export)
