"""zoo.load(weights_path="x.weights.h5") at full size: where the file comes from, and whether it fits.

The cache's conversion is made here from a .caffemodel of random weights in
Caffe's layouts (the published files cannot be downloaded on this machine).
"""

from __future__ import annotations

import gc
import shutil

import keras
import numpy as np
import pytest

import fcn_keras
import fcn_keras.zoo as zoo
from fcn_keras.caffe import write_caffemodel

from tests.zoo.caffe_layouts import assert_converted, caffe_layers
from tests.zoo.zoo_env import TmpZoo


def _free():
    keras.backend.clear_session()
    gc.collect()


def test_the_caches_conversion_is_verified_anywhere_and_other_weights_only_when_asked(tmp_path, monkeypatch):
    tmp_zoo = TmpZoo(tmp_path, monkeypatch)
    file = tmp_zoo.add_card("fcn32s_voc", url="http://127.0.0.1:9/fcn32s-heavy-pascal.caffemodel")
    placed = tmp_zoo.downloads / file
    placed.parent.mkdir(parents=True)
    written = caffe_layers("fcn32s", seed=5)
    write_caffemodel(placed, written)
    zoo.download("fcn32s_voc", progress=False)  # verified by structure, converted and recorded
    (converted,) = (tmp_zoo.home / "converted").iterdir()

    # The cache's conversion, copied anywhere, is the published weights: its hash is the one recorded.
    copy = shutil.copy(converted, tmp_path / "copied.weights.h5")
    model = zoo.load("fcn32s_voc", weights_path=copy)
    assert model.card["weights"] == "published"
    assert_converted(model, [layer for layer in written if layer.name in ("conv1_1", "score_fr", "upscore")])

    # Fine-tuned weights of the same architecture are not the published ones: refused, naming the
    # file, unless asked for; then loaded and marked as unverified.
    model.get_layer("score_fr").set_weights([np.full((1, 1, 4096, 21), 0.5, "float32"), np.ones(21, "float32")])
    tuned = tmp_path / "tuned.weights.h5"
    model.save_weights(tuned)
    del model
    _free()
    with pytest.raises(zoo.ChecksumError, match=rf"^{tuned}: sha256 is [0-9a-f]{{64}}, but this cache .* records "
                                                rf"[0-9a-f]{{64}} \(converted/{converted.name}\) as the conversion of "
                                                rf"zoo model 'fcn32s_voc'.*verify=False"):
        zoo.load("fcn32s_voc", weights_path=tuned)
    model = zoo.load("fcn32s_voc", weights_path=tuned, verify=False)
    assert model.card["weights"] == "unverified file"
    np.testing.assert_array_equal(model.get_layer("score_fr").get_weights()[1], np.ones(21, "float32"))
    assert_converted(model, [layer for layer in written if layer.name == "conv1_1"])
    del model
    _free()

    # Another cache (another machine) has verified no download: the copy is not taken for published there.
    monkeypatch.setenv("FCN_KERAS_HOME", str(tmp_path / "elsewhere"))
    with pytest.raises(zoo.ChecksumError, match=r"copied\.weights\.h5: sha256 is .* records none as the conversion"):
        zoo.load("fcn32s_voc", weights_path=copy)


def test_a_weights_file_for_another_model_names_the_file_and_the_first_layer(tmp_path, monkeypatch):
    monkeypatch.setenv("FCN_KERAS_HOME", str(tmp_path / "home"))
    five = tmp_path / "fcn32s-5-classes.weights.h5"
    fcn_keras.fcn32s(num_classes=5).save_weights(five)
    _free()
    with pytest.raises(zoo.ChecksumError, match="fcn32s-5-classes.weights.h5"):  # where it comes from: checked first
        zoo.load("fcn32s_voc", weights_path=five)
    # Whether it fits is checked whatever verify says: weights of another head do not load into this one.
    with pytest.raises(zoo.WeightsMismatchError,
                       match=rf"^weights_path {five} does not fit model 'fcn32s_voc': layer 'score_fr' has shapes "
                             r"\[\(1, 1, 4096, 5\), \(5,\)\] in the file, the model's are \[\(1, 1, 4096, 21\), \(21,\)\]$"):
        zoo.load("fcn32s_voc", weights_path=five, verify=False)
    _free()
    small = tmp_path / "tiny.weights.h5"
    fcn_keras.fcn32s(num_classes=21, backbone="tiny_vgg").save_weights(small)
    with pytest.raises(ValueError, match=rf"^weights_path {small} does not fit model 'fcn32s_voc': layer 'conv1_1' "
                                         r"has no weights in the file"):
        zoo.load("fcn32s_voc", weights_path=small, verify=False)
    _free()
