"""The training data is a pure function of (seed, epoch, step); models are saved without training state."""

from __future__ import annotations

import numpy as np
import keras
import pytest

from fcn_keras.data import voc_source, write_synthetic_voc
from fcn_keras.training import data_sources, save_model, train_dataset, val_dataset
from tests.cli.test_train_camvid import write_camvid_like
from tests.training import tiny


def _batches(dataset):
    return [(x.numpy(), y.numpy()) for x, y in dataset]


def test_every_iteration_of_the_training_data_yields_the_same_batches(tmp_path):
    # Keras' fit iterates the data once more before training under a tf.distribute strategy (a peek at
    # one batch); make_pipeline re-randomises on each iteration of one pipeline. The training data
    # must not depend on how often it was iterated, or Mirrored would train other batches than one device.
    recipe = tiny.tiny_recipe(data={"synthetic_images": 8}, training={"steps": 6, "steps_per_epoch": 3})
    source, _ = data_sources(recipe, None, tmp_path)
    dataset = train_dataset(recipe, source, range(0, 2))
    next(iter(dataset))  # the peek
    first, second = _batches(dataset), _batches(dataset)
    assert len(first) == 6
    for (x1, y1), (x2, y2) in zip(first, second):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    # Epochs differ (each its own seed), and skipping drops exactly the leading batches (a resumed epoch).
    assert not np.array_equal(first[0][0], first[3][0])
    resumed = _batches(train_dataset(recipe, source, range(1, 2), skip=1))
    for (x1, y1), (x2, y2) in zip(first[4:], resumed):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)


def test_validation_batches_never_mix_sizes_and_hold_every_image_once(tmp_path):
    # Padding images of different sizes into one batch changes an FCN's output: under N replicas the
    # validation batches hold N images of one size, the last of a size filled with all-ignored blanks.
    root = write_synthetic_voc(tmp_path, num_images=20, seed=4, image_size=[(32, 48), (40, 40), (48, 32)],
                               num_classes=3)
    source, recipe = voc_source(root, "val", num_classes=3), tiny.tiny_recipe()
    examples = [(x[0], y[0]) for x, y in _batches(val_dataset(recipe, source, 1, preprocessing=None))]
    sizes = [y.shape for _, y in examples]
    assert len(set(sizes)) == 2 and sizes[0] != sizes[1], sizes

    def key(pair):
        return pair[1].shape, pair[1].tobytes(), pair[0].tobytes()

    for replicas in (2, 3):
        batches = _batches(val_dataset(recipe, source, replicas, preprocessing=None))
        assert all(len(x) == replicas for x, _ in batches)  # one image per replica at every step
        pairs = [pair for x, y in batches for pair in zip(x, y)]
        real = [pair for pair in pairs if (pair[1] != 255).any()]
        blanks = [pair for pair in pairs if (pair[1] == 255).all()]
        assert sorted(map(key, real)) == sorted(map(key, examples))  # every image once, unchanged
        assert len(blanks) == sum(-sizes.count(size) % replicas for size in set(sizes)), replicas


@keras.saving.register_keras_serializable(package="fcn_keras_tests")
class Subclassed(keras.Model):
    def __init__(self, units=2, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.dense = keras.layers.Dense(units)

    def call(self, inputs):
        return self.dense(inputs)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def test_save_model_keeps_the_class_and_weights_and_drops_training_state(tmp_path):
    model = Subclassed(units=3)
    model(np.zeros((1, 4), "float32"))
    model.compile(optimizer="sgd", loss="mse")
    model.fit(np.ones((2, 4), "float32"), np.ones((2, 3), "float32"), verbose=0)
    save_model(model, tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert type(loaded) is Subclassed and loaded.units == 3 and not loaded.compiled
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert [p.name for p in tmp_path.iterdir()] == ["m.keras"]  # no temporary file left


def test_a_folder_recipe_reads_its_split_files_with_the_metadata(tmp_path):
    root = write_camvid_like(tmp_path / "camvid", counts=(("train", 2), ("val", 1)), size=(24, 32))
    recipe = tiny.tiny_recipe(model={"num_classes": 11}, data={"dataset": "folder", "metadata": "camvid"})
    train_source, val_source = data_sources(recipe, root, tmp_path)
    assert (len(train_source), len(val_source)) == (2, 1) and train_source.class_names[3] == "Road"
    labels = np.stack([y.numpy() for _, y in val_source.dataset()])
    assert set(np.unique(labels)) == {0, 3, 8, 255}  # CamVid's void (11) is the ignore label
    with pytest.raises(ValueError, match=r"\[model\] num_classes = 3 but .*train.txt has 11 classes"):
        data_sources(recipe.replace(model={"num_classes": 3}), root, tmp_path)
    with pytest.raises(ValueError, match=r"needs data_root\['folder'\]"):
        data_sources(recipe, None, tmp_path)
