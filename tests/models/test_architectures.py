"""The four reference FCNs: geometry, parameters, exactness against the Caffe semantics."""

from __future__ import annotations

import numpy as np
import pytest
import keras

import fcn_keras
from fcn_keras.models import HEADS, build_fcn
from tests.conftest import release_models
from tests.models import caffe_numpy

ARCHITECTURES = ["fcn32s", "fcn16s", "fcn8s", "fcn8s_atonce"]
TRUNK_PARAMS = 134_260_544  # conv1_1 ... fc7


def head_params(arch: str, n: int) -> int:
    """Parameters above fc7, counted from the reference table for n classes."""
    score = lambda c: c * n + n
    up = lambda k: k * k * n * n
    return {
        "fcn32s": score(4096) + up(64),
        "fcn16s": score(4096) + score(512) + up(4) + up(32),
        "fcn8s": score(4096) + score(512) + score(256) + up(4) + up(4) + up(16),
        "fcn8s_atonce": score(4096) + score(512) + score(256) + up(4) + up(4) + up(16),
    }[arch]


@pytest.fixture(scope="module", params=ARCHITECTURES)
def model(request):
    """One 3-class model of each architecture, built once, one at a time (each has ~134M parameters):
    pytest runs a module's tests grouped by this parameter and drops a model before building the next."""
    yield build_fcn(request.param, num_classes=3)
    release_models()


@pytest.mark.backend_agnostic
def test_public_builders_are_exported():
    for arch in ARCHITECTURES:
        assert getattr(fcn_keras, arch) is getattr(fcn_keras.models, arch)
        assert "Example" in getattr(fcn_keras, arch).__doc__


# TensorFlow pass only: a parameter count is arithmetic on the variables' shapes, the same Python on every
# backend (the JAX pass counts the module's four models below); on JAX this build compiled the random
# initialisers of every 21-class shape.
def test_fcn8s_has_the_papers_134m_parameters():
    assert fcn_keras.fcn8s(21).count_params() == 134_489_759 == TRUNK_PARAMS + head_params("fcn8s", 21)


@pytest.mark.backend_agnostic
def test_parameter_counts_follow_the_reference_table(model):
    assert model.count_params() == TRUNK_PARAMS + head_params(model.name, 3)


SIZES = [(1, 1), (1, 2), (2, 1), (3, 5), (16, 17), (31, 32), (33, 33), (64, 63), (97, 100)]
# JAX compiles every op anew for each size: there, three of them (tiny and asymmetric, just past a
# multiple of 32, large with odd and even sides); TensorFlow runs all nine.
JAX_SIZES = [(1, 2), (33, 33), (97, 100)]


@pytest.mark.backend_agnostic
@pytest.mark.parametrize("size", JAX_SIZES if keras.backend.backend() == "jax" else SIZES)
def test_output_equals_input_size(model, size):
    x = np.random.default_rng(0).uniform(-50, 50, (1, *size, 3)).astype("float32")
    y = model(x, training=False)
    assert tuple(y.shape) == (1, *size, 3)
    assert keras.backend.standardize_dtype(y.dtype) == "float32"


def test_reference_geometry_at_500():
    """Intermediate sizes for a 500x500 input, as listed in the reference."""
    plain = fcn_keras.build_fcn("fcn8s", input_shape=(500, 500, 3), fast=False)
    model = fcn_keras.fcn8s(input_shape=(500, 500, 3))  # its blocks 1-3 skip the pad's constant margin
    assert plain.get_layer("pad1").padding == ((100, 100), (100, 100))
    assert [plain.get_layer(f"pool{i}").output.shape[1] for i in (1, 2)] == [349, 175]
    for net in (plain, model):
        sizes = {layer.name: layer.output.shape[1] for layer in net.layers if len(layer._inbound_nodes) == 1}
        assert (sizes["pool3"], sizes["pool4"], sizes["pool5"], sizes["fc7"]) == (88, 44, 22, 16)
        assert (sizes["upscore2"], sizes["upscore_pool4"], sizes["upscore8"], sizes["score"]) == (34, 70, 568, 500)
    assert model.get_layer("fc6").kernel_size == (7, 7) and model.get_layer("fc6").padding == "valid"
    for name in ("pool1", "pool2", "pool3", "pool4", "pool5"):  # Caffe's ceil-mode pooling
        assert model.get_layer(name).padding == "same"


def test_heads_match_the_reference_table(model):
    # upsampling layers (kernel, stride) and crop offsets, from the reference's net.py
    expected = {
        "fcn32s": ({"upscore": (64, 32)}, {"score": 19}),
        "fcn16s": ({"upscore2": (4, 2), "upscore16": (32, 16)}, {"score_pool4c": 5, "score": 27}),
        "fcn8s": ({"upscore2": (4, 2), "upscore_pool4": (4, 2), "upscore8": (16, 8)},
                  {"score_pool4c": 5, "score_pool3c": 9, "score": 31}),
    }
    expected["fcn8s_atonce"] = expected["fcn8s"]
    assert set(HEADS) == set(expected)
    ups, crops = expected[model.name]
    found_ups = {l.name: (l.kernel_size[0], l.strides[0]) for l in model.layers
                 if isinstance(l, keras.layers.Conv2DTranspose)}
    assert found_ups == ups
    found_crops = {l.name: l.offset for l in model.layers if isinstance(l, fcn_keras.models.CropToReference)}
    assert found_crops == crops
    for name in ups:
        assert not model.get_layer(name).trainable and not model.get_layer(name).use_bias


def test_atonce_scales_are_fixed(model):
    if model.name != "fcn8s_atonce":
        assert "scale_pool4" not in [layer.name for layer in model.layers]
        return
    assert model.get_layer("scale_pool4").scale == 0.01
    assert model.get_layer("scale_pool3").scale == 1e-4
    assert not model.get_layer("scale_pool4").weights


def test_trainable_upsampling_learns_the_upsampling_layers(model):
    learned = build_fcn(model.name, num_classes=3, trainable_upsampling=True)
    names = lambda m: {w.path.split("/")[0] for w in m.trainable_weights}
    upsampling = {layer.name for layer in model.layers if isinstance(layer, keras.layers.Conv2DTranspose)}
    assert names(learned) - names(model) == upsampling and upsampling
    assert learned.count_params() == model.count_params()


@pytest.mark.backend_agnostic
def test_fresh_model_outputs_zero_logits():
    """Score layers are zero-initialised, so an untrained FCN predicts all-zero logits."""
    # Three classes and a 33x33 image, as in test_output_equals_input_size: on JAX, which compiles every op
    # for every new shape, the kernels compiled there serve again (8 s of CPU otherwise).
    model = fcn_keras.fcn16s(num_classes=3)
    for name in ("score_fr", "score_pool4"):
        assert not np.any(keras.ops.convert_to_numpy(model.get_layer(name).kernel))
    y = keras.ops.convert_to_numpy(model(np.random.default_rng(0).uniform(0, 255, (1, 33, 33, 3)).astype("float32")))
    assert y.shape == (1, 33, 33, 3) and not np.any(y)


@pytest.fixture(scope="module")
def caffe_case():
    """Random Caffe-layout blobs (also in Keras' layouts), test images, the reference trunk once per image."""
    blobs = caffe_numpy.random_blobs(num_classes=3, seed=0)
    rng = np.random.default_rng(1)
    images = [rng.uniform(-120, 120, (*size, 3)).astype("float32") for size in [(23, 18)]]  # odd H, even W: both ceil-pooling cases
    trunks = [caffe_numpy.trunk(blobs, image.transpose(2, 0, 1)) for image in images]
    return blobs, caffe_numpy.keras_layouts(blobs), images, trunks


def test_equals_caffe_reference_semantics(model, caffe_case):
    """Same weights in Caffe layouts -> same scores as a NumPy rendering of the Caffe net."""
    blobs, layouts, images, trunks = caffe_case
    arch = model.name
    caffe_numpy.set_keras_weights(model, layouts)
    for image, trunk in zip(images, trunks):
        expected = caffe_numpy.head(arch, blobs, trunk).transpose(1, 2, 0)
        got = keras.ops.convert_to_numpy(model(image[None], training=False))[0]
        scale = np.abs(expected).max()
        assert scale > 1e-3, "degenerate test: scores vanished"
        np.testing.assert_allclose(got, expected, atol=2e-4 * scale, rtol=1e-4)
