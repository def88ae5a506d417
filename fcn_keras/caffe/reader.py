"""A streaming ``.caffemodel`` reader that needs neither Caffe nor protobuf.

The published FCN files are 500+ MB, so packed float data is read straight into
NumPy arrays and unneeded fields are skipped by their length. Everything is
validated while reading; a truncated or corrupt file raises
:class:`~fcn_keras.caffe.CaffeModelError` and nothing is returned. The field
numbers are in :mod:`fcn_keras.caffe.proto`.

Example:
    >>> import numpy as np, os, tempfile
    >>> from fcn_keras.caffe import CaffeLayer, write_caffemodel
    >>> path = os.path.join(tempfile.mkdtemp(), "tiny.caffemodel")
    >>> w = np.arange(6, dtype="float32").reshape(2, 3, 1, 1)
    >>> write_caffemodel(path, [CaffeLayer("score", "Convolution", blobs=[w, np.zeros(2, "float32")])])
    >>> layer = read_caffemodel(path)["score"]
    >>> layer.type, layer.blobs[0].shape
    ('Convolution', (2, 3, 1, 1))
"""

from __future__ import annotations

import io
import os
from typing import Iterable, Iterator

import numpy as np

from fcn_keras.caffe.proto import (
    BYTES,
    FIXED32,
    FIXED64,
    LAYER_PARAMS,
    NEW_FORM,
    UNPACKED_FLOAT_TAG,
    V0_LAYER_FIELD,
    V1_FORM,
    V1_TYPES,
    VARINT,
    CaffeLayer,
    CaffeModelError,
    LayerForm,
)

__all__ = ["iter_caffemodel", "read_caffemodel"]



class _Source:
    """A bounds-checked byte stream over a file (or bytes) that reports where it broke."""

    def __init__(self, fileobj, path: str, size: int):
        self.f, self.path, self.size = fileobj, path, size

    def tell(self) -> int:
        return self.f.tell()

    def fail(self, what: str) -> CaffeModelError:
        return CaffeModelError(f"{self.path}: {what} at byte {self.tell()} of {self.size}: "
                               "the .caffemodel is truncated or corrupt")

    def read(self, n: int) -> bytes:
        data = self.f.read(n)
        if len(data) != n:
            raise self.fail(f"needed {n} bytes, found {len(data)}")
        return data

    def readinto(self, array: np.ndarray) -> None:
        view = memoryview(array).cast("B")
        got = self.f.readinto(view)
        if got != view.nbytes:
            raise self.fail(f"needed {view.nbytes} bytes of blob data, found {got or 0}")

    def skip(self, n: int) -> None:
        if self.tell() + n > self.size:
            raise self.fail(f"a field of {n} bytes runs past the end of the file")
        self.f.seek(n, io.SEEK_CUR)

    def varint(self) -> int:
        result = shift = 0
        while True:
            byte = self.f.read(1)
            if not byte:
                raise self.fail("unexpected end of file inside a varint")
            result |= (byte[0] & 0x7F) << shift
            if byte[0] < 0x80:
                return result
            shift += 7
            if shift > 63:
                raise self.fail("a varint longer than 10 bytes")


def _fields(src: _Source, end: int):
    """Yields ``(field, wire_type, value)`` up to ``end``; for length-delimited fields
    ``value`` is the length and the caller must read, skip or descend into the bytes."""
    if end > src.size:
        raise src.fail(f"a message of {end - src.tell()} bytes runs past the end of the file")
    while src.tell() < end:
        key = src.varint()
        number, wire = key >> 3, key & 7
        if number == 0:
            raise src.fail("field number 0")
        if wire == VARINT:
            value = src.varint()
        elif wire == FIXED64:
            value = src.read(8)
        elif wire == FIXED32:
            value = src.read(4)
        elif wire == BYTES:
            value = src.varint()
            if src.tell() + value > end:
                raise src.fail(f"field {number} of {value} bytes overruns its message")
        else:
            raise src.fail(f"unsupported wire type {wire} (field {number})")
        yield number, wire, value
    if src.tell() != end:
        raise src.fail("a field overruns its message")


def _signed64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _packed_varints(data: bytes, path: str) -> list[int]:
    src = _Source(io.BytesIO(data), path, len(data))
    values = []
    while src.tell() < len(data):
        values.append(_signed64(src.varint()))
    return values


class _Blob:
    """Accumulates one BlobProto's shape and data while its fields stream past."""

    def __init__(self):
        self.shape: tuple[int, ...] | None = None
        self.dims4 = [0, 0, 0, 0]
        self.chunks: list[np.ndarray] = []
        self.count = 0

    def add(self, values: np.ndarray | None, count: int) -> None:
        if values is not None:
            self.chunks.append(values)
        self.count += count


def _read_packed(src: _Source, blob: _Blob, length: int, dtype: str, keep: bool) -> None:
    size = np.dtype(dtype).itemsize
    if length % size:
        raise src.fail(f"packed {dtype} data of {length} bytes (not a multiple of {size})")
    if keep:
        values = np.empty(length // size, dtype)
        src.readinto(values)
        blob.add(values.astype("float32", copy=False), values.size)
    else:
        src.skip(length)
        blob.add(None, length // size)


def _read_blob(src: _Source, end: int, blob: _Blob, keep: bool) -> None:
    for number, wire, value in _fields(src, end):
        if number == 7 and wire == BYTES:
            dims = []
            shape_src = _Source(io.BytesIO(src.read(value)), src.path, value)
            for n, w, v in _fields(shape_src, value):
                if n == 1 and w == BYTES:
                    dims.extend(_packed_varints(shape_src.read(v), src.path))
                elif n == 1 and w == VARINT:
                    dims.append(_signed64(v))
                elif w == BYTES:
                    shape_src.skip(v)
            blob.shape = tuple(dims)
        elif number in (1, 2, 3, 4) and wire == VARINT:
            blob.dims4[number - 1] = _signed64(value)
        elif number in (5, 8) and wire == BYTES:  # data (float) or double_data, packed
            _read_packed(src, blob, value, "<f4" if number == 5 else "<f8", keep)
        elif number == 5 and wire == FIXED32:
            # Unpacked floats: each value carries its own 1-byte tag. Decoding them one
            # by one in Python would take minutes for fc6, so the rest of the message is
            # read into memory and the run of (tag, float) records is sliced with NumPy.
            rest = src.read(end - src.tell())
            records = np.frombuffer(bytes([UNPACKED_FLOAT_TAG]) + value + rest, np.uint8)
            table = records[: records.size // 5 * 5].reshape(-1, 5)
            is_float = table[:, 0] == UNPACKED_FLOAT_TAG
            run = len(table) if is_float.all() else int(np.argmin(is_float))
            values = table[:run, 1:].copy().view("<f4").ravel()
            blob.add(values if keep else None, values.size)
            tail = bytes(records[run * 5 :])
            _read_blob(_Source(io.BytesIO(tail), src.path, len(tail)), len(tail), blob, keep)
            return
        elif wire == BYTES:
            src.skip(value)


def _blob_array(blob: _Blob, layer: str, index: int, keep: bool, path: str) -> tuple[tuple[int, ...], np.ndarray | None]:
    if blob.shape is not None:
        shape = blob.shape
    elif any(blob.dims4):
        shape = tuple(blob.dims4)
    else:
        shape = (blob.count,)
    expected = int(np.prod(shape, dtype=np.int64))
    if min(shape, default=1) < 0 or expected != blob.count:
        raise CaffeModelError(
            f"{path}: blob {index} of layer {layer!r} has shape {shape} ({expected} values) "
            f"but holds {blob.count} values: the .caffemodel is corrupt"
        )
    if not keep:
        return shape, None
    data = blob.chunks[0] if len(blob.chunks) == 1 else np.concatenate(blob.chunks or [np.empty(0, "<f4")])
    return shape, data.reshape(shape)


_PARAM_FIELDS = {number for number, _ in LAYER_PARAMS.values()}


def _decode_params(message: bytes, type_: str, path: str, layer: str) -> dict:
    """The fields of ``LAYER_PARAMS[type_]`` set in one parameter message (unknown fields skipped)."""
    _, fields = LAYER_PARAMS[type_]
    src = _Source(io.BytesIO(message), path, len(message))
    params = {}
    for number, wire, value in _fields(src, len(message)):
        if wire == BYTES:
            src.skip(value)
        if number not in fields:
            continue
        key, kind = fields[number]
        if kind is float and wire == FIXED32:
            params[key] = float(np.frombuffer(value, "<f4")[0])
        elif kind is not float and wire == VARINT:
            params[key] = bool(value) if kind is bool else kind.get(value, value) if isinstance(kind, dict) \
                else _signed64(value)
        else:
            raise CaffeModelError(f"{path}: layer {layer!r}: field {number} ({key}) of its {type_} parameters has "
                                  f"wire type {wire}, which caffe.proto does not give it")
    return params


def _read_layer(src: _Source, end: int, form: LayerForm, wanted) -> CaffeLayer:
    name = type_ = None
    bottoms, tops, shapes, arrays = [], [], [], []
    param_messages: dict[int, bytes] = {}
    for number, wire, value in _fields(src, end):
        if number == form.name and wire == BYTES:
            name = src.read(value).decode("utf-8", "replace")
        elif number == form.type and wire == BYTES and not form.type_is_enum:
            type_ = src.read(value).decode("utf-8", "replace")
        elif number == form.type and wire == VARINT and form.type_is_enum:
            type_ = V1_TYPES.get(value, f"V1 type {value}")
        elif number == form.bottom and wire == BYTES:
            bottoms.append(src.read(value).decode("utf-8", "replace"))
        elif number == form.top and wire == BYTES:
            tops.append(src.read(value).decode("utf-8", "replace"))
        elif number == form.blobs and wire == BYTES:
            # Caffe writes the name before the blobs; if it did not, read to be safe.
            keep = wanted is None or name is None or name in wanted
            blob = _Blob()
            _read_blob(src, src.tell() + value, blob, keep)
            shape, array = _blob_array(blob, name or "?", len(shapes), keep, src.path)
            shapes.append(shape)
            arrays.append(array)
        elif form is NEW_FORM and number in _PARAM_FIELDS and wire == BYTES:
            param_messages[number] = src.read(value)  # decoded once the type is known
        elif form is V1_FORM and number == V0_LAYER_FIELD and wire == BYTES:
            raise CaffeModelError(
                f"{src.path}: layer {name or '?'} uses Caffe's V0 layer format, which is not supported; "
                "upgrade the file with Caffe's upgrade_net_proto_binary first"
            )
        elif wire == BYTES:
            src.skip(value)
    if name is None:
        raise src.fail("a layer without a name")
    keep = wanted is None or name in wanted
    params = {}
    if type_ in LAYER_PARAMS and LAYER_PARAMS[type_][0] in param_messages:
        params = _decode_params(param_messages[LAYER_PARAMS[type_][0]], type_, src.path, name)
    return CaffeLayer(name, type_ or "", tuple(bottoms), tuple(tops),
                      blobs=list(arrays) if keep else [], blob_shapes=shapes, params=params)


def iter_caffemodel(path: str | os.PathLike, layers: Iterable[str] | None = None) -> Iterator[CaffeLayer]:
    """Yields a ``.caffemodel``'s layers one at a time, in file order (see :func:`read_caffemodel`).

    Only the current layer's blobs are in memory, so a 540 MB file needs at most
    its largest blob (fc6, 411 MB).

    Example:
        >>> import numpy as np, os, tempfile
        >>> from fcn_keras.caffe import CaffeLayer, write_caffemodel
        >>> path = os.path.join(tempfile.mkdtemp(), "two.caffemodel")
        >>> write_caffemodel(path, [CaffeLayer("a", "ReLU"), CaffeLayer("b", blobs=[np.ones(3, "float32")])])
        >>> [(layer.name, layer.blob_shapes, len(layer.blobs)) for layer in iter_caffemodel(path, layers=[])]
        [('a', [], 0), ('b', [(3,)], 0)]
    """
    path = os.fspath(path)
    wanted = None if layers is None else set(layers)
    size = os.path.getsize(path)
    found = False
    with open(path, "rb") as f:
        src = _Source(f, path, size)
        for number, wire, value in _fields(src, size):
            form = {NEW_FORM.field: NEW_FORM, V1_FORM.field: V1_FORM}.get(number) if wire == BYTES else None
            if form is None:
                if wire == BYTES:
                    src.skip(value)
                continue
            found = True
            yield _read_layer(src, src.tell() + value, form, wanted)
    if not found:
        raise CaffeModelError(f"{path}: no layers found: this is not a .caffemodel (NetParameter) file")


def read_caffemodel(path: str | os.PathLike, layers: Iterable[str] | None = None) -> dict[str, CaffeLayer]:
    """Reads a ``.caffemodel`` (new ``layer`` or V1 ``layers`` form) into ``{name: CaffeLayer}``.

    Args:
        path: the file.
        layers: names of the layers whose blob data to load; other layers are
            listed with their blob shapes only (their data is skipped on disk).
            ``None`` loads every blob.

    Returns:
        The layers in file order. Blobs are float32 arrays in Caffe's layouts.

    Raises:
        CaffeModelError: the file is truncated, corrupt or not a ``.caffemodel``.

    Example:
        >>> import numpy as np, os, tempfile
        >>> from fcn_keras.caffe import CaffeLayer, write_caffemodel
        >>> path = os.path.join(tempfile.mkdtemp(), "net.caffemodel")
        >>> write_caffemodel(path, [CaffeLayer("fc", "InnerProduct", blobs=[np.ones((2, 3), "float32")])])
        >>> read_caffemodel(path)["fc"].blobs[0].shape
        (2, 3)
        >>> read_caffemodel("fcn8s-heavy-pascal.caffemodel", layers=["score_fr"])  # doctest: +SKIP
    """
    result: dict[str, CaffeLayer] = {}
    for layer in iter_caffemodel(path, layers):
        if layer.name in result:
            raise CaffeModelError(f"{os.fspath(path)}: layer {layer.name!r} appears twice")
        result[layer.name] = layer
    return result

