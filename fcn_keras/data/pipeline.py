"""The input pipeline for ``model.fit`` / ``model.evaluate``: augmentation, preprocessing, batching.

Augmentation draws a random scale and crop window and resamples only the
source region under that window, sampling the image (bilinear) and the label
(nearest neighbour — never interpolated) at the same points, then flips both
together, so they cannot drift apart. Randomness is stateless: each example gets its own seed from a
seeded ``tf.data.Dataset.random``, so with ``deterministic=True`` a seed gives
bit-identical epochs regardless of thread scheduling."""

from __future__ import annotations

import os
from typing import Callable

import tensorflow as tf

from fcn_keras.data.decode import DataError
from fcn_keras.data.prepared import load_prepared
from fcn_keras.data.source import FileSource
from fcn_keras.palette import IGNORE_LABEL
from fcn_keras.preprocessing import MODES, REFERENCE_BGR_MEAN
from fcn_keras.preprocessing import preprocess as preprocess_image

AUTOTUNE = tf.data.AUTOTUNE
MEAN_RGB: tuple[float, float, float] = tuple(reversed(REFERENCE_BGR_MEAN))
"""The reference mean pixel in RGB order: the value padded images are filled with."""

Data = "tf.data.Dataset | FileSource | str | os.PathLike"


def _as_pair(element):
    """Accepts (image, label), (image, label, id) or {"image", "label", ...} elements; labels [H,W] or [H,W,1]."""
    image, label = (element["image"], element["label"]) if isinstance(element, dict) else (element[0], element[1])
    if label.shape.rank == 3:
        label = label[..., 0]
    return image, label


def _size_mismatch(index, image_shape, label_shape, image):
    raise DataError(
        f"make_pipeline(data): example {int(index)}",
        f"image size {image_shape[1]}x{image_shape[0]} differs from its label size {label_shape[1]}x{label_shape[0]}"
        " (every label must cover its image pixel for pixel)",
    )


def _same_size(index, image, label):
    """Passes an example through, raising a DataError naming ``index`` when image and label sizes differ."""
    image_shape, label_shape = tf.shape(image)[:2], tf.shape(label)[:2]
    same = tf.reduce_all(tf.equal(image_shape, label_shape))
    # Python runs only on a mismatch. The image flows through the check (a control dependency
    # alone would be pruned by the graph optimizer).
    checked = tf.cond(
        same,
        lambda: image,
        lambda: tf.numpy_function(_size_mismatch, [index, image_shape, label_shape, image], image.dtype,
                                  stateful=False),
    )
    checked.set_shape(image.shape)
    return checked, label


def _source_dataset(
    data, training: bool, shuffle_buffer: int | None, seed: int | None, cache: bool | str, input_context
) -> tf.data.Dataset:
    """Decoded ``(image uint8, label uint8)`` examples, sharded and (when training) shuffled."""
    reshuffle = dict(seed=seed, reshuffle_each_iteration=True)
    shuffled = False
    if isinstance(data, (str, os.PathLike)):
        # Shuffle shard order and serialized records: cheaper than shuffling decoded images.
        shuffled = training and not cache
        dataset = load_prepared(
            data, input_context=input_context, shuffle_files=shuffled,
            shuffle_buffer=(shuffle_buffer or 256) if shuffled else None, seed=seed,
        )
    elif isinstance(data, FileSource):
        source = data
        indices = source.index_dataset()
        if input_context is not None:
            indices = indices.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
        if training and not cache:
            # Shuffling file indices is free, so shuffle the whole split before decoding.
            indices = indices.shuffle(len(source), **reshuffle)
            shuffled = True
        dataset = indices.map(source.decode, num_parallel_calls=AUTOTUNE, deterministic=True)
    elif isinstance(data, tf.data.Dataset):
        # Indexed before sharding, so an error names the example's place in `data` itself.
        dataset = data.enumerate()
        if input_context is not None:
            dataset = dataset.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
        dataset = dataset.map(lambda index, element: _same_size(index, *_as_pair(element)))
    else:
        raise TypeError(
            f"make_pipeline: data must be a tf.data.Dataset, a FileSource or a prepared directory, got {type(data)!r}"
        )
    if cache:
        dataset = dataset.cache(cache if isinstance(cache, str) else "")
    if training and not shuffled:
        dataset = dataset.shuffle(shuffle_buffer or 256, **reshuffle)
    return dataset


def _jitter(image, seed):
    seeds = tf.random.experimental.stateless_split(seed, 4)
    x = image / 255.0
    x = tf.image.stateless_random_brightness(x, 0.125, seeds[0])
    x = tf.image.stateless_random_contrast(x, 0.75, 1.25, seeds[1])
    x = tf.image.stateless_random_saturation(x, 0.75, 1.25, seeds[2])
    x = tf.image.stateless_random_hue(x, 0.04, seeds[3])
    return tf.clip_by_value(x * 255.0, 0.0, 255.0)


def _resize_region(image, label, start, region, out_size):
    """Resizes the source region ``start + [0, region)`` to ``out_size``.

    The image bilinearly (``tf.image.resize``), the label by nearest neighbour at
    the same half-pixel sample points (the indices ``tf.image.resize`` with
    ``"nearest"`` uses), so labels are never interpolated and stay aligned.
    Only the region is touched, never the whole rescaled image.
    """
    window = tf.slice(image, [start[0], start[1], 0], [region[0], region[1], -1])
    image = tf.image.resize(window, out_size, method="bilinear")

    def nearest(axis):
        scale = tf.cast(region[axis], tf.float32) / tf.cast(out_size[axis], tf.float32)
        index = tf.cast(tf.floor((tf.cast(tf.range(out_size[axis]), tf.float32) + 0.5) * scale), tf.int32)
        return start[axis] + tf.minimum(index, region[axis] - 1)

    # Row gathers are fast; columns are gathered as rows of the transpose.
    label = tf.transpose(tf.gather(tf.transpose(tf.gather(label, nearest(0))), nearest(1)))
    return image, tf.cast(label, tf.int32)


def augment(
    image: tf.Tensor,
    label: tf.Tensor,
    seed: tf.Tensor,
    *,
    crop_size: tuple[int, int] | None = None,
    scale_range: tuple[float, float] | None = None,
    flip: bool = True,
    jitter: bool = False,
) -> tuple[tf.Tensor, tf.Tensor]:
    """Jointly augments one example; returns ``(image float32 RGB 0-255, label int32)``.

    Random scale (image bilinear, label nearest neighbour), then a random
    ``crop_size`` window, padded where the scaled image is smaller (image by
    :data:`MEAN_RGB`, label by 255), photometric jitter (image only) and a
    random horizontal flip of both. Without ``crop_size`` the whole (scaled)
    image is kept. ``seed`` is a ``[2]`` int tensor; the same seed gives the
    same result.

    Example:
        >>> import numpy as np
        >>> img, lab = augment(np.zeros((4, 6, 3), np.uint8), np.ones((4, 6), np.uint8), [1, 2], crop_size=(8, 8))
        >>> int(lab.numpy()[7, 7]), [round(float(v), 2) for v in img.numpy()[7, 7]]
        (255, [122.68, 116.67, 104.01])
    """
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 5)
    image, label = tf.convert_to_tensor(image), tf.convert_to_tensor(label)
    if not image.shape[:2].is_compatible_with(label.shape[:2]):
        raise ValueError(f"augment: image size {image.shape[:2]} differs from label size {label.shape[:2]}")
    size = tf.shape(label)
    # The window is placed by the label's size: a larger image would be cropped without a word.
    tf.debugging.assert_equal(tf.shape(image)[:2], size, message="augment: image and label sizes differ")
    factor = 1.0
    if scale_range is not None:
        factor = tf.random.stateless_uniform([], seeds[0], scale_range[0], scale_range[1])
    scaled = tf.maximum(tf.cast(tf.round(tf.cast(size, tf.float32) * factor), tf.int32), 1)
    if crop_size is None:
        start, region, valid = tf.zeros([2], tf.int32), size, scaled
    else:
        crop = tf.constant(crop_size, tf.int32)
        # The source extent one crop covers at this scale (rounded to whole pixels), at a random place.
        region = tf.clip_by_value(tf.cast(tf.round(tf.cast(crop, tf.float32) / factor), tf.int32), 1, size)
        start = tf.cast(tf.floor(tf.random.stateless_uniform([2], seeds[1]) * tf.cast(size - region + 1, tf.float32)),
                        tf.int32)
        start = tf.minimum(start, size - region)
        # Where the whole scaled axis fits in the crop, the rest of the crop is padding.
        valid = tf.where(region < size, crop, tf.minimum(crop, scaled))
    if scale_range is None and crop_size is None:
        image, label = tf.cast(image, tf.float32), tf.cast(label, tf.int32)  # nothing to resample
    else:
        image, label = _resize_region(image, label, start, region, valid)
    if jitter:
        image = _jitter(image, seeds[2])
    if crop_size is not None:
        pad = [[0, crop_size[0] - valid[0]], [0, crop_size[1] - valid[1]]]
        mean = tf.constant(MEAN_RGB, tf.float32)
        needs_pad = tf.reduce_any(valid < crop)  # most crops of large images need none: skip the copies
        image = tf.cond(needs_pad, lambda: tf.pad(image - mean, pad + [[0, 0]]) + mean, lambda: image)
        label = tf.cond(needs_pad, lambda: tf.pad(label, pad, constant_values=IGNORE_LABEL), lambda: label)
        image = tf.ensure_shape(image, [*crop_size, 3])
        label = tf.ensure_shape(label, crop_size)
    if flip:
        mirror = tf.random.stateless_uniform([], seeds[3]) < 0.5
        image = tf.cond(mirror, lambda: tf.reverse(image, [1]), lambda: image)
        label = tf.cond(mirror, lambda: tf.reverse(label, [1]), lambda: label)
    return image, label


def preprocess(image: tf.Tensor, preprocessing: str | Callable | None = "fcn") -> tf.Tensor:
    """Applies the model input preprocessing to float RGB 0-255 images.

    A mode of :data:`fcn_keras.preprocessing.MODES` (``"fcn"``: the reference,
    BGR minus :data:`~fcn_keras.preprocessing.REFERENCE_BGR_MEAN`), as
    ``model.input_preprocessing`` names it; ``None``: unchanged float32 RGB 0-255
    (for models with ``include_preprocessing=True``); or any callable.

    Example:
        >>> [round(float(v), 3) for v in preprocess(tf.constant([[[122.67892, 116.66877, 104.00699]]]))[0, 0]]
        [0.0, 0.0, 0.0]
    """
    image = tf.cast(image, tf.float32)
    if preprocessing is None:
        return image
    if callable(preprocessing):
        return preprocessing(image)
    if preprocessing in MODES:
        return preprocess_image(image, preprocessing)
    raise ValueError(f"preprocessing must be one of {sorted(MODES)}, None or a callable, got {preprocessing!r}")


def make_pipeline(
    data: Data,
    *,
    training: bool,
    batch_size: int = 1,
    crop_size: int | tuple[int, int] | None = None,
    preprocessing: str | Callable | None = "fcn",
    scale_range: tuple[float, float] | None = None,
    flip: bool = True,
    jitter: bool = False,
    shuffle_buffer: int | None = None,
    seed: int | None = None,
    deterministic: bool = False,
    cache: bool | str = False,
    input_context: tf.distribute.InputContext | None = None,
    pad_to_batch: bool = False,
    repeat: bool = False,
) -> tf.data.Dataset:
    """Builds the ``(images float32 [B,H,W,3], labels int32 [B,H,W])`` pipeline for Keras.

    Args:
        data: a ``tf.data.Dataset`` of ``(image, label[, id])`` or dicts with
            ``"image"``/``"label"`` (e.g. :func:`load_voc`), a :class:`FileSource`
            (e.g. :func:`voc_source`; shuffled and sharded before decoding), or the
            directory of a prepared dataset (:func:`prepare`).
        training: augment, shuffle and drop the last partial batch. Evaluation
            (``False``) never augments, keeps native size and split order.
        batch_size: examples per batch (the *global* batch with ``input_context``,
            divided per replica). Batch size 1 at native size is the reference recipe.
        crop_size: ``(h, w)`` or ``s`` for fixed-size training crops (padding
            smaller images with the mean pixel and label 255).
        preprocessing: ``"fcn"`` (reference BGR minus mean), ``None`` (RGB 0-255,
            for ``include_preprocessing=True`` models) or a callable.
        scale_range: ``(low, high)`` random rescale factor, or None for none.
        flip: random horizontal flips (training only).
        jitter: random brightness/contrast/saturation/hue (training only).
        shuffle_buffer: buffer for element-level shuffling (default 256; file
            sources shuffle their whole file list instead).
        seed: seed of shuffling and augmentation.
        deterministic: bit-identical epochs for a seed (needs ``seed``); off lets
            parallel stages reorder examples for speed.
        cache: cache decoded examples in memory (``True``) or in a file (path).
        input_context: a ``tf.distribute.InputContext``: this worker reads only
            its shard.
        pad_to_batch: when training without ``crop_size`` and ``batch_size > 1``,
            pad each batch to its largest example (images by the mean, labels 255).
            Evaluation batches are always padded this way.
        repeat: repeat indefinitely (for ``steps_per_epoch``).

    Example:
        >>> import tempfile
        >>> from fcn_keras.data import voc_source, write_synthetic_voc
        >>> root = write_synthetic_voc(tempfile.mkdtemp(), num_images=4)
        >>> ds = make_pipeline(voc_source(root, "train"), training=True, batch_size=2, crop_size=64, seed=0)
        >>> images, labels = next(iter(ds))
        >>> images.shape, labels.dtype.name
        (TensorShape([2, 64, 64, 3]), 'int32')
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if deterministic and seed is None:
        raise ValueError("deterministic=True needs a seed (pass seed=<int>)")
    if isinstance(crop_size, int):
        crop_size = (crop_size, crop_size)
    if scale_range is not None and not 0 < scale_range[0] <= scale_range[1]:
        raise ValueError(f"scale_range must be (low, high) with 0 < low <= high, got {scale_range}")
    if training and batch_size > 1 and crop_size is None and not pad_to_batch:
        raise ValueError(
            "make_pipeline: images of different sizes cannot be stacked; for batch_size > 1 pass"
            " crop_size=(h, w) or pad_to_batch=True"
        )
    per_replica = batch_size if input_context is None else input_context.get_per_replica_batch_size(batch_size)

    dataset = _source_dataset(data, training, shuffle_buffer, seed, cache, input_context)
    fixed_size = training and crop_size is not None
    order = bool(deterministic or not training) or None

    def finish(image, label):
        return preprocess(image, preprocessing), label

    if training:
        def _augment(pair, example_seed):
            image, label = augment(
                pair[0], pair[1], example_seed, crop_size=crop_size, scale_range=scale_range, flip=flip, jitter=jitter
            )
            # Fixed-size batches are preprocessed after batching: one vectorised op per batch.
            return (image, label) if fixed_size else finish(image, label)

        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        dataset = tf.data.Dataset.zip((dataset, seeds)).map(_augment, num_parallel_calls=AUTOTUNE, deterministic=order)
    else:
        dataset = dataset.map(
            lambda image, label: finish(tf.cast(image, tf.float32), tf.cast(label, tf.int32)),
            num_parallel_calls=AUTOTUNE,
            deterministic=True,
        )
    if repeat:
        dataset = dataset.repeat()
    if fixed_size:
        dataset = dataset.batch(per_replica, drop_remainder=True)
        dataset = dataset.map(finish, num_parallel_calls=AUTOTUNE, deterministic=order)
    elif per_replica == 1:
        dataset = dataset.batch(1, drop_remainder=training)
    else:
        # Padding after preprocessing: 0 is the mean pixel for "fcn", black otherwise.
        dataset = dataset.padded_batch(
            per_replica, padding_values=(0.0, IGNORE_LABEL), drop_remainder=training
        )
    options = tf.data.Options()
    options.deterministic = bool(deterministic or not training)
    return dataset.with_options(options).prefetch(AUTOTUNE)
