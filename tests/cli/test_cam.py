"""``fcn-keras cam``: overlays of class activation maps for real PNG and JPEG files, from both kinds of MODEL."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fcn_keras.models.cam import cam_classifier, cam_vgg16
from tests.models.family_checks import random_images, randomize


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A CAM model file, its classifier's file, a class-names file, and a PNG and a JPEG of two sizes."""
    work = tmp_path_factory.mktemp("cam")
    model = randomize(cam_vgg16(class_names=["cat", "dog"], alpha=1 / 16, include_preprocessing=True), seed=5)
    # A positive "dog" column over CAM_conv's non-negative (ReLU) maps: its map has a maximum above 0, a box.
    dense = model.get_layer("CAM_fc").dense
    kernel = np.asarray(dense.kernel)
    kernel[:, 1] = np.abs(kernel[:, 1]) * np.random.default_rng(7).uniform(0.2, 1.0, kernel.shape[0])
    dense.kernel.assign(kernel)
    model.save(work / "cam.keras")
    cam_classifier(model).save(work / "preprocessing_classifier.keras")  # takes RGB 0-255, as the model
    bare = cam_vgg16(class_names=["cat", "dog"], alpha=1 / 16)  # takes "caffe" input
    bare.set_weights(model.get_weights())
    cam_classifier(bare).save(work / "classifier.keras")
    (work / "names.txt").write_text("tabby\nbeagle\n")
    png, jpeg = random_images([(40, 56), (33, 45)], seed=6)
    Image.fromarray(png).save(work / "a.png")
    Image.fromarray(jpeg).save(work / "b.jpg", quality=95)
    return work


def test_writes_one_overlay_per_image(files, tmp_path, fcn_keras_cmd):
    out = tmp_path / "cams"
    status, stdout, stderr = fcn_keras_cmd("cam", files / "cam.keras", files / "a.png", files / "b.jpg",
                                           "--class", "dog", "--out", out)
    assert status == 0, stderr
    assert sorted(p.name for p in out.iterdir()) == ["a_cam.png", "b_cam.png"]
    for name, source in (("a_cam.png", "a.png"), ("b_cam.png", "b.jpg")):
        picture = np.asarray(Image.open(out / name))
        image = np.asarray(Image.open(files / source))
        assert picture.shape == image.shape and picture.dtype == np.uint8
        assert np.abs(picture.astype(int) - image).mean() > 5  # the heat map is blended on
    assert "of 'dog' for 2 image(s)" in stdout and stdout.count(": box left=") == 2


def test_a_classifier_file_with_its_preprocessing_and_names(files, tmp_path, fcn_keras_cmd):
    # This classifier takes preprocessed input ("caffe"), which the CAM model file applies itself.
    status, stdout, stderr = fcn_keras_cmd("cam", files / "classifier.keras", files / "a.png", "--class", "beagle",
                                           "--preprocessing", "caffe", "--class-names", files / "names.txt",
                                           "--out", tmp_path / "from_classifier")
    assert status == 0, stderr
    assert "'beagle'" in stdout
    assert fcn_keras_cmd("cam", files / "cam.keras", files / "a.png", "--class", "dog", "--out",
                         tmp_path / "from_cam")[0] == 0
    # The same variables, the same maps: the pictures agree to a colour level of rounding.
    ours, theirs = (np.asarray(Image.open(tmp_path / d / "a_cam.png"), int) for d in ("from_classifier", "from_cam"))
    assert np.abs(ours - theirs).max() <= 1


def test_a_bad_class_name_is_one_error_listing_the_names(files, tmp_path, fcn_keras_cmd):
    status, stdout, stderr = fcn_keras_cmd("cam", files / "cam.keras", files / "a.png", "--class", "cow",
                                           "--out", tmp_path / "none")
    assert status == 1
    assert stderr.strip() == ("fcn-keras: error: --class 'cow' is not one of the model's 2 classes: cat, dog "
                              "(or an index 0..1)")
    assert not (tmp_path / "none").exists()


def test_a_classifier_needs_its_preprocessing(files, tmp_path, fcn_keras_cmd):
    status, _, stderr = fcn_keras_cmd("cam", files / "classifier.keras", files / "a.png", "--class", "0",
                                      "--out", tmp_path / "none")
    assert status == 1 and "does not record its input preprocessing: give preprocessing=" in stderr
    assert "(--preprocessing)" in stderr
    # One whose first layer is the package's Preprocessing says its mode itself.
    status, stdout, stderr = fcn_keras_cmd("cam", files / "preprocessing_classifier.keras", files / "a.png",
                                           "--class", "1", "--out", tmp_path / "own")
    assert status == 0, stderr
    assert (tmp_path / "own" / "a_cam.png").is_file()


def test_help(fcn_keras_cmd):
    status, stdout, _ = fcn_keras_cmd("cam", "--help")
    assert status == 0 and stdout.startswith("usage: fcn-keras cam") and "examples:\n  fcn-keras cam" in stdout
