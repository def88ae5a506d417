"""Model cards: every shipped card is valid, and the schema names the file and key of each error."""

from __future__ import annotations

import copy
import sys

import pytest

import fcn_keras.zoo as zoo
from fcn_keras.palette import VOC_CLASSES, voc_palette
from fcn_keras.resources import zoo_path

from tests.zoo.zoo_env import TmpZoo

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

VOC_ENTRIES = {"fcn32s_voc": ("fcn32s", 63.6), "fcn16s_voc": ("fcn16s", 65.0),
               "fcn8s_voc": ("fcn8s", 65.5), "fcn8s_atonce_voc": ("fcn8s_atonce", 65.4)}


def test_every_shipped_card_is_valid():
    names = zoo.list_models()
    assert set(VOC_ENTRIES) <= set(names)
    assert {"pascalcontext_fcn8s", "nyud_fcn32s_color", "siftflow_fcn16s"} <= set(names)
    for name in names:
        card = zoo.info(name)
        assert card["name"] == name
        assert len(card["classes"]) == len(card["palette"]) == card["num_classes"]
        assert all(url.startswith("http://dl.caffe.berkeleyvision.org/") for url in card["weights"]["urls"])
        assert f"fcn-keras zoo evaluate {name}" in card["evaluation"]["command"]


def test_voc_cards_carry_the_reference_results():
    for name, (architecture, mean_iu) in VOC_ENTRIES.items():
        card = zoo.info(name)
        assert card["architecture"] == architecture and card["loadable"]
        assert card["classes"] == list(VOC_CLASSES) and card["palette"] == voc_palette(21).tolist()
        ours = [m for m in card["metrics"] if m["applies_to"] == "these weights" and m["split"] == "seg11valid"]
        assert [m["mean_iu"] for m in ours] == [mean_iu]
        assert card["evaluation"]["command"] == f"fcn-keras zoo evaluate {name} --voc ROOT"
    assert zoo.info("fcn8s_voc")["weights"]["checksum"] == "sha1:c449ea74dd7d83751d1357d6a8c323fcf4038962"
    # Files with no published checksum say so.
    assert zoo.info("fcn32s_voc")["weights"]["checksum"] == "none"
    assert "No checksum is published" in zoo.info("fcn32s_voc")["weights"]["checksum_source"]


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"Unknown zoo model 'fcn9s_voc'; known models: \['fcn16s_voc'"):
        zoo.info("fcn9s_voc")


def test_not_loadable_card_says_why():
    with pytest.raises(NotImplementedError, match="two heads"):
        zoo.load("siftflow_fcn16s", weights=False)


def _card():
    return tomllib.loads(zoo_path("cards", "fcn8s_voc.toml").read_text())


def _mutated(edit):
    card = copy.deepcopy(_card())
    edit(card)
    return card


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["weights"].pop("checksum"), "missing required key 'weights.checksum'"),
    (lambda c: c.update(num_classes="21"), "key 'num_classes' must be int"),
    (lambda c: c.update(colour="red"), "unknown key 'colour'"),
    (lambda c: c["weights"].update(checksum="md5:abc"), "key 'weights.checksum' must be 'sha1:<40 hex>'"),
    (lambda c: c.update(classes=["a", "b"]), "key 'classes' must be 'voc' or a list of 21 names"),
    (lambda c: c.update(palette=[[0, 0, 0]] * 21 + [[1, 2, 3]]), "key 'palette'"),
    (lambda c: c.update(architecture="fcn4s"), "key 'architecture' must be one of"),
    (lambda c: c["weights"].update(urls=["http://example.org/other.caffemodel"]), "does not end in weights.file"),
    (lambda c: c["metrics"][0].pop("split"), r"missing required key 'metrics\[0\].split'"),
    (lambda c: c["metrics"][0].pop("mean_iu"), r"metrics\[0\] has no metric"),
    (lambda c: c.update(loadable=False), "'not_loadable_reason' is required"),
    (lambda c: c["preprocessing"].update(bgr_mean=[1, 2]), "key 'preprocessing.bgr_mean' must be 3 numbers"),
])
def test_schema_errors_name_file_and_key(edit, message):
    with pytest.raises(zoo.CardError, match=f"^where.toml: .*{message}"):
        zoo.validate_card(_mutated(edit), "where.toml")


def test_card_file_errors_name_the_file(tmp_path, monkeypatch):
    tmp_zoo = TmpZoo(tmp_path, monkeypatch)
    (tmp_zoo.cards / "broken.toml").write_text("name = [unclosed\n")
    with pytest.raises(zoo.CardError, match=r"broken.toml: not valid TOML"):
        zoo.info("broken")
    (tmp_zoo.cards / "renamed.toml").write_text(zoo_path("cards", "fcn8s_voc.toml").read_text())
    with pytest.raises(zoo.CardError, match=r"renamed.toml: key 'name' is 'fcn8s_voc'"):
        zoo.info("renamed")


def test_catalog_summarises_every_entry():
    rows = {row["name"]: row for row in zoo.catalog()}
    assert set(rows) == set(zoo.list_models())
    assert rows["fcn8s_voc"]["mean_iu"] == 65.5 and rows["fcn8s_voc"]["checksum"] == "sha1"
    assert rows["siftflow_fcn16s"]["loadable"] is False
    assert rows["nyud_fcn32s_color"]["mean_iu"] is None  # no figure in the reference notes


def test_a_dataset_mean_no_preprocessing_mode_has_is_not_loadable():
    """NYUDv2 was trained with its own BGR mean, which is none of the modes a model applies:
    the card says so instead of wrapping the model in an ad-hoc layer."""
    card = zoo.info("nyud_fcn32s_color")
    assert not card["loadable"] and "116.190, 97.203, 92.318" in card["not_loadable_reason"]
    with pytest.raises(NotImplementedError, match="NYUDv2's own BGR mean"):
        zoo.load("nyud_fcn32s_color", weights=False)
    # PASCAL-Context writes the VOC mean rounded to 3 decimals: that is mode "fcn".
    assert zoo.info("pascalcontext_fcn8s")["loadable"]


def test_a_loadable_card_must_state_a_mode_the_model_knows():
    with pytest.raises(zoo.CardError, match=r"^where.toml: key 'preprocessing.bgr_mean' \[116.19, 97.203, 92.318\] "
                                            r"differs from mode 'fcn'"):
        zoo.validate_card(_mutated(lambda c: c["preprocessing"].update(bgr_mean=[116.19, 97.203, 92.318])),
                          "where.toml")
    with pytest.raises(zoo.CardError, match="key 'preprocessing.mode' must be a BGR-minus-mean mode"):
        zoo.validate_card(_mutated(lambda c: c["preprocessing"].update(mode="bgr")), "where.toml")


def test_a_zoo_model_carries_its_card():
    model = zoo.load("fcn8s_voc", weights=False)
    assert model.class_names == tuple(VOC_CLASSES) and model.palette.tolist() == voc_palette(21).tolist()
    assert (model.architecture, model.backbone, model.ignore_label) == ("fcn8s", "vgg16", 255)
    assert (model.preprocessing, model.include_preprocessing, model.input_preprocessing) == ("fcn", True, None)
    card = model.card
    assert card["name"] == "fcn8s_voc" and card["sha1"] == "c449ea74dd7d83751d1357d6a8c323fcf4038962"
    assert card["source"] == "http://dl.caffe.berkeleyvision.org/fcn8s-heavy-pascal.caffemodel"
    assert card["weights"] == "none"  # the architecture only: the card's checksum is not of these weights
    assert {"split": "seg11valid", "mean_iu": 65.5} .items() <= next(
        m for m in card["metrics"] if m["applies_to"] == "these weights").items()
    del model
    import keras

    keras.backend.clear_session()
