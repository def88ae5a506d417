"""The recipe's training and validation datasets: where they come from, and batches that never depend on history.

The training batches of a run are a pure function of ``(seed, epoch, step)``:
each epoch draws its shuffling and augmentation from its own seed, and every
*iteration* of a dataset :func:`train_dataset` returns yields the same
batches. Keras may start an iteration of its own before training (its
TensorFlow trainer peeks at one batch when the model lives under a
``tf.distribute`` strategy); that cannot shift what is trained, so a
mirrored run trains exactly the batches of a one-device run, and a resumed
run those of an uninterrupted one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Union

import keras
import numpy as np
import tensorflow as tf

from fcn_keras import data
from fcn_keras.data import FileSource
from fcn_keras.palette import IGNORE_LABEL
from fcn_keras.preprocessing import preprocess
from fcn_keras.recipes import Recipe

Source = Union[FileSource, str, tf.data.Dataset]
"""What :func:`fcn_keras.data.make_pipeline` reads: a FileSource, a prepared directory or a dataset."""


def data_sources(recipe: Recipe, data_root: str | os.PathLike | dict | None, out_dir: str | os.PathLike
                 ) -> tuple[Source, Source]:
    """``(train_source, val_source)`` for the recipe's dataset.

    ``data_root``: the dataset folder (VOC layout for ``voc``; a prepared
    folder for ``prepared``; for ``folder``, the folder holding the split
    files ``<train_split>.txt`` and ``<val_split>.txt`` of ``image label``
    lines, read with the recipe's ``metadata``), a dict ``{"sbd": ..., "voc": ...}`` for ``sbd``
    (SBD for training, VOC for the ``seg11valid`` validation), or ``None`` for
    ``synthetic`` (written into ``out_dir/synthetic``).

    Example:
        >>> from fcn_keras.recipes import load_recipe
        >>> data_sources(load_recipe("fcn32s_voc"), None, "runs/a")
        Traceback (most recent call last):
        ...
        ValueError: recipe fcn32s_voc (dataset 'sbd') needs data_root['sbd']: pass data_root={'sbd': '/path/to/sbd'}
    """
    d, n = recipe.data, recipe.model.num_classes
    kind = d.dataset
    roots = data_root if isinstance(data_root, dict) else {kind: data_root} if data_root is not None else {}
    if kind == "synthetic":
        root = roots.get("synthetic") or Path(out_dir) / "synthetic"
        data.write_synthetic_voc(root, num_images=d.synthetic_images, seed=recipe.training.seed,
                                 image_size=tuple(d.synthetic_size), num_classes=n)
        return data.voc_source(root, d.train_split, num_classes=n), data.voc_source(root, d.val_split, num_classes=n)
    if kind == "voc":
        root = _need(roots, "voc", recipe)
        return data.voc_source(root, d.train_split, num_classes=n), data.voc_source(root, d.val_split, num_classes=n)
    if kind == "sbd":
        train = data.sbd_source(_need(roots, "sbd", recipe), d.train_split)
        voc = _need(roots, "voc", recipe)
        val = data.seg11valid_source(voc) if d.val_split == "seg11valid" else data.voc_source(voc, d.val_split)
        return train, val
    if kind == "prepared":
        return str(_need(roots, "prepared", recipe)), str(_need(roots, "prepared_val", recipe))
    if kind == "folder":
        root = Path(_need(roots, "folder", recipe))
        return tuple(_folder_split(recipe, root, split) for split in (d.train_split, d.val_split))
    raise ValueError(f"{recipe.source}: unsupported dataset {kind!r}")


def _folder_split(recipe: Recipe, root: Path, split: str) -> FileSource:
    split_file = root / (split if split.endswith(".txt") else f"{split}.txt")  # an absolute path stays itself
    metadata = recipe.data.metadata or None
    source = data.folder_source(split_file, metadata=metadata,
                                num_classes=None if metadata else recipe.model.num_classes)
    if source.num_classes is not None and source.num_classes != recipe.model.num_classes:
        raise ValueError(f"{recipe.source}: [model] num_classes = {recipe.model.num_classes} but {split_file} "
                         f"has {source.num_classes} classes (metadata {recipe.data.metadata!r})")
    return source


def _need(roots: dict, key: str, recipe: Recipe):
    if not roots.get(key):
        raise ValueError(f"recipe {recipe.name} (dataset {recipe.data.dataset!r}) needs data_root[{key!r}]: "
                         f"pass data_root={{{key!r}: '/path/to/{key}'}}")
    return roots[key]


def label_checked(dataset: tf.data.Dataset, num_classes: int, ignore_label: int = 255) -> tf.data.Dataset:
    """Adds a per-batch check that labels are class indices or ``ignore_label`` (fails with a clear message).

    The loss checks labels too, but TensorFlow drops assertions inside
    XLA-compiled steps; this check runs in the input pipeline.

    Example:
        >>> labels = tf.constant([[0, 2, 255]])
        >>> batches = label_checked(tf.data.Dataset.from_tensors((labels, labels)), num_classes=3)
        >>> [y.numpy().tolist() for _, y in batches]
        [[[0, 2, 255]]]
    """

    def check(images, labels):
        bad = tf.logical_and(tf.not_equal(labels, ignore_label),
                             tf.logical_or(labels < 0, labels >= num_classes))
        assertion = tf.debugging.Assert(
            tf.logical_not(tf.reduce_any(bad)),
            [f"labels must be class indices in [0, {num_classes}) or the ignore label {ignore_label}; "
             "found out-of-range labels, largest:", tf.reduce_max(tf.where(bad, labels, -1))])
        with tf.control_dependencies([assertion]):
            return images, tf.identity(labels)

    return dataset.map(check)


def epoch_seed(seed: int, epoch: int) -> int:
    """The data seed of one epoch (shuffling and augmentation): a fixed function of the run's seed and the epoch.

    Example:
        >>> epoch_seed(3, 0) != epoch_seed(3, 1)
        True
    """
    return (seed * 1_000_003 + epoch) % (2**31 - 1)


def pipeline_preprocessing(model: keras.Model) -> Callable | None:
    """The ``preprocessing`` of :func:`fcn_keras.data.make_pipeline` that ``model`` needs on RGB 0-255 images.

    ``None`` when the model applies its preprocessing itself, else
    :func:`fcn_keras.preprocessing.preprocess` in the model's
    ``input_preprocessing`` mode. Nothing is guessed.

    Example:
        >>> from fcn_keras.models import build_fcn
        >>> pipeline_preprocessing(build_fcn("fcn32s", num_classes=2, include_preprocessing=True)) is None
        True
    """
    mode = model.input_preprocessing
    if mode is None:
        return None
    return lambda images: preprocess(images, mode)


def class_names_of(source: Source) -> tuple[str, ...] | None:
    """The class names a dataset source declares (a FileSource's, a prepared dataset's manifest), else ``None``.

    Example:
        >>> class_names_of(tf.data.Dataset.range(1)) is None
        True
    """
    if isinstance(source, FileSource):
        names = source.class_names
    elif isinstance(source, (str, os.PathLike)):
        names = data.read_manifest(source).get("class_names")
    else:
        names = None
    return tuple(names) if names else None


def palette_of(source: Source):
    """The class colours a dataset source declares (a folder dataset's metadata), else ``None``.

    Example:
        >>> palette_of(FileSource("demo", ("a",), ("a.jpg",), ("a.png",), palette=np.zeros((2, 3), np.uint8))).shape
        (2, 3)
    """
    return source.palette if isinstance(source, FileSource) else None


def train_dataset(recipe: Recipe, source: Source, epochs: range, skip: int = 0,
                  preprocessing: str | Callable | None = "fcn") -> tf.data.Dataset:
    """The training batches of ``epochs`` (``t.steps_per_epoch`` each, each from :func:`epoch_seed`), less the first ``skip``.

    Every iteration of the returned dataset yields the same batches: it builds
    its pipelines afresh each time it is iterated (``flat_map`` over one
    element), so no iteration inherits the reshuffling state of an earlier
    one. Labels are checked (:func:`label_checked`).

    Example:
        >>> import tempfile
        >>> from fcn_keras.recipes import load_recipe
        >>> recipe = load_recipe("tiny_synthetic").replace(data={"synthetic_images": 8}, training={"steps_per_epoch": 2})
        >>> train_source, _ = data_sources(recipe, None, tempfile.mkdtemp())
        >>> batches = train_dataset(recipe, train_source, range(0, 2), skip=1)
        >>> [labels.shape.as_list() for _, labels in batches]
        [[4, 64, 64], [4, 64, 64], [4, 64, 64]]
    """
    t = recipe.training

    def epoch_batches(epoch: int) -> tf.data.Dataset:
        return _augmented(recipe, source, epoch_seed(t.seed, epoch), preprocessing).take(t.steps_per_epoch)

    def fresh(_) -> tf.data.Dataset:
        parts = [epoch_batches(epoch) for epoch in epochs]
        batches = parts[0]
        for part in parts[1:]:
            batches = batches.concatenate(part)
        return batches.skip(skip)

    options = tf.data.Options()
    options.deterministic = True
    dataset = tf.data.Dataset.range(1).flat_map(fresh).with_options(options)
    return label_checked(dataset, recipe.model.num_classes).prefetch(tf.data.AUTOTUNE)


def statistics_batches(recipe: Recipe, source: Source, epoch: int,
                       preprocessing: str | Callable | None = "fcn") -> tf.data.Dataset:
    """The ``batchnorm_batches`` training batches that epoch ``epoch``'s BatchNorm statistics are estimated from.

    Augmented like training, from a seed of their own (never the training
    batches' seed), and the same on every worker of a distributed run.

    Example:
        >>> import tempfile
        >>> from fcn_keras.recipes import load_recipe
        >>> recipe = load_recipe("tiny_synthetic").replace(training={"batchnorm_batches": 3})
        >>> train_source, _ = data_sources(recipe, None, tempfile.mkdtemp())
        >>> len(list(statistics_batches(recipe, train_source, epoch=0)))
        3
    """
    t = recipe.training
    return _augmented(recipe, source, epoch_seed(t.seed + 7919, epoch), preprocessing).take(t.batchnorm_batches)


def _augmented(recipe: Recipe, source: Source, seed: int, preprocessing) -> tf.data.Dataset:
    """The recipe's endless augmented training batches drawn from ``seed``."""
    d = recipe.data
    return data.make_pipeline(
        source, training=True, batch_size=d.batch_size, crop_size=tuple(d.crop_size) or None,
        preprocessing=preprocessing, scale_range=tuple(d.scale_range) or None, flip=d.flip,
        seed=seed, deterministic=True, repeat=True,
    )


def val_dataset(recipe: Recipe, source: Source, replicas: int = 1,
                preprocessing: str | Callable | None = "fcn") -> tf.data.Dataset:
    """Validation batches of one image per replica, never padded (``validation_steps`` of them, if set).

    Padding changes what an FCN predicts near the border (its receptive field
    is hundreds of pixels), so a batch only holds images of one size: with
    several replicas, images are grouped by size (tf.data's ``group_by_window``)
    and the last batch of a size is filled up with blank images whose every
    label is the ignore label 255. Every replica gets one image at every step,
    and every real pixel is counted exactly once: the validation metrics are
    those of :func:`fcn_keras.evaluation.evaluate`. At most ``replicas - 1``
    images of each size wait for their batch. With one replica the batches are
    the images in split order.

    Example:
        >>> import tempfile
        >>> from fcn_keras.recipes import load_recipe
        >>> recipe = load_recipe("tiny_synthetic").replace(data={"synthetic_images": 8})
        >>> _, val_source = data_sources(recipe, None, tempfile.mkdtemp())
        >>> [images.shape.as_list() for images, _ in val_dataset(recipe, val_source, replicas=2)]
        [[2, 64, 64, 3]]
    """
    dataset = data.make_pipeline(source, training=False, batch_size=1, preprocessing=preprocessing)
    if replicas > 1:
        dataset = _same_size_batches(dataset.unbatch(), replicas)
    if recipe.training.validation_steps:
        dataset = dataset.take(recipe.training.validation_steps)
    return label_checked(dataset, recipe.model.num_classes)


def _same_size_batches(examples: tf.data.Dataset, batch_size: int) -> tf.data.Dataset:
    """Batches of ``batch_size`` examples of one size; a size's last batch filled up with all-ignored blanks."""

    def size_key(image, label):
        shape = tf.shape(label, out_type=tf.int64)
        return shape[0] * 2**32 + shape[1]

    def full_batch(_, window):
        blank = window.take(1).map(lambda image, label: (tf.zeros_like(image), tf.fill(tf.shape(label), IGNORE_LABEL)))
        return window.concatenate(blank.repeat(batch_size - 1)).take(batch_size).batch(batch_size)

    return examples.group_by_window(size_key, full_batch, window_size=batch_size)
