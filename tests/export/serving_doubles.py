"""TEST DOUBLES of TF Serving's predict APIs, over a real SavedModel loaded in-process.

TF Serving itself cannot run on these machines (no container engine, no
package of it). These two loopback servers implement just what the clients use,
as TF Serving's API defines it:

- gRPC: ``tensorflow.serving.PredictionService/Predict`` with ``PredictRequest``
  (model_spec name / version / version_label / signature_name, TensorProto inputs);
- REST: ``POST /v1/models/<name>[/versions/<v>|/labels/<l>]:predict`` with a JSON
  body in the row format (``"instances"``, ``{"b64": ...}`` for bytes), answering
  ``{"predictions": [...]}`` or ``{"error": ...}`` with HTTP 400.

They listen on 127.0.0.1 only, on a free port, and resolve versions and labels
from a dict like models.config's.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc


class Models:
    """Loaded versions of one model name plus version labels, as models.config declares them."""

    def __init__(self, name: str, versions: dict[int, str], labels: dict[str, int]):
        self.name = name
        self.loaded = {v: tf.saved_model.load(path) for v, path in versions.items()}
        self.labels = labels

    def signature(self, name: str, version: int | None, label: str | None, signature: str):
        if name != self.name:
            raise LookupError(f"Servable not found for request: Latest({name})")
        if label:
            if label not in self.labels:
                raise LookupError(f"Unrecognized servable version label: {label}")
            version = self.labels[label]
        version = max(self.loaded) if version is None else version
        if version not in self.loaded:
            raise LookupError(f"Servable not found for request: Specific({name}, {version})")
        signatures = self.loaded[version].signatures
        if signature not in signatures:
            raise ValueError(f"Serving signature name: \"{signature}\" not found in signature def")
        return signatures[signature]


class PredictionServiceDouble(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, models: Models):
        self.models = models
        self.requests: list[predict_pb2.PredictRequest] = []

    def Predict(self, request, context):
        self.requests.append(request)
        spec = request.model_spec
        try:
            fn = self.models.signature(
                spec.name, spec.version.value if spec.HasField("version") else None,
                spec.version_label or None, spec.signature_name or "serving_default",
            )
        except LookupError as exc:
            context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        except ValueError as exc:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        inputs = {key: tf.constant(tf.make_ndarray(proto)) for key, proto in request.inputs.items()}
        try:
            outputs = fn(**inputs)
        except (tf.errors.InvalidArgumentError, TypeError) as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        response = predict_pb2.PredictResponse()
        response.model_spec.CopyFrom(spec)
        for key, value in outputs.items():
            response.outputs[key].CopyFrom(tf.make_tensor_proto(value.numpy()))
        return response


class GrpcServer:
    """``with GrpcServer(models) as address:`` serves PredictionService on 127.0.0.1."""

    def __init__(self, models: Models):
        self.servicer = PredictionServiceDouble(models)
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2),
                                  options=[("grpc.max_send_message_length", 256 * 1024 * 1024)])
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(self.servicer, self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")

    def __enter__(self) -> str:
        self.server.start()
        return f"127.0.0.1:{self.port}"

    def __exit__(self, *exc):
        self.server.stop(grace=None)


_PREDICT_PATH = re.compile(r"^/v1/models/([^/:]+)(?:/versions/(\d+)|/labels/([^/:]+))?:predict$")


def _decode(value):
    # TF Serving's JSON mapping: {"b64": ...} is a binary string, lists are tensors.
    if isinstance(value, dict) and set(value) == {"b64"}:
        return base64.b64decode(value["b64"])
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def _json_value(array: np.ndarray):
    return array.tolist() if array.dtype != object else [v.decode() for v in array.ravel()]


class RestServer:
    """``with RestServer(models) as url:`` serves TF Serving's REST predict API on 127.0.0.1."""

    def __init__(self, models: Models):
        self.models = models
        self.bodies: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def _reply(self, status: int, payload: dict):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                match = _PREDICT_PATH.match(self.path)
                if not match:
                    return self._reply(404, {"error": f"Malformed request: POST {self.path}"})
                try:
                    body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                except ValueError as exc:
                    return self._reply(400, {"error": f"JSON Parse error: {exc}"})
                outer.bodies.append(body)
                name, version, label = match.groups()
                try:
                    fn = outer.models.signature(name, int(version) if version else None, label,
                                                body.get("signature_name", "serving_default"))
                except LookupError as exc:
                    return self._reply(404, {"error": str(exc)})
                except ValueError as exc:
                    return self._reply(400, {"error": str(exc)})
                instances = body.get("instances")
                if not isinstance(instances, list):
                    return self._reply(400, {"error": "Missing 'instances' key"})
                # Row format: each instance is one batch element, a {input: value} dict.
                keys = set(instances[0]) if instances and isinstance(instances[0], dict) else set()
                inputs = {k: tf.constant([_decode(row[k]) for row in instances]) for k in keys}
                if not instances:
                    inputs = {"image_bytes": tf.constant([], tf.string)}
                try:
                    outputs = {k: v.numpy() for k, v in fn(**inputs).items()}
                except (tf.errors.InvalidArgumentError, TypeError) as exc:
                    return self._reply(400, {"error": str(exc)})
                rows = [{k: _json_value(v[i]) if v.ndim > 1 else v[i].item() for k, v in outputs.items()}
                        for i in range(len(instances))]
                self._reply(200, {"predictions": rows})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)

    def __enter__(self) -> str:
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
