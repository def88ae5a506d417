"""SegNet: the family checks at a small width, the prototxt's layers and names, switches inside the net, size."""

from __future__ import annotations

import numpy as np
import pytest
import keras

from fcn_keras.models.segnet import BN_EPSILON, CAMVID_CLASS_NAMES, SegNet, segnet
from tests.models.family_checks import check_exports, check_logits, check_round_trip, random_images, randomize
from tests.models.test_unpooling import caffe_max_pool_with_mask, caffe_upsample

ALPHA = 1 / 16
IMAGES = random_images([(48, 64), (37, 50)])

# segnet_train.prototxt's convolutions in order, with num_output (classes for conv1_1_D).
PROTOTXT_CONVS = [
    ("conv1_1", 64), ("conv1_2", 64), ("conv2_1", 128), ("conv2_2", 128),
    ("conv3_1", 256), ("conv3_2", 256), ("conv3_3", 256), ("conv4_1", 512), ("conv4_2", 512), ("conv4_3", 512),
    ("conv5_1", 512), ("conv5_2", 512), ("conv5_3", 512),
    ("conv5_3_D", 512), ("conv5_2_D", 512), ("conv5_1_D", 512), ("conv4_3_D", 512), ("conv4_2_D", 512),
    ("conv4_1_D", 256), ("conv3_3_D", 256), ("conv3_2_D", 256), ("conv3_1_D", 128), ("conv2_2_D", 128),
    ("conv2_1_D", 64), ("conv1_2_D", 64), ("conv1_1_D", None),
]


@pytest.fixture(scope="module")
def model():
    return randomize(segnet(num_classes=3, alpha=ALPHA))


@pytest.mark.backend_agnostic
def test_logits_have_the_input_size(model):
    # Odd sizes: partial pooling windows at every level down to 1x1 (each size is one more compiled graph).
    check_logits(model, random_images([(37, 50), (5, 3)]))


def test_round_trip(model, tmp_path):
    check_round_trip(model, IMAGES, tmp_path)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="exports need TensorFlow")
def test_exports(model, tmp_path):
    check_exports(model, IMAGES, tmp_path)


def test_layers_are_the_prototxts(model):
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [layer.name for layer in convs] == [name for name, _ in PROTOTXT_CONVS]
    for layer, (name, filters) in zip(convs, PROTOTXT_CONVS):
        assert layer.filters == (3 if filters is None else max(1, round(filters * ALPHA))), name
        assert (layer.kernel_size, layer.padding, layer.strides) == ((3, 3), "same", (1, 1)), name
    names = [layer.name for layer in model.layers]
    batch_norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert [layer.name for layer in batch_norms] == [f"{name}_bn" for name, _ in PROTOTXT_CONVS[:-1]]
    assert all(layer.epsilon == BN_EPSILON for layer in batch_norms)
    for name, _ in PROTOTXT_CONVS[:-1]:  # conv -> its BN -> its ReLU (relu1_1, relu5_3_D, ...)
        i = names.index(name)
        assert names[i + 1 : i + 3] == [f"{name}_bn", name.replace("conv", "relu")]
    assert [n for n in names if n.startswith(("pool", "upsample"))] == [
        "pool1", "pool2", "pool3", "pool4", "pool5", "upsample5", "upsample4", "upsample3", "upsample2", "upsample1"]
    assert names[-1] == "conv1_1_D" and model.get_layer("conv1_1_D").dtype_policy.name == "float32"


def test_upsample_puts_decoder_values_at_the_encoder_maxima(model):
    # upsample1 takes relu2_1_D's values to the switches of pool1 over relu1_2 (whose ReLU zeros tie a lot).
    probe = keras.Model(model.input, [model.get_layer(n).output for n in ("relu1_2", "relu2_1_D", "upsample1")])
    encoder, values, unpooled = (keras.ops.convert_to_numpy(t) for t in probe.predict_on_batch(
        np.asarray(IMAGES[1], "float32")[None]))
    assert (encoder == 0).mean() > 0.1  # ties present
    for k in range(encoder.shape[-1]):
        _, mask = caffe_max_pool_with_mask(encoder[0, :, :, k])
        np.testing.assert_array_equal(unpooled[0, :, :, k], caffe_upsample(values[0, :, :, k], mask, (37, 50)))


def test_defaults_are_the_tutorials_camvid_network():
    model = segnet(alpha=ALPHA)
    assert (model.num_classes, model.class_names, model.preprocessing) == (11, CAMVID_CLASS_NAMES, "segnet")
    assert type(model) is SegNet and model.architecture == "segnet"


def test_weights_errors_are_clear():
    with pytest.raises(ValueError, match="needs alpha=1.0"):
        segnet(weights="imagenet", alpha=0.5)
    with pytest.raises(FileNotFoundError, match="vgg16_notop.h5"):
        segnet(weights="/nonexistent/vgg16_notop.h5")  # fails before building the network


def test_parameter_count_is_the_papers():
    # The one full-size SegNet of the suite: 29.45M in the paper.
    full = segnet(num_classes=11)
    trainable = sum(int(np.prod(w.shape)) for w in full.trainable_weights)
    assert (full.count_params(), trainable) == (29_465_227, 29_449_355)
    assert abs(trainable - 29.45e6) / 29.45e6 < 0.02
