"""SegmentationCrossEntropy against a direct NumPy cross-entropy; bad labels; empty batches."""

from __future__ import annotations

import numpy as np
import pytest
import keras

from fcn_keras.losses import SegmentationCrossEntropy, check_label_range

pytestmark = pytest.mark.backend_agnostic


def _numpy_ce(labels, logits, weights=None, ignore=255):
    logits = logits.astype(np.float64)
    logp = logits - logits.max(-1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(-1, keepdims=True))
    valid = labels != ignore
    lab = np.where(valid, labels, 0)
    picked = np.take_along_axis(logp, lab[..., None], -1)[..., 0]
    w = valid.astype(np.float64) * (1.0 if weights is None else np.asarray(weights)[lab])
    return -(picked * w).sum(), w.sum()


@pytest.fixture
def batch():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 5, 7, 4)).astype("float32") * 3
    labels = rng.integers(0, 4, size=(2, 5, 7))
    labels[rng.random(labels.shape) < 0.3] = 255
    return labels, logits


def test_sum_and_mean_equal_direct_cross_entropy(batch):
    labels, logits = batch
    total, count = _numpy_ce(labels, logits)
    np.testing.assert_allclose(float(SegmentationCrossEntropy("sum")(labels, logits)), total, rtol=1e-5)
    np.testing.assert_allclose(float(SegmentationCrossEntropy("mean")(labels, logits)), total / count, rtol=1e-5)
    # (N, H, W, 1) labels are the same thing
    np.testing.assert_allclose(float(SegmentationCrossEntropy("sum")(labels[..., None], logits)), total, rtol=1e-5)


def test_class_weights(batch):
    labels, logits = batch
    weights = [0.5, 2.0, 1.0, 3.0]
    total, wsum = _numpy_ce(labels, logits, weights)
    loss = SegmentationCrossEntropy("mean", class_weights=weights)
    np.testing.assert_allclose(float(loss(labels, logits)), total / wsum, rtol=1e-5)
    with pytest.raises(ValueError, match="class_weights has 2 entries"):
        SegmentationCrossEntropy(class_weights=[1, 2])(labels, logits)


def test_no_valid_pixel_gives_zero_not_nan(batch):
    _, logits = batch
    labels = np.full(logits.shape[:3], 255)
    for reduction in ("sum", "mean"):
        value = float(SegmentationCrossEntropy(reduction)(labels, logits))
        assert value == 0.0


def test_float16_logits_give_float32_loss(batch):
    labels, logits = batch
    value = SegmentationCrossEntropy("sum")(labels, logits.astype("float16"))
    assert keras.backend.standardize_dtype(value.dtype) == "float32"
    np.testing.assert_allclose(float(value), _numpy_ce(labels, logits.astype("float16").astype("float32"))[0],
                               rtol=1e-4)


@pytest.mark.parametrize("bad", [4, 7, -1])
def test_out_of_range_label_is_a_clear_error(batch, bad):
    labels, logits = batch
    labels = labels.copy()
    labels[0, 1, 2] = bad
    with pytest.raises(ValueError, match=r"\[0, 4\) or the ignore label 255.*largest"):
        SegmentationCrossEntropy()(labels, logits)


def test_out_of_range_label_raises_inside_a_compiled_step(batch):
    labels, logits = batch
    labels = labels.copy()
    labels[1, 0, 0] = 9
    backend = keras.backend.backend()
    loss = SegmentationCrossEntropy()
    if backend == "jax":
        import jax

        fn = jax.jit(lambda y, p: loss(y, p))
        with pytest.raises(Exception, match="out-of-range labels"):
            jax.block_until_ready(fn(labels, logits))
    elif backend == "tensorflow":
        import tensorflow as tf

        fn = tf.function(lambda y, p: loss(y, p))
        with pytest.raises(tf.errors.InvalidArgumentError, match="out-of-range labels"):
            fn(labels, logits)
    else:
        pytest.skip(f"no compiled mode checked for {backend}")


def test_check_label_range_accepts_valid_and_ignore():
    check_label_range(np.array([[0, 3, 255]]), 4)
    with pytest.raises(ValueError, match="1 pixels, largest 4"):
        check_label_range(np.array([[0, 4, 255]]), 4)


def test_config_round_trip():
    loss = SegmentationCrossEntropy("mean", class_weights=[1, 2], ignore_label=100)
    clone = keras.losses.deserialize(keras.losses.serialize(loss))
    assert (clone.reduction, clone.class_weights, clone.ignore_label) == ("mean", [1.0, 2.0], 100)
    with pytest.raises(ValueError, match="reduction must be one of"):
        SegmentationCrossEntropy("sum_over_batch_size")
