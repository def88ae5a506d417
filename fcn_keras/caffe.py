"""Caffe ``.caffemodel`` files without Caffe: a streaming reader, a writer, and FCN weight conversion.

A ``.caffemodel`` is a protobuf ``NetParameter``. Only the few fields that carry
weights are decoded (field numbers from Caffe's ``caffe.proto``):

- ``NetParameter``: ``layer`` = 100 (``LayerParameter``), deprecated ``layers`` = 2
  (``V1LayerParameter``).
- ``LayerParameter``: name = 1, type = 2 (string), bottom = 3, top = 4, blobs = 7.
- ``V1LayerParameter``: bottom = 2, top = 3, name = 4, type = 5 (an enum), blobs = 6.
- ``BlobProto``: num/channels/height/width = 1-4 (legacy 4-D shape), data = 5
  (float, packed or not), double_data = 8, shape = 7 (``BlobShape``: dim = 1,
  packed int64).

The reader streams: the published FCN files are 500+ MB, so packed float data is
read straight into NumPy arrays and unneeded fields are skipped by their length.
Everything is validated while reading; a truncated or corrupt file raises
:class:`CaffeModelError` and nothing is returned.

Example:
    >>> import numpy as np, os, tempfile
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
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Sequence

import numpy as np

__all__ = ["CaffeLayer", "CaffeModelError", "iter_caffemodel", "read_caffemodel", "write_caffemodel", "load_caffe_weights"]


class CaffeModelError(ValueError):
    """A ``.caffemodel`` file is unreadable, corrupt, or does not fit the model."""


@dataclass
class CaffeLayer:
    """One layer of a ``.caffemodel``: its name, type and parameter blobs (Caffe layouts).

    ``blob_shapes`` is always filled; ``blobs`` holds float32 arrays only for
    the layers that were asked for (see :func:`read_caffemodel`).
    """

    name: str
    type: str = ""
    bottoms: tuple[str, ...] = ()
    tops: tuple[str, ...] = ()
    blobs: list[np.ndarray] = field(default_factory=list)
    blob_shapes: list[tuple[int, ...]] = field(default_factory=list)

    def __post_init__(self):
        if self.blobs and not self.blob_shapes:
            self.blob_shapes = [tuple(np.shape(b)) for b in self.blobs]


@dataclass(frozen=True)
class _LayerForm:
    field: int  # in NetParameter
    name: int
    type: int
    bottom: int
    top: int
    blobs: int
    type_is_enum: bool


_NEW = _LayerForm(field=100, name=1, type=2, bottom=3, top=4, blobs=7, type_is_enum=False)
_V1 = _LayerForm(field=2, name=4, type=5, bottom=2, top=3, blobs=6, type_is_enum=True)
_V1_V0_LAYER = 1  # V1LayerParameter.layer: the even older V0 form, which we do not read

# V1LayerParameter.LayerType values of the layers an FCN file contains.
_V1_TYPES = {
    1: "Accuracy", 3: "Concat", 4: "Convolution", 5: "Data", 6: "Dropout", 8: "Flatten",
    12: "ImageData", 14: "InnerProduct", 15: "LRN", 17: "Pooling", 18: "ReLU", 20: "Softmax",
    21: "SoftmaxWithLoss", 22: "Split", 25: "Eltwise", 39: "Deconvolution",
}
_V1_TYPE_IDS = {name: number for number, name in _V1_TYPES.items()}

_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5
_UNPACKED_FLOAT_TAG = (5 << 3) | _FIXED32  # BlobProto.data written one value at a time


# --------------------------------------------------------------------------- reading


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
        if wire == _VARINT:
            value = src.varint()
        elif wire == _FIXED64:
            value = src.read(8)
        elif wire == _FIXED32:
            value = src.read(4)
        elif wire == _BYTES:
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
        if number == 7 and wire == _BYTES:
            dims = []
            shape_src = _Source(io.BytesIO(src.read(value)), src.path, value)
            for n, w, v in _fields(shape_src, value):
                if n == 1 and w == _BYTES:
                    dims.extend(_packed_varints(shape_src.read(v), src.path))
                elif n == 1 and w == _VARINT:
                    dims.append(_signed64(v))
                elif w == _BYTES:
                    shape_src.skip(v)
            blob.shape = tuple(dims)
        elif number in (1, 2, 3, 4) and wire == _VARINT:
            blob.dims4[number - 1] = _signed64(value)
        elif number in (5, 8) and wire == _BYTES:  # data (float) or double_data, packed
            _read_packed(src, blob, value, "<f4" if number == 5 else "<f8", keep)
        elif number == 5 and wire == _FIXED32:
            # Unpacked floats: each value carries its own 1-byte tag. Decoding them one
            # by one in Python would take minutes for fc6, so the rest of the message is
            # read into memory and the run of (tag, float) records is sliced with NumPy.
            rest = src.read(end - src.tell())
            records = np.frombuffer(bytes([_UNPACKED_FLOAT_TAG]) + value + rest, np.uint8)
            table = records[: records.size // 5 * 5].reshape(-1, 5)
            is_float = table[:, 0] == _UNPACKED_FLOAT_TAG
            run = len(table) if is_float.all() else int(np.argmin(is_float))
            values = table[:run, 1:].copy().view("<f4").ravel()
            blob.add(values if keep else None, values.size)
            tail = bytes(records[run * 5 :])
            _read_blob(_Source(io.BytesIO(tail), src.path, len(tail)), len(tail), blob, keep)
            return
        elif wire == _BYTES:
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


def _read_layer(src: _Source, end: int, form: _LayerForm, wanted) -> CaffeLayer:
    name = type_ = None
    bottoms, tops, shapes, arrays = [], [], [], []
    for number, wire, value in _fields(src, end):
        if number == form.name and wire == _BYTES:
            name = src.read(value).decode("utf-8", "replace")
        elif number == form.type and wire == _BYTES and not form.type_is_enum:
            type_ = src.read(value).decode("utf-8", "replace")
        elif number == form.type and wire == _VARINT and form.type_is_enum:
            type_ = _V1_TYPES.get(value, f"V1 type {value}")
        elif number == form.bottom and wire == _BYTES:
            bottoms.append(src.read(value).decode("utf-8", "replace"))
        elif number == form.top and wire == _BYTES:
            tops.append(src.read(value).decode("utf-8", "replace"))
        elif number == form.blobs and wire == _BYTES:
            # Caffe writes the name before the blobs; if it did not, read to be safe.
            keep = wanted is None or name is None or name in wanted
            blob = _Blob()
            _read_blob(src, src.tell() + value, blob, keep)
            shape, array = _blob_array(blob, name or "?", len(shapes), keep, src.path)
            shapes.append(shape)
            arrays.append(array)
        elif form is _V1 and number == _V1_V0_LAYER and wire == _BYTES:
            raise CaffeModelError(
                f"{src.path}: layer {name or '?'} uses Caffe's V0 layer format, which is not supported; "
                "upgrade the file with Caffe's upgrade_net_proto_binary first"
            )
        elif wire == _BYTES:
            src.skip(value)
    if name is None:
        raise src.fail("a layer without a name")
    keep = wanted is None or name in wanted
    return CaffeLayer(name, type_ or "", tuple(bottoms), tuple(tops),
                      blobs=list(arrays) if keep else [], blob_shapes=shapes)


def iter_caffemodel(path: str | os.PathLike, layers: Iterable[str] | None = None) -> Iterator[CaffeLayer]:
    """Yields a ``.caffemodel``'s layers one at a time, in file order (see :func:`read_caffemodel`).

    Only the current layer's blobs are in memory, so a 540 MB file needs at most
    its largest blob (fc6, 411 MB).
    """
    path = os.fspath(path)
    wanted = None if layers is None else set(layers)
    size = os.path.getsize(path)
    found = False
    with open(path, "rb") as f:
        src = _Source(f, path, size)
        for number, wire, value in _fields(src, size):
            form = {_NEW.field: _NEW, _V1.field: _V1}.get(number) if wire == _BYTES else None
            if form is None:
                if wire == _BYTES:
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
        >>> read_caffemodel("fcn8s-heavy-pascal.caffemodel", layers=["score_fr"])  # doctest: +SKIP
    """
    result: dict[str, CaffeLayer] = {}
    for layer in iter_caffemodel(path, layers):
        if layer.name in result:
            raise CaffeModelError(f"{os.fspath(path)}: layer {layer.name!r} appears twice")
        result[layer.name] = layer
    return result


# --------------------------------------------------------------------------- writing


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
    return _key(number, _BYTES) + _varint_bytes(len(payload)) + payload


def _blob_parts(array: np.ndarray, legacy_dims: bool, packed: bool) -> tuple[bytes, np.ndarray]:
    """The BlobProto's header bytes (shape and data key) and its data, as written."""
    array = np.ascontiguousarray(array, "<f4")
    if legacy_dims:
        if array.ndim > 4:
            raise ValueError(f"legacy 4-D blob dims cannot hold shape {array.shape}")
        dims = (1,) * (4 - array.ndim) + array.shape
        header = b"".join(_key(n, _VARINT) + _varint_bytes(d) for n, d in zip((1, 2, 3, 4), dims))
    else:
        dims = b"".join(_varint_bytes(d) for d in array.shape)
        header = _bytes_field(7, _bytes_field(1, dims))
    flat = array.reshape(-1)
    if packed:
        return header + _key(5, _BYTES) + _varint_bytes(flat.nbytes), flat
    records = np.empty(flat.size, dtype=[("tag", "u1"), ("value", "<f4")])
    records["tag"], records["value"] = _UNPACKED_FLOAT_TAG, flat
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
            such as ``Scale``, are left out).
        legacy_dims: describe blobs by num/channels/height/width instead of ``shape``.
        packed: write float data packed (as Caffe does) or one value per field.
        name: the net's name.

    Example:
        >>> import numpy as np, os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "a.caffemodel")
        >>> write_caffemodel(path, [CaffeLayer("fc", "InnerProduct", blobs=[np.ones((2, 3), "float32")])], form="v1")
        >>> read_caffemodel(path)["fc"].blobs[0].tolist()
        [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]
    """
    if form not in ("layer", "v1"):
        raise ValueError(f"form must be 'layer' or 'v1', got {form!r}")
    spec = _NEW if form == "layer" else _V1
    path = os.fspath(path)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            if name:
                f.write(_bytes_field(1, name.encode()))
            for layer in layers:
                header = _bytes_field(spec.name, layer.name.encode())
                if form == "layer" and layer.type:
                    header += _bytes_field(spec.type, layer.type.encode())
                elif form == "v1" and layer.type in _V1_TYPE_IDS:
                    header += _key(spec.type, _VARINT) + _varint_bytes(_V1_TYPE_IDS[layer.type])
                for bottom in layer.bottoms:
                    header += _bytes_field(spec.bottom, bottom.encode())
                for top in layer.tops:
                    header += _bytes_field(spec.top, top.encode())
                blobs = [_blob_parts(b, legacy_dims, packed) for b in layer.blobs]
                blob_sizes = [len(h) + d.nbytes for h, d in blobs]
                body = len(header) + sum(len(_key(spec.blobs, _BYTES)) + len(_varint_bytes(s)) + s for s in blob_sizes)
                f.write(_key(spec.field, _BYTES) + _varint_bytes(body) + header)
                for (blob_header, data), size in zip(blobs, blob_sizes):
                    f.write(_key(spec.blobs, _BYTES) + _varint_bytes(size) + blob_header)
                    f.write(data.view(np.uint8))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


# --------------------------------------------------------------------------- FCN conversion


def _leaf_layers(model) -> list:
    import keras

    leaves = []
    for layer in model.layers:
        leaves.extend(_leaf_layers(layer) if isinstance(layer, keras.Model) else [layer])
    return leaves


@dataclass(frozen=True)
class _Target:
    """A Keras layer that takes Caffe blobs: their Caffe shapes and accepted Caffe types."""

    layer: object
    kind: str  # "conv", "deconv" or "scale"
    shapes: tuple[tuple[int, ...], ...]
    types: tuple[str, ...]


def _targets(model) -> dict[str, _Target]:
    from keras import layers as L

    from fcn_keras.models.layers import Scale

    targets = {}
    for layer in _leaf_layers(model):
        if isinstance(layer, L.Conv2DTranspose):
            kh, kw, out, inp = layer.kernel.shape
            if layer.use_bias:
                raise CaffeModelError(f"layer {layer.name!r} has a bias, which Caffe's FCN deconvolutions lack")
            targets[layer.name] = _Target(layer, "deconv", ((inp, out, kh, kw),), ("Deconvolution",))
        elif isinstance(layer, L.Conv2D):
            kh, kw, inp, out = layer.kernel.shape
            shapes = ((out, inp, kh, kw),) + (((out,),) if layer.use_bias else ())
            targets[layer.name] = _Target(layer, "conv", shapes, ("Convolution", "InnerProduct"))
        elif isinstance(layer, Scale):
            targets[layer.name] = _Target(layer, "scale", (), ("Scale",))
        elif layer.weights:
            raise CaffeModelError(
                f"layer {layer.name!r} ({type(layer).__name__}) of {model.name} has no Caffe FCN counterpart: "
                "load_caffe_weights supports the reference VGG16 FCNs"
            )
    return targets


def _strip(shape: tuple[int, ...]) -> tuple[int, ...]:
    while len(shape) > 1 and shape[0] == 1:
        shape = shape[1:]
    return tuple(shape)


def _fits(found: tuple[int, ...], shape: tuple[int, ...]) -> bool:
    """Whether a blob of shape ``found`` holds a Caffe ``shape`` parameter. Accepts legacy
    4-D blobs (leading 1-dims) and InnerProduct ``(out, in * kh * kw)`` matrices for
    convolutions: Caffe flattens (C, H, W) in C order, so a reshape restores them."""
    found = _strip(found)
    return found == _strip(shape) or (len(shape) == 4 and found == _strip((shape[0], int(np.prod(shape[1:])))))


def load_caffe_weights(model, caffemodel_path: str | os.PathLike):
    """Fills an FCN built by :mod:`fcn_keras.models` with a ``.caffemodel``'s weights, exactly.

    Blobs are matched by the reference layer names. Convolution weights
    ``(out, in, kh, kw)`` and deconvolution weights ``(in, out, kh, kw)`` are both
    transposed ``(2, 3, 1, 0)`` into Keras' ``Conv2D`` ``(kh, kw, in, out)`` and
    ``Conv2DTranspose`` ``(kh, kw, out, in)`` layouts; ``fc6``/``fc7`` may come as
    InnerProduct matrices. At-once ``Scale`` blobs are checked against the
    model's fixed scales. The whole file (every field, layer name, type, blob
    shape and size) is checked before any weight is set, so a bad file leaves the
    model untouched; the data is then streamed one layer at a time.

    Returns:
        ``model``.

    Raises:
        CaffeModelError: corrupt file, missing/extra layers (named), or a
            mis-shaped blob (layer, expected and found shapes).

    Example:
        >>> import fcn_keras
        >>> model = fcn_keras.fcn8s(num_classes=21)
        >>> load_caffe_weights(model, "fcn8s-heavy-pascal.caffemodel")  # doctest: +SKIP
    """
    from keras import ops

    path = os.fspath(caffemodel_path)
    targets = _targets(model)
    # Pass 1 reads the whole file's structure (every field length, blob shape and
    # count, and the small Scale blobs) and checks it against the model; pass 2
    # streams the data layer by layer into the model, so at most one blob is held.
    scales = [name for name, target in targets.items() if target.kind == "scale"]
    structure = read_caffemodel(path, layers=scales)
    with_blobs = {name for name, layer in structure.items() if layer.blob_shapes}
    missing = [name for name in targets if name not in with_blobs]
    extra = [name for name in structure if name in with_blobs and name not in targets]
    if missing or extra:
        raise CaffeModelError(
            f"{path} does not fit {model.name}: "
            + "; ".join(part for part in (
                f"layers the model needs but the file lacks: {missing}" if missing else "",
                f"layers with weights in the file that the model lacks: {extra}" if extra else "",
            ) if part)
            + ". Is it a caffemodel for another architecture or class count?"
        )
    for name, target in targets.items():
        layer = structure[name]
        if layer.type and layer.type not in target.types:
            raise CaffeModelError(f"{path}: layer {name!r} is a Caffe {layer.type}, the model needs {' or '.join(target.types)}")
        if target.kind == "scale":
            scale = target.layer.scale
            if len(layer.blobs) != 1 or not np.allclose(layer.blobs[0], scale, rtol=1e-6, atol=0):
                found = [np.unique(b).tolist()[:4] for b in layer.blobs]
                raise CaffeModelError(f"{path}: Scale layer {name!r} holds {found}, the model's fixed scale is {scale}")
            continue
        if len(layer.blob_shapes) != len(target.shapes):
            raise CaffeModelError(
                f"{path}: layer {name!r} has {len(layer.blob_shapes)} blobs {layer.blob_shapes}, "
                f"the model needs {len(target.shapes)} with Caffe shapes {list(target.shapes)}"
            )
        for found, shape in zip(layer.blob_shapes, target.shapes):
            if not _fits(found, shape):
                raise CaffeModelError(
                    f"{path}: layer {name!r} blob shape {found} does not fit the model, "
                    f"which needs Caffe shape {shape}"
                )

    weighted = [name for name, target in targets.items() if target.kind != "scale"]
    for layer in iter_caffemodel(path, layers=weighted):
        if layer.name not in weighted:
            continue
        target = targets[layer.name]
        for variable, blob, shape in zip(target.layer.weights, layer.blobs, target.shapes):
            # keras.ops' transpose is several times faster than NumPy's on fc6's 400 MB.
            value = ops.convert_to_tensor(blob.reshape(shape), dtype=variable.dtype)
            variable.assign(ops.transpose(value, (2, 3, 1, 0)) if len(shape) == 4 else value)
    return model
