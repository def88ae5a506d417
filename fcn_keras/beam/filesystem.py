"""Files on any Beam filesystem (local, ``gs://``, ``s3://``, ...): atomic writes, existence, local copies.

Everything the Beam transforms read or write goes through
:class:`apache_beam.io.filesystems.FileSystems`, so the same code runs against
a local directory and a bucket. A file appears whole or not at all: a local
file is written by the project's one atomic writer (:func:`fcn_keras.files.write_bytes`,
the modes of a plain write: ``0644`` under umask ``022``); on an object store an
object becomes visible only when its upload completes, so it is written in place;
on other remote filesystems (HDFS), which that writer cannot reach, it is written
under a temporary name beside it and renamed through Beam's ``FileSystems``.

Example:
    >>> import tempfile
    >>> path = FileSystems.join(tempfile.mkdtemp(), "a.txt")
    >>> write_file(path, b"hello"), read_file(path)
    ('...a.txt', b'hello')
"""

from __future__ import annotations

import os
import tempfile
import uuid

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from fcn_keras.files import write_bytes

# Schemes whose objects are created atomically when their upload finishes; a rename there is a copy
# and a delete, twice the traffic for no gain.
OBJECT_STORE_SCHEMES = ("gs", "s3", "azfs")


def is_local(path: str) -> bool:
    """Whether ``path`` is on the local filesystem (no ``scheme://``).

    Example:
        >>> is_local("/data/a.jpg"), is_local("gs://bucket/a.jpg")
        (True, False)
    """
    return FileSystems.get_scheme(path) is None


def read_file(path: str) -> bytes:
    """The whole content of ``path``.

    Example:
        >>> read_file("/nonexistent/a.jpg")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        FileNotFoundError: ...
    """
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        return f.read()


def write_file(path: str, content: bytes) -> str:
    """Writes ``content`` to ``path`` so that readers see the old file or the new one, never a part; returns ``path``.

    Example:
        >>> import tempfile
        >>> read_file(write_file(FileSystems.join(tempfile.mkdtemp(), "sub", "b.bin"), b"\\x00\\x01"))
        b'\\x00\\x01'
    """
    if is_local(path):
        write_bytes(path, content)
        return path
    if FileSystems.get_scheme(path) in OBJECT_STORE_SCHEMES:
        _write(path, content)
        return path
    directory, name = FileSystems.split(path)
    tmp = FileSystems.join(directory, f".{name}.{uuid.uuid4().hex}.tmp")
    try:
        _write(tmp, content)
        FileSystems.rename([tmp], [path])
    except BaseException:
        if FileSystems.exists(tmp):
            FileSystems.delete([tmp])
        raise
    return path


def _write(path: str, content: bytes) -> None:
    with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        f.write(content)


def make_directory(path: str) -> None:
    """Creates the directory ``path`` (and its parents) where the filesystem has directories.

    Object stores have none (a "directory" is a name prefix), so nothing is done there.

    Example:
        >>> import tempfile
        >>> target = FileSystems.join(tempfile.mkdtemp(), "out")
        >>> make_directory(target); make_directory(target); os.path.isdir(target)
        True
    """
    if FileSystems.get_scheme(path) in OBJECT_STORE_SCHEMES or FileSystems.exists(path):
        return
    FileSystems.mkdirs(path)


def local_copy(path: str) -> str:
    """``path`` itself when it is local, else a copy in a new local temporary directory (a file, or a
    directory tree such as a SavedModel); for libraries that read only local files.

    Example:
        >>> local_copy("/models/m.keras")
        '/models/m.keras'
    """
    if is_local(path):
        return path
    target = tempfile.mkdtemp(prefix="fcn-keras-model-")
    root = path.rstrip("/")
    _, name = FileSystems.split(root)
    # What lies below the path tells a directory from a file (object stores have no directories to ask about).
    files = [m.path for m in FileSystems.match([root + "/**"])[0].metadata_list]
    if not files:
        local = os.path.join(target, name)
        with open(local, "wb") as f:
            f.write(read_file(root))
        return local
    local_root = os.path.join(target, name)
    for remote in files:
        local = os.path.join(local_root, *remote[len(root) + 1:].split("/"))
        os.makedirs(os.path.dirname(local), exist_ok=True)
        with open(local, "wb") as f:
            f.write(read_file(remote))
    return local_root
