"""TFLite export run with the LiteRT interpreter: parity with Keras, builtin ops only, fixed sizes."""

from __future__ import annotations

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from fcn_keras.export import export_tflite
from fcn_keras.export.parity import QUANTIZED_MIN_AGREEMENT, compare, tflite_parity
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


def _dominant_channel(image: np.ndarray) -> np.ndarray:
    """A labelling a per-pixel model can learn: which of R, G, B is largest."""
    return image.argmax(-1).astype(np.uint8)


@pytest.fixture(scope="module")
def trained_tiny():
    """The tiny model trained (a few seconds) to label each pixel's dominant channel, so its masks mean
    something, with held-out images and their true labels."""
    keras.utils.set_random_seed(2)
    model = tiny_segmenter(name="tiny_trained")
    train = np.stack([synthetic_image(48, 64, seed) for seed in range(100, 132)])
    model.compile(optimizer=keras.optimizers.Adam(0.01),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(train, _dominant_channel(train), batch_size=8, epochs=15, verbose=0)  # mean IU ~0.86
    held_out = [synthetic_image(h, w, seed) for seed, (h, w) in enumerate([(48, 64), (37, 50), (61, 45)] * 2, 200)]
    return model, train, held_out, [_dominant_channel(image) for image in held_out]


def test_float16_matches_keras(tmp_path, tiny_model, images):
    float16 = export_tflite(tiny_model, tmp_path / "f16.tflite", quantization="float16")
    report16 = tflite_parity(float16, tiny_model, images)
    assert report16.kind == "float16" and report16.pixel_agreement >= 0.99, str(report16)


def test_int8_masks_agree_with_the_float_keras_model(tmp_path, trained_tiny):
    """int8 against the float32 Keras model (not against itself): most pixels keep their class and the
    mean IU against the true labels barely moves; against a model it was not made from, it fails."""
    model, train, images, labels = trained_tiny
    int8 = export_tflite(model, tmp_path / "i8.tflite", quantization="int8", representative_data=list(train[:16]))
    runner = TFLiteModel(int8)
    assert runner.input_dtype == np.uint8
    assert runner._input["quantization"] == (1.0, 0)  # raw pixels are the quantized input, unchanged
    report = tflite_parity(int8, model, images, labels=labels)
    assert report.kind == "int8" and report.images == 6
    assert report.mean_iu_keras >= 0.7, str(report)  # trained: the masks mean something
    assert report.pixel_agreement >= QUANTIZED_MIN_AGREEMENT and report.passed, str(report)  # measured 99.6 %
    assert abs(report.mean_iu_change) <= 0.03, str(report)  # measured -0.0001
    assert "pixel agreement" in str(report) and report.as_dict()["kind"] == "int8"
    # The same comparison fails when the Keras side is not the model the file came from.
    untrained = tiny_segmenter(name="tiny_untrained")
    wrong = tflite_parity(int8, untrained, images, labels=labels)
    assert wrong.pixel_agreement < 0.7 and not wrong.passed, str(wrong)  # measured 45 %
    # ... and the true labels count: the classes permuted, the int8 masks' mean IU collapses.
    permuted = tflite_parity(int8, model, images, labels=[(label + 1) % 3 for label in labels])
    assert permuted.mean_iu_export < 0.3 < report.mean_iu_export, str(permuted)


def test_int8_calibrates_on_datasets_and_file_sources(tmp_path, tiny_model, images):
    """The data pipeline's (image, label) examples and a FileSource (a split's files) both calibrate."""
    from fcn_keras import data

    root = data.write_synthetic_voc(tmp_path / "voc", num_images=4, seed=0)
    source = data.voc_source(root, "train")
    assert len(list(calibration_images(source))) == len(source)
    np.testing.assert_array_equal(next(calibration_images(source))[0], data.read_image(source.images[0]))
    for representative in (data.load_voc(root, "train"), source):
        path = export_tflite(tiny_model, tmp_path / "i8.tflite", quantization="int8",
                             representative_data=representative, verbose=False)
        assert tflite_parity(path, tiny_model, images).pixel_agreement >= 0.9


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
