"""Shift-and-stitch equals filter rarefaction (FCN paper §3.2): a tiny valid network, and FCN-32s's trunk."""

from __future__ import annotations

import numpy as np
import pytest
import keras
from keras import layers

from fcn_keras.models import fcn32s
from fcn_keras.models.shift_and_stitch import (RarefiedConv2D, chain_layers, last_subsampling, rarefy,
                                               shift_and_stitch)
from fcn_keras.models.segmentation_model import dtype_policy
from tests.keras_checks import run_layer_test
from tests.models.family_checks import randomize


def _numpy(x) -> np.ndarray:
    return keras.ops.convert_to_numpy(x)


@pytest.fixture(scope="module")
def valid_network():
    """Valid padding throughout, two subsamplings (2 at stride 1, 2 at stride 2), 3x3 and 2x2 filters after; float64."""
    with dtype_policy("float64"):
        net = keras.Sequential([
            keras.Input((None, None, 2), dtype="float64"),
            layers.Conv2D(4, 3, activation="relu", name="conv1"),
            layers.MaxPooling2D(2, name="pool1"),
            layers.Conv2D(5, 3, activation="relu", name="conv2"),
            layers.MaxPooling2D(2, name="pool2"),
            layers.Conv2D(4, 3, activation="relu", name="conv3"),
            layers.Conv2D(3, 2, name="score"),
        ], name="tiny")
    return randomize(net, seed=0, scale=0.5)


@pytest.mark.backend_agnostic
def test_stitched_output_equals_the_rarefied_network(valid_network):
    assert last_subsampling(valid_network) == ("pool2", 2, 2)
    dense = rarefy(valid_network)
    assert dense.get_layer("conv1") is valid_network.get_layer("conv1")  # the same variables
    assert dense.get_layer("conv3_rarefied").conv is valid_network.get_layer("conv3")
    images = np.random.default_rng(1).normal(size=(2, 47, 52, 2))
    stitched = shift_and_stitch(valid_network, images, factor=2, step=2)
    expected = _numpy(dense(images))
    assert stitched.shape == expected.shape == (2, 13, 16, 3)
    # JAX without jax_enable_x64 computes float64 layers in float32.
    tol = 1e-12 if stitched.dtype == np.float64 else 1e-5
    np.testing.assert_allclose(stitched, expected, rtol=tol, atol=tol)
    # The coarse output is every other one of them.
    np.testing.assert_allclose(stitched[:, ::2, ::2], _numpy(valid_network(images)), rtol=tol, atol=tol)


def test_the_unrarefied_filters_do_not_stitch(valid_network):
    # "Convolving the original filter with the upsampled output does not produce the same result" (§3.2).
    chain = chain_layers(valid_network)
    x = inputs = keras.Input((None, None, 2), dtype="float64")
    for layer in chain:
        x = layers.MaxPooling2D(2, strides=1, dtype="float64")(x) if layer.name == "pool2" else layer(x)
    images = np.random.default_rng(2).normal(size=(1, 47, 52, 2))
    stitched = shift_and_stitch(valid_network, images, factor=2, step=2)
    upsampled = _numpy(keras.Model(inputs, x)(images))[:, :stitched.shape[1], :stitched.shape[2]]
    assert np.abs(upsampled - stitched).max() > 1e-3


def test_fcn32s_coarse_scores_stitch_except_at_the_shifted_copies_edge():
    """FCN-32s over tiny_vgg, up to score_fr: block5_pool (2x2/2 after stride 16) rarefied.

    tiny_vgg's convolutions pad "same". On a multiple of 32 (what the FCN's PadToMultiple feeds it) every
    map of the unshifted copy and of the dense network ends where the image ends, so they agree everywhere,
    bottom and right included. A copy shifted by 16 starts inside the image: where its output's receptive
    field reaches its top/left edge it reads zero padding where the dense network reads pixels, and only
    there do the two differ.
    """
    model = randomize(fcn32s(num_classes=3, backbone="tiny_vgg"), seed=3)
    chain = [*chain_layers(model.get_layer("tiny_vgg")), model.get_layer("score_fr")]
    assert last_subsampling(chain) == ("block5_pool", 2, 16)
    dense = rarefy(chain, input_shape=(None, None, 3))
    assert dense.get_layer("score_fr_rarefied").conv is model.get_layer("score_fr")
    before, after = _reach(chain)
    assert (before, after) == (62, 93)
    images = np.random.default_rng(4).uniform(-1, 1, (1, 224, 224, 3)).astype("float32")
    stitched = shift_and_stitch(dense_input(chain), images, factor=2, step=16)
    expected = _numpy(dense(images))
    assert stitched.shape == expected.shape == (1, 13, 13, 3)
    # Output p of a shifted copy (odd p) reads rows from 16 p - 62: above 16, its copy's edge, for p = 1, 3.
    edge = np.array([p % 2 == 1 and 16 * p - before < 16 for p in range(13)])
    affected = edge[:, None] | edge[None, :]
    assert edge.tolist().count(True) == 2
    np.testing.assert_allclose(stitched[0][~affected], expected[0][~affected], rtol=1e-4, atol=1e-5)
    assert np.abs(stitched[0][affected] - expected[0][affected]).max(axis=-1).min() > 1e-4
    assert np.abs(expected).max() > 1e-2


def _reach(chain) -> tuple[int, int]:
    """Input rows above and below ``16 p`` that the rarefied chain's output ``p`` reads (square kernels)."""
    lo, hi, jump = 0, 0, 1
    for layer in chain:
        k = layer.kernel_size[0] if isinstance(layer, layers.Conv2D) else layer.pool_size[0]
        pad = (k - 1) // 2 if layer.padding == "same" else 0
        lo, hi = lo - pad * jump, hi + (k - 1 - pad) * jump
        if layer.name != "block5_pool":  # rarefied: stride 1
            jump *= layer.strides[0]
    return -lo, hi


def dense_input(chain):
    """The chain as a model of any input size (the FCN's encoder was built on its padded input)."""
    return keras.Sequential([keras.Input((None, None, 3)), *chain])


def test_only_the_last_subsampling_is_rarefied(valid_network):
    with pytest.raises(ValueError, match="'pool1' is not the last subsampling layer"):
        rarefy(valid_network, layer="pool1")
    with pytest.raises(ValueError, match="'pool9' is not in the network"):
        rarefy(valid_network, layer="pool9")
    window = keras.Sequential([keras.Input((None, None, 1)), layers.MaxPooling2D(2), layers.MaxPooling2D(3, 1)])
    with pytest.raises(ValueError, match="no rarefied form"):
        rarefy(window)
    x = keras.Input((None, None, 1))
    branch = keras.Model(x, layers.Add()([layers.Conv2D(1, 1)(x), x]), name="branchy")
    with pytest.raises(ValueError, match="'branchy' is not a chain"):
        chain_layers(branch)
    with pytest.raises(ValueError, match="factor must be a positive integer"):
        shift_and_stitch(valid_network, np.zeros((1, 20, 20, 2)), factor=0)


def test_layer(tmp_path):
    def factory():
        conv = layers.Conv2D(3, 3, padding="same", activation="relu")
        conv.build((None, None, None, 2))
        return RarefiedConv2D(conv, 2)

    run_layer_test(factory, np.random.default_rng(0).normal(size=(1, 9, 11, 2)).astype("float32"), (1, 9, 11, 3),
                   tmp_path)
