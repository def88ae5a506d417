"""The shipped demo recipe end to end (slow: MobileNetV2's graph; `make test` runs it, `make test-fast` skips it)."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.slow


def test_tiny_synthetic_recipe_learns(tmp_path):
    from fcn_keras import data
    from fcn_keras.metrics import segmentation_scores
    from fcn_keras.training import train

    result = train("tiny_synthetic", tmp_path, verbose=0)
    assert result["global_step"] == 40
    labels = [label.numpy() for _, label in data.load_voc(tmp_path / "synthetic", "val", num_classes=4)]
    baseline = segmentation_scores(labels, [np.zeros_like(l) for l in labels], 4)["mean_iou"]
    assert result["best_val_mean_iou"] > baseline + 0.15, (baseline, result["history"]["val_mean_iou"])
