"""Class activation maps: the paper's VGG16-CAM, any GAP classifier's maps, and GAP's linearity."""

from __future__ import annotations

import json

import numpy as np
import pytest
import keras

from fcn_keras.models.cam import (ClassActivationMaps, ResizeToReference, cam_classifier, cam_vgg16,
                                  class_activation_model, find_gap_head)
from tests.keras_checks import run_layer_test
from tests.models.family_checks import check_exports, check_logits, check_round_trip, random_images, randomize

SIZES = [(48, 64), (37, 50)]


@pytest.fixture(scope="module")
def model():
    return randomize(cam_vgg16(num_classes=3, alpha=1 / 16, class_names=["cat", "dog", "cow"]), seed=1)


@pytest.fixture(scope="module")
def images():
    return random_images(SIZES)


def _numpy(x) -> np.ndarray:
    return keras.ops.convert_to_numpy(x)


def _feature_maps(cam_model, name: str, x) -> np.ndarray:
    """``M_c`` at the features' resolution: the output of the layer named like the classifier's Dense."""
    return _numpy(keras.Model(cam_model.input, cam_model.get_layer(name).output)(x, training=False))


@pytest.mark.backend_agnostic
def test_logits_are_the_maps_at_the_input_size(model, images):
    check_logits(model, images)
    assert model.architecture == "cam" and model.backbone == "vgg16" and model.input_preprocessing == "caffe"


@pytest.mark.backend_agnostic
def test_the_mean_of_each_map_is_the_class_logit_minus_its_bias(model, images):
    # GAP is linear: mean_xy sum_k w_k^c f_k(x, y) = sum_k w_k^c mean_xy f_k = z_c - b_c.
    classifier = cam_classifier(model, classifier_activation=None)
    bias = _numpy(model.get_layer("CAM_fc").dense.bias)
    for image in images:
        x = image[None].astype("float32") - 110.0
        logits = _numpy(classifier(x, training=False))[0]
        maps = _feature_maps(model, "CAM_fc", x)[0]
        assert maps.shape == (*[-(-s // 16) for s in image.shape[:2]], 3)  # four ceil-mode poolings
        np.testing.assert_allclose(maps.mean(axis=(0, 1)), logits - bias, rtol=1e-5, atol=1e-5)
        assert np.abs(logits - bias).max() > 1e-3  # the classes differ: the check can fail


# TensorFlow pass only: on JAX, building MobileNetV2 compiles each initialiser (a minute on 2 cores).
def test_any_keras_applications_classifier_gives_its_maps():
    mobilenet = keras.applications.MobileNetV2(alpha=0.35, weights=None, input_shape=(64, 64, 3), classes=5)
    head = find_gap_head(mobilenet)
    assert (type(head.pooling).__name__, head.dense.name) == ("GlobalAveragePooling2D", "predictions")
    randomize(mobilenet, seed=2, scale=0.5)
    cam = class_activation_model(mobilenet, preprocessing="tf")
    assert cam.class_names == tuple(f"class {i}" for i in range(5)) and cam.backbone == mobilenet.name
    assert cam.get_layer("Conv1") is mobilenet.get_layer("Conv1")  # the classifier's own layers and variables
    x = np.random.default_rng(0).uniform(-1, 1, (1, 64, 64, 3)).astype("float32")
    assert _numpy(cam(x)).shape == (1, 64, 64, 5)
    # The classifier's softmax output: log p_c - log p_0 = z_c - z_0, independent of the maps' arithmetic.
    log_p = np.log(_numpy(mobilenet(x, training=False))[0].astype(np.float64))
    means = _feature_maps(cam, "predictions", x)[0].mean(axis=(0, 1)) + _numpy(head.dense.bias)
    np.testing.assert_allclose(means - means[0], log_p - log_p[0], rtol=1e-4, atol=1e-4)
    # Rebuilt on any input size, over the same layers.
    anysize = class_activation_model(mobilenet, preprocessing="tf", input_shape=(None, None, 3))
    assert _numpy(anysize(np.zeros((1, 70, 90, 3), "float32"))).shape == (1, 70, 90, 5)
    assert anysize.get_layer("Conv1") is mobilenet.get_layer("Conv1")


def test_a_classifier_without_a_gap_head_is_refused_by_name():
    x = keras.Input((8, 8, 3))
    y = keras.layers.Dense(2)(keras.layers.Flatten()(keras.layers.Conv2D(4, 3)(x)))
    with pytest.raises(ValueError, match="model 'flat_classifier' has no GlobalAveragePooling2D -> Dense head"):
        class_activation_model(keras.Model(x, y, name="flat_classifier"), preprocessing="tf")
    gap = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(x))
    hidden = keras.layers.Dense(2)(keras.layers.Dense(8)(gap))  # not linear in the features any more
    with pytest.raises(ValueError, match="'two_dense' has no GlobalAveragePooling2D"):
        find_gap_head(keras.Model(x, hidden, name="two_dense"))


def test_training_the_classifier_trains_the_maps(model, images):
    fresh = randomize(cam_vgg16(num_classes=3, alpha=1 / 16), seed=3)
    classifier = cam_classifier(fresh)
    x = np.stack([images[0], images[0][::-1]]).astype("float32") - 110.0
    before = _numpy(fresh(x))
    classifier.compile(keras.optimizers.SGD(0.1), "categorical_crossentropy")
    classifier.fit(x, np.eye(3)[[0, 2]], epochs=1, verbose=0)
    after = _numpy(fresh(x))
    assert np.abs(after - before).max() > 1e-4
    # The classifier view saved and turned back into maps gives the same maps.
    again = class_activation_model(classifier, preprocessing="caffe")
    np.testing.assert_allclose(_numpy(again(x)), after, rtol=1e-6, atol=1e-6)


def test_round_trip(model, images, tmp_path):
    check_round_trip(model, images, tmp_path)


def test_a_classifiers_cam_model_round_trips(tmp_path):
    x = keras.Input((None, None, 3))
    f = keras.layers.BatchNormalization()(keras.layers.Conv2D(6, 3, strides=2, activation="relu")(x))
    p = keras.layers.Dropout(0.2)(keras.layers.GlobalAveragePooling2D()(f))
    classifier = keras.Model(x, keras.layers.Dense(2, activation="softmax", name="fc")(p), name="small")
    cam = class_activation_model(randomize(classifier, seed=4), ["sky", "sea"], preprocessing="tf")
    cam.save(tmp_path / "cam.keras")
    with keras.saving.custom_object_scope({}):
        loaded = keras.models.load_model(tmp_path / "cam.keras", safe_mode=True, compile=False)
    # A plain SegmentationModel stores its functional graph, whose build shapes read back as lists.
    assert type(loaded) is type(cam) and json.loads(json.dumps(loaded.get_config())) == \
        json.loads(json.dumps(cam.get_config()))
    assert loaded.identity() == cam.identity() and loaded.count_params() == cam.count_params()
    image = random_images([(20, 30)])[0][None].astype("float32") / 127.5 - 1
    np.testing.assert_allclose(_numpy(loaded(image)), _numpy(cam(image)), rtol=1e-6, atol=1e-6)


def test_exports(model, images, tmp_path):
    check_exports(model, images[1:], tmp_path)  # the odd size: conversion, not images, is what costs


def test_layers(tmp_path):
    def maps():
        dense = keras.layers.Dense(3, name="fc")
        dense.build((None, 4))
        return ClassActivationMaps(dense)

    features = np.random.default_rng(0).normal(size=(2, 5, 6, 4)).astype("float32")
    run_layer_test(maps, features, (2, 5, 6, 3), tmp_path)
    run_layer_test(ResizeToReference, [features, np.zeros((2, 9, 13, 1), "float32")], (2, 9, 13, 4), tmp_path)


def test_the_upsampling_is_bilinear_with_half_pixel_centres():
    x = np.random.default_rng(1).normal(size=(1, 4, 5, 2)).astype("float32")
    for size in ((4, 5), (9, 13), (16, 20)):
        ours = _numpy(ResizeToReference()([x, np.zeros((1, *size, 1), "float32")]))
        theirs = _numpy(keras.ops.image.resize(x, size, interpolation="bilinear", antialias=False))
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)


def test_parameters_at_full_width_and_the_imagenet_convolutions(tmp_path):
    # deploy_vgg16CAM.prototxt: VGG16's 13 convolutions, CAM_conv 3x3 512 -> 1024 in two groups, CAM_fc 1024 -> 1000.
    vgg = keras.applications.VGG16(include_top=False, weights=None)
    path = tmp_path / "vgg16_notop.weights.h5"
    vgg.save_weights(path)
    model = cam_vgg16(weights=str(path))
    conv, cam_conv, fc = 14_714_688, 3 * 3 * 256 * 1024 + 1024, 1024 * 1000 + 1000
    assert model.count_params() == conv + cam_conv + fc == 18_100_008
    assert model.ignore_label == 1000  # 255 is an ImageNet class
    for ours, theirs in (("conv1_1", "block1_conv1"), ("conv5_3", "block5_conv3")):
        for a, b in zip(model.get_layer(ours).get_weights(), vgg.get_layer(theirs).get_weights()):
            np.testing.assert_array_equal(a, b)


def test_bad_arguments_are_refused_by_name(tmp_path):
    with pytest.raises(ValueError, match="need alpha=1"):
        cam_vgg16(weights="imagenet", alpha=0.5)
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        cam_vgg16(weights=str(tmp_path / "missing.h5"))
    with pytest.raises(ValueError, match="group: 2 needs both even"):
        cam_vgg16(num_classes=2, alpha=0.1)
