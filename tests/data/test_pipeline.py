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


@pytest.mark.parametrize("region, out", [((64, 80), (50, 70)), ((30, 41), (131, 173)), ((20, 30), (20, 30))])
def test_region_resize_matches_tf_image_resize(region, out):
    """Image bilinear and label nearest, at tf.image.resize's sample points, on the region only."""
    from fcn_keras.data.pipeline import _resize_region

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
    label = rng.integers(0, 21, (64, 80), dtype=np.uint8)
    start = (64 - region[0], 80 - region[1])
    got_image, got_label = _resize_region(
        tf.constant(image), tf.constant(label), tf.constant(start), tf.constant(region), tf.constant(out))
    window = (slice(start[0], start[0] + region[0]), slice(start[1], start[1] + region[1]))
    want_image = tf.image.resize(image[window], out, method="bilinear")
    want_label = tf.image.resize(label[window][..., None], out, method="nearest")[..., 0]
    np.testing.assert_allclose(got_image.numpy(), want_image.numpy(), atol=1e-3)
    np.testing.assert_array_equal(got_label.numpy(), want_label.numpy())
    if region == out:  # no rescaling: an exact copy
        np.testing.assert_array_equal(got_image.numpy(), image[window])


def test_reference_recipe_batch1_native_size_feeds_model_fit(synthetic_voc):
    import keras

    native = {tuple(label.shape) for _, label in load_voc(synthetic_voc, "train")}
    ds = make_pipeline(load_voc(synthetic_voc, "train"), training=True, seed=0)  # batch 1, native size
    shapes = {tuple(labels.shape[1:]) for images, labels in ds}
    assert shapes == native
    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(21, 1)(inputs))
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=255))
    history = model.fit(ds, epochs=1, verbose=0, shuffle=False)  # the pipeline shuffles
    assert np.isfinite(history.history["loss"][0])


def test_dict_elements_and_channel_labels():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (4, 20, 24, 3), dtype=np.uint8)
    labels = rng.integers(0, 5, (4, 20, 24, 1), dtype=np.uint8)
    ds = tf.data.Dataset.from_tensor_slices({"image": images, "label": labels, "id": ["a", "b", "c", "d"]})
    got = list(make_pipeline(ds, training=False, batch_size=2, preprocessing=None))
    assert [tuple(y.shape) for _, y in got] == [(2, 20, 24)] * 2
    np.testing.assert_array_equal(np.concatenate([y.numpy() for _, y in got]), labels[..., 0])
    np.testing.assert_array_equal(np.concatenate([x.numpy() for x, _ in got]), images.astype(np.float32))
    train = make_pipeline(ds, training=True, batch_size=2, crop_size=16, seed=0)
    assert all(y.shape == (2, 16, 16) for _, y in train)


def test_jitter_touches_only_the_image(synthetic_voc):
    def first(jitter):
        ds = make_pipeline(voc_source(synthetic_voc, "train"), training=True, batch_size=2, crop_size=40,
                           scale_range=(0.7, 1.3), jitter=jitter, seed=5, deterministic=True, preprocessing=None)
        return next(iter(ds))

    (plain, plain_labels), (jittered, jittered_labels) = first(False), first(True)
    np.testing.assert_array_equal(plain_labels, jittered_labels)
    assert not np.allclose(plain, jittered) and jittered.numpy().min() >= 0 and jittered.numpy().max() <= 255


@pytest.mark.parametrize("cache", [True, "file"])
def test_cache_keeps_examples_and_reshuffles(synthetic_voc, tmp_path, cache):
    cache = str(tmp_path / "cache") if cache == "file" else cache
    ds = make_pipeline(voc_source(synthetic_voc, "trainval"), training=True, flip=False, seed=1, deterministic=True,
                       cache=cache, preprocessing=None)
    epochs = [[int(y.numpy().sum()) for _, y in ds] for _ in range(3)]
    assert sorted(epochs[0]) == sorted(epochs[1]) == sorted(epochs[2]) and len(epochs[0]) == 8
    assert len({tuple(e) for e in epochs}) > 1  # the cached examples are reshuffled per epoch
