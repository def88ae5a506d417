"""Weak localization: the paper's 20 % rule and largest connected component, on maps built by hand."""

from __future__ import annotations

import numpy as np
import pytest

from fcn_keras.localization import BOX_COLOR, Box, cam_overlay, heatmap, label_components, localize


def _blob(shape, centre, radius, peak):
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    return peak * np.clip(1 - np.hypot(yy - centre[0], xx - centre[1]) / radius, 0, None)


def test_the_largest_component_wins_over_the_highest_peak():
    shape = (60, 80)
    small_hot = _blob(shape, (10, 10), 5, 10.0)  # the map's maximum, few pixels
    large_warm = np.zeros(shape)
    large_warm[30:50, 40:75] = 3.0  # above 20 % of 10, the larger region
    faint = np.zeros(shape)
    faint[5:15, 60:70] = 1.9  # below 20 % of the maximum: not part of any region
    cam = small_hot + large_warm + faint
    assert localize(cam) == Box(left=40, top=30, right=75, bottom=50)
    # At 40 % the warm region drops out and the hot blob's pixels above 4 remain.
    box = localize(cam, threshold=0.4)
    above = np.argwhere(small_hot > 4.0)
    assert box == Box(int(above[:, 1].min()), int(above[:, 0].min()), int(above[:, 1].max()) + 1,
                      int(above[:, 0].max()) + 1)


def test_diagonal_neighbours_join_with_8_connectivity_only():
    cam = np.zeros((10, 10))
    cam[2:5, 2:5] = 1.0
    cam[5:7, 5:7] = 1.0  # touches the first square at one corner
    cam[8, 0:3] = 1.0
    assert localize(cam, connectivity=8) == Box(2, 2, 7, 7)
    assert localize(cam, connectivity=4) == Box(2, 2, 5, 5)


def test_labels_agree_with_scipy():
    ndimage = pytest.importorskip("scipy.ndimage")
    rng = np.random.default_rng(0)
    for density in (0.3, 0.5, 0.6):
        mask = rng.random((40, 57)) < density
        for connectivity, structure in ((4, None), (8, np.ones((3, 3)))):
            ours, count = label_components(mask, connectivity)
            theirs, expected = ndimage.label(mask, structure=structure)
            assert count == expected
            np.testing.assert_array_equal(ours, theirs)


def test_maps_without_a_positive_value_have_no_box():
    assert localize(-np.ones((4, 4))) is None
    assert localize(np.zeros((4, 4))) is None


def test_bad_maps_are_refused():
    with pytest.raises(ValueError, match=r"\(height, width\) array"):
        localize(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="non-finite"):
        localize(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match="threshold"):
        localize(np.ones((2, 2)), threshold=1.5)


def test_the_overlay_shows_the_heat_and_the_box():
    image = np.full((30, 40, 3), 200, np.uint8)
    cam = _blob((30, 40), (15, 25), 8, 1.0)
    box = localize(cam)
    out = cam_overlay(image, cam, box, alpha=0.6)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert tuple(out[box.top, box.left]) == BOX_COLOR and tuple(out[box.bottom - 1, box.right - 1]) == BOX_COLOR
    hot, cold = heatmap(cam)[15, 25], heatmap(cam)[0, 0]
    assert hot[0] > hot[2] and cold[2] > cold[0]  # jet: red at the peak, blue where the map is lowest
    np.testing.assert_array_equal(out[0, 0], np.round(0.4 * 200 + 0.6 * cold.astype(float)).astype(np.uint8))
    with pytest.raises(ValueError, match="sizes differ"):
        cam_overlay(image, cam[:10])
