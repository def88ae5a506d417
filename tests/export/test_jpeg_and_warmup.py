"""Serving decodes JPEGs to the training pipeline's pixels; exports carry TF Serving warm-up requests."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from fcn_keras.data import read_image
from fcn_keras.export import export_saved_model, read_export_info
from fcn_keras.export.parity import keras_logits
from fcn_keras.export.saved_model import WARMUP_FILE, decode_image, default_warmup_images
from tests.export.conftest import encode, synthetic_image

CAMVID_TEST_IMAGES = 4


def _camvid_test_jpegs(camvid) -> list:
    files = sorted((camvid / "test").glob("*.jpg"))[:CAMVID_TEST_IMAGES]
    if not files:
        pytest.skip(f"no CamVid test JPEGs in {camvid / 'test'}")
    return files


def _jpeg(image: np.ndarray, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", **options)
    return buffer.getvalue()


def test_camvid_test_jpegs_decode_to_the_training_pixels(camvid):
    for path in _camvid_test_jpegs(camvid):
        data = path.read_bytes()
        pil = read_image(path)
        np.testing.assert_array_equal(decode_image(data).numpy(), pil, err_msg=str(path))
        # What serving did before (tf.io.decode_image's INTEGER_FAST IDCT) differs: the check above can fail.
        assert (tf.io.decode_image(data, channels=3).numpy() != pil).mean() > 0.1


_PHOTO = synthetic_image(61, 45, seed=7)
_GREY = np.asarray(Image.fromarray(_PHOTO).convert("L"))


@pytest.mark.parametrize("name, image, options", [
    ("4:2:0", _PHOTO, {"quality": 90, "subsampling": 2}),
    ("4:2:2", _PHOTO, {"quality": 90, "subsampling": 1}),
    ("4:4:4", _PHOTO, {"quality": 95, "subsampling": 0}),
    ("progressive", _PHOTO, {"quality": 85, "progressive": True}),
    ("greyscale", _GREY, {"quality": 90}),
    ("odd size 1x7", synthetic_image(1, 7, seed=3), {"quality": 90}),
    ("odd size 33x17 4:2:0", synthetic_image(33, 17, seed=4), {"quality": 75, "subsampling": 2}),
])
def test_written_jpegs_decode_to_the_training_pixels(tmp_path, name, image, options):
    path = tmp_path / "image.jpg"
    path.write_bytes(_jpeg(image, **options))
    decoded = decode_image(path.read_bytes()).numpy()
    assert decoded.shape == (*image.shape[:2], 3)
    np.testing.assert_array_equal(decoded, read_image(path), err_msg=name)


def test_png_decoding_is_lossless(images):
    np.testing.assert_array_equal(decode_image(encode(images[2], "PNG")).numpy(), images[2])


def test_serving_default_on_camvid_jpeg_bytes_equals_keras_on_the_pil_image(loaded, light_model, camvid):
    files = _camvid_test_jpegs(camvid)[:2]
    out = loaded.signatures["serving_default"](image_bytes=tf.constant([f.read_bytes() for f in files]))
    for i, path in enumerate(files):
        pil = read_image(path)
        h, w = pil.shape[:2]
        assert (int(out["height"][i]), int(out["width"][i])) == (h, w)
        reference = keras_logits(light_model, [pil])[0]
        np.testing.assert_array_equal(out["mask"].numpy()[i, :h, :w], reference.argmax(-1))
        np.testing.assert_allclose(out["scores"].numpy()[i, :h, :w], tf.nn.softmax(reference).numpy(), atol=1e-5)


def _warmup_logs(version_dir) -> list:
    from tensorflow_serving.apis import prediction_log_pb2

    path = os.path.join(version_dir, WARMUP_FILE)
    return [prediction_log_pb2.PredictionLog.FromString(record.numpy()) for record in tf.data.TFRecordDataset(path)]


def test_warmup_requests_are_predict_requests_for_serving_default(model_dir, loaded, light_model):
    pytest.importorskip("tensorflow_serving.apis", reason="tensorflow-serving-api parses the warm-up records")
    logs = _warmup_logs(model_dir / "1")
    assert len(logs) == len(default_warmup_images()) == read_export_info(model_dir / "1")["warmup_requests"]
    for log in logs:
        assert log.WhichOneof("log_type") == "predict_log"
        request = log.predict_log.request
        assert request.model_spec.signature_name == "serving_default"
        assert sorted(request.inputs) == ["image_bytes"]
        tensor = request.inputs["image_bytes"]
        assert tensor.dtype == tf.string.as_datatype_enum and [d.size for d in tensor.tensor_shape.dim] == [1]
        # The request runs through the exported signature and answers what Keras answers.
        data = tf.make_ndarray(tensor)
        out = loaded.signatures["serving_default"](image_bytes=tf.constant(data))
        reference = keras_logits(light_model, [decode_image(data[0]).numpy()])[0]
        np.testing.assert_array_equal(out["mask"].numpy()[0], reference.argmax(-1))
    assert {tf.make_ndarray(log.predict_log.request.inputs["image_bytes"])[0][:3] for log in logs} == \
        {b"\xff\xd8\xff", b"\x89PN"}  # one JPEG and one PNG: both decoders are warmed


def test_warmup_images_can_be_chosen_or_left_out(tmp_path, tiny_model, camvid):
    pytest.importorskip("tensorflow_serving.apis", reason="tensorflow-serving-api parses the warm-up records")
    chosen = _camvid_test_jpegs(camvid)[:1]
    path = export_saved_model(tiny_model, tmp_path / "m", warmup=chosen, verbose=False)
    (log,) = _warmup_logs(path)
    assert tf.make_ndarray(log.predict_log.request.inputs["image_bytes"]).tolist() == [chosen[0].read_bytes()]
    bare = export_saved_model(tiny_model, tmp_path / "m", warmup=False, verbose=False)
    assert not os.path.exists(os.path.join(bare, "assets.extra"))
    assert read_export_info(bare)["warmup_requests"] == 0


@pytest.mark.parametrize("warmup, message", [
    ([b"GIF89a..."], r"warmup\[0\] is not a JPEG or PNG image"),
    ([encode(np.zeros((2, 2049, 3), np.uint8), "PNG")], r"warmup\[0\] is 2x2049 .*max_image_size 2048"),
    ([], "warmup needs 1 to 1000 images"),
    (b"\xff\xd8\xff", "got a single bytes"),
])
def test_bad_warmup_images_are_refused_before_anything_is_written(tmp_path, tiny_model, warmup, message):
    with pytest.raises(ValueError, match=message):
        export_saved_model(tiny_model, tmp_path / "m", warmup=warmup, verbose=False)
    assert not (tmp_path / "m").exists()
