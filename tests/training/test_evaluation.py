"""evaluate(): exact scores, batch N == batch 1, padding excluded, JSON, PNG, table with class names."""

from __future__ import annotations

import json
import os
import stat
import sys

import numpy as np
import pytest
import keras
from PIL import Image

from fcn_keras.evaluation import evaluate
from fcn_keras.metrics import segmentation_scores
from fcn_keras.models import SegmentationModel
from fcn_keras.preprocessing import preprocess

NAMES = ["sky", "road", "car"]


def _model(kernel=3, **identity):
    """A 3-class SegmentationModel that expects "tf"-preprocessed input (evaluate applies it)."""
    keras.utils.set_random_seed(1)
    inputs = keras.Input((None, None, 3))
    outputs = keras.layers.Conv2D(3, kernel, padding="same")(inputs)
    return SegmentationModel(inputs, outputs, architecture="toy", backbone="none",
                             **{"class_names": NAMES, "preprocessing": "tf", **identity})


def _examples(n=7):
    """(RGB 0-255 image, label) pairs of two sizes; 20 % of the pixels void (255)."""
    rng = np.random.default_rng(0)
    sizes = [(9, 13), (12, 8), (9, 13)]
    out = []
    for i in range(n):
        h, w = sizes[i % 3]
        label = rng.integers(0, 3, (h, w))
        label[rng.random((h, w)) < 0.2] = 255
        out.append((rng.integers(0, 256, size=(h, w, 3)).astype("float32"), label))
    return out


@pytest.mark.backend_agnostic
def test_scores_exact_and_batches_equal_batch_one(tmp_path, capsys):
    model, examples = _model(), _examples()
    # The model's own preprocessing ("tf") is applied by evaluate: the reference applies it by hand here.
    predictions = [np.asarray(model.predict(preprocess(x[None], "tf"), verbose=0))[0].argmax(-1) for x, _ in examples]
    expected = segmentation_scores([l for _, l in examples], predictions, 3)
    old = os.umask(0o022)
    try:
        one = evaluate(model, examples, verbose=1, out_json=tmp_path / "s.json", confusion_png=tmp_path / "c.png")
    finally:
        os.umask(old)
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()} == {"s.json": 0o644, "c.png": 0o644}
    printed = capsys.readouterr().out
    three = evaluate(model, examples, batch_size=3, verbose=0)
    np.testing.assert_array_equal(one["confusion_matrix"], expected["confusion_matrix"])
    np.testing.assert_array_equal(three["confusion_matrix"], one["confusion_matrix"])
    assert one["num_images"] == three["num_images"] == 7
    assert one["mean_iou"] == pytest.approx(expected["mean_iou"], rel=1e-12)
    for name in ("mean_iou", "pixel_accuracy", "road"):
        assert name in printed
    saved = json.loads((tmp_path / "s.json").read_text())
    assert saved["class_names"] == NAMES and saved["ignore_label"] == 255  # from the model
    assert saved["per_class_iou"]["car"] == pytest.approx(expected["per_class_iou"][2])
    assert np.array(saved["confusion_matrix"]).sum() == sum(int((l != 255).sum()) for _, l in examples)
    # The PNG is viz's confusion-matrix chart of exactly these counts (one renderer for the project).
    from fcn_keras import viz

    with Image.open(tmp_path / "c.png") as png:
        np.testing.assert_array_equal(np.asarray(png.convert("RGB")),
                                      viz.confusion_matrix_image(expected["confusion_matrix"], NAMES))


def test_padded_batches_from_the_pipeline_exclude_padding():
    import tensorflow as tf

    from fcn_keras.data import make_pipeline

    model, examples = _model(kernel=1), _examples()  # 1x1 convolutions: padding cannot leak into real pixels
    dataset = tf.data.Dataset.from_generator(
        lambda: ((x.astype(np.uint8), l.astype(np.uint8)) for x, l in examples),
        output_signature=(tf.TensorSpec((None, None, 3), tf.uint8), tf.TensorSpec((None, None), tf.uint8)))
    padded = make_pipeline(dataset, training=False, batch_size=3, preprocessing=None)
    single = make_pipeline(dataset, training=False, batch_size=1, preprocessing=None)
    a, b = evaluate(model, padded, verbose=0), evaluate(model, single, verbose=0)
    np.testing.assert_array_equal(a["confusion_matrix"], b["confusion_matrix"])
    assert a["confusion_matrix"].sum() == sum(int((l != 255).sum()) for _, l in examples)


@pytest.mark.backend_agnostic
def test_the_model_says_what_is_scored(tmp_path):
    """Class names, their number and the ignore label come from the model (here its defaults)."""
    result = evaluate(_model(class_names=None, ignore_label=7), _examples(2), verbose=0, out_json=tmp_path / "s.json")
    assert list(result["per_class_iou"]) == ["class 0", "class 1", "class 2"]
    assert result["confusion_matrix"].shape == (3, 3)
    assert json.loads((tmp_path / "s.json").read_text())["ignore_label"] == 7


@pytest.mark.backend_agnostic
def test_bad_arguments():
    model, examples = _model(), _examples(2)
    with pytest.raises(ValueError, match="batch_size"):
        evaluate(model, examples, batch_size=0)
    with pytest.raises(ValueError, match=r"RGB images with values 0-255.*'tf'.*preprocessing=None"):
        evaluate(model, [(preprocess(x, "fcn"), l) for x, l in examples], verbose=0)  # preprocessed twice
    inputs = keras.Input((None, None, 3))
    with pytest.raises(TypeError, match="SegmentationModel"):
        evaluate(keras.Model(inputs, keras.layers.Conv2D(3, 1)(inputs)), examples, verbose=0)


def test_scores_need_no_matplotlib_and_the_png_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # as if the viz extra were not installed
    model, examples = _model(), _examples(2)
    assert evaluate(model, examples, verbose=0)["num_images"] == 2
    with pytest.raises(ImportError, match=r"fcn_keras\[viz\]"):
        evaluate(model, examples, verbose=0, confusion_png=tmp_path / "c.png")
    assert not (tmp_path / "c.png").exists()


@pytest.mark.backend_agnostic
def test_nothing_to_score_is_refused_not_nan(tmp_path):
    """An empty dataset, or one whose every pixel is void, has NaN scores: refused, naming the dataset."""
    model = _model()
    with pytest.raises(ValueError, match=r"^evaluate: dataset is empty \(it gave no \(image, label\) pairs\)"):
        evaluate(model, [], verbose=0, out_json=tmp_path / "s.json")
    void = [(x, np.full(l.shape, 255)) for x, l in _examples(2)]
    with pytest.raises(ValueError, match=r"dataset has 2 images but no pixel labelled with one of model .*3 classes "
                                         r"\(all are the ignore label 255 or outside 0\.\.2\)"):
        evaluate(model, void, verbose=0, out_json=tmp_path / "s.json")
    assert not (tmp_path / "s.json").exists()  # no NaN scores written either


def test_a_file_source_is_evaluated_and_named_in_errors(tmp_path):
    """A FileSource is a dataset evaluate takes as it is; its name is what errors say."""
    from fcn_keras.data import FileSource

    paths = []
    for i, (x, l) in enumerate(_examples(3)):
        Image.fromarray(x.astype(np.uint8)).save(tmp_path / f"{i}.png")
        Image.fromarray(l.astype(np.uint8)).save(tmp_path / f"{i}_label.png")
        paths.append((str(tmp_path / f"{i}.png"), str(tmp_path / f"{i}_label.png")))
    ids = tuple(str(i) for i in range(3))
    source = FileSource("folder:mine.txt", ids, tuple(p for p, _ in paths), tuple(p for _, p in paths), num_classes=3)
    model = _model()
    from_source = evaluate(model, source, verbose=0)
    from_pairs = evaluate(model, _examples(3), verbose=0)
    np.testing.assert_array_equal(from_source["confusion_matrix"], from_pairs["confusion_matrix"])
    for (x, _), (_, label_path) in zip(_examples(3), paths):
        Image.fromarray(np.full(x.shape[:2], 255, np.uint8)).save(label_path)
    with pytest.raises(ValueError, match=r"^evaluate: dataset 'folder:mine.txt' has 3 images but no pixel labelled"):
        evaluate(model, source, verbose=0)
