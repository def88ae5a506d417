"""ONNX export (optional extra: ``pip install fcn_keras[onnx]``) and an onnxruntime runner.

The ONNX graph takes float32 RGB 0-255 images ``(N, H, W, 3)`` of any size and
returns float32 logits, like the other formats. It is converted by tf2onnx from a
float32 wrapper of the model's plain layer-by-layer graph
(:func:`fcn_keras.models.reference_graph`, as for TFLite: no fast-formulation
``If`` on the upsampling kernels, which onnxruntime refuses) that puts
``model.input_preprocessing`` first. The model's identity goes into the sidecar
``<file>.onnx.json``, as for TFLite.

The weights travel beside the graph, not through it: the traced function takes
them as inputs (``model.stateless_call``) and they become the ONNX file's
initializers afterwards. Keras' ``model.export(format="onnx")`` freezes them into
TensorFlow constants first, and tf2onnx copies a graph's constants at every
optimizer pass: for VGG16 FCN-8s (134M parameters) that is over 20 GB and tens of
minutes, against seconds and about 5 GB this way.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import keras
import numpy as np

from fcn_keras.export.graph import logits_function, require_segmentation_model
from fcn_keras.files import atomic_path
from fcn_keras.models import SegmentationModel

if TYPE_CHECKING:
    from fcn_keras.export.parity import ParityReport


def _require(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"ONNX export needs {module}: pip install 'fcn_keras[onnx]' (onnx, onnxruntime, tf2onnx)") from exc


def export_onnx(model: SegmentationModel, path: str | os.PathLike, *, opset: int | None = None) -> str:
    """Writes ``model`` as an ONNX file at ``path`` and its identity at ``path + ".json"`` (atomically).

    Returns the path.

    Example:
        >>> import fcn_keras
        >>> export_onnx(fcn_keras.fcn8s(num_classes=5, backbone="mobilenet_v2"), "fcn.onnx")  # doctest: +SKIP
        'fcn.onnx'
    """
    from fcn_keras.export.sidecar import write_sidecar

    model = require_segmentation_model(model)
    tf2onnx = _require("tf2onnx")
    onnx = _require("onnx")
    logits_fn, _, _ = logits_function(model, reference=True)  # onnxruntime brings its own convolution kernels
    inputs = keras.Input((None, None, 3), name="image", dtype="float32")
    wrapper = keras.Model(inputs, logits_fn(inputs), name=f"{model.name}_rgb")
    proto = _convert(wrapper, tf2onnx, opset)
    with atomic_path(path) as tmp:
        onnx.save(proto, str(tmp))
    write_sidecar(model, path, "fcn_keras ONNX", input="float32 [N, H, W, 3]: RGB images, values 0-255",
                  output=f"float32 [N, H, W, {model.num_classes}]: per-class logits")
    return str(path)


def _convert(wrapper: keras.Model, tf2onnx, opset: int | None):
    """The ONNX ModelProto of ``wrapper`` (image -> logits), its variables as initializers."""
    import tensorflow as tf
    from onnx import numpy_helper

    trainable, frozen = wrapper.trainable_variables, wrapper.non_trainable_variables
    variables = [*trainable, *frozen]
    names = [f"weight_{i}" for i in range(len(variables))]
    signature = [tf.TensorSpec([None, None, None, 3], tf.float32, name="image")] + [
        tf.TensorSpec(v.shape, v.dtype, name=name) for v, name in zip(variables, names)]

    @tf.function(input_signature=signature)
    def logits(image, *values):
        out, _ = wrapper.stateless_call(list(values[:len(trainable)]), list(values[len(trainable):]), image,
                                        training=False)
        return out

    proto, _ = tf2onnx.convert.from_function(logits, input_signature=signature, opset=opset)
    graph = proto.graph
    used = {name for node in graph.node for name in node.input}
    values = dict(zip(names, variables))
    image_inputs = [i for i in graph.input if i.name not in values]
    # Variables no node reads (dropout's seed state) are left out.
    graph.initializer.extend(numpy_helper.from_array(np.asarray(keras.ops.convert_to_numpy(values[i.name])), i.name)
                             for i in graph.input if i.name in values and i.name in used)
    del graph.input[:]
    graph.input.extend(image_inputs)
    if [i.name for i in graph.input] != ["image"]:
        raise RuntimeError(f"ONNX conversion of {wrapper.name!r} left inputs {[i.name for i in graph.input]}, "
                           "not just the image")
    return proto


class ONNXModel:
    """Runs an exported ``.onnx`` FCN with onnxruntime (CPU), one image at a time.

    Example:
        >>> ONNXModel("fcn.onnx").logits(image).shape  # doctest: +SKIP
        (375, 500, 5)
    """

    def __init__(self, path: str | os.PathLike):
        ort = _require("onnxruntime")
        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def logits(self, image) -> np.ndarray:
        """Float32 logits ``(H, W, C)`` of one RGB 0-255 image ``(H, W, 3)``."""
        x = np.asarray(image, np.float32)[None]
        return self.session.run(None, {self.input_name: x})[0][0]


def onnx_parity(path: str, model: SegmentationModel, images, labels=None) -> ParityReport:
    """:func:`fcn_keras.export.parity.parity` of an ONNX file run with onnxruntime.

    Example (needs the ``onnx`` extra):
        >>> onnx_parity("fcn.onnx", model, images).passed  # doctest: +SKIP
        True
    """
    from fcn_keras.export.parity import parity

    return parity("onnx", ONNXModel(path).logits, model, images, labels)
