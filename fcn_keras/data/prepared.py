"""The prepared format: any source converted once into sharded TFRecord files.

Training then streams a few large files instead of thousands of small ones, and
decodes with TensorFlow's native ops (no Python in the loop). Layout::

    out_dir/shard-00000-of-00004.tfrecord   ...
    out_dir/manifest.json                    written last: its presence marks a complete dataset

Each record holds ``image`` (the original JPEG bytes when the source file is an
RGB JPEG, else a lossless PNG), ``label`` (an 8-bit greyscale PNG of the class
indices: lossless, decoded exactly by ``tf.io.decode_png``), ``id``, ``height``
and ``width``. Every record is decoded again and compared before its shard is
committed. Shards are written under a temporary name and renamed when complete,
so an interrupted run leaves nothing a reader would take for data.
"""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import io
import json
import math
import os
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

from fcn_keras.data.decode import DataError, label_to_indices
from fcn_keras.data.folder import FolderSource
from fcn_keras.data.source import FileSource
from fcn_keras.files import atomic_path, write_text

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
_FEATURES = {
    "image": tf.io.FixedLenFeature([], tf.string),
    "label": tf.io.FixedLenFeature([], tf.string),
    "id": tf.io.FixedLenFeature([], tf.string),
    "height": tf.io.FixedLenFeature([], tf.int64),
    "width": tf.io.FixedLenFeature([], tf.int64),
}


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _encode_image(image: np.ndarray, image_path: str | None) -> bytes:
    """The source JPEG's own bytes when it is an RGB JPEG (decoded identically), else a PNG."""
    if image_path is not None and image_path.lower().endswith((".jpg", ".jpeg")):
        with Image.open(image_path) as im:
            if im.format == "JPEG" and im.mode == "RGB":
                return Path(image_path).read_bytes()
    return _png(image)


def _bytes_feature(value: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int_feature(value: int) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))


def _serialize(example_id: str, image_bytes: bytes, label_bytes: bytes, height: int, width: int) -> bytes:
    features = {
        "image": _bytes_feature(image_bytes),
        "label": _bytes_feature(label_bytes),
        "id": _bytes_feature(example_id.encode("utf-8")),
        "height": _int_feature(height),
        "width": _int_feature(width),
    }
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def _decode_image(data: tf.Tensor) -> tf.Tensor:
    # INTEGER_ACCURATE is libjpeg's ISLOW IDCT, the one PIL uses: the same pixels as the raw reader.
    return tf.cond(
        tf.io.is_jpeg(data),
        lambda: tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE"),
        lambda: tf.io.decode_png(data, channels=3),
    )


def _parse(record: tf.Tensor, with_ids: bool = False):
    parsed = tf.io.parse_single_example(record, _FEATURES)
    image = _decode_image(parsed["image"])
    label = tf.io.decode_png(parsed["label"], channels=1)[..., 0]
    shape = tf.stack([parsed["height"], parsed["width"]])
    image = tf.ensure_shape(image, [None, None, 3])
    label = tf.ensure_shape(label, [None, None])
    # Sizes are stored, so a damaged record fails loudly instead of mis-pairing pixels.
    tf.debugging.assert_equal(tf.shape(label, out_type=tf.int64), shape, message="prepared label size mismatch")
    tf.debugging.assert_equal(tf.shape(image, out_type=tf.int64)[:2], shape, message="prepared image size mismatch")
    if with_ids:
        return image, label, parsed["id"]
    return image, label


def _record(name: str, example_id: str, image: np.ndarray, label: np.ndarray, image_path: str | None) -> bytes:
    """Serializes one example and checks that it decodes back to exactly these arrays."""
    label_bytes = _png(label)
    for image_bytes in (_encode_image(image, image_path), None):
        # A JPEG whose TF decode differs from PIL's (another libjpeg build) is stored as PNG instead.
        image_bytes = image_bytes or _png(image)
        record = _serialize(example_id, image_bytes, label_bytes, *label.shape)
        got_image, got_label = (t.numpy() for t in _parse(tf.constant(record)))
        if not np.array_equal(got_label, label):
            raise DataError(name, "prepared label does not decode back to the source label")
        if np.array_equal(got_image, image):
            return record
    raise DataError(name, "prepared image does not decode back to the source image")


def _dataset_example(n: int, element, num_classes: int | None) -> tuple[str, np.ndarray, np.ndarray, None]:
    """One ``tf.data`` element as ``(id, image uint8, label uint8, None)``, refusing values uint8 cannot hold."""
    if isinstance(element, dict):
        image, label, example_id = element["image"], element["label"], element.get("id", n)
    else:
        image, label = element[0], element[1]
        example_id = element[2] if len(element) > 2 else n
    if isinstance(example_id, bytes):
        example_id = example_id.decode("utf-8")
    where = f"prepare(source): example {n}" + (f" (id {example_id!r})" if example_id != n else "")
    image, label = np.asarray(image), np.asarray(label)
    if label.ndim == 3 and label.shape[-1] == 1:
        label = label[..., 0]
    if label.ndim != 2:
        raise DataError(where, f"label has shape {label.shape}, expected [H, W] or [H, W, 1]")
    if image.ndim != 3 or image.shape[-1] != 3:
        raise DataError(where, f"image has shape {image.shape}, expected [H, W, 3] RGB")
    if image.dtype != np.uint8 and (np.any(image != np.round(image)) or image.min() < 0 or image.max() > 255):
        raise DataError(where, f"image values (dtype {image.dtype}) are not whole numbers in 0..255")
    if label.dtype.kind not in "iub":
        if np.any(label != np.round(label)):
            raise DataError(where, f"label values (dtype {label.dtype}) are not whole numbers")
        label = label.astype(np.int64)
    # Range first: casting 256 to uint8 would wrap it to class 0 without a word.
    label = label_to_indices(label, where, num_classes)
    return str(example_id), image.astype(np.uint8), label, None


def _examples(source, num_classes: int | None = None):
    """Yields ``(id, image, label, image_path)`` from a FileSource or a tf.data.Dataset."""
    if isinstance(source, FileSource):
        for index, example_id in enumerate(source.ids):
            image, label = source.read(index)
            yield example_id, image, label, source.images[index]
        return
    for n, element in enumerate(source.as_numpy_iterator()):
        yield _dataset_example(n, element, num_classes)


def _fingerprint(source, num_classes: int | None = None) -> tuple[str, int]:
    """``(digest, number of examples)``: the input identified by file names, sizes and times for a
    FileSource, by content for a Dataset (counted in the same pass)."""
    digest = hashlib.sha256()
    if isinstance(source, FileSource):
        for example_id, image, label in zip(source.ids, source.images, source.labels):
            digest.update(f"{example_id}\0{image}\0{label}\0".encode())
            for path in (image, label):
                stat = os.stat(path)
                digest.update(f"{stat.st_size}:{stat.st_mtime_ns}\0".encode())
        if isinstance(source, FolderSource) and source.label_colors is not None:
            # The same colour PNGs decode to other indices under another colour table.
            digest.update(source.label_colors.colors.tobytes() + source.label_colors.indices.tobytes())
        return digest.hexdigest(), len(source)
    count = 0
    for example_id, image, label, _ in _examples(source, num_classes):
        digest.update(example_id.encode() + b"\0" + image.tobytes() + label.tobytes())
        digest.update(np.asarray(image.shape + label.shape).tobytes())
        count += 1
    return digest.hexdigest(), count


def read_manifest(out_dir: str | os.PathLike) -> dict:
    """The manifest of a prepared dataset; raises :class:`DataError` when it is absent or broken."""
    path = Path(out_dir) / MANIFEST
    if not path.is_file():
        raise DataError(path, "missing: not a prepared dataset, or its prepare() did not finish")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(path, f"invalid JSON: {exc}") from None
    if manifest.get("format_version") != FORMAT_VERSION:
        raise DataError(path, f"format_version {manifest.get('format_version')} is not {FORMAT_VERSION}")
    for shard in manifest["shards"]:
        shard_path = Path(out_dir) / shard["file"]
        if not shard_path.is_file() or shard_path.stat().st_size != shard["bytes"]:
            raise DataError(shard_path, "shard listed in the manifest is missing or has the wrong size")
    return manifest


@dataclasses.dataclass(frozen=True)
class ShardPlan:
    """What :func:`prepare` writes into ``out_dir``: which examples go to which shard, and the manifest's facts.

    Made by :func:`plan_shards`; shard ``k`` holds examples ``bounds[k]`` to ``bounds[k + 1] - 1`` in
    source order. The single-process :func:`prepare` and the Beam pipeline
    (:func:`fcn_keras.beam.prepare`) write the same files from the same plan.

    Example:
        >>> plan = ShardPlan(Path("out"), 5, (0, 2, 5), "f00d", 21, None, "voc:train")
        >>> plan.num_shards, plan.shard_name(1), [plan.shard_of(i) for i in range(5)]
        (2, 'shard-00001-of-00002.tfrecord', [0, 0, 1, 1, 1])
    """

    out_dir: Path
    num_examples: int
    bounds: tuple[int, ...]
    fingerprint: str
    num_classes: int | None
    class_names: tuple[str, ...] | None
    source_name: str

    @property
    def num_shards(self) -> int:
        """The number of shard files."""
        return len(self.bounds) - 1

    def shard_name(self, k: int) -> str:
        """The file name of shard ``k``."""
        return f"shard-{k:05d}-of-{self.num_shards:05d}.tfrecord"

    def shard_of(self, index: int) -> int:
        """The shard that holds example ``index``."""
        return bisect.bisect_right(self.bounds, index) - 1


def plan_shards(
    source: FileSource | tf.data.Dataset,
    out_dir: str | os.PathLike,
    num_shards: int | None = None,
    *,
    num_classes: int | None = None,
    class_names: tuple[str, ...] | None = None,
    overwrite: bool = False,
) -> ShardPlan | None:
    """Readies ``out_dir`` for :func:`prepare`'s shards; ``None`` when it holds this input's already.

    A prepared dataset of another input raises unless ``overwrite``; otherwise its manifest is removed
    (from here on the directory is not a complete dataset) with any temporary shard a killed run left.

    Example:
        >>> import tempfile
        >>> from fcn_keras.data import voc_source, write_synthetic_voc
        >>> root = write_synthetic_voc(tempfile.mkdtemp(), num_images=4)
        >>> plan = plan_shards(voc_source(root, "trainval"), tempfile.mkdtemp(), 3)
        >>> plan.num_examples, plan.bounds
        (4, (0, 1, 3, 4))
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if isinstance(source, FileSource):
        num_classes = source.num_classes if num_classes is None else num_classes
        class_names = source.class_names if class_names is None else class_names
    elif not isinstance(source, tf.data.Dataset):
        raise TypeError(f"prepare: source must be a FileSource or a tf.data.Dataset, got {type(source)!r}")
    fingerprint, total = _fingerprint(source, num_classes)
    manifest_path = out_dir / MANIFEST
    if manifest_path.is_file():
        try:
            existing = read_manifest(out_dir)
        except DataError:
            existing = None
        if existing and existing["fingerprint"] == fingerprint and (
            num_shards is None or existing["num_shards"] == num_shards
        ):
            return None
        if existing and not overwrite:
            raise DataError(out_dir, "holds a prepared dataset of a different input; pass overwrite=True to replace it")
        manifest_path.unlink()  # from here on the directory is not a complete dataset
    for stale in out_dir.glob(".shard-*.tmp*"):  # left by a killed run (atomic_path's temporary names)
        stale.unlink()
    if total == 0:
        raise DataError(getattr(source, "name", "dataset"), "the split is empty (no examples)")
    num_shards = min(num_shards or max(1, math.ceil(total / 256)), total)
    bounds = tuple(int(b) for b in np.linspace(0, total, num_shards + 1).round().astype(int))
    return ShardPlan(out_dir, total, bounds, fingerprint, num_classes, tuple(class_names) if class_names else None,
                     getattr(source, "name", "tf.data.Dataset"))


def example_record(example_id: str, image: np.ndarray, label: np.ndarray, image_path: str | None) -> bytes:
    """One example's verified TFRecord record (what a shard holds), as :func:`prepare` writes it.

    Example:
        >>> record = example_record("a", np.zeros((2, 3, 3), np.uint8), np.ones((2, 3), np.uint8), None)
        >>> [t.shape for t in _parse(tf.constant(record))]
        [TensorShape([2, 3, 3]), TensorShape([2, 3])]
    """
    if image.shape[:2] != label.shape:
        raise DataError(example_id, f"image {image.shape[:2]} and label {label.shape} sizes differ")
    return _record(image_path or example_id, example_id, image, label, image_path)


def source_record(source: FileSource, index: int) -> bytes:
    """The record of example ``index`` of a :class:`FileSource` (read from its files).

    Example:
        >>> import tempfile
        >>> from fcn_keras.data import voc_source, write_synthetic_voc
        >>> source = voc_source(write_synthetic_voc(tempfile.mkdtemp(), num_images=2), "trainval")
        >>> len(source_record(source, 0)) > 1000
        True
    """
    image, label = source.read(index)
    return example_record(source.ids[index], image, label, source.images[index])


def write_shard(plan: ShardPlan, k: int, records: Iterable[bytes]) -> dict:
    """Writes shard ``k`` of ``plan`` from its records (in order), atomically; returns its manifest entry.

    Example:
        >>> import tempfile
        >>> plan = ShardPlan(Path(tempfile.mkdtemp()), 1, (0, 1), "f00d", 2, None, "demo")
        >>> write_shard(plan, 0, [b"x"])["file"]
        'shard-00000-of-00001.tfrecord'
    """
    name = plan.shard_name(k)
    count = 0
    with atomic_path(plan.out_dir / name) as tmp, tf.io.TFRecordWriter(str(tmp)) as writer:
        for record in records:
            writer.write(record)
            count += 1
    expected = plan.bounds[k + 1] - plan.bounds[k]
    if count != expected:  # a source that changed while it was read
        raise DataError(plan.out_dir / name, f"got {count} records for a shard of {expected}")
    return {"file": name, "num_examples": count, "bytes": (plan.out_dir / name).stat().st_size}


def write_manifest(plan: ShardPlan, shards: Sequence[dict]) -> Path:
    """Writes the manifest of ``plan``'s written ``shards`` (last: it marks the dataset complete); returns ``out_dir``.

    Example:
        >>> import tempfile
        >>> plan = ShardPlan(Path(tempfile.mkdtemp()), 1, (0, 1), "f00d", 2, None, "demo")
        >>> read_manifest(write_manifest(plan, [write_shard(plan, 0, [b"x"])]))["num_examples"]
        1
    """
    manifest = {
        "format_version": FORMAT_VERSION,
        "num_examples": plan.num_examples,
        "num_shards": plan.num_shards,
        "shards": list(shards),
        "num_classes": plan.num_classes,
        "class_names": list(plan.class_names) if plan.class_names else None,
        "source": plan.source_name,
        "fingerprint": plan.fingerprint,
    }
    write_text(plan.out_dir / MANIFEST, json.dumps(manifest, indent=1))
    return plan.out_dir


def prepare(
    source: FileSource | tf.data.Dataset,
    out_dir: str | os.PathLike,
    num_shards: int | None = None,
    *,
    num_classes: int | None = None,
    class_names: tuple[str, ...] | None = None,
    overwrite: bool = False,
    verbose: int = 1,
) -> Path:
    """Converts a source into sharded TFRecords in ``out_dir``; returns ``out_dir``.

    ``source`` is a :class:`FileSource` (e.g. :func:`voc_source`) or a
    ``tf.data.Dataset`` of ``(image, label[, id])``. ``num_shards`` defaults to
    one per 256 examples. Re-running with the same input is a no-op (for a
    Dataset the check re-reads it); a different input in a prepared ``out_dir``
    raises unless ``overwrite=True``. Shows a Keras progress bar with ``verbose``.
    :func:`fcn_keras.beam.prepare` writes the same files with a Beam pipeline.

    Example:
        >>> import tempfile
        >>> from fcn_keras.data import voc_source, write_synthetic_voc
        >>> root = write_synthetic_voc(tempfile.mkdtemp(), num_images=4)
        >>> out = prepare(voc_source(root, "trainval"), tempfile.mkdtemp(), num_shards=2, verbose=0)
        >>> read_manifest(out)["num_examples"]
        4
    """
    plan = plan_shards(source, out_dir, num_shards, num_classes=num_classes, class_names=class_names,
                       overwrite=overwrite)
    if plan is None:
        return Path(out_dir)
    examples = iter(_examples(source, plan.num_classes))
    progress = keras.utils.Progbar(plan.num_examples, unit_name="example") if verbose else None
    done = 0

    def records(k: int) -> Iterator[bytes]:
        nonlocal done
        for _ in range(plan.bounds[k], plan.bounds[k + 1]):
            yield example_record(*next(examples))
            done += 1
            if progress is not None:
                progress.update(done)

    shards = [write_shard(plan, k, records(k)) for k in range(plan.num_shards)]
    return write_manifest(plan, shards)


def load_prepared(
    out_dir: str | os.PathLike,
    *,
    with_ids: bool = False,
    input_context: tf.distribute.InputContext | None = None,
    shuffle_files: bool = False,
    shuffle_buffer: int | None = None,
    seed: int | None = None,
) -> tf.data.Dataset:
    """A prepared dataset as ``(image uint8 [H,W,3], label uint8 [H,W][, id])``.

    In the original order by default. ``shuffle_files``/``shuffle_buffer`` shuffle
    shard order and serialized records (cheap: before decoding);
    ``input_context`` makes this worker read only its share of the shards.

    Example:
        >>> load_prepared("/nonexistent")
        Traceback (most recent call last):
        ...
        fcn_keras.data.decode.DataError: /nonexistent/manifest.json: missing: not a prepared dataset, or its prepare() did not finish
    """
    manifest = read_manifest(out_dir)
    files = [str(Path(out_dir) / s["file"]) for s in manifest["shards"]]
    reshuffle = dict(seed=seed, reshuffle_each_iteration=True)
    dataset = tf.data.Dataset.from_tensor_slices(files)
    shard_records = False
    if input_context is not None:
        if len(files) >= input_context.num_input_pipelines:
            dataset = dataset.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
        else:
            shard_records = True
    if shuffle_files:
        dataset = dataset.shuffle(len(files), **reshuffle)
        records = dataset.interleave(
            tf.data.TFRecordDataset, cycle_length=min(len(files), 8), num_parallel_calls=tf.data.AUTOTUNE
        )
    else:
        records = dataset.flat_map(tf.data.TFRecordDataset)
    if shard_records:
        records = records.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    if shuffle_buffer:
        records = records.shuffle(shuffle_buffer, **reshuffle)
    return records.map(lambda r: _parse(r, with_ids), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
