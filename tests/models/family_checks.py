"""The checks every architecture of the family goes through: the shared helper of tests/models/test_<arch>.py.

In the spirit of keras-hub's ``run_model_test``: a model built by an
architecture's builder must
- rebuild from its ``.keras`` file in safe mode, without ``custom_objects``, as
  the same class with the same identity, options and logits (:func:`check_round_trip`);
- give float32 logits of the input's size, on whichever backend runs the suite
  (:func:`check_logits`; the suite's JAX pass runs tests marked ``backend_agnostic``);
- export as a SavedModel and as a builtin-ops TFLite file whose logits match
  Keras' within the float32 parity tolerance (:func:`check_exports`, TensorFlow only).

Use small inputs and a small ``alpha``: these run in CI for every architecture.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import keras


def random_images(sizes: Sequence[tuple[int, int]], seed: int = 0) -> list[np.ndarray]:
    """Smooth RGB uint8 images of the given ``(height, width)`` sizes (structured, not noise)."""
    rng = np.random.default_rng(seed)
    images = []
    for height, width in sizes:
        yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
        image = np.stack([np.sin(6 * xx + c) * np.cos(5 * yy - c) for c in rng.uniform(0, 3, 3)], -1) * 90 + 128
        images.append(np.clip(image + rng.normal(0, 8, image.shape), 0, 255).astype(np.uint8))
    return images


def randomize(model: keras.Model, seed: int = 0, scale: float = 0.1) -> keras.Model:
    """Every zero-initialised weight (score layers, biases) drawn at random, so outputs differ between classes."""
    rng = np.random.default_rng(seed)
    for variable in model.trainable_variables:
        value = keras.ops.convert_to_numpy(variable)
        if not value.any():
            variable.assign(rng.normal(0, scale, value.shape).astype(value.dtype))
    return model


def logits(model: keras.Model, image: np.ndarray) -> np.ndarray:
    """The model's float32 logits for one RGB 0-255 image, preprocessed as the model says."""
    from fcn_keras.preprocessing import preprocess

    x = np.asarray(image, np.float32)[None]
    if model.input_preprocessing:
        x = np.asarray(preprocess(x, model.input_preprocessing), np.float32)
    return keras.ops.convert_to_numpy(model.predict_on_batch(x))[0]


def check_logits(model: keras.Model, images: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Float32 logits ``(H, W, num_classes)`` of each image's own size; returns them."""
    out = []
    for image in images:
        result = logits(model, image)
        assert result.dtype == np.float32, result.dtype
        assert result.shape == (*image.shape[:2], model.num_classes), (result.shape, image.shape)
        assert np.isfinite(result).all()
        out.append(result)
    return out


def check_round_trip(model: keras.Model, images: Sequence[np.ndarray], tmp_path: Path) -> keras.Model:
    """``.keras`` file -> ``load_model(safe_mode=True)`` without custom objects: same class, config and logits."""
    path = Path(tmp_path) / f"{model.name}.keras"
    model.save(path)
    with keras.saving.custom_object_scope({}):
        loaded = keras.models.load_model(path, safe_mode=True, compile=False)
    assert type(loaded) is type(model)
    assert loaded.get_config() == model.get_config()
    assert loaded.identity() == model.identity()
    assert loaded.count_params() == model.count_params()
    for image in images:
        np.testing.assert_allclose(logits(loaded, image), logits(model, image), rtol=1e-6, atol=1e-6)
    return loaded


def check_exports(model: keras.Model, images: Sequence[np.ndarray], tmp_path: Path) -> dict:
    """SavedModel (Keras-free runner) and float32 TFLite (builtin ops only, LiteRT) against Keras; the reports."""
    from fcn_keras.export import export_saved_model, export_tflite
    from fcn_keras.export.parity import parity, tflite_parity
    from fcn_keras.export.runner import saved_model_logits
    from fcn_keras.export.tflite import check_builtin_ops

    version = export_saved_model(model, Path(tmp_path) / "serving", verbose=False, warmup=False)
    saved = parity("savedmodel", saved_model_logits(version), model, images)
    assert saved.passed, str(saved)
    path = export_tflite(model, Path(tmp_path) / f"{model.name}.tflite", verbose=False)
    check_builtin_ops(Path(path).read_bytes(), model.name)
    lite = tflite_parity(path, model, images)
    assert lite.passed, str(lite)
    return {"savedmodel": saved, "tflite": lite}
