"""A model knows its classes, palette, ignore label, preprocessing and provenance."""

from __future__ import annotations

import numpy as np
import pytest

import fcn_keras
from fcn_keras.palette import voc_palette

pytestmark = pytest.mark.backend_agnostic


def build(**kwargs):
    return fcn_keras.fcn32s(backbone="tiny_vgg", **kwargs)


def test_defaults_name_and_colour_every_class():
    model = build(num_classes=4)
    assert model.class_names == ("class 0", "class 1", "class 2", "class 3")
    np.testing.assert_array_equal(model.palette, voc_palette(4))
    assert model.palette.dtype == np.uint8 and model.ignore_label == 255 and model.card is None
    assert (model.architecture, model.backbone, model.preprocessing) == ("fcn32s", "tiny_vgg", "tf")
    assert model.input_preprocessing == "tf" and not model.include_preprocessing


def test_class_names_give_the_class_count_and_preprocessing_can_be_inside():
    model = build(class_names=["sky", "road", "car"], include_preprocessing=True, preprocessing="torch")
    assert model.num_classes == 3 and model.output_shape[-1] == 3
    assert model.preprocessing == "torch" and model.input_preprocessing is None
    assert model.get_layer("preprocessing").mode == "torch"


def test_identity_is_read_only_and_copied():
    model = build(num_classes=2, card={"name": "x", "metrics": {"mean_iu": 0.6}})
    with pytest.raises(AttributeError):
        model.class_names = ("a", "b")
    model.palette[0] = 7
    model.card["name"] = "changed"
    assert model.palette[0].tolist() == [0, 0, 0] and model.card["name"] == "x"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_classes": 3, "class_names": ["a", "b"]}, "class_names has 2 names but num_classes=3"),
        ({"class_names": "ab"}, "class_names must be a list"),
        ({"class_names": ["a", "a"]}, "repeated"),
        ({"num_classes": 2, "palette": [[0, 0, 0]]}, "palette has 1 colours"),
        ({"num_classes": 2, "palette": [[0, 0], [1, 1]]}, "palette must be"),
        ({"num_classes": 2, "palette": [[0, 0, 0], [0, 0, 300]]}, r"palette values must be in \[0, 255\]"),
        ({"num_classes": 2, "ignore_label": 1}, "ignore_label=1 is one of the 2 class indices"),
        ({"num_classes": 2, "card": {"when": object()}}, "card must be a JSON-serialisable dict"),
        ({"num_classes": 2, "preprocessing": "bgr"}, "preprocessing must be one of"),
    ],
)
def test_bad_identity_arguments_name_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build(**kwargs)


def test_identity_is_plain_json():
    import json

    identity = build(num_classes=2, class_names=["a", "b"]).identity()
    assert json.loads(json.dumps(identity)) == identity
    assert identity["palette"] == [[0, 0, 0], [128, 0, 0]] and identity["input_preprocessing"] == "tf"
