"""The SIFT Flow two-head FCN-16s: semantic logits out, the geometric head saved with them, both views trainable.

Small: the tiny_vgg backbone (the full-size reference trunk is converted from a
caffemodel once, in tests/zoo/test_conversion.py).
"""

from __future__ import annotations

import numpy as np
import pytest
import keras

from fcn_keras.losses import SegmentationCrossEntropy
from fcn_keras.models import SegmentationModel
from fcn_keras.models.siftflow import GEOMETRIC_CLASSES, SIFTFLOW_CLASSES, TwoHeadFCN16s, fcn16s_two_heads

from tests.models.family_checks import check_exports, check_logits, check_round_trip, logits, randomize, random_images

# siftflow-fcn16s/net.py, the layers with weights of each head.
REFERENCE_HEAD = ["score_fr_{t}", "upscore2_{t}", "score_pool4_{t}", "upscore16_{t}"]


@pytest.fixture(scope="module")
def model():
    return randomize(fcn16s_two_heads(backbone="tiny_vgg"), seed=3)


@pytest.fixture(scope="module")
def images():
    return random_images([(48, 64), (37, 50)])


@pytest.mark.backend_agnostic
def test_semantic_output_and_geometric_view(model, images):
    assert isinstance(model, TwoHeadFCN16s) and model.class_names == SIFTFLOW_CLASSES
    semantic = check_logits(model, images)
    geometric_model = model.geometric()
    assert isinstance(geometric_model, SegmentationModel) and geometric_model.class_names == GEOMETRIC_CLASSES
    geometric = check_logits(geometric_model, images)
    both = model.two_heads()(np.asarray(images[0], "float32")[None] / 127.5 - 1)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(both["semantic"])[0], semantic[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(both["geometric"])[0], geometric[0], rtol=1e-5, atol=1e-5)
    # The reference's layer names, one head each, and the geometric head's weights counted in the model.
    names = {layer.name for layer in model.two_heads().layers}
    assert {n.format(t=t) for n in REFERENCE_HEAD for t in ("sem", "geo")} | {"score_sem", "score_geo"} <= names
    assert {layer.name for layer in model.auxiliary_layers} == {n for n in names if n.endswith(("_geo", "_geoc"))}
    assert model.count_params() == model.two_heads().count_params() > geometric_model.count_params()


def test_round_trip_keeps_the_geometric_head(model, images, tmp_path):
    loaded = check_round_trip(model, images, tmp_path)
    for image in images:
        np.testing.assert_allclose(logits(loaded.geometric(), image), logits(model.geometric(), image),
                                   rtol=1e-6, atol=1e-6)
    # What the check would see had the file lost them: a fresh model's geometric scores are all zero.
    fresh = fcn16s_two_heads(backbone="tiny_vgg")
    assert np.abs(logits(model.geometric(), images[0])).max() > 1e-3
    assert not np.abs(logits(fresh.geometric(), images[0])).any()
    assert loaded.geometric_class_names == GEOMETRIC_CLASSES and loaded.geometric_palette.shape == (3, 3)


def test_two_heads_trains_both_losses_into_the_same_variables(images):
    model = randomize(fcn16s_two_heads(backbone="tiny_vgg", num_classes=4, class_names=list("abcd")), seed=5)
    two = model.two_heads()
    loss = SegmentationCrossEntropy(reduction="mean")
    two.compile(optimizer=keras.optimizers.SGD(0.1), loss={"semantic": loss, "geometric": loss})
    x = np.asarray(images[1], "float32")[None] / 127.5 - 1
    rng = np.random.default_rng(0)
    labels = {"semantic": rng.integers(0, 4, (1, 37, 50)), "geometric": rng.integers(0, 3, (1, 37, 50))}
    names = ("score_fr_sem", "score_pool4_sem", "score_fr_geo", "score_pool4_geo")
    before = {name: two.get_layer(name).get_weights()[0].copy() for name in names}
    two.train_on_batch(x, labels)
    # Both heads learnt, and the semantic model and its geometric view hold what they learnt.
    views = {"sem": model, "geo": model.geometric()}
    for name, value in before.items():
        trained = views[name[-3:]].get_layer(name).get_weights()[0]
        assert not np.allclose(trained, value), name
        np.testing.assert_array_equal(trained, two.get_layer(name).get_weights()[0])


def test_geometric_classes_need_names():
    with pytest.raises(ValueError, match="class_names must be a list of non-empty strings"):
        fcn16s_two_heads(backbone="tiny_vgg", geometric_class_names="sky")


def test_exports_the_semantic_output(model, images, tmp_path):
    reports = check_exports(model, images, tmp_path)
    assert reports["tflite"].passed
