"""The bottom layer for files: atomic writes with plain file modes, and image discovery.

Everything others read (datasets, exports, checkpoints, caches, pictures) is
written through :func:`atomic_path` or :func:`atomic_directory`: readers — a TF
Serving process, an app, another worker — never see a half-written file, and
what appears gets the modes a plain ``open(path, "w")`` / ``mkdir`` would give
under the process umask (0644 files and 0755 directories with the usual 022),
not the 0600/0700 of :mod:`tempfile`. A server running as another user can
read an export.

Nothing here imports TensorFlow or Keras; nothing in fcn_keras is imported.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Iterator, Sequence

IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
"""File endings taken as images by :func:`find_images` (case-insensitive)."""

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask (read by setting and restoring it, the only portable way).

    Example:
        >>> 0 <= current_umask() <= 0o777
        True
    """
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def plain_modes(path: str | os.PathLike) -> None:
    """Gives ``path`` (and, for a directory, everything below it) the modes of a plain write.

    Files get ``0o666 & ~umask`` (plus the execute bits they already had, masked
    likewise), directories ``0o777 & ~umask``; links are left alone.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())  # created 0700
        >>> plain_modes(d)
        >>> oct(d.stat().st_mode & 0o777) == oct(0o777 & ~current_umask())
        True
    """
    umask = current_umask()
    path = Path(path)

    def fix(p: Path) -> None:
        if p.is_symlink():
            return
        if p.is_dir():
            os.chmod(p, 0o777 & ~umask)
        else:
            executable = p.stat().st_mode & 0o111
            os.chmod(p, (0o666 | executable) & ~umask)

    fix(path)
    if path.is_dir() and not path.is_symlink():
        for root, dirs, files in os.walk(path):
            for name in dirs + files:
                fix(Path(root) / name)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary file path next to ``path``; renames it to ``path`` when the block succeeds.

    The parent directory is created if needed. The temporary name keeps the
    suffixes, so writers that dispatch on them (PIL, ``model.save``,
    ``model.save_weights``) work. On an
    error the temporary file is removed and ``path`` is left as it was.

    Example:
        >>> import tempfile, pathlib
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "labels.txt"
        >>> with atomic_path(target) as tmp:
        ...     _ = tmp.write_text("background\\n")
        >>> target.read_text(), oct(target.stat().st_mode & 0o777) == oct(0o666 & ~current_umask())
        ('background\\n', True)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # All the name's suffixes: writers that check the ending (Keras' ".weights.h5") accept it.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + "".join(path.suffixes), dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        plain_modes(tmp)
        os.replace(tmp, path)
    except BaseException:
        _remove(Path(tmp))
        raise


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, *, replace: bool = False) -> Iterator[Path]:
    """Yields a temporary directory next to ``path``; renames it to ``path`` when the block succeeds.

    What the block wrote gets plain modes (:func:`plain_modes`) before the
    rename. An existing ``path`` raises ``FileExistsError`` unless
    ``replace=True``, which swaps the new directory in and then removes the old
    one (a reader sees the old tree or the new one, never a mix).

    Example:
        >>> import tempfile, pathlib
        >>> version = pathlib.Path(tempfile.mkdtemp()) / "model" / "1"
        >>> with atomic_directory(version) as tmp:
        ...     _ = (tmp / "saved_model.pb").write_bytes(b"...")
        >>> sorted(p.name for p in version.iterdir())
        ['saved_model.pb']
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and not replace:
        raise FileExistsError(f"{path} exists already")
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        plain_modes(tmp)
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / path.name)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Writes ``text`` (UTF-8) to ``path`` atomically; returns the path.

    Example:
        >>> import tempfile, pathlib
        >>> write_text(pathlib.Path(tempfile.mkdtemp()) / "a.json", "{}").read_text()
        '{}'
    """
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_bytes(path: str | os.PathLike, content: bytes) -> Path:
    """Writes ``content`` to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(content)
    return Path(path)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def find_images(inputs: Sequence[str | os.PathLike], *, unique_stems: bool = False) -> list[Path]:
    """Image files named by ``inputs`` (files, directories or glob patterns), in order, without repeats.

    A directory contributes its image files (:data:`IMAGE_SUFFIXES`), sorted; a
    pattern its matching image files. An input that does not exist, a directory
    or pattern without images, or (with ``unique_stems``) two files whose
    outputs would share a name raise ``ValueError`` naming the input.

    Example:
        >>> find_images(["/nonexistent/photo.jpg"])
        Traceback (most recent call last):
        ...
        ValueError: input /nonexistent/photo.jpg does not exist
    """
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise ValueError(f"directory {item} has no images ({', '.join(IMAGE_SUFFIXES)})")
        elif path.is_file():
            files = [path]
        elif glob.has_magic(str(item)):
            files = sorted(Path(p) for p in glob.glob(str(item), recursive=True)
                           if Path(p).is_file() and Path(p).suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise ValueError(f"no image matches the pattern {item}")
        else:
            raise ValueError(f"input {item} does not exist")
        found += [f for f in files if f not in found]
    if unique_stems:
        stems: dict[str, Path] = {}
        for f in found:
            if f.stem in stems:
                raise ValueError(f"inputs {stems[f.stem]} and {f} would write the same outputs ({f.stem}_*)")
            stems[f.stem] = f
    return found


def prepare_output_dir(out: str | os.PathLike, overwrite: bool, remove: Sequence[str] = ()) -> Path:
    """Creates the output directory ``out``; an existing non-empty one is refused unless ``overwrite``.

    With ``overwrite`` the entries of ``out`` named in ``remove`` (e.g. the
    demo's artefacts) are deleted first; everything else is left alone.

    Example:
        >>> import tempfile, pathlib
        >>> out = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (out / "old.png").write_bytes(b""), (out / "notes.txt").write_text("mine")
        >>> prepare_output_dir(out, overwrite=False)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        FileExistsError: output directory ... already exists and is not empty; pass --overwrite to replace it
        >>> sorted(p.name for p in prepare_output_dir(out, overwrite=True, remove=["old.png"]).iterdir())
        ['notes.txt']
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"output {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"output directory {out} already exists and is not empty; pass --overwrite to replace it")
        for name in remove:
            _remove(out / name)
    out.mkdir(parents=True, exist_ok=True)
    return out
