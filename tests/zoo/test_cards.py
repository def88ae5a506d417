"""Model cards: every shipped card is valid, and the schema names the file and key of each error."""

from __future__ import annotations

import copy
import sys

import keras
import numpy as np
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


FAMILY = {"deeplab_largefov_voc": "deeplab_largefov", "segnet_camvid": "segnet", "deconvnet_voc": "deconvnet",
          "unet": "unet", "pspnet_voc": "pspnet", "cam_vgg16": "cam"}


def test_every_shipped_card_is_valid():
    from fcn_keras.models.architectures import ARCHITECTURES

    names = zoo.list_models()
    assert set(VOC_ENTRIES) <= set(names)
    assert {"pascalcontext_fcn8s", "nyud_fcn32s_color", "siftflow_fcn16s"} | set(FAMILY) <= set(names)
    for name in names:
        card = zoo.info(name)
        assert card["name"] == name
        assert len(card["palette"]) == card["num_classes"]
        assert card["classes"] == "imagenet" or len(card["classes"]) == card["num_classes"]
        if card["source"]["repository"] == "https://github.com/shelhamer/fcn.berkeleyvision.org":
            assert all(url.startswith("http://dl.caffe.berkeleyvision.org/") for url in card["weights"]["urls"])
        if "evaluation" in card:
            assert f"fcn-keras zoo evaluate {name}" in card["evaluation"]["command"]
        assert card["architecture"] in ARCHITECTURES or not card["loadable"]


def test_the_family_cards_say_where_weights_come_from():
    for name, architecture in FAMILY.items():
        card = zoo.info(name)
        assert card["architecture"] == architecture
        assert card["loadable"] or card["not_loadable_reason"]
        weights = card["weights"]
        assert weights["format"] == "none" and weights["note"] or weights["file"] and weights["checksum_source"]
        assert card["metrics"] or card["metrics_note"]
        assert all(m["source"] and m["applies_to"] for m in card["metrics"])
    assert zoo.info("unet")["weights"] == {"format": "none", "note": zoo.info("unet")["weights"]["note"]}
    assert zoo.info("deeplab_largefov_voc")["weights"]["file"] == "train2_iter_8000.caffemodel"
    assert zoo.info("segnet_camvid")["weights"]["urls"] == [
        "http://mi.eng.cam.ac.uk/~agk34/resources/SegNet/segnet_weights_driving_webdemo.caffemodel"]
    assert "urls" not in zoo.info("pspnet_voc")["weights"]  # a Google Drive page, not a file URL
    rows = {row["name"]: row for row in zoo.catalog()}
    assert rows["unet"]["weights"] == "none" and rows["unet"]["checksum"] == "none"
    assert zoo.cards.provenance(zoo.info("unet"), "none")["source"] is None


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
    with pytest.raises(ValueError, match=r"Unknown zoo model 'fcn9s_voc'; known models: \['cam_vgg16', 'deconvnet_voc'"):
        zoo.info("fcn9s_voc")


def test_not_loadable_card_says_why():
    with pytest.raises(NotImplementedError, match="No Caffe mapping exists yet for DeconvNet"):
        zoo.load("deconvnet_voc", weights=False)


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
    assert rows["siftflow_fcn16s"]["loadable"] is True and rows["cam_vgg16"]["loadable"] is False
    assert rows["nyud_fcn32s_color"]["mean_iu"] is None  # no figure in the reference notes


def test_each_dataset_mean_is_a_mode_the_model_applies_exactly():
    """NYUDv2 and PASCAL-Context were trained with their own BGR means (nyud_layers.py,
    pascalcontext_layers.py): their cards name those modes, and the models subtract them."""
    for name, mode, mean in [("nyud_fcn32s_color", "nyud", (116.190, 97.203, 92.318)),
                             ("pascalcontext_fcn8s", "pascalcontext", (104.007, 116.669, 122.679))]:
        assert zoo.info(name)["loadable"]
        model = zoo.load(name, weights=False)
        assert model.preprocessing == mode and model.include_preprocessing
        black = keras.ops.convert_to_numpy(model.get_layer("preprocessing")(np.zeros((1, 1, 1, 3), "float32")))
        np.testing.assert_allclose(black[0, 0, 0], -np.array(mean, "float32"))
        del model
        keras.backend.clear_session()


def test_a_loadable_card_must_state_a_mode_the_model_knows():
    with pytest.raises(zoo.CardError, match=r"^where.toml: key 'preprocessing.bgr_mean' \[116.19, 97.203, 92.318\] "
                                            r"differs from mode 'fcn'"):
        zoo.validate_card(_mutated(lambda c: c["preprocessing"].update(bgr_mean=[116.19, 97.203, 92.318])),
                          "where.toml")
    with pytest.raises(zoo.CardError, match="key 'preprocessing.mode' must be a mode of fcn_keras.preprocessing.MODES"):
        zoo.validate_card(_mutated(lambda c: c["preprocessing"].update(mode="bgr")), "where.toml")
    with pytest.raises(zoo.CardError, match="key 'preprocessing.bgr_mean' is required: mode 'fcn' subtracts"):
        zoo.validate_card(_mutated(lambda c: c["preprocessing"].pop("bgr_mean")), "where.toml")
    with pytest.raises(zoo.CardError, match="key 'preprocessing.bgr_mean' given, but mode 'tf' subtracts no"):
        zoo.validate_card(_mutated(lambda c: c["preprocessing"].update(mode="tf")), "where.toml")


def _family_card(name):
    return tomllib.loads(zoo_path("cards", f"{name}.toml").read_text())


def test_only_a_loadable_card_must_name_a_registered_architecture():
    """Cards of architectures this version does not build validate while not loadable, so they can ship early."""
    card = _family_card("segnet_camvid")
    card.update(name="segnet_v9", architecture="segnet_v9", loadable=False, not_loadable_reason="not built here")
    assert zoo.validate_card(card, "segnet_v9.toml")["loadable"] is False
    card["loadable"] = True
    with pytest.raises(zoo.CardError, match=r"key 'architecture' must be one of \[.*'segnet'.*\] for a loadable"):
        zoo.validate_card(card, "segnet_v9.toml")
    card = _family_card("cam_vgg16")
    card["loadable"] = True
    with pytest.raises(zoo.CardError, match="'imagenet' stands for the 1000 ILSVRC classes"):
        zoo.validate_card(card, "cam_vgg16.toml")


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["weights"].update(file="x.caffemodel"), r"keys \['weights.file'\] describe a file, but weights.format is 'none'"),
    (lambda c: c["weights"].pop("note"), "missing required key 'weights.note'"),
    (lambda c: c["weights"].update(format="onnx"), r"key 'weights.format' must be one of \['caffemodel', 'none'\]"),
    (lambda c: c.update(options={"name": "x", "alpha": 0.5}), r"keys \['options.name'\]: the card's own keys"),
])
def test_weights_none_schema(edit, message):
    card = _family_card("unet")
    edit(card)
    with pytest.raises(zoo.CardError, match=f"^unet.toml: .*{message}"):
        zoo.validate_card(card, "unet.toml")


def test_a_card_without_weights_builds_its_architecture_and_refuses_weights(tmp_path, monkeypatch):
    tmp_zoo = TmpZoo(tmp_path, monkeypatch)
    text = zoo_path("cards", "unet.toml").read_text()
    # The same card for an architecture every version has, small: loadable, no weights.
    text = (text.replace('architecture = "unet"', 'architecture = "fcn32s"')
            .replace('backbone = "none"', 'backbone = "tiny_vgg"').replace("loadable = false", "loadable = true")
            .replace("[preprocessing]", "[options]\ntrainable_upsampling = true\n\n[preprocessing]"))
    (tmp_zoo.cards / "unet.toml").write_text(text)
    model = zoo.load("unet", weights=False)
    assert (model.architecture, model.backbone, model.class_names) == ("fcn32s", "tiny_vgg", ("background", "foreground"))
    assert model.get_layer("upscore").trainable  # the card's [options] reach the builder
    assert model.card["weights"] == "none" and model.card["source"] is None
    with pytest.raises(ValueError, match="zoo model 'unet' has no published weights .*weights=False"):
        zoo.load("unet")
    with pytest.raises(ValueError, match="has no published weights"):
        zoo.download("unet")
    path = tmp_path / "mine.weights.h5"
    model.save_weights(path)
    with pytest.raises(zoo.ChecksumError, match="no published weights to verify a file against"):
        zoo.load("unet", weights_path=path)
    assert zoo.load("unet", weights_path=path, verify=False).card["weights"] == "unverified file"


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
