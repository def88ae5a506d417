"""The work behind ``fcn-keras export``: a checkpoint or model to any export format, with a parity check."""

from __future__ import annotations

import os
from typing import Sequence

import keras

from fcn_keras.export.graph import require_segmentation_model
from fcn_keras.models import SegmentationModel
from fcn_keras.models.precision import check_precision

FORMATS = ("saved_model", "tflite", "onnx")


def load_model(source: SegmentationModel | str | os.PathLike) -> SegmentationModel:
    """``source`` itself if it is a model, else the ``.keras`` file it names (safe mode, no compile).

    Example:
        >>> load_model("runs/missing.keras")
        Traceback (most recent call last):
        ...
        FileNotFoundError: checkpoint 'runs/missing.keras' does not exist
    """
    if isinstance(source, keras.Model):
        return require_segmentation_model(source)
    path = os.fspath(source)
    if not path.endswith(".keras"):
        raise ValueError(f"export source must be a keras.Model or a .keras checkpoint file, got {path!r}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist")
    return require_segmentation_model(keras.models.load_model(path, compile=False))


def export_model(
    source: SegmentationModel | str | os.PathLike,
    output: str | os.PathLike,
    format: str = "saved_model",
    *,
    version: int | None = None,
    overwrite: bool = False,
    quantization: str | None = None,
    input_size: tuple[int, int] | None = None,
    representative_data=None,
    check_images: Sequence | None = None,
    verbose: bool = True,
    precision: str = "float32",
) -> dict:
    """Exports a model or ``.keras`` checkpoint; returns ``{"path": ..., "format": ..., "parity": ...}``.

    The model (a :class:`~fcn_keras.models.SegmentationModel`) says what it
    segments and how its input is preprocessed; every format writes that next
    to the network.

    ``format="saved_model"``: ``output`` is TF Serving's base directory and a new
    version directory is written in it (see :func:`export_saved_model`).
    ``"tflite"``: ``output`` is the ``.tflite`` file (``quantization``,
    ``input_size``, ``representative_data`` as in :func:`export_tflite`).
    ``"onnx"``: ``output`` is the ``.onnx`` file (needs the ``onnx`` extra).
    With ``check_images`` (RGB arrays or image file paths), the written file is
    run on them and compared with Keras; ``"parity"`` is then a
    :class:`ParityReport` dict (else None). ``precision="bfloat16"``
    (``format="saved_model"`` only) exports the bfloat16 network
    (:func:`export_saved_model`); its parity is the ``"bfloat16"`` kind's,
    pixel agreement with Keras' float32. On a machine without native bfloat16
    (:func:`fcn_keras.hardware.native_bfloat16`) it warns, since a server may
    well have it.

    Example:
        >>> export_model("runs/fcn8s.h5", "models/fcn")
        Traceback (most recent call last):
        ...
        ValueError: export source must be a keras.Model or a .keras checkpoint file, got 'runs/fcn8s.h5'
        >>> export_model("runs/fcn8s.keras", "models/fcn")["path"]  # doctest: +SKIP
        'models/fcn/1'
        >>> export_model("runs/fcn8s.keras", "fcn_int8.tflite", "tflite", quantization="int8",
        ...              representative_data="data/images", check_images=["a.jpg"])["parity"]["passed"]  # doctest: +SKIP
        True
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
    if check_precision(precision) != "float32" and format != "saved_model":
        raise ValueError(f"precision={precision!r} applies to format='saved_model' only: TFLite and ONNX compute in "
                         f"float32 (TFLite's own reduced precisions: quantization='float16' or 'int8')")
    if format != "tflite" and (quantization is not None or input_size is not None or representative_data is not None):
        raise ValueError("quantization, input_size and representative_data apply to format='tflite' only")
    model = load_model(source)
    images = None
    if check_images is not None:
        from fcn_keras.data.decode import read_image

        images = [read_image(i) if isinstance(i, (str, os.PathLike)) else i for i in check_images]

    report = None
    if format == "saved_model":
        from fcn_keras.export.parity import parity
        from fcn_keras.export.saved_model import export_saved_model

        if precision == "bfloat16":
            _warn_if_emulated()
        path = export_saved_model(model, output, version, overwrite=overwrite, verbose=verbose, precision=precision)
        if images is not None:
            from fcn_keras.export.runner import saved_model_logits

            kind = "savedmodel" if precision == "float32" else precision
            report = parity(kind, saved_model_logits(path), model, images)
    elif format == "tflite":
        from fcn_keras.export.parity import tflite_parity
        from fcn_keras.export.tflite import export_tflite

        _refuse_existing(output, overwrite)
        path = export_tflite(model, output, quantization, input_size, representative_data, verbose=verbose)
        if images is not None:
            report = tflite_parity(path, model, images)
    else:
        from fcn_keras.export.onnx import export_onnx, onnx_parity

        _refuse_existing(output, overwrite)
        path = export_onnx(model, output)
        if images is not None:
            report = onnx_parity(path, model, images)
    if report is not None and verbose:
        print(report)
    return {"path": path, "format": format, "parity": None if report is None else report.as_dict()}


def _warn_if_emulated() -> None:
    import warnings

    from fcn_keras.hardware import native_bfloat16

    if native_bfloat16() is None:
        warnings.warn("exporting a bfloat16 SavedModel on a machine without native bfloat16: it computes the same "
                      "here, but slower than float32; serve it where a GPU or AVX512_BF16/AMX-BF16/Arm BF16 is "
                      "(docs/precision.md)", RuntimeWarning, stacklevel=3)


def _refuse_existing(path, overwrite: bool) -> None:
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{os.fspath(path)!r} already exists; pass overwrite=True to replace it")
