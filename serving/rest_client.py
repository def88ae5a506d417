"""Segments images with a model served by TF Serving's REST API and saves coloured masks.

    python serving/rest_client.py --server http://127.0.0.1:8501 --model fcn --label stable a.jpg b.png

Sends one ``POST /v1/models/<model>[/versions/<v>|/labels/<l>]:predict`` request
in the row ("instances") format with each image as ``{"b64": ...}``, to the
``serving_default`` signature. Needs only the standard library, numpy, Pillow and
fcn_keras (for the palette).
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request

import numpy as np

from client_common import run


def predict_url(server: str, model: str, version: int | None = None, label: str | None = None) -> str:
    """The predict URL, e.g. ``http://127.0.0.1:8501/v1/models/fcn/labels/stable:predict``."""
    url = f"{server.rstrip('/')}/v1/models/{model}"
    if version is not None:
        url += f"/versions/{version}"
    elif label is not None:
        url += f"/labels/{label}"
    return url + ":predict"


def request_body(images: list[bytes]) -> dict:
    """The row-format request: one instance per image, bytes as base64."""
    return {
        "signature_name": "serving_default",
        "instances": [{"image_bytes": {"b64": base64.b64encode(data).decode("ascii")}} for data in images],
    }


def predict(url: str, images: list[bytes], timeout: float = 60.0) -> list[dict]:
    """POSTs the images; returns one ``{"mask", "height", "width"}`` dict per image."""
    body = json.dumps(request_body(images)).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            reply = json.load(response)
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")
        try:
            detail = json.loads(detail).get("error", detail)
        except ValueError:
            pass
        raise RuntimeError(f"{url} answered HTTP {exc.code}: {detail}") from None
    predictions = reply.get("predictions")
    if not isinstance(predictions, list) or len(predictions) != len(images):
        raise RuntimeError(f"{url} sent no 'predictions' list for {len(images)} images: {str(reply)[:200]}")
    return predictions


def segment(args, images: list[bytes]):
    rows = predict(predict_url(args.server, args.model, args.version, args.label), images, args.timeout)
    return [np.asarray(r["mask"]) for r in rows], [r["height"] for r in rows], [r["width"] for r in rows]


def main(argv: list[str] | None = None) -> list:
    return run(__doc__.splitlines()[0], "http://127.0.0.1:8501", segment, argv)


if __name__ == "__main__":
    main()
