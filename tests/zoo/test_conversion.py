"""Exact conversion of full-size reference FCNs from .caffemodel files written here.

Each architecture is built once at full size (134M parameters) and filled from a
file of random weights in Caffe's layouts; the Keras weights must equal them.
fcn32s and fcn8s are covered through ``zoo.load`` in test_zoo_load.py.
"""

from __future__ import annotations

import ast
import gc
import re

import keras
import numpy as np
import pytest

from fcn_keras.caffe import CaffeLayer, CaffeModelError, load_caffe_weights, write_caffemodel
from fcn_keras.models import build_fcn

from tests.zoo.caffe_layouts import TRUNK, assert_converted, caffe_layers


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
