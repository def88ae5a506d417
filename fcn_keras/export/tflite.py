"""TFLite export (float32, float16, int8) with builtin ops only, and a LiteRT runner.

The file takes one RGB image with values 0-255 — float32, or uint8 for
``quantization="int8"`` — of any size (``input_size=None``) or of a fixed size
(mobile GPU delegates need static shapes), and returns float32 logits
``(1, H, W, C)``. ``model.input_preprocessing`` is inside; the computation is
converted from the model's plain layer-by-layer graph
(:func:`fcn_keras.models.reference_graph`, a float32 copy for mixed-precision
models), not its fast formulation: TFLite runtimes (XNNPACK, GPU delegates, int8
kernels) bring their own fast convolutions, and int8 quantizes the plain
convolutions' values well. Next to ``model.tflite`` the sidecar
``model.tflite.json`` holds the model's identity (class names, palette, ignore
label, preprocessing, card) and the file's input and output
(:func:`fcn_keras.export.read_sidecar`). Files are run with the LiteRT interpreter
(``ai-edge-litert``), not the deprecated ``tf.lite.Interpreter``.
"""

from __future__ import annotations

import os
from typing import Iterator

import keras
import numpy as np
import tensorflow as tf

from fcn_keras.data.decode import read_image
from fcn_keras.data.source import FileSource
from fcn_keras.export.graph import logits_function, require_segmentation_model
from fcn_keras.export.sidecar import read_sidecar, sidecar_path, write_sidecar
from fcn_keras.files import atomic_path, find_images
from fcn_keras.models import SegmentationModel

QUANTIZATIONS = (None, "float16", "int8")
load_image = read_image  # the old name, still used by bench/bench_export.py: use fcn_keras.data.read_image


def _schema():
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:  # the converter ships the same flatbuffer schema
        from tensorflow.lite.python import schema_py_generated as schema
    return schema


def tflite_ops(model_content: bytes) -> list[str]:
    """The operator names a TFLite flatbuffer uses (builtin names, or custom codes such as ``FlexConv2D``).

    Example:
        >>> import keras, tempfile
        >>> from fcn_keras.models import SegmentationModel
        >>> x = keras.Input((None, None, 3))
        >>> model = SegmentationModel(x, keras.layers.Conv2D(2, 1)(x), architecture="linear", backbone="none",
        ...                           class_names=["sky", "sea"], preprocessing="tf")
        >>> tflite_ops(convert_tflite(model))  # the "tf" preprocessing is folded into the convolution
        ['CONV_2D']
    """
    if len(model_content) < 8 or bytes(model_content[4:8]) != b"TFL3":  # the flatbuffer's file identifier
        raise ValueError(f"not a TFLite flatbuffer: {len(model_content)} bytes")
    schema = _schema()
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    model = schema.Model.GetRootAs(model_content, 0)
    ops = set()
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if builtin == schema.BuiltinOperator.CUSTOM:
            ops.add(code.CustomCode().decode())
        else:
            ops.add(names.get(builtin, f"BUILTIN_{builtin}"))
    return sorted(ops)


def check_builtin_ops(model_content: bytes, name: str = "model") -> list[str]:
    """Returns the op list; raises if any op is a Flex (SELECT_TF) or other custom op.

    Example:
        >>> check_builtin_ops(b"")
        Traceback (most recent call last):
        ...
        ValueError: not a TFLite flatbuffer: 0 bytes
    """
    ops = tflite_ops(model_content)
    custom = [op for op in ops if op.startswith("Flex") or op not in vars(_schema().BuiltinOperator)]
    if custom:
        raise ValueError(
            f"TFLite {name} needs non-builtin ops {custom} (Flex/SELECT_TF_OPS ops need the TensorFlow "
            f"runtime on the device); fcn_keras exports builtin ops only"
        )
    return ops


def _image_array(item) -> np.ndarray:
    if isinstance(item, (tuple, list)) and item and not np.isscalar(item[0]):
        item = item[0]  # (image, label) pairs from a segmentation dataset
    if isinstance(item, dict):
        if "image" not in item:
            raise ValueError(f"representative_data dict items need an 'image' key, got keys {sorted(item)}")
        item = item["image"]
    return np.asarray(item, dtype=np.float32)


def calibration_images(representative_data, input_size=None, limit: int = 100) -> Iterator[np.ndarray]:
    """Float32 RGB 0-255 images ``(1, H, W, 3)`` from ``representative_data``, at most ``limit``.

    ``representative_data`` is a directory of images or a glob pattern
    (:func:`fcn_keras.files.find_images`), a :class:`fcn_keras.data.FileSource`
    (a split's image files, read as training reads them), or an iterable
    (a list, a generator, a ``tf.data.Dataset`` from ``fcn_keras.data``) of
    images ``(H, W, 3)`` or batches ``(N, H, W, 3)``, bare or as ``(image, label)``
    pairs or ``{"image": ...}`` dicts. Images are resized to ``input_size`` when given.

    Example:
        >>> [a.shape for a in calibration_images([np.zeros((4, 6, 3)), (np.zeros((2, 8, 8, 3)), None)], (2, 3))]
        [(1, 2, 3, 3), (1, 2, 3, 3), (1, 2, 3, 3)]
    """
    if isinstance(representative_data, (str, os.PathLike)):
        source = (read_image(p) for p in find_images([representative_data]))
    elif isinstance(representative_data, FileSource):  # not iterable itself: its images, never its labels
        source = (read_image(p) for p in representative_data.images)
    else:
        source = iter(representative_data)
    count = 0
    for item in source:
        array = _image_array(item)
        batch = array[None] if array.ndim == 3 else array
        if batch.ndim != 4 or batch.shape[-1] != 3:
            raise ValueError(f"representative_data items must be RGB images (H, W, 3) or (N, H, W, 3), got {array.shape}")
        for image in batch:
            if input_size is not None and image.shape[:2] != tuple(input_size):
                image = tf.image.resize(image, input_size).numpy()
            yield image[None].astype(np.float32)
            count += 1
            if count >= limit:
                return
    if count == 0:
        raise ValueError("representative_data yielded no images")


def _full_range(images: Iterator[np.ndarray]):
    # One black and one white pixel in the first image make the calibrated input
    # range exactly 0-255, so the uint8 input quantization is the identity
    # (scale 1, zero point 0): apps feed raw pixels.
    for i, image in enumerate(images):
        if i == 0:
            image = image.copy()
            image[0, 0, 0], image[0, -1, -1] = 0.0, 255.0
        yield [image]


def _check_input_size(input_size):
    if input_size is None:
        return None
    if (not isinstance(input_size, (tuple, list)) or len(input_size) != 2
            or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1 for s in input_size)):
        raise ValueError(f"input_size must be None or (height, width) positive integers, got {input_size!r}")
    return (int(input_size[0]), int(input_size[1]))


def convert_tflite(
    model: SegmentationModel,
    quantization: str | None = None,
    input_size: tuple[int, int] | None = None,
    representative_data=None,
    *,
    calibration_limit: int = 100,
    verbose: bool = False,
) -> bytes:
    """The TFLite flatbuffer of ``model`` (see :func:`export_tflite`), checked for builtin ops only.

    Example:
        >>> convert_tflite(None, quantization="int4")
        Traceback (most recent call last):
        ...
        ValueError: quantization must be one of (None, 'float16', 'int8'), got 'int4'
    """
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {QUANTIZATIONS}, got {quantization!r}")
    if quantization == "int8" and representative_data is None:
        raise ValueError("quantization='int8' needs representative_data (images to calibrate activation ranges)")
    input_size = _check_input_size(input_size)
    model = require_segmentation_model(model)
    progress = keras.utils.Progbar(3, verbose=1 if verbose else 0, unit_name="step")
    logits_fn, _, _ = logits_function(model, reference=True)
    shape = [1, *(input_size or (None, None)), 3]

    @tf.function(input_signature=[tf.TensorSpec(shape, tf.float32, name="image")])
    def segment(image):
        return {"logits": logits_fn(image)}

    concrete = segment.get_concrete_function()
    progress.update(1)
    holder = tf.Module()
    holder.variables_used = list(concrete.variables)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], holder)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantization == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantization == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.representative_dataset = lambda: _full_range(
            calibration_images(representative_data, input_size, calibration_limit))
    content = converter.convert()
    progress.update(2)
    check_builtin_ops(content, f"{model.name} ({quantization or 'float32'})")
    progress.update(3)
    return content


def export_tflite(
    model: SegmentationModel,
    path: str | os.PathLike,
    quantization: str | None = None,
    input_size: tuple[int, int] | None = None,
    representative_data=None,
    *,
    calibration_limit: int = 100,
    verbose: bool = True,
) -> str:
    """Writes ``model`` as a TFLite file at ``path`` and its identity at ``path + ".json"``; returns the path.

    Both are written atomically with plain modes (0644 under umask 022).

    Args:
        model: a :class:`~fcn_keras.models.SegmentationModel` mapping images to same-size logits;
            its class names, palette, ignore label, preprocessing and card go into the sidecar.
        path: the ``.tflite`` file to write.
        quantization: ``None`` (float32), ``"float16"`` (float16 weights) or
            ``"int8"`` (full integer, uint8 input; needs ``representative_data``).
        input_size: ``(height, width)`` for a fixed-size model (mobile GPU
            delegates); ``None`` accepts any size (resize the interpreter input).
        representative_data: calibration images for int8 — see :func:`calibration_images`.
        calibration_limit: at most this many calibration images are used.
        verbose: show a progress bar.

    The file uses builtin ops only (checked; a Flex op raises ``ValueError``).

    Example:
        >>> import keras, tempfile
        >>> from fcn_keras.models import SegmentationModel
        >>> x = keras.Input((None, None, 3))
        >>> model = SegmentationModel(x, keras.layers.Conv2D(2, 1)(x), architecture="linear", backbone="none",
        ...                           class_names=["sky", "sea"], preprocessing="tf")
        >>> path = export_tflite(model, f"{tempfile.mkdtemp()}/linear.tflite", verbose=False)
        >>> TFLiteModel(path).mask(np.zeros((3, 5, 3), np.uint8)).shape, TFLiteModel(path).info["class_names"]
        ((3, 5), ['sky', 'sea'])
    """
    content = convert_tflite(model, quantization, input_size, representative_data,
                             calibration_limit=calibration_limit, verbose=verbose)
    size = "any height x width" if input_size is None else f"{input_size[0]}x{input_size[1]}"
    # The sidecar first: a reader that finds the model finds its class names too.
    write_sidecar(model, path, "fcn_keras TFLite", quantization=quantization or "float32", tensorflow_version=tf.__version__,
                  input=f"{'uint8' if quantization == 'int8' else 'float32'} [1, H, W, 3]: one RGB image, "
                        f"values 0-255, {size}",
                  output=f"float32 [1, H, W, {model.num_classes}]: per-class logits; the arg-max is an index "
                         f"into class_names")
    with atomic_path(path) as tmp:
        tmp.write_bytes(content)
    return str(path)


class TFLiteModel:
    """Runs an exported FCN ``.tflite`` file with the LiteRT interpreter, one image at a time.

    ``info`` is the file's sidecar (:func:`fcn_keras.export.read_sidecar`: class names,
    palette, ...), or None for a file without one.

    Example:
        >>> TFLiteModel("/nonexistent/fcn8s.tflite")
        Traceback (most recent call last):
        ...
        FileNotFoundError: TFLite file /nonexistent/fcn8s.tflite does not exist
        >>> TFLiteModel("fcn8s.tflite").logits(image).shape  # doctest: +SKIP
        (375, 500, 5)
    """

    def __init__(self, path: str | os.PathLike, num_threads: int | None = None):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as exc:
            raise ImportError("running TFLite files needs the LiteRT interpreter: pip install ai-edge-litert") from exc
        self.path = str(path)
        if not os.path.isfile(self.path):
            raise FileNotFoundError(f"TFLite file {self.path} does not exist")
        self.info = read_sidecar(path) if sidecar_path(path).is_file() else None
        self.interpreter = Interpreter(model_path=self.path, num_threads=num_threads)
        self._input = self.interpreter.get_input_details()[0]
        self._output = self.interpreter.get_output_details()[0]
        signature = self._input.get("shape_signature", self._input["shape"])
        self.input_size = None if min(signature[1:3]) < 0 else tuple(int(s) for s in signature[1:3])
        self.input_dtype = self._input["dtype"]
        # A file of any size is allocated at its first image's size (logits() resizes), not at the 1x1
        # placeholder shape, which a network may refuse (DeconvNet's 7x7 fc6 needs images of 193 or more).
        self._shape = None
        if self.input_size is not None:
            self.interpreter.allocate_tensors()
            self._shape = tuple(self._input["shape"])

    def logits(self, image) -> np.ndarray:
        """Float32 logits ``(H, W, C)`` of one RGB 0-255 image ``(H, W, 3)``."""
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(f"TFLiteModel.logits takes one RGB image (H, W, 3), got shape {image.shape}")
        if self.input_size is not None and image.shape[:2] != self.input_size:
            raise ValueError(f"{self.path} takes {self.input_size[0]}x{self.input_size[1]} images, got {image.shape[:2]}")
        shape = (1, *image.shape)
        if shape != self._shape:
            self.interpreter.resize_tensor_input(self._input["index"], shape)
            self.interpreter.allocate_tensors()
            self._input = self.interpreter.get_input_details()[0]
            self._output = self.interpreter.get_output_details()[0]
            self._shape = shape
        x = image[None].astype(np.float32)
        if np.issubdtype(self.input_dtype, np.integer):
            scale, zero_point = self._input["quantization"]
            info = np.iinfo(self.input_dtype)
            x = np.clip(np.round(x / scale + zero_point), info.min, info.max)
        self.interpreter.set_tensor(self._input["index"], x.astype(self.input_dtype))
        self.interpreter.invoke()
        out = self.interpreter.get_tensor(self._output["index"])[0]
        if np.issubdtype(out.dtype, np.integer):
            scale, zero_point = self._output["quantization"]
            out = (out.astype(np.float32) - zero_point) * scale
        return out.astype(np.float32)

    def mask(self, image) -> np.ndarray:
        """The class index per pixel ``(H, W)`` of one image."""
        return np.argmax(self.logits(image), axis=-1).astype(np.int32)

