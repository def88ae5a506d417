"""Segments images with a model served by TF Serving's gRPC API and saves coloured masks.

    python serving/grpc_client.py --server 127.0.0.1:8500 --model fcn --version 2 a.jpg b.png

Sends one ``PredictionService/Predict`` request (``tensorflow-serving-api``'s
``PredictRequest``) with the encoded images as a string tensor ``image_bytes``
to the ``serving_default`` signature.
"""

from __future__ import annotations

import grpc
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from client_common import run


def predict_request(images: list[bytes], model: str, version: int | None = None,
                    label: str | None = None) -> predict_pb2.PredictRequest:
    """A PredictRequest for ``serving_default`` with the images as a ``[N]`` string tensor."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = "serving_default"
    if version is not None:
        request.model_spec.version.value = version
    elif label is not None:
        request.model_spec.version_label = label
    request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto(images, dtype=tf.string, shape=[len(images)]))
    return request


def predict(server: str, request: predict_pb2.PredictRequest, timeout: float = 60.0) -> dict:
    """Sends the request; returns the outputs as numpy arrays (``mask``, ``height``, ``width``)."""
    # Masks of large batches exceed gRPC's default 4 MB message limit.
    options = [("grpc.max_receive_message_length", 256 * 1024 * 1024)]
    with grpc.insecure_channel(server, options=options) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        try:
            response = stub.Predict(request, timeout=timeout)
        except grpc.RpcError as exc:
            raise RuntimeError(f"{server} answered {exc.code().name}: {exc.details()}") from None
    return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}


def segment(args, images: list[bytes]):
    outputs = predict(args.server, predict_request(images, args.model, args.version, args.label), args.timeout)
    return outputs["mask"], outputs["height"], outputs["width"]


def main(argv: list[str] | None = None) -> list:
    return run(__doc__.splitlines()[0], "127.0.0.1:8500", segment, argv)


if __name__ == "__main__":
    main()
