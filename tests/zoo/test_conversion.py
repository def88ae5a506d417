"""Exact conversion of full-size reference FCNs from .caffemodel files written here.

Each architecture is built once at full size (134M parameters) and filled from a
file of random weights in Caffe's layouts; the Keras weights must equal them.
fcn32s and fcn8s are covered through ``zoo.load`` in test_zoo_load.py, the SIFT
Flow two-head FCN-16s through ``zoo.load`` here.
"""

from __future__ import annotations

import ast
import gc
import re

import keras
import numpy as np
import pytest

from fcn_keras.caffe import CaffeLayer, CaffeModelError, load_caffe_weights, write_caffemodel
from fcn_keras.models import build_fcn, reference_graph
from fcn_keras.preprocessing import preprocess

from tests.models.family_checks import random_images
from tests.zoo.caffe_layouts import TRUNK, assert_converted, caffe_layers, siftflow_caffe_layers

TRUNK_PARAMS = 134_260_544  # conv1_1 ... fc7


def _fcn16s_head_params(n: int) -> int:
    return (4096 * n + n) + (512 * n + n) + 4 * 4 * n * n + 32 * 32 * n * n


@pytest.mark.parametrize("architecture, form", [("fcn16s", "v1"), ("fcn8s_atonce", "v1")])
def test_full_size_conversion(tmp_path, architecture, form):
    model = build_fcn(architecture, num_classes=21)
    written = caffe_layers(architecture, seed=len(architecture))
    path = tmp_path / f"{architecture}.caffemodel"
    write_caffemodel(path, written, form=form)
    load_caffe_weights(model, path)
    path.unlink()
    assert_converted(model, written)

    # A caffemodel for another architecture (FCN-32s's layers): the error says which layers differ.
    fcn32s = TRUNK + ("score_fr", "upscore")
    write_caffemodel(path, [CaffeLayer(name, blobs=[np.zeros(1, "float32")]) for name in fcn32s])
    with pytest.raises(CaffeModelError) as info:
        load_caffe_weights(model, path)
    lacks = re.search(r"layers the model needs but the file lacks: (\[.*?\]);", str(info.value))
    assert set(ast.literal_eval(lacks.group(1))) == {layer.name for layer in written} - set(fcn32s)
    assert "layers with weights in the file that the model lacks: ['upscore']" in str(info.value)
    assert_converted(model, [layer for layer in written if layer.name in ("conv1_1", "score_fr")])  # untouched
    del model, written
    keras.backend.clear_session()
    gc.collect()


def test_siftflow_card_loads_both_heads_from_its_caffemodel(tmp_path, monkeypatch):
    """The card's architecture at full size (the paper's model, 135,568,424 parameters), filled by zoo.load from a
    caffemodel in net.py's layout: every blob of both heads lands in its layer, and the semantic output the
    model's fast formulation computes equals its plain graph."""
    import fcn_keras.zoo as zoo

    monkeypatch.setenv("FCN_KERAS_HOME", str(tmp_path / "home"))
    written = siftflow_caffe_layers(seed=16)
    path = tmp_path / "siftflow-fcn16s-heavy.caffemodel"
    write_caffemodel(path, written)
    model = zoo.load("siftflow_fcn16s", weights_path=path, verify=False, include_preprocessing=False)
    path.unlink()
    assert model.count_params() == TRUNK_PARAMS + _fcn16s_head_params(33) + _fcn16s_head_params(3) == 135_568_424
    assert_converted(model.two_heads(), written)
    assert model.card["weights"] == "unverified file" and model.geometric().class_names[0] == "sky"

    image = preprocess(np.asarray(random_images([(37, 50)])[0], "float32")[None], model.input_preprocessing)
    plain = keras.ops.convert_to_numpy(reference_graph(model)(image))
    fast = keras.ops.convert_to_numpy(model(image))
    assert fast.shape == (1, 37, 50, 33) and np.isfinite(plain).all()
    np.testing.assert_allclose(fast, plain, rtol=1e-3, atol=1e-4 * np.abs(plain).max())
    geometric = keras.ops.convert_to_numpy(model.geometric()(image))
    assert geometric.shape == (1, 37, 50, 3) and np.isfinite(geometric).all()
    del model, written
    keras.backend.clear_session()
    gc.collect()
