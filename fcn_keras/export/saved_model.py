"""SavedModel export for TF Serving: versioned, atomic, raw images in, masks out.

Layout written by :func:`export_saved_model`::

    base_dir/<version>/saved_model.pb, variables/, assets/{class_names.txt, palette.txt, export.json},
                       assets.extra/tf_serving_warmup_requests

Everything the assets say comes from the model (a
:class:`~fcn_keras.models.SegmentationModel`): its class names, palette, ignore
label, preprocessing, architecture, backbone and zoo card; ``export.json``
also documents each signature in words, for this model's classes
(:func:`read_export_info` reads it).

Signatures (float32 computation, or bfloat16 when exported with
``precision="bfloat16"`` — float32 inputs and outputs either way —,
``model.input_preprocessing`` inside the graph, the model's own call — its
exact fast formulation):

- ``serving_default``: ``image_bytes`` string ``[N]`` (JPEG or PNG, any sizes) ->
  ``mask`` int32 ``[N, H_max, W_max]`` padded with :data:`MASK_PAD_VALUE`,
  ``height``/``width`` int32 ``[N]`` (and ``scores`` float32 ``[N, H_max, W_max, C]``
  softmax probabilities, padded with 0, when exported with ``scores=True``).
  Images run through the network one at a time: zero-padding them into one
  batch would change an FCN's output near the padding.
- ``predict_images``: ``images`` uint8 ``[N, H, W, 3]`` -> ``logits`` float32
  ``[N, H, W, C]`` and ``mask`` int32 ``[N, H, W]``.

JPEGs are decoded as the training pipeline decodes them (PIL, i.e. libjpeg's
accurate integer IDCT): :func:`decode_image` gives the same pixels, so a served
image is segmented exactly as it was evaluated. ``assets.extra`` holds TF
Serving's warm-up requests (:func:`warmup_records`): a server loading the
version runs them first, so the first real request does not pay for TensorFlow's
lazy initialisation.

The SavedModel holds only TensorFlow functions and variables: it loads with
``tf.saved_model.load`` where neither keras nor fcn_keras can be imported.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Sequence

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

from fcn_keras.files import atomic_directory
from fcn_keras.export.graph import export_identity, logits_function, require_segmentation_model
from fcn_keras.models import SegmentationModel

MASK_PAD_VALUE = -1
"""Value of ``mask`` outside an image's own height x width in ``serving_default`` (never a class)."""

DEFAULT_MAX_IMAGE_SIZE = 2048
"""Default largest height or width, in pixels, the signatures accept."""

SIGNATURES = ("serving_default", "predict_images")
ASSET_FILES = ("class_names.txt", "palette.txt", "export.json")
WARMUP_FILE = "assets.extra/tf_serving_warmup_requests"
"""TF Serving's warm-up file, relative to a version directory (a TFRecord file of ``PredictionLog`` records)."""
MAX_WARMUP_REQUESTS = 1000  # TF Serving reads at most this many
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"


def _check_names(names: Sequence[str]) -> list[str]:
    names = list(names)
    if any("\n" in c or "\r" in c for c in names):
        raise ValueError(f"class names must be single-line strings for assets/class_names.txt, got {names!r}")
    return names


def signature_docs(class_names: Sequence[str], max_image_size: int, scores: bool) -> dict[str, dict]:
    """What each signature takes and returns, in words, for this model's classes (written to ``export.json``).

    Example:
        >>> signature_docs(["sky", "sea"], 2048, False)["predict_images"]["outputs"]["mask"]
        'int32 [N, H, W]: the class of each pixel, an index into class_names (0 sky, 1 sea)'
    """
    n = len(class_names)
    listed = ", ".join(f"{i} {c}" for i, c in enumerate(class_names[:30])) + (", ..." if n > 30 else "")
    mask = f"the class of each pixel, an index into class_names ({listed})"
    serving = {
        "inputs": {"image_bytes": f"string [N]: JPEG or PNG files, any sizes up to {max_image_size} pixels a side"},
        "outputs": {
            "mask": f"int32 [N, H_max, W_max]: {mask}; {MASK_PAD_VALUE} outside the image's own height x width",
            "height": "int32 [N]: each image's height", "width": "int32 [N]: each image's width",
        },
    }
    if scores:
        serving["outputs"]["scores"] = f"float32 [N, H_max, W_max, {n}]: softmax probabilities, 0 outside the image"
    return {
        "serving_default": serving,
        "predict_images": {
            "inputs": {"images": f"uint8 [N, H, W, 3]: RGB images of one size, up to {max_image_size} pixels a side"},
            "outputs": {"logits": f"float32 [N, H, W, {n}]: per-class logits", "mask": f"int32 [N, H, W]: {mask}"},
        },
    }


def _check_version(version) -> int:
    if isinstance(version, bool) or not isinstance(version, (int, np.integer)) or version < 1:
        raise ValueError(f"version must be a positive integer (TF Serving's version directories), got {version!r}")
    return int(version)


def existing_versions(base_dir: str | os.PathLike) -> list[int]:
    """The version numbers under ``base_dir`` (all-digit directory names), sorted.

    Example:
        >>> existing_versions("/nonexistent")
        []
    """
    if not os.path.isdir(base_dir):
        return []
    return sorted(int(n) for n in os.listdir(base_dir) if n.isdigit() and os.path.isdir(os.path.join(base_dir, n)))


def _image_shape(data, index, max_image_size: int):
    """(height, width) of one encoded image read from its header, with the checks serving needs."""
    is_jpeg = tf.io.is_jpeg(data)
    is_png = tf.logical_and(tf.strings.length(data) >= 24, tf.equal(tf.strings.substr(data, 0, 8), _PNG_MAGIC))
    known = tf.debugging.Assert(
        tf.logical_or(is_jpeg, is_png),
        [tf.strings.format("image_bytes[{}] is not a JPEG or PNG image", index)],
    )
    with tf.control_dependencies([known]):
        def png_shape():
            # IHDR: width then height as big-endian uint32 at bytes 16..23.
            b = tf.cast(tf.io.decode_raw(tf.strings.substr(data, 16, 8), tf.uint8), tf.int64)
            width = ((b[0] * 256 + b[1]) * 256 + b[2]) * 256 + b[3]
            height = ((b[4] * 256 + b[5]) * 256 + b[6]) * 256 + b[7]
            return tf.stack([height, width])

        def jpeg_shape():
            return tf.cast(tf.io.extract_jpeg_shape(data)[:2], tf.int64)

        shape = tf.cond(is_jpeg, jpeg_shape, png_shape)
    fits = tf.debugging.Assert(
        tf.reduce_all(shape <= max_image_size),
        [tf.strings.format(
            "image_bytes[{}] is {}x{} (height x width), larger than this model's limit of {} pixels per side",
            (index, shape[0], shape[1], max_image_size))],
    )
    with tf.control_dependencies([fits]):
        return tf.cast(tf.identity(shape), tf.int32)


def decode_image(data) -> tf.Tensor:
    """``uint8 [H, W, 3]`` RGB pixels of one encoded JPEG or PNG, as :func:`fcn_keras.data.read_image` (PIL) reads them.

    ``tf.io.decode_image``'s JPEG default (``INTEGER_FAST``, libjpeg's fast IDCT)
    changes most pixels of a photo by a few levels against PIL, which decodes
    with the accurate integer IDCT (``JDCT_ISLOW``); ``INTEGER_ACCURATE`` is that
    one and gives identical pixels, greyscale and every chroma subsampling
    included. PNGs are lossless: ``tf.io.decode_image`` as before.

    Example:
        >>> png = tf.io.encode_png(tf.fill([2, 3, 3], tf.constant(7, tf.uint8))).numpy()
        >>> decode_image(png).shape.as_list(), int(decode_image(png)[1, 2, 0])
        ([2, 3, 3], 7)
    """
    def jpeg():
        return tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE")

    def other():
        return tf.io.decode_image(data, channels=3, dtype=tf.uint8, expand_animations=False)

    image = tf.cond(tf.io.is_jpeg(data), jpeg, other)
    image.set_shape([None, None, 3])
    return image


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field (wire type 2: strings, bytes, messages)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def warmup_records(images: Sequence[bytes], signature: str = "serving_default") -> list[bytes]:
    """One serialized ``tensorflow.serving.PredictionLog`` per encoded image: a ``PredictRequest`` for
    ``signature`` whose ``image_bytes`` is that image alone (what TF Serving's warm-up file holds).

    Written without tensorflow-serving-api (only TensorFlow's ``TensorProto``): the
    fields are ``PredictionLog.predict_log`` (6) -> ``PredictLog.request`` (1) ->
    ``PredictRequest.model_spec`` (1: ``signature_name``, 3) and ``inputs`` (2, a map).

    Example:
        >>> from tensorflow_serving.apis import prediction_log_pb2  # doctest: +SKIP
        >>> log = prediction_log_pb2.PredictionLog.FromString(warmup_records([b"\\xff\\xd8\\xff"])[0])  # doctest: +SKIP
        >>> log.predict_log.request.model_spec.signature_name  # doctest: +SKIP
        'serving_default'
        >>> len(warmup_records([b"a", b"b"]))
        2
    """
    spec = _field(3, signature.encode())
    records = []
    for data in images:
        tensor = tf.make_tensor_proto([bytes(data)], dtype=tf.string, shape=[1]).SerializeToString()
        inputs = _field(2, _field(1, b"image_bytes") + _field(2, tensor))
        records.append(_field(6, _field(1, _field(1, spec) + inputs)))
    return records


def default_warmup_images() -> list[bytes]:
    """The warm-up images an export sends when given none: a 64x64 JPEG and PNG of a smooth pattern.

    Both decoders and the network run once; a server warmed with them answers its
    first real request at full speed.

    Example:
        >>> [data[:3] for data in default_warmup_images()]
        [b'\\xff\\xd8\\xff', b'\\x89PN']
    """
    yy, xx = np.mgrid[0:64, 0:64]
    image = np.stack([xx * 4, yy * 4, (xx + yy) * 2], -1).astype(np.uint8)
    return [tf.io.encode_jpeg(image, quality=90).numpy(), tf.io.encode_png(image).numpy()]


def _warmup_images(warmup, max_image_size: int) -> list[bytes]:
    if warmup is True:
        return default_warmup_images()
    if warmup is False or warmup is None:
        return []
    if isinstance(warmup, (str, bytes, os.PathLike)):
        raise ValueError("warmup must be True, False or a list of images (JPEG/PNG bytes or file paths), "
                         f"got a single {type(warmup).__name__}")
    images = []
    for i, item in enumerate(warmup):
        data = Path(item).read_bytes() if isinstance(item, (str, os.PathLike)) else bytes(item)
        if not (data.startswith(_JPEG_MAGIC) or data.startswith(_PNG_MAGIC)):
            raise ValueError(f"warmup[{i}] is not a JPEG or PNG image")
        images.append(data)
    if not images or len(images) > MAX_WARMUP_REQUESTS:
        raise ValueError(f"warmup needs 1 to {MAX_WARMUP_REQUESTS} images (TF Serving's limit), got {len(images)}")
    for i, data in enumerate(images):
        try:
            width, height = Image.open(io.BytesIO(data)).size
        except Exception as exc:  # PIL raises several unrelated types for broken files
            raise ValueError(f"warmup[{i}] cannot be read as an image: {exc}") from None
        if max(height, width) > max_image_size:
            raise ValueError(f"warmup[{i}] is {height}x{width} (height x width), larger than max_image_size "
                             f"{max_image_size}: the warm-up request would fail")
    return images


def _assert_batch(size, name: str):
    return tf.debugging.Assert(size > 0, [tf.strings.format(f"{name}: empty batch; send at least one image", ())])


def build_signatures(logits_fn, max_image_size: int = DEFAULT_MAX_IMAGE_SIZE, scores: bool = False) -> dict:
    """The two serving ``tf.function``s around ``logits_fn`` (raw RGB -> float32 logits), by signature name.

    Example:
        >>> sorted(build_signatures(lambda images: tf.zeros(tf.concat([tf.shape(images)[:3], [2]], 0))))
        ['predict_images', 'serving_default']
    """

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def serve(image_bytes):
        count = tf.shape(image_bytes)[0]
        with tf.control_dependencies([_assert_batch(count, "image_bytes")]):
            indices = tf.range(count)
        shapes = tf.map_fn(
            lambda i: _image_shape(image_bytes[i], i, max_image_size), indices,
            fn_output_signature=tf.TensorSpec([2], tf.int32),
        )
        max_h, max_w = tf.reduce_max(shapes[:, 0]), tf.reduce_max(shapes[:, 1])
        # Decoding waits for every header check: a non-JPEG/PNG input must fail with the
        # check's message, not with whatever decode_image makes of it (a GIF, say).
        with tf.control_dependencies([shapes]):
            checked_indices = tf.identity(indices)

        def segment(i):
            image = decode_image(image_bytes[i])
            logits = logits_fn(image[tf.newaxis])[0]
            h, w = tf.shape(image)[0], tf.shape(image)[1]
            padding = [[0, max_h - h], [0, max_w - w]]
            mask = tf.pad(tf.argmax(logits, axis=-1, output_type=tf.int32), padding, constant_values=MASK_PAD_VALUE)
            out = {"mask": mask, "height": h, "width": w}
            if scores:
                out["scores"] = tf.pad(tf.nn.softmax(logits, axis=-1), padding + [[0, 0]])
            return out

        spec = {"mask": tf.TensorSpec([None, None], tf.int32), "height": tf.TensorSpec([], tf.int32),
                "width": tf.TensorSpec([], tf.int32)}
        if scores:
            spec["scores"] = tf.TensorSpec([None, None, None], tf.float32)
        # One image at a time (parallel_iterations=1): an FCN's activations on a
        # large image take hundreds of MB, and padding images into a batch would
        # change their masks.
        return tf.map_fn(segment, checked_indices, fn_output_signature=spec, parallel_iterations=1)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])
    def predict_images(images):
        shape = tf.shape(images)
        checks = [
            _assert_batch(shape[0], "images"),
            tf.debugging.Assert(
                tf.logical_and(tf.reduce_all(shape[1:3] <= max_image_size), tf.reduce_all(shape[1:3] > 0)),
                [tf.strings.format(
                    "images are {}x{} (height x width); this model takes 1 to {} pixels per side",
                    (shape[1], shape[2], max_image_size))],
            ),
        ]
        with tf.control_dependencies(checks):
            logits = logits_fn(tf.identity(images))
        return {"logits": logits, "mask": tf.argmax(logits, axis=-1, output_type=tf.int32)}

    return {"serving_default": serve, "predict_images": predict_images}


def _write_assets(directory: Path, names: list[str], colors: np.ndarray, info: dict) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "class_names.txt").write_text("".join(f"{c}\n" for c in names), encoding="utf-8")
    (directory / "palette.txt").write_text("".join(f"{r} {g} {b}\n" for r, g, b in colors.tolist()), encoding="utf-8")
    (directory / "export.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return [directory / f for f in ASSET_FILES]


def export_saved_model(
    model: SegmentationModel,
    base_dir: str | os.PathLike,
    version: int | None = None,
    *,
    overwrite: bool = False,
    max_image_size: int = DEFAULT_MAX_IMAGE_SIZE,
    scores: bool = False,
    verbose: bool = True,
    warmup=True,
    precision: str = "float32",
) -> str:
    """Exports ``model`` as ``base_dir/<version>/``, a SavedModel for TF Serving; returns that path.

    Args:
        model: a :class:`~fcn_keras.models.SegmentationModel` (every fcn_keras model)
            mapping ``(N, H, W, 3)`` images to ``(N, H, W, C)`` logits. Its class names,
            palette, ignore label, preprocessing and card go into the assets; its
            ``input_preprocessing``, if any, into the graph. The graph calls the model
            (its exact fast formulation). Mixed-precision models export float32.
        precision: ``"bfloat16"`` computes in the model's ``mixed_bfloat16`` copy
            (:func:`fcn_keras.models.with_precision`), for servers with native bfloat16
            (docs/precision.md); inputs, logits and scores stay float32.
        base_dir: the model's base path as TF Serving sees it (created if needed).
        version: the version number; ``None`` takes the next after the highest present.
        overwrite: replace an existing ``version`` (refused otherwise).
        max_image_size: largest height or width accepted; larger images are
            refused by the signatures with an InvalidArgument error saying so.
        scores: also return per-class softmax ``scores`` from ``serving_default``.
        verbose: show a progress bar.
        warmup: TF Serving warm-up requests written to ``assets.extra/tf_serving_warmup_requests``
            (one ``serving_default`` request per image): ``True`` sends
            :func:`default_warmup_images`, a list of JPEG/PNG bytes or file paths sends
            those (at most 1000), ``False`` writes no warm-up file.

    The version appears atomically (:func:`fcn_keras.files.atomic_directory`):
    everything is written to a hidden ``.<version>.*.tmp`` directory in
    ``base_dir`` (not a number, so TF Serving ignores it) and renamed to
    ``<version>`` when complete, with the modes of a plain write (0755
    directories, 0644 files under umask 022) so a server running as another
    user can read it.

    Example:
        >>> import keras, tempfile
        >>> from fcn_keras.models import SegmentationModel
        >>> x = keras.Input((None, None, 3))
        >>> model = SegmentationModel(x, keras.layers.Conv2D(2, 1)(x), architecture="linear", backbone="none",
        ...                           class_names=["sky", "sea"], preprocessing="tf")
        >>> base = tempfile.mkdtemp()
        >>> path = export_saved_model(model, base, verbose=False)
        >>> path == f"{base}/1", read_export_info(path)["class_names"]
        (True, ['sky', 'sea'])
    """
    if isinstance(max_image_size, bool) or not isinstance(max_image_size, int) or max_image_size < 1:
        raise ValueError(f"max_image_size must be a positive integer, got {max_image_size!r}")
    base = Path(base_dir)
    if base.exists() and not base.is_dir():
        raise ValueError(f"base_dir {str(base)!r} exists and is not a directory")
    if version is None:
        version = (existing_versions(base) or [0])[-1] + 1
    version = _check_version(version)
    target = base / str(version)
    if target.exists() and not overwrite:
        raise FileExistsError(f"version {version} already exists at {str(target)!r}; pass overwrite=True to replace it")

    model = require_segmentation_model(model)
    names = _check_names(model.class_names)
    warmup_images = _warmup_images(warmup, max_image_size)
    progress = keras.utils.Progbar(3, verbose=1 if verbose else 0, unit_name="step")
    logits_fn, _, _ = logits_function(model, precision=precision)
    # One trace of the network that both signatures call: tracing a deep Keras graph is most of an export's time.
    logits_fn = tf.function(logits_fn, input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)])
    functions = build_signatures(logits_fn, max_image_size, scores)
    concrete = {name: fn.get_concrete_function() for name, fn in functions.items()}
    progress.update(1)

    info = {
        "format": "fcn_keras SavedModel", **export_identity(model), "mask_pad_value": MASK_PAD_VALUE,
        "precision": precision, "max_image_size": max_image_size, "scores": scores, "warmup_requests": len(warmup_images),
        "jpeg_decoding": "INTEGER_ACCURATE (libjpeg ISLOW, as PIL)", "signatures": signature_docs(names, max_image_size, scores),
        "tensorflow_version": tf.__version__, "keras_version": keras.__version__,
    }
    root = tf.Module()
    for name, fn in functions.items():
        setattr(root, name, fn)
    # Only the variables the functions read are saved: the SavedModel
    # holds no Keras objects, so it loads without keras.
    variables = {id(v): v for cf in concrete.values() for v in cf.variables}
    root.model_variables = list(variables.values())
    # The version appears whole or not at all, with plain modes (0755/0644 under umask 022): TF Serving
    # may run as another user. The temporary directory's name is not a number, so Serving ignores it.
    with atomic_directory(target, replace=overwrite) as tmp, tempfile.TemporaryDirectory() as sources:
        root.assets = [tf.saved_model.Asset(str(p)) for p in _write_assets(Path(sources), names, model.palette, info)]
        tf.saved_model.save(root, str(tmp), signatures=concrete)  # copies the assets into tmp/assets
        if warmup_images:  # inside the temporary version: it appears with the rest, or not at all
            (tmp / WARMUP_FILE).parent.mkdir()
            with tf.io.TFRecordWriter(str(tmp / WARMUP_FILE)) as writer:
                for record in warmup_records(warmup_images):
                    writer.write(record)
        progress.update(2)
    progress.update(3)
    return str(target)


def read_export_info(export_dir: str | os.PathLike) -> dict:
    """The metadata of an exported version (the model's identity, limits, signatures), without TensorFlow.

    Keys: ``class_names``, ``palette``, ``ignore_label``, ``preprocessing``,
    ``include_preprocessing``, ``preprocessing_added`` (what the graph applies to
    its RGB 0-255 input), ``precision`` (what the network computes in; absent: float32), ``architecture``, ``backbone``, ``card`` (zoo
    provenance or None), ``num_classes``, ``model_name``, ``signatures`` (each
    one's inputs and outputs in words), ``mask_pad_value``, ``max_image_size``,
    ``scores``, ``warmup_requests`` (how many), ``jpeg_decoding``, ``tensorflow_version``, ``keras_version``.

    Example:
        >>> read_export_info("/nonexistent/1")
        Traceback (most recent call last):
        ...
        FileNotFoundError: '/nonexistent/1' is not an fcn_keras SavedModel export (no /nonexistent/1/assets/export.json)
    """
    path = Path(export_dir) / "assets" / "export.json"
    if not path.is_file():
        raise FileNotFoundError(f"{str(export_dir)!r} is not an fcn_keras SavedModel export (no {path})")
    return json.loads(path.read_text(encoding="utf-8"))
