"""U-Net: the released network's sizes and parameter count, the overlap-tile borders, and the family checks."""

from __future__ import annotations

import numpy as np
import keras
import pytest

from fcn_keras.models.unet import MARGIN, MirrorPadToValid, UNet, unet, unet_tile, valid_tile_sizes
from tests.keras_checks import run_layer_test
from tests.models.family_checks import (check_exports, check_logits, check_round_trip, logits, random_images,
                                        randomize)

ALPHA = 1 / 16
SIZES = [(48, 64), (37, 50)]


@pytest.fixture(scope="module", params=["valid", "same"])
def model(request):
    return randomize(unet(num_classes=3, alpha=ALPHA, padding=request.param))


@pytest.fixture(scope="module")
def images():
    return random_images(SIZES)


@pytest.mark.backend_agnostic
def test_logits_have_the_image_size(model, images):
    check_logits(model, images + random_images([(1, 1), (5, 130)], seed=1))


def test_round_trip(model, images, tmp_path):
    check_round_trip(model, images, tmp_path)


def test_exports(model, images, tmp_path):
    if model.options["padding"] == "same":  # suite time: its layers (PadToMultiple, padded convs) export in tests/export
        pytest.skip("padding='same' adds no layer kind to export beyond the FCN encoders' PadToMultiple")
    check_exports(model, images, tmp_path)


def test_parameter_counts_are_the_papers():
    # The paper's network has 1 input channel: 31,030,658 parameters with 2 classes.
    tile = keras.Input((None, None, 1))
    assert keras.Model(tile, unet_tile(tile, 2)).count_params() == 31_030_658
    # Ours takes RGB: conv_d0a-b has 2 x (3 x 3 x 64) weights more.
    model = unet(num_classes=2)
    assert model.count_params() == 31_030_658 + 2 * 3 * 3 * 64 == 31_031_810
    assert model.get_layer("conv_d4b-c").kernel.shape == (3, 3, 1024, 1024)
    assert model.get_layer("upconv_u1d_u0a").kernel.shape == (2, 2, 64, 128)


def test_valid_network_geometry():
    # 572 -> 388, and the crops of the released network (568 -> 392, ..., 64 -> 56).
    tile = keras.Input((572, 572, 1))
    graph = keras.Model(tile, unet_tile(tile, 2, alpha=ALPHA))
    assert graph.output_shape == (None, 388, 388, 2)
    crops = {name: graph.get_layer(name) for name in ("crop_d3c-d3cc", "crop_d0c-d0cc")}
    assert crops["crop_d3c-d3cc"].input[0].shape[1:3] == (64, 64) and crops["crop_d3c-d3cc"].output.shape[1:3] == (56, 56)
    assert crops["crop_d0c-d0cc"].input[0].shape[1:3] == (568, 568)
    assert crops["crop_d0c-d0cc"].output.shape[1:3] == (392, 392)
    assert valid_tile_sizes(2) == [(188, 4), (204, 20)]
    for size in (186, 190, 200):  # not 16k + 188: some pooling sees an odd size, the crops no longer centre
        assert (size, size - 184) not in valid_tile_sizes(40)


def test_overlap_tile_output_is_the_valid_network_on_a_tile(images):
    """Scores at interior pixels are the unpadded network's on any valid tile around them (the overlap-tile claim).

    The model mirrors the image by 92 pixels, so image row r is row r + 92 of
    what the network sees; a tile starting at image row t is aligned with the
    network's poolings when t + 92 is a multiple of 16.
    """
    model = randomize(unet(num_classes=2, alpha=ALPHA, padding="valid"), seed=3)
    image = random_images([(212, 216)], seed=2)[0]
    whole = logits(model, image)
    tile_input = keras.Input((None, None, 3))
    network = keras.Model(tile_input, unet_tile(tile_input, 2, alpha=ALPHA))
    for layer in network.layers:
        if layer.weights:
            layer.set_weights(model.get_layer(layer.name).get_weights())
    x = np.asarray(image, np.float32)[None] / 127.5 - 1  # "tf" preprocessing
    for top, left, size in ((4, 20, 188), (4, 4, 204)):
        assert (top + MARGIN) % 16 == 0 and (left + MARGIN) % 16 == 0
        tile_scores = keras.ops.convert_to_numpy(network(x[:, top:top + size, left:left + size]))[0]
        out = size - 2 * MARGIN
        np.testing.assert_allclose(whole[top + MARGIN:top + MARGIN + out, left + MARGIN:left + MARGIN + out],
                                   tile_scores, rtol=1e-4, atol=1e-4)
    # Misaligned by a pixel, the poolings see other pairs: the scores differ (the alignment matters).
    shifted = keras.ops.convert_to_numpy(network(x[:, 5:5 + 188, 20:20 + 188]))[0]
    assert not np.allclose(whole[97:97 + 4, 112:112 + 4], shifted, atol=1e-4)


@pytest.mark.backend_agnostic
@pytest.mark.parametrize("size", [1, 2, 37, 130])
def test_mirror_is_numpy_reflect_repeated(size):
    x = np.random.default_rng(size).normal(size=(1, size, size + 3, 2)).astype(np.float32)
    out = keras.ops.convert_to_numpy(MirrorPadToValid(MARGIN, 16, 4)(x))
    extra_h, extra_w = (4 - size) % 16, (4 - size - 3) % 16
    expected = np.pad(x, ((0, 0), (MARGIN, MARGIN + extra_h), (MARGIN, MARGIN + extra_w), (0, 0)), mode="reflect")
    np.testing.assert_array_equal(out, expected)
    assert (out.shape[1] - 2 * MARGIN - 4) % 16 == 0


def test_mirror_layer_serialization(tmp_path):
    run_layer_test(lambda: MirrorPadToValid(92, 16, 4), np.zeros((1, 5, 21, 2), np.float32), (1, 204, 220, 2),
                   tmp_path)


def test_bad_arguments_raise_one_clear_error():
    with pytest.raises(ValueError, match="padding must be one of"):
        unet(alpha=ALPHA, padding="full")
    with pytest.raises(ValueError, match="no pretrained weights"):
        unet(weights="imagenet")
    with pytest.raises(ValueError, match="alpha"):
        unet(alpha=0)
    with pytest.raises(ValueError, match="margin must be"):
        MirrorPadToValid(-1)
    assert UNet.DEFAULT_NUM_CLASSES == 2
