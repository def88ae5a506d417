"""SavedModel export: versions and atomicity, both signatures against Keras, bad input, keras-free use."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from fcn_keras.export import MASK_PAD_VALUE, export_model, export_saved_model, read_export_info
from fcn_keras.export.parity import keras_logits
from fcn_keras.models import SegmentationModel, reference_graph
from fcn_keras.palette import voc_palette
from fcn_keras.preprocessing import preprocess
from tests.export.conftest import (assert_other_user_can_read, encode, mode, synthetic_image, tiny_segmenter,
                                   tree_modes)

ROOT = Path(__file__).resolve().parents[2]
PYTHON_ENV = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}


def _serve(loaded, data: list[bytes]) -> dict:
    return {k: v.numpy() for k, v in loaded.signatures["serving_default"](image_bytes=tf.constant(data)).items()}


def test_versions_are_numbered_and_existing_ones_refused(tmp_path, tiny_model, image_files):
    base = tmp_path / "segmenter"
    tiny_model.save(tmp_path / "tiny.keras")  # the CLI's entry point, from a checkpoint, with a parity check
    result = export_model(tmp_path / "tiny.keras", base, check_images=image_files, verbose=False)
    assert result["path"] == str(base / "1")
    assert result["parity"]["kind"] == "savedmodel" and result["parity"]["passed"], result["parity"]
    assert export_saved_model(tiny_model, base, version=7, verbose=False) == str(base / "7")
    assert export_saved_model(tiny_model, base, verbose=False) == str(base / "8")
    with pytest.raises(FileExistsError, match="version 7 already exists.*overwrite=True"):
        export_saved_model(tiny_model, base, version=7, verbose=False)
    export_saved_model(tiny_segmenter(class_names=["a", "b", "c"]), base, version=7, overwrite=True, verbose=False)
    assert read_export_info(base / "7")["class_names"] == ["a", "b", "c"]  # replaced: the new model's names
    assert sorted(os.listdir(base)) == ["1", "7", "8"]  # no temporary directory left behind
    with pytest.raises(ValueError, match="positive integer"):
        export_saved_model(tiny_model, base, version=0, verbose=False)


KILLED_EXPORT_SCRIPT = """
import sys, time
import tensorflow as tf
from tests.export.conftest import tiny_segmenter
from fcn_keras.export import export_saved_model
real_save = tf.saved_model.save
def save_then_hang(*args, **kwargs):
    real_save(*args, **kwargs)
    print("SAVED", flush=True)
    time.sleep(600)
tf.saved_model.save = save_then_hang
export_saved_model(tiny_segmenter(), sys.argv[1], verbose=False)
"""


def test_killed_export_leaves_no_version(processes):
    """SIGKILL after the SavedModel is written but before the rename: TF Serving sees nothing."""
    results, work = processes
    assert results["killed"].stdout.strip() == "SAVED", results["killed"].stderr[-3000:]
    assert results["killed"].returncode == -signal.SIGKILL
    leftovers = os.listdir(work / "killed")
    assert not [n for n in leftovers if n.isdigit()]  # TF Serving loads all-digit names only
    assert len(leftovers) == 1 and leftovers[0].startswith(".1.") and leftovers[0].endswith(".tmp")
    assert (work / "killed" / leftovers[0] / "saved_model.pb").is_file()  # killed after writing, before publishing


def test_version_is_readable_by_another_user(model_dir):
    """0755 directories and 0644 files under umask 022 (not tempfile's 0700/0600): TF Serving, running
    as another user, can read the whole version (and does, as user nobody, when the tests run as root)."""
    assert mode(model_dir) == 0o755
    for version in ("1", "2"):
        modes = tree_modes(model_dir / version)
        assert {"saved_model.pb", "variables", "assets/export.json", "assets/class_names.txt"} <= set(modes)
        assert_other_user_can_read(model_dir / version)


def test_model_that_changes_size_is_refused(tmp_path):
    inputs = keras.Input((None, None, 3))
    outputs = keras.layers.Conv2D(4, 3, strides=2, padding="same")(inputs)
    model = SegmentationModel(inputs, outputs, architecture="strided", backbone="none", preprocessing="tf")
    with pytest.raises(ValueError, match="per-pixel logits of the input's size.*37x50"):
        export_saved_model(model, tmp_path / "m", verbose=False)
    assert not (tmp_path / "m").exists()


def test_a_plain_keras_model_is_refused_with_how_to_wrap_it(tmp_path):
    inputs = keras.Input((None, None, 3))
    plain = keras.Model(inputs, keras.layers.Conv2D(2, 1, name="conv1_1")(inputs))  # no guessing from names
    with pytest.raises(TypeError, match=r"SegmentationModel.*SegmentationModel\(model.input, model.output"):
        export_saved_model(plain, tmp_path / "m", verbose=False)
    assert not (tmp_path / "m").exists()


class _CallIsNotTheGraph(SegmentationModel):
    """A stand-in for an FCN's fast formulation: call() gives twice what the layer graph gives."""

    def call(self, inputs, training=None, mask=None):
        return super().call(inputs, training=training, mask=mask) * 2.0


def test_identity_and_preprocessing_come_from_the_model(tmp_path, images):
    """What the model says — names, palette, ignore label, mode, card — is what the export says and does;
    the graph calls the model (its fast formulation), with model.input_preprocessing in front."""
    inputs = keras.Input((None, None, 3))
    outputs = keras.layers.Conv2D(2, 1, kernel_initializer="glorot_uniform", bias_initializer="ones")(inputs)
    card = {"name": "toy", "source": "toy.caffemodel", "sha1": "0" * 40, "metrics": {"mean_iou": 0.5}}
    model = _CallIsNotTheGraph(inputs, outputs, architecture="toy", backbone="none", class_names=["sky", "sea"],
                               palette=[[1, 2, 3], [4, 5, 6]], ignore_label=9, preprocessing="torch", card=card,
                               name="toy")
    path = export_saved_model(model, tmp_path / "toy", verbose=False)
    info = read_export_info(path)
    assert {k: info[k] for k in model.identity()} == model.identity()
    assert info["preprocessing_added"] == "torch" and info["ignore_label"] == 9 and info["card"] == card
    assert "0 sky, 1 sea" in info["signatures"]["serving_default"]["outputs"]["mask"]
    assert (Path(path) / "assets" / "palette.txt").read_text() == "1 2 3\n4 5 6\n"
    logits = tf.saved_model.load(path).signatures["predict_images"](images=tf.constant(images[0][None]))["logits"]
    graph = reference_graph(model)(preprocess(images[0][None].astype(np.float32), "torch"))
    np.testing.assert_allclose(logits.numpy(), 2.0 * np.asarray(graph), rtol=1e-5, atol=1e-5)


def test_serving_default_runs_each_image_alone(loaded, light_logits, images):
    """A PNG batch of three sizes: each mask equals Keras on that image alone, padding is -1."""
    out = _serve(loaded, [encode(image, "PNG") for image in images])
    h_max, w_max = max(i.shape[0] for i in images), max(i.shape[1] for i in images)
    assert out["mask"].shape == (3, h_max, w_max) and out["mask"].dtype == np.int32
    assert out["scores"].shape == (3, h_max, w_max, 5)
    for i, (image, logits) in enumerate(zip(images, light_logits)):
        h, w = image.shape[:2]
        assert (out["height"][i], out["width"][i]) == (h, w)
        np.testing.assert_array_equal(out["mask"][i, :h, :w], logits.argmax(-1))
        np.testing.assert_allclose(out["scores"][i, :h, :w], tf.nn.softmax(logits).numpy(), atol=1e-5)
        assert (out["mask"][i, h:] == MASK_PAD_VALUE).all() and (out["mask"][i, :, w:] == MASK_PAD_VALUE).all()
    assert len(np.unique(out["mask"][out["mask"] >= 0])) > 1  # random score layers: not a constant mask


def test_serving_default_jpeg_matches_keras_on_the_training_decoder(loaded, light_model, voc_mini):
    """JPEG bytes are segmented exactly as Keras segments the pixels the training pipeline (PIL) reads."""
    from fcn_keras.data import read_image

    files = sorted((voc_mini / "JPEGImages").glob("*.jpg"))[:2]
    out = _serve(loaded, [f.read_bytes() for f in files])
    for i, path in enumerate(files):
        pil = read_image(path)
        h, w = pil.shape[:2]
        np.testing.assert_array_equal(out["mask"][i, :h, :w], keras_logits(light_model, [pil])[0].argmax(-1))


def test_predict_images_logits_equal_keras(loaded, light_model):
    batch = np.stack([synthetic_image(40, 56, seed) for seed in (5, 6)])
    out = loaded.signatures["predict_images"](images=tf.constant(batch))
    logits, mask = out["logits"].numpy(), out["mask"].numpy()
    assert logits.dtype == np.float32 and logits.shape == (2, 40, 56, 5)
    for i, reference in enumerate(keras_logits(light_model, list(batch))):
        assert np.max(np.abs(logits[i] - reference)) <= 1e-4 * np.max(np.abs(reference))
        np.testing.assert_array_equal(mask[i], reference.argmax(-1))


@pytest.mark.parametrize("data, message", [
    ([encode(synthetic_image(8, 8, 0), "PNG"), b"<html>not an image</html>"],
     r"image_bytes\[1\] is not a JPEG or PNG image"),
    ([], "image_bytes: empty batch"),
    ([encode(np.zeros((2, 2049, 3), np.uint8), "PNG")], r"image_bytes\[0\] is 2x2049.*limit of 2048"),
    ([encode(np.zeros((2050, 3, 3), np.uint8), "JPEG")], r"image_bytes\[0\] is 2050x3.*limit of 2048"),
])
def test_serving_default_bad_input_says_why(loaded, data, message):
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        loaded.signatures["serving_default"](image_bytes=tf.constant(data, tf.string))


def test_predict_images_bad_input_says_why(loaded):
    fn = loaded.signatures["predict_images"]
    with pytest.raises(tf.errors.InvalidArgumentError, match="images: empty batch"):
        fn(images=tf.zeros((0, 8, 8, 3), tf.uint8))
    with pytest.raises(tf.errors.InvalidArgumentError, match="images are 1x2049.*1 to 2048 pixels"):
        fn(images=tf.zeros((1, 1, 2049, 3), tf.uint8))


def test_assets_hold_class_names_and_palette(model_dir):
    assets = model_dir / "1" / "assets"
    assert (assets / "class_names.txt").read_text().split("\n")[:-1] == [f"class {i}" for i in range(5)]
    palette = np.loadtxt(assets / "palette.txt", dtype=np.uint8).reshape(-1, 3)
    np.testing.assert_array_equal(palette, voc_palette(5))
    info = read_export_info(model_dir / "2")
    assert info["class_names"] == ["sky", "road", "car"] and info["preprocessing_added"] is None
    assert read_export_info(model_dir / "1")["preprocessing_added"] == "tf"


KERAS_FREE_SCRIPT = """
import json, sys
blocked = ("keras", "tf_keras", "fcn_keras")
for name in blocked:
    sys.modules[name] = None  # any import of them now raises ImportError
import numpy as np
import tensorflow as tf
export_dir, png, root, tiny_dir = sys.argv[1:]
loaded = tf.saved_model.load(export_dir)
out = loaded.signatures["serving_default"](image_bytes=tf.constant([open(png, "rb").read()]))
names = open(export_dir + "/assets/class_names.txt").read().splitlines()
# The project's own runner needs TensorFlow only too: its module runs with keras and fcn_keras still blocked.
import importlib.util
spec = importlib.util.spec_from_file_location("runner", root + "/fcn_keras/export/runner.py")
runner = importlib.util.module_from_spec(spec)
spec.loader.exec_module(runner)
image = tf.io.decode_png(open(png, "rb").read()).numpy()
logits = runner.saved_model_logits(tiny_dir)(image)
# TF Serving's warm-up requests, parsed with its own protos and run through the signature they name.
from tensorflow_serving.apis import prediction_log_pb2
warmup = []
for record in tf.data.TFRecordDataset(export_dir + "/assets.extra/tf_serving_warmup_requests"):
    request = prediction_log_pb2.PredictionLog.FromString(record.numpy()).predict_log.request
    inputs = {k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
    answer = loaded.signatures[request.model_spec.signature_name](**inputs)
    warmup.append({"image": inputs["image_bytes"].numpy()[0].hex(), "mask": answer["mask"].numpy()[0].tolist()})
assert not [m for m in sys.modules if m.split(".")[0] in blocked and sys.modules[m]]
print(json.dumps({"mask": out["mask"].numpy()[0].tolist(), "names": names, "signatures": sorted(loaded.signatures),
                  "runner_logits": logits.tolist(), "warmup": warmup}))
"""


@pytest.fixture(scope="module")
def processes(model_dir, images, tmp_path_factory):
    """The fresh-process checks, started together (each pays a TensorFlow import; they overlap)."""
    work = tmp_path_factory.mktemp("processes")
    (work / "a.png").write_bytes(encode(images[0], "PNG"))
    np.save(work / "images.npy", np.full((1, 21, 30, 3), 200, np.uint8))
    cli = str(Path(sys.executable).with_name("saved_model_cli"))
    commands = {
        # cwd and PYTHONPATH away from the project: fcn_keras is only reachable through the venv, and blocked.
        "keras_free": ([sys.executable, "-c", KERAS_FREE_SCRIPT, str(model_dir / "1"), str(work / "a.png"), str(ROOT),
                        str(model_dir / "2")],
                       {**PYTHON_ENV, "PYTHONPATH": ""}),
        "show": ([cli, "show", "--dir", str(model_dir / "2"), "--all"], PYTHON_ENV),
        "run": ([cli, "run", "--dir", str(model_dir / "2"), "--tag_set", "serve", "--signature_def",
                 "predict_images", "--inputs", f"images={work / 'images.npy'}", "--outdir", str(work)], PYTHON_ENV),
    }
    commands["killed"] = ([sys.executable, "-c", KILLED_EXPORT_SCRIPT, str(work / "killed")],
                          {**PYTHON_ENV, "PYTHONPATH": str(ROOT)})
    started = {name: subprocess.Popen(command, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True) for name, (command, env) in commands.items()}
    results = {}
    killed = started.pop("killed")
    try:
        line = killed.stdout.readline()  # the export has written everything but not renamed it
        if line.strip() == "SAVED":
            os.kill(killed.pid, signal.SIGKILL)
        stdout, stderr = killed.communicate(timeout=300)
    finally:
        if killed.poll() is None:
            killed.kill()
    results["killed"] = subprocess.CompletedProcess(killed.args, killed.returncode, line + stdout, stderr)
    for name, process in started.items():
        stdout, stderr = process.communicate(timeout=300)
        results[name] = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    return results, work


def test_loads_and_runs_where_keras_cannot_be_imported(processes, light_logits, light_model, tiny_model, images):
    result = processes[0]["keras_free"]
    assert result.returncode == 0, result.stderr[-3000:]
    reply = json.loads(result.stdout.strip().splitlines()[-1])
    np.testing.assert_array_equal(np.array(reply["mask"]), light_logits[0].argmax(-1))
    assert reply["names"] == [f"class {i}" for i in range(5)]
    assert reply["signatures"] == ["predict_images", "serving_default"]
    # saved_model_logits, with keras and fcn_keras still blocked, on the tiny model's version
    reference = keras_logits(tiny_model, images[:1])[0]
    np.testing.assert_allclose(reply["runner_logits"], reference, rtol=1e-4, atol=1e-4 * np.abs(reference).max())
    # The warm-up requests TF Serving would send first answer what Keras answers on their images.
    from fcn_keras.export.saved_model import decode_image, default_warmup_images

    assert [bytes.fromhex(w["image"]) for w in reply["warmup"]] == default_warmup_images()
    for answer in reply["warmup"]:
        pixels = decode_image(bytes.fromhex(answer["image"])).numpy()
        np.testing.assert_array_equal(np.array(answer["mask"]), keras_logits(light_model, [pixels])[0].argmax(-1))


def test_saved_model_logits_takes_images_or_batches_and_names_wrong_inputs(model_dir, tiny_model, images):
    from fcn_keras.export import saved_model_logits

    run = saved_model_logits(model_dir / "2")
    reference = keras_logits(tiny_model, images[:1])[0]
    np.testing.assert_allclose(run(images[0]), reference, rtol=1e-4, atol=1e-4 * np.abs(reference).max())
    np.testing.assert_array_equal(run(np.stack([images[0]] * 2).astype(np.float32)).argmax(-1)[1],
                                  reference.argmax(-1))
    with pytest.raises(ValueError, match="whole pixel values 0-255"):
        run(images[0] / 255.0)
    with pytest.raises(ValueError, match=r"RGB image \(H, W, 3\)"):
        run(images[0][..., 0])
    with pytest.raises(FileNotFoundError, match="holds versions 1, 2: pass one of them"):
        saved_model_logits(model_dir)


def test_saved_model_cli_show_and_run(processes, tiny_model):
    results, work = processes
    show, run = results["show"], results["run"]
    assert show.returncode == 0, show.stderr[-3000:]
    for fragment in ("signature_def['serving_default']", "signature_def['predict_images']", "image_bytes",
                     "dtype: DT_STRING", "dtype: DT_UINT8", "outputs['logits'] tensor_info:\n        dtype: DT_FLOAT"):
        assert fragment in show.stdout
    assert run.returncode == 0, run.stderr[-3000:]
    logits = np.load(work / "logits.npy")
    reference = keras_logits(tiny_model, [np.full((21, 30, 3), 200, np.uint8)])[0]
    np.testing.assert_allclose(logits[0], reference, rtol=1e-4, atol=1e-4 * np.abs(reference).max())
    np.testing.assert_array_equal(np.load(work / "mask.npy")[0], reference.argmax(-1))


def test_mixed_precision_model_exports_float32(tmp_path, images):
    mixed = tiny_segmenter(dtype="mixed_float16", name="tiny_mixed")
    float32_copy = tiny_segmenter(name="tiny_float32")
    float32_copy.set_weights(mixed.get_weights())
    loaded = tf.saved_model.load(export_saved_model(mixed, tmp_path / "m", verbose=False))
    fn = loaded.signatures["predict_images"]
    assert fn.structured_outputs["logits"].dtype == tf.float32
    logits = fn(images=tf.constant(images[0][None]))["logits"].numpy()[0]
    reference = keras_logits(float32_copy, images[:1])[0]
    assert np.max(np.abs(logits - reference)) <= 1e-4 * np.max(np.abs(reference))


