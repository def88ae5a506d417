"""The zoo's cache: where downloads and converted weights live, and the registry of their hashes.

Under :func:`home` (``$FCN_KERAS_HOME``, default ``<Keras cache dir>/fcn_keras``)::

    downloads/<file>.caffemodel          the published weights, as downloaded
    converted/<name>-<sha>.weights.h5    the Keras weights converted from them
    registry.json                        hashes: of each verified download (for
                                         files with no published checksum) and
                                         of each converted weights file

Every file here is written through :mod:`fcn_keras.files` (atomic, plain modes).

Example:
    >>> import os, tempfile
    >>> from unittest import mock
    >>> with mock.patch.dict(os.environ, FCN_KERAS_HOME=tempfile.mkdtemp()):  # a fresh cache
    ...     read_registry()
    {'sources': {}, 'converted': {}}
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from fcn_keras.files import atomic_path, write_text

if TYPE_CHECKING:
    import keras

__all__ = [
    "CacheError", "home", "ensure_writable", "read_registry", "save_registry", "file_hashes", "file_stat",
    "recorded_conversion", "cached_conversion", "save_conversion",
]


class CacheError(OSError):
    """The cache directory cannot be used."""


def home() -> Path:
    """The cache directory: ``$FCN_KERAS_HOME``, else ``fcn_keras`` in the Keras cache dir
    (``$KERAS_HOME`` or ``~/.keras``).

    Example:
        >>> home().name == "fcn_keras" or "FCN_KERAS_HOME" in os.environ
        True
    """
    if os.environ.get("FCN_KERAS_HOME"):
        return Path(os.environ["FCN_KERAS_HOME"]).expanduser()
    keras_home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(keras_home) / "fcn_keras"


def ensure_writable(directory: Path) -> Path:
    """Creates ``directory`` and checks that files can be made in it; ``CacheError`` says how to fix it.

    Example:
        >>> import tempfile
        >>> ensure_writable(Path(tempfile.mkdtemp()) / "converted").is_dir()
        True
    """
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise CacheError(
            f"The fcn_keras cache directory {directory} is not writable ({exc}). "
            "Set FCN_KERAS_HOME to a writable directory."
        ) from exc
    return directory


def _registry_path() -> Path:
    return home() / "registry.json"


def read_registry() -> dict:
    """The cache registry: ``{"sources": {file: hashes}, "converted": {name: {sha256: entry}}}``.

    Example:
        >>> import os, tempfile
        >>> from unittest import mock
        >>> with mock.patch.dict(os.environ, FCN_KERAS_HOME=tempfile.mkdtemp()):
        ...     sorted(read_registry())
        ['converted', 'sources']
    """
    path = _registry_path()
    if not path.exists():
        return {"sources": {}, "converted": {}}
    try:
        registry = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CacheError(f"The cache registry {path} is unreadable ({exc}); delete it to start afresh") from exc
    registry.setdefault("sources", {})
    registry.setdefault("converted", {})
    return registry


def save_registry(registry: dict) -> None:
    """Writes the registry atomically.

    Example:
        >>> import os, tempfile
        >>> from unittest import mock
        >>> with mock.patch.dict(os.environ, FCN_KERAS_HOME=tempfile.mkdtemp()):
        ...     save_registry({"sources": {"a.caffemodel": {"sha256": "00"}}, "converted": {}})
        ...     read_registry()["sources"]
        {'a.caffemodel': {'sha256': '00'}}
    """
    write_text(_registry_path(), json.dumps(registry, indent=1, sort_keys=True))


def file_hashes(path: Path, algorithms: Iterable[str] = ()) -> dict[str, str]:
    """SHA-256 of ``path`` (the cache's own hash) plus any other ``algorithms``, in one pass.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "x"
        >>> _ = path.write_bytes(b"fcn")
        >>> sorted(file_hashes(path, ["sha1"]))
        ['sha1', 'sha256']
    """
    digests = {name: hashlib.new(name) for name in sorted({"sha256", *algorithms})}
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            for digest in digests.values():
                digest.update(chunk)
    return {name: digest.hexdigest() for name, digest in digests.items()}


def file_stat(path: Path) -> dict:
    """``{"size", "mtime_ns"}`` of ``path``: what tells a cached file has not changed since it was hashed.

    Example:
        >>> import tempfile
        >>> sorted(file_stat(Path(tempfile.mkdtemp())))
        ['mtime_ns', 'size']
    """
    status = path.stat()
    return {"size": status.st_size, "mtime_ns": status.st_mtime_ns}


def recorded_conversion(card: dict) -> dict | None:
    """The registry's record of the conversion of the card's verified download: ``{"file", "sha256", ...}``.

    ``None`` if this cache has verified no download of the card's file, has not
    converted it, or recorded a download whose hash is not the card's published
    checksum (a card changed since).

    Example:
        >>> import os, tempfile
        >>> from unittest import mock
        >>> from fcn_keras.zoo import info
        >>> with mock.patch.dict(os.environ, FCN_KERAS_HOME=tempfile.mkdtemp()):  # an empty cache
        ...     recorded_conversion(info("fcn8s_voc")) is None
        True
    """
    registry = read_registry()
    recorded = registry["sources"].get(card["weights"]["file"])
    if recorded is None:
        return None
    checksum = card["weights"]["checksum"]
    if checksum != "none":
        algorithm, expected = checksum.split(":")
        if recorded.get(algorithm) != expected:
            return None
    return registry["converted"].get(card["name"], {}).get(recorded["sha256"])


def cached_conversion(card: dict) -> Path | None:
    """The converted weights of the card's verified download, if cached and intact.

    Example:
        >>> import os, tempfile
        >>> from unittest import mock
        >>> from fcn_keras.zoo import info
        >>> with mock.patch.dict(os.environ, FCN_KERAS_HOME=tempfile.mkdtemp()):  # an empty cache
        ...     cached_conversion(info("fcn8s_voc")) is None
        True
    """
    entry = recorded_conversion(card)
    if entry is None:
        return None
    converted = home() / "converted" / entry["file"]
    if not converted.exists():
        return None
    # Re-hashing 540 MB costs seconds: done only if the file changed since its hash was recorded.
    if file_stat(converted) == {key: entry.get(key) for key in ("size", "mtime_ns")}:
        return converted
    return converted if file_hashes(converted)["sha256"] == entry["sha256"] else None


def _save_weights(model: keras.Model, path: Path) -> None:
    with atomic_path(path) as tmp:
        model.save_weights(tmp)


def save_conversion(card: dict, model: keras.Model, source: Path, digests: dict) -> Path:
    """Caches ``model``'s weights, converted from the verified download ``source``, and records both hashes.

    Returns the converted file. The first verified download's hashes are kept:
    a file with no published checksum must match them on later uses.

    Example:
        >>> import os, tempfile, fcn_keras
        >>> from unittest import mock
        >>> card = {"name": "tiny", "weights": {"file": "tiny.caffemodel", "checksum": "none"}}
        >>> model = fcn_keras.fcn32s(num_classes=2, backbone="tiny_vgg")
        >>> with mock.patch.dict(os.environ, FCN_KERAS_HOME=tempfile.mkdtemp()):
        ...     path = save_conversion(card, model, Path("tiny.caffemodel"), {"sha256": "ab" * 32})
        ...     path.name, cached_conversion(card) == path
        ('tiny-abababababababab.weights.h5', True)
    """
    name = f"{card['name']}-{digests['sha256'][:16]}.weights.h5"
    converted = home() / "converted" / name
    _save_weights(model, converted)
    registry = read_registry()
    verified = "published checksum" if card["weights"]["checksum"] != "none" else "structure (no published checksum)"
    registry["sources"].setdefault(card["weights"]["file"], {**digests, "verified": verified})
    registry["converted"].setdefault(card["name"], {})[digests["sha256"]] = {
        "file": name, "sha256": file_hashes(converted)["sha256"], "source": str(source), **file_stat(converted)}
    save_registry(registry)
    return converted
