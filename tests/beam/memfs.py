"""``memfs://``: a Beam filesystem in this process's memory, standing for a bucket (gs://, s3://) in the tests.

A complete :class:`apache_beam.io.filesystem.FileSystem` (Beam finds it by subclassing): what
``fcn_keras.beam`` reads and writes there goes through ``FileSystems`` alone, as on a real
object store, so a path handled with ``os`` or ``open`` fails. Objects are bytes under their full
path; there are no directories (a prefix is one), as on GCS and S3.
"""

from __future__ import annotations

import io
import time

from apache_beam.io.filesystem import BeamIOError, CompressedFile, CompressionTypes, FileMetadata, FileSystem

OBJECTS: dict[str, tuple[bytes, float]] = {}
PREFIX = "memfs://"


class _Upload(io.BytesIO):
    """A writer whose object appears when it is closed, as an upload does."""

    def __init__(self, path: str):
        super().__init__()
        self._path = path

    def close(self) -> None:
        if not self.closed:
            OBJECTS[self._path] = (self.getvalue(), time.time())
        super().close()


class MemoryFileSystem(FileSystem):
    @classmethod
    def scheme(cls) -> str:
        return "memfs"

    def join(self, basepath: str, *paths: str) -> str:
        return "/".join([basepath.rstrip("/"), *(p.strip("/") for p in paths)])

    def split(self, path: str) -> tuple[str, str]:
        head, _, tail = path.rpartition("/")
        return head, tail

    def has_dirs(self) -> bool:
        return False

    def mkdirs(self, path: str) -> None:
        pass

    def _list(self, dir_or_prefix: str):
        for path, (content, mtime) in sorted(OBJECTS.items()):
            if path.startswith(dir_or_prefix):
                yield FileMetadata(path, len(content), mtime)

    def create(self, path, mime_type="application/octet-stream", compression_type=CompressionTypes.AUTO):
        return self._wrap(_Upload(path), path, compression_type)

    def open(self, path, mime_type="application/octet-stream", compression_type=CompressionTypes.AUTO):
        if path not in OBJECTS:
            raise BeamIOError("open failed", {path: FileNotFoundError(path)})
        return self._wrap(io.BytesIO(OBJECTS[path][0]), path, compression_type)

    def _wrap(self, raw, path, compression_type):
        compression_type = FileSystem._get_compression_type(path, compression_type)
        return raw if compression_type == CompressionTypes.UNCOMPRESSED else CompressedFile(raw, compression_type)

    def copy(self, source_file_names, destination_file_names) -> None:
        for source, destination in zip(source_file_names, destination_file_names):
            OBJECTS[destination] = OBJECTS[source]

    def rename(self, source_file_names, destination_file_names) -> None:
        for source, destination in zip(source_file_names, destination_file_names):
            OBJECTS[destination] = OBJECTS.pop(source)

    def exists(self, path: str) -> bool:
        return path in OBJECTS  # objects only: a prefix is no object, as on GCS and S3

    def size(self, path: str) -> int:
        return len(OBJECTS[path][0])

    def last_updated(self, path: str) -> float:
        return OBJECTS[path][1]

    def checksum(self, path: str) -> str:
        return str(hash(OBJECTS[path][0]))

    def metadata(self, path: str) -> FileMetadata:
        return FileMetadata(path, self.size(path), self.last_updated(path))

    def delete(self, paths) -> None:
        for path in paths:
            for name in [p for p in OBJECTS if p == path or p.startswith(path.rstrip("/") + "/")]:
                del OBJECTS[name]


def put(path: str, content: bytes) -> str:
    """Stores ``content`` at ``memfs://path``; returns the URL."""
    url = PREFIX + path
    OBJECTS[url] = (content, time.time())
    return url


def listing(prefix: str) -> dict[str, bytes]:
    """The objects under ``memfs://prefix``, by name relative to it."""
    base = PREFIX + prefix.rstrip("/") + "/"
    return {p[len(base):]: c for p, (c, _) in OBJECTS.items() if p.startswith(base)}
