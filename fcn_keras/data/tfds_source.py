"""TensorFlow Datasets (tfds) with segmentation masks, as ``(image, label)`` examples.

Works offline from a prepared ``data_dir`` (``download=False`` by default): prepare
the dataset once where the internet is reachable
(``tfds.builder(name, data_dir=...).download_and_prepare()``) and copy the
folder. Needs ``pip install tensorflow-datasets`` (the ``tfds`` extra).

Known datasets have a preset giving the mask feature and how its values map to
class indices; others take ``mask_key`` and ``label_map`` arguments.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

from fcn_keras.data.decode import DataError
from fcn_keras.palette import IGNORE_LABEL

TFDS_PRESETS: dict[str, dict] = {
    # Trimaps: 1 = pet, 2 = background, 3 = border (not classified) -> void.
    "oxford_iiit_pet": {
        "mask_key": "segmentation_mask",
        "label_map": {1: 1, 2: 0, 3: IGNORE_LABEL},
        "class_names": ("background", "pet"),
        "id_key": "file_name",
    },
}


def _lookup_table(label_map: dict[int, int] | None) -> np.ndarray:
    table = np.arange(256, dtype=np.int64)
    for source, target in (label_map or {}).items():
        table[int(source)] = int(target)
    return table


def load_tfds(
    name: str,
    split: str = "train",
    *,
    data_dir: str | os.PathLike | None = None,
    image_key: str = "image",
    mask_key: str | None = None,
    label_map: dict[int, int] | None = None,
    num_classes: int | None = None,
    download: bool = False,
    with_ids: bool = False,
) -> tf.data.Dataset:
    """A tfds dataset as ``(image uint8 [H,W,3], label uint8 [H,W][, id])``, in tfds order.

    Args:
        name: tfds name (``"oxford_iiit_pet"``, ``"oxford_iiit_pet:4.0.0"``, ...).
        split: tfds split expression (``"train"``, ``"test[:10%]"``).
        data_dir: where the prepared dataset lives (tfds' default otherwise).
        image_key, mask_key: feature names; ``mask_key`` defaults to the preset's.
        label_map: ``{mask value: class index or 255}``; unlisted values stay.
        num_classes: label values must be below it or 255 (preset: its class count).
        download: let tfds download and prepare (needs the internet).
        with_ids: add the example's id (the preset's id feature, else its index).

    Example (offline, from a prepared data_dir)::

        ds = load_tfds("oxford_iiit_pet", "train", data_dir="~/tensorflow_datasets")
    """
    try:
        import tensorflow_datasets as tfds  # noqa: PLC0415 - optional dependency
    except ImportError:
        raise ImportError("load_tfds needs tensorflow-datasets: pip install 'fcn_keras[tfds]'") from None
    preset = TFDS_PRESETS.get(name.split(":")[0].split("/")[0], {})
    mask_key = mask_key or preset.get("mask_key")
    if mask_key is None:
        raise ValueError(f"load_tfds: no preset for {name!r}; pass mask_key=<the segmentation mask feature>")
    label_map = preset.get("label_map") if label_map is None else label_map
    if num_classes is None and "class_names" in preset:
        num_classes = len(preset["class_names"])
    id_key = preset.get("id_key")
    try:
        dataset = tfds.load(
            name, split=split, data_dir=None if data_dir is None else str(data_dir),
            download=download, shuffle_files=False,
        )
    except AssertionError as exc:  # tfds signals "not prepared in data_dir" with an AssertionError
        raise DataError(data_dir or "~/tensorflow_datasets", f"{exc} (offline use needs a prepared data_dir)") from None
    table = tf.constant(_lookup_table(label_map))
    where = f"tfds {name}/{split}"

    def convert(index, features):
        if image_key not in features or mask_key not in features:
            raise DataError(where, f"features {sorted(features)} lack {image_key!r} or {mask_key!r}")
        image = features[image_key]
        if image.shape.rank == 3 and image.shape[-1] == 1:
            image = tf.image.grayscale_to_rgb(image)
        mask = features[mask_key]
        if mask.shape.rank == 3:
            mask = mask[..., 0]
        label = tf.gather(table, tf.cast(mask, tf.int32))
        example_id = features[id_key] if id_key in features else tf.strings.as_string(index)
        checks = [
            tf.debugging.assert_equal(
                tf.shape(image)[:2], tf.shape(label), message=f"{where}: mask size differs from image size"
            )
        ]
        if num_classes is not None:
            bad = tf.reduce_any((label >= num_classes) & (label != IGNORE_LABEL) | (label < 0))
            checks.append(tf.debugging.assert_equal(
                bad, False, message=f"{where}: label values outside [0, {num_classes}) and not 255"))
        with tf.control_dependencies(checks):
            label = tf.cast(label, tf.uint8)
        image = tf.cast(image, tf.uint8)
        return (image, label, example_id) if with_ids else (image, label)

    return dataset.enumerate().map(convert, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
