"""serving/: the REST and gRPC clients against test doubles of TF Serving, and the config files.

TF Serving cannot run here; ``serving_doubles`` implements its predict APIs over
the real exported SavedModels (see that module). The config files are checked
with TF Serving's own protos where the pip package has them.
"""

from __future__ import annotations

import base64
import doctest
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from fcn_keras.export.parity import keras_logits
from fcn_keras.palette import voc_palette

pytest.importorskip("tensorflow_serving", reason="the gRPC client needs tensorflow-serving-api")

from tests.export.serving_doubles import GrpcServer, Models, RestServer  # noqa: E402

SERVING = Path(__file__).resolve().parents[2] / "serving"


@pytest.fixture(scope="module")
def clients(pytestconfig):
    sys.path.insert(0, str(SERVING))
    try:
        import grpc_client
        import rest_client
    finally:
        sys.path.remove(str(SERVING))
    return rest_client, grpc_client


@pytest.fixture(scope="module")
def models(model_dir):
    # As serving/models.config declares them: two versions, labels stable -> 1 and canary -> 2.
    return Models("fcn", {1: str(model_dir / "1"), 2: str(model_dir / "2")}, {"stable": 1, "canary": 2})


def _expected_colours(model, images):
    return [voc_palette(256)[logits.argmax(-1)] for logits in keras_logits(model, images)]


def _saved(paths):
    return [np.asarray(Image.open(p).convert("RGB")) for p in paths]


def test_grpc_client_saves_coloured_masks(clients, models, image_files, images, light_model, tiny_model, tmp_path):
    _, grpc_client = clients
    with GrpcServer(models) as address:
        stable = grpc_client.main(["--server", address, "--label", "stable", "--out", str(tmp_path / "a"),
                                   *map(str, image_files)])
        version2 = grpc_client.main(["--server", address, "--version", "2", "--out", str(tmp_path / "b"),
                                     str(image_files[1])])
        bad = tmp_path / "bad.png"
        bad.write_bytes(b"GIF89a, not what the signature accepts")
        with pytest.raises(RuntimeError, match=r"(?s)INVALID_ARGUMENT.*image_bytes\[0\] is not a JPEG or PNG image"):
            grpc_client.main(["--server", address, "--out", str(tmp_path / "c"), str(bad)])
    for saved, expected in zip(_saved(stable), _expected_colours(light_model, images)):
        np.testing.assert_array_equal(saved, expected)
    np.testing.assert_array_equal(_saved(version2)[0], _expected_colours(tiny_model, images[1:2])[0])
    assert [p.name for p in stable] == ["image0_mask.png", "image1_mask.png", "image2_mask.png"]


def test_grpc_request_is_a_string_tensor_batch(clients, image_files):
    _, grpc_client = clients
    data = [p.read_bytes() for p in image_files]
    request = grpc_client.predict_request(data, "fcn", label="canary")
    assert request.model_spec.name == "fcn" and request.model_spec.version_label == "canary"
    assert request.model_spec.signature_name == "serving_default"
    proto = request.inputs["image_bytes"]
    assert proto.dtype == tf.string.as_datatype_enum and [d.size for d in proto.tensor_shape.dim] == [3]
    assert list(proto.string_val) == data


def test_rest_client_saves_coloured_masks(clients, models, image_files, images, tiny_model, light_model, tmp_path):
    rest_client, _ = clients
    server = RestServer(models)
    with server as url:
        written = rest_client.main(["--server", url, "--label", "canary", "--out", str(tmp_path),
                                    *map(str, image_files)])
        latest = rest_client.main(["--server", url, "--out", str(tmp_path / "latest"), str(image_files[2])])
        with pytest.raises(RuntimeError, match=r"(?s)HTTP 400: .*image_bytes\[1\] is not a JPEG or PNG image"):
            rest_client.predict(rest_client.predict_url(url, "fcn", version=1),
                                [image_files[0].read_bytes(), b"plain text"])
        with pytest.raises(RuntimeError, match="HTTP 404: .*version label: beta"):
            rest_client.main(["--server", url, "--label", "beta", "--out", str(tmp_path), str(image_files[0])])
    body = server.bodies[0]
    assert body["signature_name"] == "serving_default" and len(body["instances"]) == 3
    assert base64.b64decode(body["instances"][0]["image_bytes"]["b64"]) == image_files[0].read_bytes()
    for saved, expected in zip(_saved(written), _expected_colours(tiny_model, images)):
        np.testing.assert_array_equal(saved, expected)
    np.testing.assert_array_equal(_saved(latest)[0], _expected_colours(tiny_model, images[2:])[0])
    assert rest_client.predict_url("http://h:8501/", "fcn", version=3) == "http://h:8501/v1/models/fcn/versions/3:predict"


def test_models_config_is_a_valid_model_server_config():
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    config = text_format.Parse((SERVING / "models.config").read_text(), model_server_config_pb2.ModelServerConfig())
    models = config.model_config_list.config
    assert models and all(m.model_platform == "tensorflow" for m in models)
    for model in models:
        versions = set(model.model_version_policy.specific.versions)
        assert len(versions) >= 2
        assert model.version_labels and set(model.version_labels.values()) <= versions


def test_batching_config_and_docker_compose():
    allowed = {"max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads",
               "allowed_batch_sizes", "pad_variable_length_inputs", "enable_large_batch_splitting"}
    text = re.sub(r"#.*", "", (SERVING / "batching.config").read_text())
    entries = re.findall(r"(\w+)\s*\{\s*value:\s*(\w+)\s*\}", text)
    assert entries and {k for k, _ in entries} <= allowed
    assert dict(entries).get("pad_variable_length_inputs", "false") == "false"  # padding would change masks
    compose = (SERVING / "docker-compose.yml").read_text()
    assert "127.0.0.1:8500:8500" in compose and "127.0.0.1:8501:8501" in compose


@pytest.fixture(scope="module")
def compatibility():
    sys.path.insert(0, str(SERVING))
    try:
        import compatibility
    finally:
        sys.path.remove(str(SERVING))
    return compatibility


def test_the_pinned_server_reads_what_we_export(compatibility, model_dir):
    """Not "the image is as new as the installed TensorFlow" (false the day pip moves on), but what a
    server checks: every op of the exports is one the pinned image's TensorFlow registers, and the
    graph's min_consumer is at most that TensorFlow's GraphDef version (serving/README.md)."""
    pinned = compatibility.read_compatibility()
    compose = (SERVING / "docker-compose.yml").read_text()
    tag = re.search(r"image:\s*tensorflow/serving:\$\{TF_SERVING_TAG:-([\d.]+)\}", compose)
    assert tag and tag.group(1) == pinned["tag"], "docker-compose.yml must run the tag compatibility.toml describes"
    assert pinned["tag"].startswith(pinned["tensorflow"] + "."), "TF Serving x.y is built from TensorFlow x.y"
    assert pinned["ops"] == sorted(set(pinned["ops"]))
    for version in (1, 2):
        assert compatibility.problems(model_dir / str(version), pinned) == []
    assert compatibility.main([str(model_dir / "1"), str(model_dir / "2")]) == 0
    assert doctest.testmod(compatibility).failed == 0
    if tf.__version__.startswith(pinned["tensorflow"] + "."):
        # Written with this TensorFlow: the record must be its own truth (ops registered, GraphDef version).
        from tensorflow.python.framework import op_def_registry

        assert [op for op in pinned["ops"] if op_def_registry.get(op) is None] == []
        assert pinned["graph_def_version"] == tf.version.GRAPH_DEF_VERSION


def test_the_compatibility_check_names_what_breaks_it(compatibility, model_dir):
    pinned = compatibility.read_compatibility()
    graph = compatibility.saved_model_graph(model_dir / "1")
    assert {"Conv2D", "DecodeImage", "StatefulPartitionedCall"} <= graph["ops"]
    assert not any(op.startswith("__inference") for op in graph["ops"]), "calls to the model's own functions"
    older = dict(pinned, ops=[op for op in pinned["ops"] if op != "DecodeImage"], graph_def_version=11)
    found = compatibility.problems(model_dir / "1", older)
    assert len(found) == 2 and "ops not in serving/compatibility.toml" in found[0] and found[0].endswith(": DecodeImage")
    assert "needs a GraphDef consumer >= 12" in found[1]
