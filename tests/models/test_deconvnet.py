"""DeconvNet: the family checks at a small width, the deploy prototxt's layers and names, input sizes, size."""

from __future__ import annotations

import gc

import numpy as np
import pytest
import keras

from fcn_keras.models.deconvnet import MIN_INPUT_SIZE, DeconvNet, deconvnet
from fcn_keras.palette import VOC_CLASSES
from tests.models.family_checks import check_exports, check_logits, check_round_trip, random_images, randomize
from tests.models.test_unpooling import caffe_max_pool_with_mask, caffe_upsample

ALPHA = 1 / 16
# The smallest size: odd, so partial pooling windows all the way down to pool5 = 7x7 (each new size costs a
# trace of the 100-layer graph, so one size does for all checks).
IMAGES = random_images([(193, 200)])

# DeconvNet_inference_deploy.prototxt: (layer, its BN, num_output, kernel), in order.
PROTOTXT = [
    *[(f"conv{b}_{i}", f"bn{b}_{i}", c, 3) for b, (c, n) in enumerate(((64, 2), (128, 2), (256, 3), (512, 3),
                                                                          (512, 3)), 1) for i in range(1, n + 1)],
    ("fc6", "bnfc6", 4096, 7), ("fc7", "bnfc7", 4096, 1), ("fc6-deconv", "fc6-deconv-bn", 512, 7),
    ("deconv5_1", "debn5_1", 512, 3), ("deconv5_2", "debn5_2", 512, 3), ("deconv5_3", "debn5_3", 512, 3),
    ("deconv4_1", "debn4_1", 512, 3), ("deconv4_2", "debn4_2", 512, 3), ("deconv4_3", "debn4_3", 256, 3),
    ("deconv3_1", "debn3_1", 256, 3), ("deconv3_2", "debn3_2", 256, 3), ("deconv3_3", "debn3_3", 128, 3),
    ("deconv2_1", "debn2_1", 128, 3), ("deconv2_2", "debn2_2", 64, 3),
    ("deconv1_1", "debn1_1", 64, 3), ("deconv1_2", "debn1_2", 64, 3),
]


@pytest.fixture(scope="module")
def model():
    return randomize(deconvnet(num_classes=3, alpha=ALPHA))


@pytest.mark.backend_agnostic
def test_logits_have_the_input_size(model):
    check_logits(model, IMAGES)


def test_round_trip(model, tmp_path):
    check_round_trip(model, IMAGES, tmp_path)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="exports need TensorFlow")
def test_exports(model, tmp_path):
    check_exports(model, IMAGES, tmp_path)


def test_layers_are_the_prototxts(model):
    names = [layer.name for layer in model.layers]
    weighted = [layer for layer in model.layers if isinstance(layer, (keras.layers.Conv2D, keras.layers.Conv2DTranspose))]
    assert [layer.name for layer in weighted] == [name for name, *_ in PROTOTXT] + ["seg-score-voc"]
    for layer, (name, bn, filters, kernel) in zip(weighted, PROTOTXT):
        assert layer.filters == round(filters * ALPHA) and layer.kernel_size == (kernel, kernel), name
        assert isinstance(layer, keras.layers.Conv2DTranspose) == ("deconv" in name), name
        relu = {"fc6": "relu6", "fc7": "relu7", "fc6-deconv": "fc6-deconv-relu"}.get(
            name, name.replace("deconv", "derelu").replace("conv", "relu"))
        i = names.index(name)
        assert names[i + 1 : i + 3] == [bn, relu], name
    assert [n for n in names if n.startswith(("pool", "unpool"))] == [
        "pool1", "pool2", "pool3", "pool4", "pool5", "unpool5", "unpool4", "unpool3", "unpool2", "unpool1"]
    score = model.get_layer("seg-score-voc")
    assert (score.kernel_size, score.dtype_policy.name, names[-1]) == ((1, 1), "float32", "seg-score-voc")


def test_unpool5_puts_fc6_deconv_at_the_switches_of_pool5(model):
    probe = keras.Model(model.input, [model.get_layer(n).output for n in ("relu5_3", "fc6-deconv-relu", "unpool5")])
    encoder, values, unpooled = (keras.ops.convert_to_numpy(t) for t in probe.predict_on_batch(
        np.asarray(IMAGES[0], "float32")[None]))
    assert encoder.shape[1:3] == (13, 13) and values.shape[1:3] == (7, 7)  # 193 -> 97 -> 49 -> 25 -> 13 -> 7
    for k in range(encoder.shape[-1]):
        _, mask = caffe_max_pool_with_mask(encoder[0, :, :, k])
        np.testing.assert_array_equal(unpooled[0, :, :, k], caffe_upsample(values[0, :, :, k], mask, (13, 13)))


def test_small_inputs_are_refused_by_name():
    assert MIN_INPUT_SIZE == 193
    for shape in [(192, 300, 3), (300, 100, 3)]:
        with pytest.raises(ValueError, match=r"input_shape .* at least 193x193"):
            deconvnet(input_shape=shape, alpha=ALPHA)
    assert deconvnet(input_shape=(193, None, 3), alpha=ALPHA).output.shape[1] == 193


def test_defaults_are_the_released_voc_network():
    model = deconvnet(alpha=ALPHA)
    assert (model.num_classes, model.class_names, model.preprocessing) == (21, VOC_CLASSES, "fcn")
    assert type(model) is DeconvNet and model.architecture == "deconvnet"
    with pytest.raises(ValueError, match="needs alpha=1.0"):
        deconvnet(weights="imagenet", alpha=0.5)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        deconvnet(weights="/nonexistent/vgg16.h5")  # before building 252M weights


def test_parameter_count_is_the_papers():
    # The one full-size DeconvNet of the suite (252M in the paper): ~5 s and ~2.2 GB while it lives.
    full = deconvnet(num_classes=21)
    counts = (full.count_params(), sum(int(np.prod(w.shape)) for w in full.trainable_weights))
    del full
    gc.collect()
    assert counts == (251_839_061, 251_805_653)
    assert abs(counts[1] - 252e6) / 252e6 < 0.02
