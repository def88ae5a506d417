"""The tfds adapter, offline: a tiny real builder prepared into a tmp data_dir, and tfds.testing.mock_data."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

tfds = pytest.importorskip("tensorflow_datasets")

from fcn_keras.data import DataError, make_pipeline  # noqa: E402
from fcn_keras.data.tfds_source import load_tfds  # noqa: E402

MASKS = [np.array([[1, 2, 3], [2, 2, 1]], np.uint8), np.array([[3, 1], [1, 2], [2, 2]], np.uint8)]


class FcnKerasTinyMasks(tfds.core.GeneratorBasedBuilder):
    """Two images with trimap-style masks, generated locally (no download)."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(None, None, 3)),
                "mask": tfds.features.Image(shape=(None, None, 1)),
                "file_name": tfds.features.Text(),
            }),
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        for k, mask in enumerate(MASKS):
            image = np.full((*mask.shape, 3), 40 * k, np.uint8)
            yield k, {"image": image, "mask": mask[..., None], "file_name": f"img{k}.png"}


@pytest.fixture(scope="module")
def prepared_dir(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("tfds")
    FcnKerasTinyMasks(data_dir=str(data_dir)).download_and_prepare()
    return data_dir


def test_prepared_builder_offline(prepared_dir):
    ds = load_tfds("fcn_keras_tiny_masks", "train", data_dir=prepared_dir, mask_key="mask",
                   label_map={2: 0, 3: 255}, num_classes=2, with_ids=True)
    got = [(i.numpy().decode(), image.numpy(), label.numpy()) for image, label, i in ds]
    assert sorted(g[0] for g in got) == ["0", "1"]  # no id feature in the preset: the index
    for _, image, label in got:
        mask = MASKS[image[0, 0, 0] // 40]  # the generator filled example k's image with 40 * k
        np.testing.assert_array_equal(label, np.select([mask == 2, mask == 3], [0, 255], mask.astype(int)))
        assert image.dtype == np.uint8 and image.shape == (*mask.shape, 3)
    images, labels = next(iter(make_pipeline(
        load_tfds("fcn_keras_tiny_masks", data_dir=prepared_dir, mask_key="mask", label_map={2: 0, 3: 255}),
        training=False)))
    assert images.dtype == tf.float32 and labels.dtype == tf.int32


def test_values_outside_classes_fail(prepared_dir):
    ds = load_tfds("fcn_keras_tiny_masks", data_dir=prepared_dir, mask_key="mask", num_classes=2)
    with pytest.raises(tf.errors.InvalidArgumentError, match="fcn_keras_tiny_masks/train: label values outside"):
        list(ds)


def test_not_prepared_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="offline use needs a prepared data_dir"):
        load_tfds("fcn_keras_tiny_masks", data_dir=tmp_path / "empty", mask_key="mask")


def test_oxford_pet_preset_with_mock_data():
    trimap = np.array([[1, 2], [3, 1], [2, 2]], np.uint8)

    def as_dataset(self, *args, **kwargs):
        return tf.data.Dataset.from_tensors({
            "image": np.zeros((3, 2, 3), np.uint8), "segmentation_mask": trimap[..., None],
            "file_name": "Abyssinian_1.jpg", "label": np.int64(0), "species": np.int64(0),
            "head_bbox": np.zeros(4, np.float32),
        })

    with tfds.testing.mock_data(as_dataset_fn=as_dataset):
        (image, label, example_id), = list(load_tfds("oxford_iiit_pet", "train", with_ids=True))
    assert example_id.numpy() == b"Abyssinian_1.jpg"
    np.testing.assert_array_equal(label.numpy(), [[1, 0], [255, 1], [0, 0]])
