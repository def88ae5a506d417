"""fcn_keras.viz: colours of known classes, sizes and layout of the pictures, the charts."""

from __future__ import annotations

import doctest
import os
import stat
import sys

import numpy as np
import pytest
from PIL import Image

from fcn_keras import viz
from fcn_keras.palette import VOID_COLOR, voc_palette

AEROPLANE, PERSON = (128, 0, 0), (192, 128, 128)


def _pixels(picture: np.ndarray, colour) -> np.ndarray:
    """(row, col) of every pixel of exactly ``colour``."""
    return np.argwhere(np.all(picture == np.asarray(colour, np.uint8), axis=-1))


def test_docstring_examples_run():
    result = doctest.testmod(viz, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 10 and result.failed == 0


def test_colorize_gives_the_voc_colours_and_void():
    mask = np.array([[0, 1, 15], [255, 20, 1]], np.uint8)
    colours = viz.colorize(mask)
    assert colours.shape == (2, 3, 3) and colours.dtype == np.uint8
    assert colours[0, 0].tolist() == [0, 0, 0]
    assert colours[0, 1].tolist() == list(AEROPLANE)
    assert colours[0, 2].tolist() == list(PERSON)
    assert colours[1, 0].tolist() == list(VOID_COLOR)
    assert colours[1, 1].tolist() == [0, 64, 128]  # tvmonitor


def test_colorize_any_class_count_and_custom_palette():
    mask = np.array([[300, 40]], np.int32)
    assert viz.colorize(mask)[0].tolist() == voc_palette(301)[[300, 40]].tolist()
    palette = [[1, 2, 3], [4, 5, 6]]
    assert viz.colorize(np.array([[1, 255]]), palette).tolist() == [[[4, 5, 6], list(VOID_COLOR)]]
    with pytest.raises(ValueError, match="class 2 but the palette has only 2 colours"):
        viz.colorize(np.array([[2]]), palette)
    with pytest.raises(ValueError, match="integer class indices"):
        viz.colorize(np.zeros((2, 2), np.float32))
    with pytest.raises(ValueError, match=r"shape \(height, width\)"):
        viz.colorize(np.zeros((2, 2, 2), np.uint8))


def test_overlay_blends_exactly_and_adds_a_legend_of_present_classes():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    mask = np.zeros((40, 60), np.uint8)
    mask[5:20, 10:30] = 15
    mask[30:, :] = 255
    out = viz.overlay(image, mask, alpha=0.4)
    assert out.shape[1] > 60 and out.shape[0] >= 40
    expected = np.round(0.6 * image + 0.4 * viz.colorize(mask).astype(float)).astype(np.uint8)
    np.testing.assert_array_equal(out[:40, :60], expected)
    legend = out[:, 60:]
    # One swatch per present class (background, person, void), and no other class.
    for colour in ((0, 0, 0), PERSON, VOID_COLOR):
        assert len(_pixels(legend, colour)) >= 100, colour
    assert len(_pixels(legend, AEROPLANE)) == 0
    assert viz.overlay(image, mask, show_legend=False).shape == (40, 60, 3)
    with pytest.raises(ValueError, match="sizes differ"):
        viz.overlay(image, mask[:10])


def test_legend_grows_the_picture_when_it_is_taller_than_the_image():
    image = np.zeros((8, 8, 3), np.uint8)
    mask = np.arange(64).reshape(8, 8) % 21
    out = viz.overlay(image, mask)
    assert out.shape[0] == viz.legend(range(21)).shape[0] > 8
    assert np.all(out[8:, :8] == 255)  # below the image: white


def test_side_by_side_places_image_truth_and_prediction():
    image = np.full((30, 20, 3), 77, np.uint8)
    truth = np.ones((30, 20), np.uint8)
    prediction = np.full((30, 20), 15, np.uint8)
    out = viz.side_by_side(image, truth, prediction)
    top = 18  # title strip
    assert out.shape[0] == top + 30
    assert out[top + 10, 10].tolist() == [77, 77, 77]
    assert out[top + 10, 20 + 4 + 10].tolist() == list(AEROPLANE)
    assert out[top + 10, 2 * (20 + 4) + 10].tolist() == list(PERSON)
    legend = out[:, 3 * (20 + 4):]
    assert len(_pixels(legend, AEROPLANE)) and len(_pixels(legend, PERSON))
    assert viz.side_by_side(image, None, prediction).shape[1] < out.shape[1]


def test_save_image_round_trips_and_leaves_no_temporary_file(tmp_path):
    picture = np.random.default_rng(1).integers(0, 256, (7, 9, 3), dtype=np.uint8)
    old = os.umask(0o022)
    try:
        path = viz.save_image(picture, tmp_path / "sub" / "p.png")
    finally:
        os.umask(old)
    # A plain file's modes (not the temporary file's 0600): a web server running as another user can read it.
    assert stat.S_IMODE(path.stat().st_mode) == 0o644 and stat.S_IMODE(path.parent.stat().st_mode) == 0o755
    np.testing.assert_array_equal(np.asarray(Image.open(path)), picture)
    mask = np.array([[0, 21, 255]], np.int64)
    saved = Image.open(viz.save_image(mask, tmp_path / "m.png"))
    assert saved.mode == "L" and np.asarray(saved).tolist() == [[0, 21, 255]]
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["m.png", "p.png"]
    with pytest.raises(ValueError, match="values 0..255"):
        viz.save_image(np.array([[256]]), tmp_path / "bad.png")


def _dark_cells_slope(picture: np.ndarray) -> float:
    # The darkest colour of the "Blues" map marks the cells at 1.0; the colour bar
    # (right quarter) holds it too, so look left of it.
    left = picture[:, : int(picture.shape[1] * 0.7)]
    points = np.argwhere(np.all(np.abs(left.astype(int) - (8, 48, 107)) <= 3, axis=-1))
    assert len(points) > 100
    return float(np.corrcoef(points[:, 0], points[:, 1])[0, 1])


def test_confusion_matrix_image_puts_the_counts_where_they_belong():
    names = ["a", "b", "c"]
    diagonal = viz.confusion_matrix_image(np.diag([9, 4, 7]), names)
    anti = viz.confusion_matrix_image(np.fliplr(np.diag([9, 4, 7])), names)
    assert diagonal.ndim == 3 and diagonal.shape[2] == 3 and diagonal.dtype == np.uint8
    assert _dark_cells_slope(diagonal) > 0.7  # top-left to bottom-right (3 square cells: about 0.89)
    assert _dark_cells_slope(anti) < -0.7
    with pytest.raises(ValueError, match="2 class names for 3 classes"):
        viz.confusion_matrix_image(np.eye(3), ["a", "b"])
    with pytest.raises(ValueError, match="square"):
        viz.confusion_matrix_image(np.zeros((2, 3)))


def test_iou_bars_are_in_class_colours_and_proportional():
    picture = viz.iou_bars_image([float("nan"), 0.8, 0.4])
    red = _pixels(picture, AEROPLANE)  # class 1
    green = _pixels(picture, (0, 128, 0))  # class 2
    red_width = np.ptp(red[:, 1]) + 1
    green_width = np.ptp(green[:, 1]) + 1
    assert abs(red_width / green_width - 2.0) < 0.05


def test_training_curves_from_a_csv_log(tmp_path):
    log = tmp_path / "training.csv"
    log.write_text("epoch,loss,mean_iou,val_loss,val_mean_iou\n0,2.0,0.1,2.5,0.1\n1,1.0,0.5,1.5,0.4\n")
    assert viz.read_training_log(log)["val_mean_iou"] == [0.1, 0.4]
    picture = viz.training_curves_image(log)
    assert picture.shape[1] > picture.shape[0]  # two panels side by side
    assert len(_pixels(picture, (31, 119, 180))) and len(_pixels(picture, (255, 127, 14)))  # train / val lines
    (tmp_path / "bad.csv").write_text("epoch,loss\n0,oops\n")
    with pytest.raises(ValueError, match=r"bad.csv, line 2: column 'loss'"):
        viz.read_training_log(tmp_path / "bad.csv")
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        viz.training_curves_image(tmp_path / "missing.csv")


def test_charts_without_matplotlib_say_which_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"fcn_keras\[viz\]"):
        viz.iou_bars_image([0.5])
    # Masks and overlays never need it.
    assert viz.overlay(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.uint8)).shape[0] >= 4


def _toy_model():
    """A SegmentationModel with its own names, colours and void label."""
    import keras

    from fcn_keras.models import SegmentationModel

    inputs = keras.Input((None, None, 3))
    return SegmentationModel(inputs, keras.layers.Conv2D(2, 1)(inputs), architecture="toy", backbone="none",
                             class_names=["sky", "sea"], palette=[[10, 20, 30], [40, 50, 60]], ignore_label=7)


def test_pictures_take_colours_names_and_void_from_the_model():
    model = _toy_model()
    mask = np.array([[0, 1], [7, 1]])
    colours = viz.colorize(mask, model=model)
    assert colours.tolist() == [[[10, 20, 30], [40, 50, 60]], [list(VOID_COLOR), [40, 50, 60]]]
    np.testing.assert_array_equal(viz.overlay(np.zeros((2, 2, 3), np.uint8), mask, 1.0, show_legend=False,
                                              model=model), colours)
    panel = viz.legend([0, 1, 7], model=model)  # 7 is the model's void: a row of its own, not a missing colour
    assert panel.shape[0] == 2 * 6 + 3 * 18 and len(_pixels(panel, VOID_COLOR)) and len(_pixels(panel, (10, 20, 30)))
    assert viz.class_name(7, model.class_names, model.ignore_label) == "void"
    with pytest.raises(ValueError, match="holds class 7 but the palette has only 2"):  # by hand, 255 is void
        viz.legend([0, 1, 7], ["sky", "sea"], [[10, 20, 30], [40, 50, 60]])
    assert len(_pixels(viz.side_by_side(np.zeros((2, 2, 3), np.uint8), mask, mask, model=model), (40, 50, 60)))
    bars = viz.iou_bars_image({"sky": 0.5, "sea": 1.0}, model=model)
    assert len(_pixels(bars, (40, 50, 60))) > 2 * len(_pixels(bars, (10, 20, 30))) > 0  # sea's bar twice as long
    with pytest.raises(ValueError, match="model= .* or palette=/class_names=, not both"):
        viz.colorize(mask, [[0, 0, 0]] * 2, model=model)
    with pytest.raises(ValueError, match="not the model's"):
        viz.iou_bars_image({"a": 0.5, "b": 1.0}, model=model)


def test_save_prediction_and_confusion_chart_from_the_model(tmp_path):
    model = _toy_model()
    paths = viz.save_prediction(np.zeros((3, 3, 3), np.uint8), np.ones((3, 3), int), tmp_path, "x", model=model)
    assert Image.open(paths["color"]).getpixel((0, 0)) == (40, 50, 60)
    np.testing.assert_array_equal(viz.confusion_matrix_image(np.eye(2), model=model),
                                  viz.confusion_matrix_image(np.eye(2), ["sky", "sea"]))
