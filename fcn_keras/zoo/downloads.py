"""Downloads of published weights: progress, a resumable ``.part`` file, and the checksum check.

A download goes to ``<file>.part`` (resumed with an HTTP ``Range`` request if a
previous attempt was interrupted) and is published under its name through
:func:`fcn_keras.files.atomic_path` only once every byte the server announced
has arrived, so an interrupted download is never taken for a complete one.
``keras.utils.get_file`` is not used: it cannot resume and verifies only
SHA-256/MD5, while the published FCN checksum is a SHA-1.

Example:
    >>> from fcn_keras.zoo import info
    >>> "place it at" in manual_hint(info("fcn8s_voc"), Path("/cache/downloads/fcn8s-heavy-pascal.caffemodel"))
    True
"""

from __future__ import annotations

import http.client
import os
import urllib.request
from pathlib import Path

from fcn_keras.files import atomic_path
from fcn_keras.zoo.cache import ensure_writable, file_hashes, home, read_registry

__all__ = ["DownloadError", "ChecksumError", "manual_hint", "fetch", "download_source", "card_hashes", "check_source"]


class DownloadError(OSError):
    """Weights could not be downloaded; the message says where to place them by hand."""


class ChecksumError(ValueError):
    """A weights file's hash differs from the expected one."""


def manual_hint(card: dict, dest: Path) -> str:
    """The sentence that says where to download ``card``'s weights from and where to put them by hand.

    Example:
        >>> from fcn_keras.zoo import info
        >>> manual_hint(info("fcn8s_voc"), Path("/c/fcn8s-heavy-pascal.caffemodel")).split(" from ")[0]
        'Download fcn8s-heavy-pascal.caffemodel yourself'
    """
    file = card["weights"]["file"]
    return (f"Download {file} yourself from {' or '.join(card['weights']['urls'])} and place it at {dest}, "
            f"or pass weights_path='/path/to/{file}' to fcn_keras.zoo.load.")


def fetch(url: str, dest: Path, progress: bool = True, timeout: float = 20.0) -> Path:
    """Downloads ``url`` to ``dest`` via ``dest.part``, resuming a previous partial download.

    ``http(s)://`` and ``file://`` URLs work. Returns ``dest``.

    Example:
        >>> import tempfile
        >>> directory = Path(tempfile.mkdtemp())
        >>> _ = (directory / "src.bin").write_bytes(b"weights")
        >>> fetch((directory / "src.bin").as_uri(), directory / "copy.bin", progress=False).read_bytes()
        b'weights'
    """
    import keras

    part = dest.with_name(dest.name + ".part")
    start = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={start}-"} if start else {})
    # A fresh opener reads the proxy settings of now: urlopen's global one keeps those of the process's first
    # download (Keras' get_file makes it), so a proxy set or cleared since would be ignored.
    with urllib.request.build_opener().open(request, timeout=timeout) as response:
        if start and getattr(response, "status", None) != 206:
            start = 0  # the server ignored the range: start over
        elif start and not response.headers.get("Content-Range", "").startswith(f"bytes {start}-"):
            part.unlink()
            raise DownloadError(f"{url}: the server resumed at the wrong offset "
                                f"({response.headers.get('Content-Range')!r} for byte {start}); the partial file "
                                "was deleted and the next attempt starts over")
        length = response.headers.get("Content-Length")
        total = start + int(length) if length is not None else None
        bar = keras.utils.Progbar(total, unit_name="B") if progress else None
        done = start
        with open(part, "ab" if start else "wb") as f:
            try:
                while chunk := response.read(1 << 20):
                    f.write(chunk)
                    done += len(chunk)
                    if bar is not None:
                        bar.update(done)
            except http.client.IncompleteRead as exc:
                f.write(exc.partial)
                done += len(exc.partial)
    if total is not None and done != total:
        raise DownloadError(f"{url}: the connection closed after {done} of {total} bytes; "
                            f"the partial file {part} is kept and the next attempt resumes it")
    # The .part file must keep its name across attempts (it is what a retry resumes), so it
    # cannot be atomic_path's temporary file; complete, it becomes that file and is published.
    with atomic_path(dest) as tmp:
        os.replace(part, tmp)
    return dest


def download_source(card: dict, progress: bool = True, timeout: float = 20.0) -> Path:
    """``card``'s weights file in the cache's ``downloads/``, fetched from its first URL that works.

    A file already there (downloaded before, or placed by hand) is returned as
    it is: :func:`check_source` verifies it. ``DownloadError`` says where to
    put the file by hand.

    Example:
        >>> from fcn_keras.zoo import info
        >>> download_source(info("fcn8s_voc"))  # doctest: +SKIP
        PosixPath('/home/me/.keras/fcn_keras/downloads/fcn8s-heavy-pascal.caffemodel')
    """
    weights = card["weights"]
    dest = ensure_writable(home() / "downloads") / weights["file"]
    if dest.exists():
        return dest
    errors = []
    for url in weights["urls"]:
        try:
            return fetch(url, dest, progress, timeout)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            errors.append(f"{url}: {exc}")
    raise DownloadError(
        f"Could not download {weights['file']} for zoo model {card['name']!r} ({'; '.join(errors)}). "
        + manual_hint(card, dest)
    )


def card_hashes(path: Path, card: dict) -> dict[str, str]:
    """The hashes of ``path`` that checking it against ``card`` needs (SHA-256 and the checksum's algorithm).

    Example:
        >>> import tempfile
        >>> from fcn_keras.zoo import info
        >>> path = Path(tempfile.mkdtemp()) / "x.caffemodel"
        >>> _ = path.write_bytes(b"")
        >>> sorted(card_hashes(path, info("fcn8s_voc")))  # its card publishes a SHA-1
        ['sha1', 'sha256']
    """
    checksum = card["weights"]["checksum"]
    return file_hashes(path, [] if checksum == "none" else [checksum.split(":")[0]])


def check_source(card: dict, path: Path, digests: dict, cached: bool) -> None:
    """Refuses ``path`` if its hash differs from the card's checksum, or (for a cached download of a
    file with no published checksum) from the hash recorded when it was first verified.

    A refused cached download is deleted; a user's own file (``cached=False``) is not.

    Example:
        >>> import tempfile
        >>> from fcn_keras.zoo import info
        >>> path = Path(tempfile.mkdtemp()) / "mine.caffemodel"
        >>> _ = path.write_bytes(b"not the published file")
        >>> check_source(info("fcn8s_voc"), path, card_hashes(path, info("fcn8s_voc")), cached=False)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        fcn_keras.zoo.downloads.ChecksumError: ...
    """
    checksum = card["weights"]["checksum"]
    expected = actual = None
    if checksum != "none":
        algorithm, expected = checksum.split(":")
        actual = digests[algorithm]
        source = "the published checksum"
    elif cached:
        recorded = read_registry()["sources"].get(card["weights"]["file"])
        if recorded is not None:
            algorithm, expected, actual = "sha256", recorded["sha256"], digests["sha256"]
            source = "the hash recorded at its first verified download"
    if expected is not None and actual != expected:
        if cached:
            path.unlink()
        raise ChecksumError(
            f"{path}: {algorithm} is {actual}, expected {expected} ({source}) for zoo model {card['name']!r}. "
            + ("The file was deleted; load again to download it afresh." if cached else
               "Refusing a file that is not the published one (pass verify=False to use your own weights).")
        )
