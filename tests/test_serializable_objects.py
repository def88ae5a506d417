"""The loss, metric and optimizer go through the same serialization checks as the layers and models.

A compiled model's `.keras` file holds all three; after `import fcn_keras` it loads with its
compile state in safe mode, without custom_objects.
"""

from __future__ import annotations

import numpy as np
import pytest
import keras

import fcn_keras
from fcn_keras.losses import SegmentationCrossEntropy
from fcn_keras.metrics import SegmentationMetrics
from fcn_keras.optimizers import CaffeSGD
from tests.keras_checks import check_object_round_trip

pytestmark = pytest.mark.backend_agnostic


@pytest.mark.parametrize("obj", [
    SegmentationCrossEntropy("mean", class_weights=[1.0, 2.0, 0.5]),
    SegmentationMetrics(3, ignore_label=254),
    CaffeSGD(learning_rate=1e-4, momentum=0.9, weight_decay=1e-3),
], ids=["loss", "metric", "optimizer"])
def test_round_trip(obj):
    check_object_round_trip(obj)


def test_a_compiled_model_loads_with_its_compile_state(tmp_path):
    model = fcn_keras.fcn32s(num_classes=3, backbone="tiny_vgg")
    model.compile(optimizer=CaffeSGD(learning_rate=1e-3, momentum=0.9), loss=SegmentationCrossEntropy("mean"),
                  metrics=[SegmentationMetrics(3)])
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    y = np.random.default_rng(1).integers(0, 3, (2, 32, 32))
    model.train_on_batch(x, y)
    model.save(tmp_path / "compiled.keras")
    loaded = keras.models.load_model(tmp_path / "compiled.keras", safe_mode=True)
    assert isinstance(loaded.optimizer, CaffeSGD) and isinstance(loaded.loss, SegmentationCrossEntropy)
    assert int(loaded.optimizer.iterations) == 1
    np.testing.assert_allclose(loaded.evaluate(x, y, verbose=0, return_dict=True)["loss"],
                               model.evaluate(x, y, verbose=0, return_dict=True)["loss"], rtol=1e-5)
