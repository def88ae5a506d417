"""A ``.caffemodel`` writer: layers and their blobs in either protobuf form, written atomically.

It writes what :mod:`fcn_keras.caffe.reader` reads (both layer forms, legacy
4-D blob dims, packed or unpacked floats), so tests and tools can make Caffe
weight files without Caffe. The file appears complete or not at all
(:func:`fcn_keras.files.atomic_path`).

Example:
    >>> import numpy as np, os, tempfile
    >>> from fcn_keras.caffe import CaffeLayer, read_caffemodel
    >>> path = os.path.join(tempfile.mkdtemp(), "a.caffemodel")
    >>> write_caffemodel(path, [CaffeLayer("fc", "InnerProduct", blobs=[np.ones((2, 3), "float32")])], form="v1")
    >>> read_caffemodel(path)["fc"].type
    'InnerProduct'
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from fcn_keras.caffe.proto import (
    BYTES,
    FIXED32,
    LAYER_PARAMS,
    NEW_FORM,
    UNPACKED_FLOAT_TAG,
    V1_FORM,
    V1_TYPE_IDS,
    VARINT,
    CaffeLayer,
)
from fcn_keras.files import atomic_path

__all__ = ["write_caffemodel"]



def _varint_bytes(value: int) -> bytes:
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _key(number: int, wire: int) -> bytes:
    return _varint_bytes((number << 3) | wire)


def _bytes_field(number: int, payload: bytes) -> bytes:
    return _key(number, BYTES) + _varint_bytes(len(payload)) + payload


def _params_field(layer: CaffeLayer) -> bytes:
    """``layer.params`` as its type's parameter message (:data:`~fcn_keras.caffe.proto.LAYER_PARAMS`)."""
    if not layer.params:
        return b""
    if layer.type not in LAYER_PARAMS:
        raise ValueError(f"layer {layer.name!r}: parameters of a {layer.type or 'typeless'} layer cannot be written; "
                         f"known: {sorted(LAYER_PARAMS)}")
    number, fields = LAYER_PARAMS[layer.type]
    by_name = {key: (field, kind) for field, (key, kind) in fields.items()}
    message = b""
    for key, value in layer.params.items():
        if key not in by_name:
            raise ValueError(f"layer {layer.name!r}: {layer.type} has no parameter {key!r}; known: {sorted(by_name)}")
        field, kind = by_name[key]
        if kind is float:
            message += _key(field, FIXED32) + np.float32(value).astype("<f4").tobytes()
        else:
            code = {name: code for code, name in kind.items()}[value] if isinstance(kind, dict) else int(value)
            message += _key(field, VARINT) + _varint_bytes(code)
    return _bytes_field(number, message)


def _blob_parts(array: np.ndarray, legacy_dims: bool, packed: bool) -> tuple[bytes, np.ndarray]:
    """The BlobProto's header bytes (shape and data key) and its data, as written."""
    array = np.ascontiguousarray(array, "<f4")
    if legacy_dims:
        if array.ndim > 4:
            raise ValueError(f"legacy 4-D blob dims cannot hold shape {array.shape}")
        dims = (1,) * (4 - array.ndim) + array.shape
        header = b"".join(_key(n, VARINT) + _varint_bytes(d) for n, d in zip((1, 2, 3, 4), dims))
    else:
        dims = b"".join(_varint_bytes(d) for d in array.shape)
        header = _bytes_field(7, _bytes_field(1, dims))
    flat = array.reshape(-1)
    if packed:
        return header + _key(5, BYTES) + _varint_bytes(flat.nbytes), flat
    records = np.empty(flat.size, dtype=[("tag", "u1"), ("value", "<f4")])
    records["tag"], records["value"] = UNPACKED_FLOAT_TAG, flat
    return header, records


def write_caffemodel(
    path: str | os.PathLike,
    layers: Sequence[CaffeLayer],
    form: str = "layer",
    legacy_dims: bool = False,
    packed: bool = True,
    name: str = "",
) -> None:
    """Writes layers and their blobs (Caffe layouts) as a ``.caffemodel``, atomically.

    Args:
        path: destination.
        layers: the layers, in order.
        form: ``"layer"`` (``NetParameter.layer``, Caffe since 2015) or ``"v1"``
            (the deprecated ``layers`` with enum types; types without a V1 enum,
            such as ``Scale``, are left out, and so are layer ``params``).
        legacy_dims: describe blobs by num/channels/height/width instead of ``shape``.
        packed: write float data packed (as Caffe does) or one value per field.
        name: the net's name.

    Example:
        >>> import numpy as np, os, tempfile
        >>> from fcn_keras.caffe import read_caffemodel
        >>> path = os.path.join(tempfile.mkdtemp(), "a.caffemodel")
        >>> write_caffemodel(path, [CaffeLayer("fc", "InnerProduct", blobs=[np.ones((2, 3), "float32")])], form="v1")
        >>> read_caffemodel(path)["fc"].blobs[0].tolist()
        [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]
    """
    if form not in ("layer", "v1"):
        raise ValueError(f"form must be 'layer' or 'v1', got {form!r}")
    spec = NEW_FORM if form == "layer" else V1_FORM
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        if name:
            f.write(_bytes_field(1, name.encode()))
        for layer in layers:
            header = _bytes_field(spec.name, layer.name.encode())
            if form == "layer" and layer.type:
                header += _bytes_field(spec.type, layer.type.encode())
            elif form == "v1" and layer.type in V1_TYPE_IDS:
                header += _key(spec.type, VARINT) + _varint_bytes(V1_TYPE_IDS[layer.type])
            for bottom in layer.bottoms:
                header += _bytes_field(spec.bottom, bottom.encode())
            for top in layer.tops:
                header += _bytes_field(spec.top, top.encode())
            # After the blobs (field 7), as Caffe writes fields in number order; V1 layers have no such fields.
            params = _params_field(layer) if form == "layer" else b""
            blobs = [_blob_parts(b, legacy_dims, packed) for b in layer.blobs]
            blob_sizes = [len(h) + d.nbytes for h, d in blobs]
            body = len(header) + sum(len(_key(spec.blobs, BYTES)) + len(_varint_bytes(s)) + s for s in blob_sizes)
            f.write(_key(spec.field, BYTES) + _varint_bytes(body + len(params)) + header)
            for (blob_header, data), size in zip(blobs, blob_sizes):
                f.write(_key(spec.blobs, BYTES) + _varint_bytes(size) + blob_header)
                f.write(data.view(np.uint8))
            f.write(params)
