"""make_pipeline: joint augmentation alignment, padding values, determinism, eval batches."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from fcn_keras.data import MEAN_RGB, augment, load_voc, make_pipeline, voc_source
from fcn_keras.preprocessing import REFERENCE_BGR_MEAN

BLOCK = 8


def _coordinate_example(height=64, width=80):
    """An image whose colour names its 8x8 block, and a label holding the block's id."""
    by, bx = np.mgrid[0:height, 0:width] // BLOCK
    image = np.stack([bx * 16 + 8, by * 16 + 8, np.full_like(bx, 50)], -1).astype(np.uint8)
    label = (by * (width // BLOCK) + bx).astype(np.uint8)
    return image, label


def _check_aligned(image, label, width=80):
    """Where the image shows a block colour cleanly, the label must be that block's id."""
    bx = np.round((image[..., 0] - 8) / 16)
    by = np.round((image[..., 1] - 8) / 16)
    clean = (np.abs(image[..., 0] - (bx * 16 + 8)) < 1) & (np.abs(image[..., 1] - (by * 16 + 8)) < 1)
    clean &= np.abs(image[..., 2] - 50) < 1  # excludes padding (mean pixel)
    expected = by * (width // BLOCK) + bx
    assert clean.sum() > 100
    np.testing.assert_array_equal(label[clean], expected[clean])
    return clean


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4, 5])
def test_augment_keeps_image_and_label_aligned(seed):
    image, label = _coordinate_example()
    out_image, out_label = augment(
        image, label, [seed, 7], crop_size=(72, 96), scale_range=(0.6, 1.6), flip=True
    )
    out_image, out_label = out_image.numpy(), out_label.numpy()
    assert out_image.shape == (72, 96, 3) and out_label.shape == (72, 96)
    _check_aligned(out_image, out_label)
    # Labels are nearest-neighbour: only ids that exist (or 255 padding), never blends.
    assert set(np.unique(out_label)) <= set(np.unique(label)) | {255}
    padded = np.all(np.abs(out_image - np.array(MEAN_RGB)) < 1e-3, axis=-1)
    assert np.all(out_label[padded] == 255) and np.all(out_label[~padded] != 255)


def test_flip_mirrors_both():
    image, label = _coordinate_example()
    flipped = [augment(image, label, [s, 0], flip=True) for s in range(8)]
    mirrored = [f for f in flipped if not np.array_equal(f[1].numpy(), label)]
    assert mirrored and len(mirrored) < 8
    for out_image, out_label in mirrored:
        np.testing.assert_array_equal(out_label.numpy(), label[:, ::-1])
        np.testing.assert_array_equal(out_image.numpy(), image[:, ::-1].astype(np.float32))


def test_training_pipeline_on_files_is_aligned_and_preprocessed(synthetic_voc):
    ds = make_pipeline(
        voc_source(synthetic_voc, "train"), training=True, batch_size=2, crop_size=(48, 56),
        scale_range=(0.5, 1.5), seed=3, preprocessing=None,
    )
    batches = list(ds)
    assert len(batches) == 6 // 2
    for images, labels in batches:
        assert images.shape == (2, 48, 56, 3) and images.dtype == tf.float32
        assert labels.shape == (2, 48, 56) and labels.dtype == tf.int32
        assert set(np.unique(labels.numpy())) <= set(range(21)) | {255}
    fcn = make_pipeline(voc_source(synthetic_voc, "train"), training=True, batch_size=2, crop_size=(48, 56), seed=3,
                       deterministic=True)
    raw = make_pipeline(voc_source(synthetic_voc, "train"), training=True, batch_size=2, crop_size=(48, 56),
                        seed=3, preprocessing=None, deterministic=True)
    (a, la), (b, lb) = next(iter(fcn)), next(iter(raw))
    np.testing.assert_array_equal(la, lb)
    np.testing.assert_allclose(a.numpy(), b.numpy()[..., ::-1] - np.array(REFERENCE_BGR_MEAN), atol=1e-4)


def _epochs(seed, n=2, **kwargs):
    ds = make_pipeline(voc_source(kwargs.pop("root"), "trainval"), training=True, batch_size=2, crop_size=40,
                       scale_range=(0.5, 2.0), jitter=True, seed=seed, deterministic=True, **kwargs)
    return [np.concatenate([np.concatenate([x.numpy().ravel(), y.numpy().ravel()]) for x, y in ds]) for _ in range(n)]


def test_deterministic_epochs_are_bit_identical(synthetic_voc):
    first = _epochs(11, root=synthetic_voc)
    again = _epochs(11, root=synthetic_voc)
    other = _epochs(12, n=1, root=synthetic_voc)
    for a, b in zip(first, again):
        assert a.tobytes() == b.tobytes()
    assert first[0].tobytes() != first[1].tobytes()  # each epoch is reshuffled / re-augmented
    assert first[0].tobytes() != other[0].tobytes()


def test_evaluation_keeps_native_size_order_and_pads_with_void(synthetic_voc):
    natives = list(load_voc(synthetic_voc, "trainval"))
    singles = list(make_pipeline(load_voc(synthetic_voc, "trainval"), training=False))
    assert len(singles) == len(natives)
    for (image, label), (x, y) in zip(natives, singles):
        assert x.shape == (1, *image.shape) and y.shape == (1, *label.shape)
        np.testing.assert_array_equal(y[0].numpy(), label.numpy().astype(np.int32))
    batched = list(make_pipeline(load_voc(synthetic_voc, "trainval"), training=False, batch_size=3,
                                 preprocessing=None))
    assert [b[0].shape[0] for b in batched] == [3, 3, 2]
    for k, (images, labels) in enumerate(batched):
        for j in range(images.shape[0]):
            image, label = natives[3 * k + j]
            h, w = label.shape
            np.testing.assert_array_equal(labels[j, :h, :w].numpy(), label.numpy())
            assert np.all(labels[j, h:].numpy() == 255) and np.all(labels[j, :, w:].numpy() == 255)
            np.testing.assert_array_equal(images[j, :h, :w].numpy(), image.numpy().astype(np.float32))


def test_batch_without_crop_needs_padding(synthetic_voc):
    with pytest.raises(ValueError, match="pad_to_batch"):
        make_pipeline(load_voc(synthetic_voc), training=True, batch_size=2)
    ds = make_pipeline(load_voc(synthetic_voc), training=True, batch_size=2, pad_to_batch=True, seed=0)
    images, labels = next(iter(ds))
    assert images.shape[0] == 2 and images.shape[1:3] == labels.shape[1:3]
    with pytest.raises(ValueError, match="seed"):
        make_pipeline(load_voc(synthetic_voc), training=True, deterministic=True)


def test_input_context_shards_examples(synthetic_voc):
    def ids(k):
        ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=k, num_replicas_in_sync=2)
        ds = make_pipeline(voc_source(synthetic_voc, "trainval"), training=False, batch_size=2,
                           input_context=ctx, preprocessing=None)
        return [int(y.shape[1]) * 1000 + int(np.sum(y.numpy() == 255)) for _, y in ds]

    shard0, shard1 = ids(0), ids(1)
    assert len(shard0) == len(shard1) == 4  # per-replica batch 1, 8 examples over 2 workers
    assert not set(shard0) & set(shard1)


@pytest.mark.parametrize("scaled", [(50, 70), (131, 173)])
def test_resampling_is_an_align_corners_resize(scaled):
    """The windowed resampler equals a full align-corners resize (bilinear image, nearest label)."""
    from fcn_keras.data.pipeline import _resampled_window

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
    label = rng.integers(0, 21, (64, 80), dtype=np.uint8)
    out_image, out_label = _resampled_window(
        tf.constant(image), tf.constant(label), tf.constant(scaled), tf.constant([0, 0]), tf.constant(scaled))
    want_image = tf.compat.v1.image.resize_bilinear(image[None], scaled, align_corners=True)[0]
    np.testing.assert_allclose(out_image.numpy(), want_image.numpy(), atol=1e-3)
    want_label = tf.compat.v1.image.resize_nearest_neighbor(label[None, ..., None], scaled, align_corners=True)
    np.testing.assert_array_equal(out_label.numpy(), want_label[0, ..., 0].numpy())
    # A window is the same pixels as the corresponding part of the full resize.
    part_image, part_label = _resampled_window(
        tf.constant(image), tf.constant(label), tf.constant(scaled), tf.constant([7, 9]), tf.constant([20, 30]))
    np.testing.assert_allclose(part_image.numpy(), out_image.numpy()[7:27, 9:39], atol=1e-3)
    np.testing.assert_array_equal(part_label.numpy(), out_label.numpy()[7:27, 9:39])
