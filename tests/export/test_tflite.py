"""TFLite export run with the LiteRT interpreter: parity with Keras, builtin ops only, fixed sizes."""

from __future__ import annotations

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from fcn_keras.export import export_tflite
from fcn_keras.export.parity import compare, tflite_parity
from fcn_keras.export import read_sidecar, sidecar_path
from fcn_keras.export.tflite import TFLiteModel, calibration_images, check_builtin_ops, tflite_ops
from fcn_keras.models import SegmentationModel, reference_graph
from fcn_keras.preprocessing import preprocess
from tests.export.conftest import mode, synthetic_image, tiny_segmenter, umask

pytest.importorskip("ai_edge_litert", reason="the LiteRT interpreter (pip install ai-edge-litert) runs the files")


def test_float32_fcn_matches_keras_on_any_size(tmp_path, light_model, light_logits, images):
    path = export_tflite(light_model, tmp_path / "fcn8s.tflite")
    ops = tflite_ops(open(path, "rb").read())
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV"} <= set(ops)
    assert not [op for op in ops if op.startswith("Flex")]
    runner = TFLiteModel(path)
    report = compare("float32", light_logits, [runner.logits(image) for image in images])  # three sizes, one file
    assert report.images == 3
    assert report.max_relative_error <= 1e-4, str(report)
    assert report.pixel_agreement == 1.0 and report.passed
    assert runner.input_size is None and runner.input_dtype == np.float32
    # The sidecar says what the file segments, from the model.
    assert runner.info == read_sidecar(path) and runner.info["class_names"] == list(light_model.class_names)
    assert runner.info["palette"] == light_model.palette.tolist() and runner.info["preprocessing_added"] == "tf"
    assert runner.info["quantization"] == "float32" and runner.info["architecture"] == "fcn8s"


def test_float16_and_int8_parity(tmp_path, tiny_model, images):
    float16 = export_tflite(tiny_model, tmp_path / "f16.tflite", quantization="float16")
    # int8 calibrates on the data pipeline's (image, label) examples: a VOC-layout dataset.
    from fcn_keras import data

    voc = data.load_voc(data.write_synthetic_voc(tmp_path / "voc", num_images=4, seed=0), "train")
    int8 = export_tflite(tiny_model, tmp_path / "i8.tflite", quantization="int8", representative_data=voc)
    report16 = tflite_parity(float16, tiny_model, images)
    assert report16.kind == "float16" and report16.pixel_agreement >= 0.99, str(report16)
    runner = TFLiteModel(int8)
    assert runner.input_dtype == np.uint8
    assert runner._input["quantization"] == (1.0, 0)  # raw pixels are the quantized input, unchanged
    labels = [runner.mask(image) for image in images]  # any labels: the report's mean IU change is defined
    report8 = tflite_parity(int8, tiny_model, images, labels=labels)
    assert report8.kind == "int8" and report8.pixel_agreement >= 0.9, str(report8)
    assert report8.mean_iu_export == 1.0 and report8.mean_iu_change == 1.0 - report8.mean_iu_keras
    assert "pixel agreement" in str(report8) and report8.as_dict()["kind"] == "int8"


class _CallIsNotTheGraph(SegmentationModel):
    """A stand-in for an FCN's fast formulation: call() gives twice what the layer graph gives."""

    def call(self, inputs, training=None, mask=None):
        return super().call(inputs, training=training, mask=mask) * 2.0


def test_tflite_converts_the_plain_layer_graph_not_the_call(tmp_path, images):
    """TFLite runtimes bring their own convolution kernels: the file is the reference graph
    (fcn_keras.models.reference_graph over the same variables), with model.input_preprocessing in front."""
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    model = _CallIsNotTheGraph(inputs, keras.layers.Conv2D(4, 1)(x), architecture="toy", backbone="none",
                               preprocessing="caffe", name="toy")
    path = export_tflite(model, tmp_path / "toy.tflite", verbose=False)
    graph = reference_graph(model)
    for image in images[:2]:
        expected = np.asarray(graph(preprocess(image[None].astype(np.float32), "caffe")))[0]
        np.testing.assert_allclose(TFLiteModel(path).logits(image), expected, rtol=1e-4, atol=1e-4)
    assert read_sidecar(path)["preprocessing_added"] == "caffe"


def test_calibration_images_from_a_directory_or_iterables(image_files, images):
    from_dir = list(calibration_images(image_files[0].parent))
    assert len(from_dir) == 3 and all(a.shape == (1, *b.shape) for a, b in zip(from_dir, images))
    np.testing.assert_array_equal(from_dir[1][0], images[1])
    pairs = [(np.stack(images[:1] * 2), None)]  # a batch of two, as (images, labels)
    resized = list(calibration_images(pairs, input_size=(20, 24)))
    assert [r.shape for r in resized] == [(1, 20, 24, 3)] * 2 and resized[0].dtype == np.float32
    assert len(list(calibration_images(iter(images * 5), limit=4))) == 4


def test_fixed_size_export(tmp_path, tiny_model):
    with umask(0o022):
        path = export_tflite(tiny_model, tmp_path / "fixed.tflite", input_size=(40, 48))
    assert mode(path) == mode(sidecar_path(path)) == 0o644  # plain files, no leftovers
    assert sorted(os.listdir(tmp_path)) == ["fixed.tflite", "fixed.tflite.json"]
    assert "40x48" in read_sidecar(path)["input"]
    runner = TFLiteModel(path)
    assert runner.input_size == (40, 48)
    assert list(runner._input["shape_signature"]) == [1, 40, 48, 3]  # static: GPU delegates accept it
    image = synthetic_image(40, 48, 3)
    assert tflite_parity(path, tiny_model, [image]).max_relative_error <= 1e-4
    with pytest.raises(ValueError, match="takes 40x48 images"):
        runner.logits(synthetic_image(41, 48, 3))


def test_mixed_precision_model_converts_through_float32(tmp_path, images):
    mixed = tiny_segmenter(dtype="mixed_float16", name="tiny_mixed")
    float32_copy = tiny_segmenter(name="tiny_float32")
    float32_copy.set_weights(mixed.get_weights())
    path = export_tflite(mixed, tmp_path / "mixed.tflite")
    assert tflite_parity(path, float32_copy, images[:1]).max_relative_error <= 1e-4


def test_flex_ops_are_detected():
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)], autograph=False)
    def string_lengths(strings):
        return tf.strings.length(strings)

    converter = tf.lite.TFLiteConverter.from_concrete_functions([string_lengths.get_concrete_function()])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
    content = converter.convert()
    assert "FlexStringLength" in tflite_ops(content)
    with pytest.raises(ValueError, match=r"non-builtin ops \['FlexStringLength'\]"):
        check_builtin_ops(content)


def test_bad_arguments_are_refused(tmp_path, tiny_model):
    with pytest.raises(ValueError, match="quantization must be one of"):
        export_tflite(tiny_model, tmp_path / "m.tflite", quantization="int4")
    with pytest.raises(ValueError, match="int8' needs representative_data"):
        export_tflite(tiny_model, tmp_path / "m.tflite", quantization="int8")
    with pytest.raises(ValueError, match="input_size must be None or"):
        export_tflite(tiny_model, tmp_path / "m.tflite", input_size=(0, 5))
    with pytest.raises(ValueError, match=r"directory .* has no images \(\.jpg"):
        export_tflite(tiny_model, tmp_path / "m.tflite", quantization="int8", representative_data=tmp_path)
    assert not (tmp_path / "m.tflite").exists()
