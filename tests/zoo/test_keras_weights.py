""".weights.h5 files matched to a model by layer name: what Keras' positional loading gets wrong, refused or fixed.

The files are written by Keras' own save_weights from small real models.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import fcn_keras
from fcn_keras.zoo.keras_weights import (WeightsMismatchError, check_weights_file, load_weights_by_name,
                                         model_weight_layers, weights_file_layers)


def _two_convs(order, seed):
    """Two 3->3 convolutions named "a" and "b", applied in ``order``: equal shapes, different places."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((None, None, 3))
    x = inputs
    for name in order:
        x = keras.layers.Conv2D(3, 1, name=name)(x)
    return keras.Model(inputs, x)


def test_the_file_layout_read_is_the_one_keras_writes(tmp_path):
    """Every layer with weights, nested encoder included, read back from Keras' file with its name and
    shapes: if Keras stopped recording layer names this way, this fails before any zoo load does."""
    model = fcn_keras.fcn8s(num_classes=3, backbone="tiny_vgg")
    path = tmp_path / "fcn8s.weights.h5"
    model.save_weights(path)
    expected = {name: [tuple(w.shape) for w in layer.weights] for name, layer in model_weight_layers(model).items()}
    assert weights_file_layers(path) == expected
    assert "tiny_vgg/block3_conv2" in expected and "score_pool3" in expected and len(expected) == 16


def test_layers_are_matched_by_name_not_position(tmp_path):
    source, target = _two_convs("ab", seed=1), _two_convs("ba", seed=2)
    path = tmp_path / "ab.weights.h5"
    source.save_weights(path)
    load_weights_by_name(target, path)
    for name in "ab":
        for got, want in zip(target.get_layer(name).get_weights(), source.get_layer(name).get_weights(), strict=True):
            np.testing.assert_array_equal(got, want)
    # What keras' load_weights does with the same file: each layer gets the other's weights, silently.
    positional = _two_convs("ba", seed=2)
    positional.load_weights(path)
    np.testing.assert_array_equal(positional.get_layer("b").get_weights()[0], source.get_layer("a").get_weights()[0])


def test_a_file_that_does_not_fit_names_it_and_the_first_layer_and_sets_nothing(tmp_path):
    path = tmp_path / "fcn8s.weights.h5"
    fcn_keras.fcn8s(num_classes=3, backbone="tiny_vgg").save_weights(path)

    fewer = fcn_keras.fcn32s(num_classes=3, backbone="tiny_vgg")
    before = [w.copy() for w in fewer.get_weights()]
    with pytest.raises(WeightsMismatchError, match=rf"^{path} does not fit model 'fcn32s_tiny_vgg': "
                                                   r"layer 'upscore' has no weights in the file \(1 of the model's 12"):
        load_weights_by_name(fewer, path)
    for got, want in zip(fewer.get_weights(), before, strict=True):  # checked before anything was set
        np.testing.assert_array_equal(got, want)

    other_classes = fcn_keras.fcn8s(num_classes=4, backbone="tiny_vgg")
    with pytest.raises(WeightsMismatchError, match=r"layer 'score_fr' has shapes \[\(1, 1, 128, 3\), \(3,\)\] in the "
                                                   r"file, the model's are \[\(1, 1, 128, 4\), \(4,\)\]$"):
        check_weights_file(other_classes, path)

    # A file with a layer the model lacks: keras' load_weights would ignore it without a word.
    ab = tmp_path / "ab.weights.h5"
    _two_convs("ab", seed=1).save_weights(ab)
    with pytest.raises(WeightsMismatchError, match=r"the file has weights for layer 'b', which the model lacks "
                                                   r"\(1 such layers\)$"):
        check_weights_file(_two_convs("a", seed=1), ab)


def test_files_that_are_not_keras_weights(tmp_path):
    model = fcn_keras.fcn32s(num_classes=3, backbone="tiny_vgg")
    text = tmp_path / "notes.weights.h5"
    text.write_text("not HDF5")
    with pytest.raises(WeightsMismatchError, match=rf"^{text} is not a readable Keras \.weights\.h5 file"):
        load_weights_by_name(model, text)
    import h5py

    empty = tmp_path / "empty.weights.h5"
    with h5py.File(empty, "w") as f:
        f.create_group("layers")
    with pytest.raises(WeightsMismatchError, match=r"empty\.weights\.h5 does not fit model .*holds no Keras layer weights"):
        load_weights_by_name(model, empty)


def test_a_models_auxiliary_layers_are_in_its_file_by_name(tmp_path):
    """The SIFT Flow model's geometric head, outside its output's graph, is written by save_weights under
    its layers' names and loaded back by name."""
    from fcn_keras.models.siftflow import fcn16s_two_heads

    from tests.models.family_checks import randomize

    source = randomize(fcn16s_two_heads(backbone="tiny_vgg"), seed=7)
    path = tmp_path / "siftflow.weights.h5"
    source.save_weights(path)
    found = weights_file_layers(path)
    assert {"score_fr_geo", "score_pool4_geo", "upscore2_geo", "upscore16_geo", "score_fr_sem"} <= set(found)
    assert set(found) == set(model_weight_layers(source))
    target = fcn16s_two_heads(backbone="tiny_vgg")
    load_weights_by_name(target, path)
    for name in ("score_fr_geo", "score_pool4_geo"):
        expected = source.geometric().get_layer(name).get_weights()
        for got, want in zip(target.geometric().get_layer(name).get_weights(), expected, strict=True):
            np.testing.assert_array_equal(got, want)
