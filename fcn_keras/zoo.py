"""The model zoo: trained FCNs in one call, from the authors' published Caffe weights.

Each entry is a model card, ``zoo/cards/<name>.toml``: architecture, classes,
palette, preprocessing, where the weights come from and how to check them, the
licence, the published metrics with the split they were measured on, and the
command that reproduces the evaluation.

``load(name)`` builds the architecture, then fills it from the cache under
``FCN_KERAS_HOME`` (default ``<Keras cache dir>/fcn_keras``)::

    downloads/<file>.caffemodel          the published weights, as downloaded
    converted/<name>-<sha>.weights.h5    the Keras weights converted from them
    registry.json                        hashes: of each verified download (for
                                         files with no published checksum) and
                                         of each converted weights file

The first load downloads (with a progress bar; to ``<file>.part``, resumed if
interrupted, renamed only when complete), verifies the checksum (refusing and
deleting a mismatch), converts exactly (:func:`fcn_keras.caffe.load_caffe_weights`)
and caches the result; later loads read the converted weights after checking
their hash. Without network access the error names the file, its URL and where
to put it by hand.

Example:
    >>> import fcn_keras
    >>> "fcn8s_voc" in fcn_keras.zoo.list_models()
    True
    >>> fcn_keras.zoo.info("fcn8s_voc")["num_classes"]
    21
    >>> model = fcn_keras.zoo.load("fcn8s_voc")  # doctest: +SKIP
    >>> mask = model.predict(images).argmax(-1)  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import hashlib
import http.client
import json
import os
import re
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from fcn_keras.caffe import CaffeModelError, load_caffe_weights
from fcn_keras.palette import VOC_CLASSES, voc_palette
from fcn_keras.preprocessing import REFERENCE_BGR_MEAN
from fcn_keras.resources import zoo_path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "CardError", "ChecksumError", "DownloadError", "CacheError",
    "list_models", "info", "load", "download", "load_caffe_weights", "home", "validate_card",
    "catalog", "published_metrics",
]


class CardError(ValueError):
    """A model card is missing a key or has a wrong value (the message names file and key)."""


class ChecksumError(ValueError):
    """A weights file's hash differs from the expected one."""


class DownloadError(OSError):
    """Weights could not be downloaded; the message says where to place them by hand."""


class CacheError(OSError):
    """The cache directory cannot be used."""


# ------------------------------------------------------------------------------ cards

_METRIC_KEYS = ("mean_iu", "pixel_accuracy", "mean_accuracy", "fw_iu", "geometric_accuracy")
_CHECKSUM = re.compile(r"^(sha1:[0-9a-f]{40}|sha256:[0-9a-f]{64}|none)$")

# key -> (type, required); nested tables are checked by their own schema.
_CARD_SCHEMA = {
    "name": (str, True), "title": (str, True), "description": (str, False),
    "architecture": (str, True), "backbone": (str, True), "num_classes": (int, True),
    "classes": ((str, list), True), "palette": ((str, list), True), "ignore_label": (int, False),
    "loadable": (bool, True), "not_loadable_reason": (str, False), "heads": (list, False),
    "preprocessing": (dict, True), "weights": (dict, True), "source": (dict, True),
    "license": (dict, True), "metrics": (list, True), "metrics_note": (str, False),
    "evaluation": (dict, True),
}
_TABLE_SCHEMAS = {
    "preprocessing": {"input": (str, True), "mode": (str, True), "bgr_mean": (list, True), "note": (str, False)},
    "weights": {"file": (str, True), "urls": (list, True), "format": (str, True), "checksum": (str, True),
                "checksum_source": (str, True)},
    "source": {"repository": (str, True), "model": (str, True), "paper": (str, True)},
    "license": {"name": (str, True), "url": (str, True), "note": (str, False)},
    "evaluation": {"command": (str, True), "dataset": (str, True), "split": (str, True), "note": (str, False)},
}
_METRIC_SCHEMA = {"dataset": (str, True), "split": (str, True), "source": (str, True), "applies_to": (str, True),
                  "note": (str, False),
                  **{key: ((int, float), False) for key in _METRIC_KEYS}}


def _check_table(table: dict, schema: dict, where: str, prefix: str) -> None:
    for key in table:
        if key not in schema:
            raise CardError(f"{where}: unknown key '{prefix}{key}'; known keys: {sorted(schema)}")
    for key, (kind, required) in schema.items():
        if key not in table:
            if required:
                raise CardError(f"{where}: missing required key '{prefix}{key}'")
            continue
        value = table[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
            raise CardError(f"{where}: key '{prefix}{key}' must be {names}, got {value!r}")


def validate_card(card: dict, where: str = "<card>") -> dict:
    """Checks a model card against the schema; returns it with ``classes`` and ``palette`` resolved.

    ``classes = "voc"`` stands for :data:`fcn_keras.palette.VOC_CLASSES`;
    ``palette = "voc"`` for the VOC colour map with ``num_classes`` entries.
    Every error names ``where`` (the card's file) and the offending key.

    Example:
        >>> card = tomllib.loads(zoo_path("cards", "fcn8s_voc.toml").read_text())
        >>> validate_card(card)["classes"][15]
        'person'
    """
    from fcn_keras.models import HEADS

    _check_table(card, _CARD_SCHEMA, where, "")
    for table, schema in _TABLE_SCHEMAS.items():
        _check_table(card[table], schema, where, f"{table}.")
    for i, metric in enumerate(card["metrics"]):
        if not isinstance(metric, dict):
            raise CardError(f"{where}: metrics[{i}] must be a table, got {metric!r}")
        _check_table(metric, _METRIC_SCHEMA, where, f"metrics[{i}].")
        if not any(key in metric for key in _METRIC_KEYS):
            raise CardError(f"{where}: metrics[{i}] has no metric; give one of {list(_METRIC_KEYS)}")
    if not card["metrics"] and "metrics_note" not in card:
        raise CardError(f"{where}: no metrics: add [[metrics]] or say why in 'metrics_note'")

    card = copy.deepcopy(card)
    num_classes = card["num_classes"]
    if num_classes < 1:
        raise CardError(f"{where}: key 'num_classes' must be >= 1, got {num_classes}")
    if card["classes"] == "voc":
        card["classes"] = list(VOC_CLASSES)
    if not isinstance(card["classes"], list) or len(card["classes"]) != num_classes \
            or not all(isinstance(c, str) for c in card["classes"]):
        raise CardError(f"{where}: key 'classes' must be 'voc' or a list of {num_classes} names (num_classes)")
    if card["palette"] == "voc":
        card["palette"] = voc_palette(num_classes).tolist()
    palette = card["palette"]
    if not isinstance(palette, list) or len(palette) != num_classes or not all(
            isinstance(c, list) and len(c) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in c)
            for c in palette):
        raise CardError(f"{where}: key 'palette' must be 'voc' or {num_classes} [r, g, b] lists of 0-255 ints")

    if card["loadable"]:
        if card["architecture"] not in HEADS:
            raise CardError(f"{where}: key 'architecture' must be one of {sorted(HEADS)} for a loadable card, "
                            f"got {card['architecture']!r}")
        if card["backbone"] != "vgg16":
            raise CardError(f"{where}: key 'backbone': the published Caffe weights are VGG16, got {card['backbone']!r}")
    elif "not_loadable_reason" not in card:
        raise CardError(f"{where}: key 'not_loadable_reason' is required when loadable = false")

    mean = card["preprocessing"]["bgr_mean"]
    if len(mean) != 3 or not all(isinstance(v, (int, float)) for v in mean):
        raise CardError(f"{where}: key 'preprocessing.bgr_mean' must be 3 numbers (B, G, R), got {mean!r}")
    if card["preprocessing"]["mode"] != "fcn":
        raise CardError(f"{where}: key 'preprocessing.mode' must be 'fcn' (BGR minus a mean, 0-255), "
                        f"got {card['preprocessing']['mode']!r}")

    weights = card["weights"]
    if not _CHECKSUM.match(weights["checksum"]):
        raise CardError(f"{where}: key 'weights.checksum' must be 'sha1:<40 hex>', 'sha256:<64 hex>' or 'none', "
                        f"got {weights['checksum']!r}")
    if weights["format"] != "caffemodel":
        raise CardError(f"{where}: key 'weights.format' must be 'caffemodel', got {weights['format']!r}")
    if not weights["urls"]:
        raise CardError(f"{where}: key 'weights.urls' must list at least one URL")
    for url in weights["urls"]:
        if not isinstance(url, str) or not re.match(r"^(https?|file)://", url):
            raise CardError(f"{where}: key 'weights.urls' entries must be http(s):// or file:// URLs, got {url!r}")
        if url.rsplit("/", 1)[-1] != weights["file"]:
            raise CardError(f"{where}: key 'weights.urls': {url!r} does not end in weights.file {weights['file']!r}")
    if Path(where).suffix == ".toml" and Path(where).stem != card["name"]:
        raise CardError(f"{where}: key 'name' is {card['name']!r} but the file is named {Path(where).name!r}")
    return card


def list_models() -> list[str]:
    """Names of the zoo's entries (one card each), sorted.

    Example:
        >>> "fcn32s_voc" in list_models()
        True
    """
    return sorted(path.stem for path in zoo_path("cards").glob("*.toml"))


def info(name: str) -> dict:
    """The model card of ``name`` as a dict (validated; ``classes`` and ``palette`` as lists).

    Raises:
        ValueError: unknown name (the message lists the known ones), or an invalid card.

    Example:
        >>> info("fcn8s_voc")["weights"]["file"]
        'fcn8s-heavy-pascal.caffemodel'
    """
    known = list_models()
    if name not in known:
        raise ValueError(f"Unknown zoo model {name!r}; known models: {known}")
    path = zoo_path("cards", f"{name}.toml")
    try:
        card = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise CardError(f"{path}: not valid TOML: {exc}") from exc
    return validate_card(card, str(path))


def catalog() -> list[dict]:
    """One summary row per zoo entry (for ``fcn-keras zoo list`` and tables).

    Each row: name, title, architecture, num_classes, loadable, checksum
    ("sha1", "sha256" or "none"), and ``mean_iu``/``split`` of the first metric
    measured on these weights (else the first published one), ``None`` if none.

    Example:
        >>> row = next(r for r in catalog() if r["name"] == "fcn8s_voc")
        >>> row["mean_iu"], row["split"], row["checksum"]
        (65.5, 'seg11valid', 'sha1')
    """
    rows = []
    for name in list_models():
        card = info(name)
        metrics = sorted(card["metrics"], key=lambda m: m["applies_to"] != "these weights")
        best = next((m for m in metrics if "mean_iu" in m), None)
        rows.append({
            "name": name, "title": card["title"], "architecture": card["architecture"],
            "num_classes": card["num_classes"], "loadable": card["loadable"],
            "checksum": card["weights"]["checksum"].split(":")[0],
            "mean_iu": best["mean_iu"] if best else None, "split": best["split"] if best else None,
            "metric_applies_to": best["applies_to"] if best else None,
        })
    return rows


def published_metrics(name: str) -> list[dict]:
    """The card's published metrics (mean IU etc. in percent), each with its dataset, split and source.

    Example:
        >>> [(m["split"], m["mean_iu"]) for m in published_metrics("fcn8s_voc") if m["applies_to"] == "these weights"]
        [('seg11valid', 65.5), ('seg12test', 67.2)]
    """
    return info(name)["metrics"]


# ------------------------------------------------------------------------------ cache


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


def _writable(directory: Path) -> Path:
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


def _atomic_write(path: Path, write) -> None:
    """Runs ``write(tmp_path)`` then renames the result over ``path`` (same directory)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}{''.join(path.suffixes[-2:])}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _registry_path() -> Path:
    return home() / "registry.json"


def _registry() -> dict:
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


def _save_registry(registry: dict) -> None:
    _atomic_write(_registry_path(), lambda tmp: tmp.write_text(json.dumps(registry, indent=1, sort_keys=True)))


def _hashes(path: Path, card: dict | None = None) -> dict[str, str]:
    """SHA-256 of ``path`` (the cache's own hash), plus the card checksum's algorithm, in one pass."""
    algorithms = {"sha256"}
    if card is not None and card["weights"]["checksum"] != "none":
        algorithms.add(card["weights"]["checksum"].split(":")[0])
    digests = {name: hashlib.new(name) for name in sorted(algorithms)}
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            for digest in digests.values():
                digest.update(chunk)
    return {name: digest.hexdigest() for name, digest in digests.items()}


# ------------------------------------------------------------------------------ downloads


def _manual_hint(card: dict, dest: Path) -> str:
    file = card["weights"]["file"]
    return (f"Download {file} yourself from {' or '.join(card['weights']['urls'])} and place it at {dest}, "
            f"or pass weights_path='/path/to/{file}' to fcn_keras.zoo.load.")


def _fetch(url: str, dest: Path, progress: bool, timeout: float) -> None:
    """Downloads ``url`` to ``dest`` via ``dest.part``, resuming a previous partial download.

    The file is renamed to ``dest`` only once every byte announced by the server has
    arrived, so an interrupted download is never taken for a complete one.
    keras.utils.get_file is not used: it cannot resume and verifies only SHA-256/MD5,
    while the published FCN checksum is a SHA-1.
    """
    import keras

    part = dest.with_name(dest.name + ".part")
    start = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={start}-"} if start else {})
    with urllib.request.urlopen(request, timeout=timeout) as response:
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
    os.replace(part, dest)


def _download_source(card: dict, progress: bool = True, timeout: float = 20.0) -> Path:
    weights = card["weights"]
    dest = _writable(home() / "downloads") / weights["file"]
    if dest.exists():
        return dest
    errors = []
    for url in weights["urls"]:
        try:
            _fetch(url, dest, progress, timeout)
            return dest
        except (OSError, http.client.HTTPException, ValueError) as exc:
            errors.append(f"{url}: {exc}")
    raise DownloadError(
        f"Could not download {weights['file']} for zoo model {card['name']!r} ({'; '.join(errors)}). "
        + _manual_hint(card, dest)
    )


def _check_source(card: dict, path: Path, digests: dict, cached: bool) -> None:
    """Refuses ``path`` if its hash differs from the card's checksum, or (for a cached
    download of a file with no published checksum) from the hash recorded when it was
    first verified. A refused cached download is deleted; a user's own file is not."""
    checksum = card["weights"]["checksum"]
    expected = actual = None
    if checksum != "none":
        algorithm, expected = checksum.split(":")
        actual = digests[algorithm]
        source = "the published checksum"
    elif cached:
        recorded = _registry()["sources"].get(card["weights"]["file"])
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


def _convert_and_cache(card: dict, fcn, source: Path, digests: dict) -> None:
    """Fills ``fcn`` from the checked download ``source`` and caches the conversion.

    A file that does not fit the architecture is deleted; one that does is
    verified by structure, and its hash is recorded (the first verified download)."""
    try:
        load_caffe_weights(fcn, source)
    except CaffeModelError as exc:
        source.unlink()
        raise CaffeModelError(f"{exc} (the downloaded file was deleted)") from exc
    name = f"{card['name']}-{digests['sha256'][:16]}.weights.h5"
    converted = home() / "converted" / name
    _atomic_write(converted, lambda tmp: fcn.save_weights(tmp))
    registry = _registry()
    verified = "published checksum" if card["weights"]["checksum"] != "none" else "structure (no published checksum)"
    registry["sources"].setdefault(card["weights"]["file"], {**digests, "verified": verified})
    registry["converted"].setdefault(card["name"], {})[digests["sha256"]] = {
        "file": name, "sha256": _hashes(converted)["sha256"], "source": str(source), **_stat(converted)}
    _save_registry(registry)


def _stat(path: Path) -> dict:
    status = path.stat()
    return {"size": status.st_size, "mtime_ns": status.st_mtime_ns}


def download(name: str, progress: bool = True, timeout: float = 20.0) -> Path:
    """Downloads, verifies and converts ``name``'s published weights into the cache.

    Returns the path of the verified ``.caffemodel`` (the converted Keras weights
    are cached beside it, so a later :func:`load` is fast). A file placed by hand
    at the returned path is verified the same way.

    Example:
        >>> download("fcn8s_voc")  # doctest: +SKIP
        PosixPath('/home/me/.keras/fcn_keras/downloads/fcn8s-heavy-pascal.caffemodel')
    """
    card = _loadable(name)
    source = _download_source(card, progress, timeout)
    digests = _hashes(source, card)
    _check_source(card, source, digests, cached=True)
    if _cached_conversion(card) is None:
        _writable(home() / "converted")
        _convert_and_cache(card, _build(card, include_preprocessing=False)[1], source, digests)
    return source


# ------------------------------------------------------------------------------ models


def _loadable(name: str) -> dict:
    card = info(name)
    if not card["loadable"]:
        raise NotImplementedError(f"Zoo model {name!r} cannot be loaded yet: {card['not_loadable_reason']}")
    return card


def _build(card: dict, include_preprocessing: bool):
    """(model, fcn): ``fcn`` holds the weights; ``model`` may wrap it with card-specific preprocessing."""
    import keras

    from fcn_keras.models import Preprocessing, build_fcn

    mean = np.asarray(card["preprocessing"]["bgr_mean"], dtype=np.float64)
    offset = np.asarray(REFERENCE_BGR_MEAN) - mean
    exact_mean = bool(np.all(np.abs(offset) < 0.01))  # PASCAL-Context rounds the same mean to 3 decimals
    wrap = include_preprocessing and not exact_mean
    fcn = build_fcn(
        card["architecture"], num_classes=card["num_classes"],
        include_preprocessing=include_preprocessing and exact_mean, name=f"{card['name']}_fcn" if wrap else card["name"],
    )
    model = fcn
    if wrap:
        # Another dataset mean (NYUDv2): the reference BGR conversion, then shift to this mean.
        inputs = keras.Input((None, None, 3), name="image")
        x = Preprocessing("fcn", name="preprocessing")(inputs)
        x = keras.layers.Rescaling(1.0, offset=offset.tolist(), dtype="float32", name="dataset_mean")(x)
        model = keras.Model(inputs, fcn(x), name=card["name"])
    model.classes = tuple(card["classes"])
    model.palette = np.asarray(card["palette"], dtype=np.uint8)
    model.zoo_name = card["name"]
    return model, fcn


def load(
    name: str,
    weights: bool = True,
    weights_path: str | os.PathLike | None = None,
    include_preprocessing: bool = True,
    verify: bool = True,
    progress: bool = True,
):
    """A zoo model ready for RGB images with values 0-255, with its published weights.

    Args:
        name: a zoo entry (see :func:`list_models`).
        weights: load the published weights (downloaded, verified, converted and
            cached on first use); ``False`` gives the architecture only.
        weights_path: a local ``.caffemodel`` (verified against the card's
            published checksum, if any, and converted at each load) or
            ``.weights.h5`` to use instead of downloading.
        include_preprocessing: build the card's preprocessing (RGB->BGR, mean
            subtraction) into the model; ``False`` expects preprocessed input.
        verify: check ``weights_path`` against the card's published checksum;
            ``False`` accepts your own weights for the architecture (their
            structure is always checked).
        progress: show a progress bar while downloading.

    Returns:
        A ``keras.Model`` giving float32 logits ``(N, H, W, num_classes)``;
        ``model.classes`` and ``model.palette`` (``uint8 (num_classes, 3)``) come
        from the card.

    Example:
        >>> model = load("fcn8s_voc", weights=False)
        >>> model.classes[15], model.output_shape
        ('person', (None, None, None, 21))
    """
    card = _loadable(name)
    converted = source = digests = None
    if weights_path is not None:
        source = Path(weights_path)
        if not source.is_file():
            raise FileNotFoundError(f"weights_path {str(source)!r} does not exist or is not a file")
    elif weights:
        converted = _cached_conversion(card)
        if converted is None:
            source = _download_source(card, progress)
    caffemodel = source is not None and not source.name.endswith(".weights.h5")
    if caffemodel and weights_path is None:
        # Checked before building the 134M-parameter model, so that refusals are quick.
        _writable(home() / "converted")
        digests = _hashes(source, card)
        _check_source(card, source, digests, cached=True)
    elif caffemodel and verify and card["weights"]["checksum"] != "none":
        _check_source(card, source, _hashes(source, card), cached=False)
    model, fcn = _build(card, include_preprocessing)
    if converted is not None:
        fcn.load_weights(converted)  # fast path: the .caffemodel is not needed
    elif digests is not None:
        _convert_and_cache(card, fcn, source, digests)
    elif caffemodel:
        # Your own file: converted at each load (it streams at disk speed), not cached.
        load_caffe_weights(fcn, source)
    elif source is not None:
        try:
            fcn.load_weights(source)
        except Exception as exc:  # keras raises several types for files that do not fit
            raise ValueError(f"weights_path {str(source)!r} does not fit zoo model {name!r}: {exc}") from exc
    return model


def _cached_conversion(card: dict) -> Path | None:
    """The converted weights of the card's verified download, if cached and intact."""
    registry = _registry()
    recorded = registry["sources"].get(card["weights"]["file"])
    entry = registry["converted"].get(card["name"], {}).get(recorded["sha256"]) if recorded else None
    if entry is None:
        return None
    converted = home() / "converted" / entry["file"]
    if not converted.exists():
        return None
    # Re-hashing 540 MB costs seconds: done only if the file changed since its hash was recorded.
    if _stat(converted) == {key: entry.get(key) for key in ("size", "mtime_ns")}:
        return converted
    return converted if _hashes(converted)["sha256"] == entry["sha256"] else None
