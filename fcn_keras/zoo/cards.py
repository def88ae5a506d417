"""Model cards: one TOML file per zoo entry (``zoo/cards/<name>.toml``), its schema and its loading.

A card says what a zoo model is: architecture and backbone, classes and
palette, the preprocessing the published weights expect, where the weights
come from and how to check them, the licence, the published metrics with the
split they were measured on, and the command that reproduces the evaluation.

Example:
    >>> info("fcn8s_voc")["num_classes"]
    21
"""

from __future__ import annotations

import copy
import re
import sys
from pathlib import Path

from fcn_keras.palette import VOC_CLASSES, voc_palette
from fcn_keras.preprocessing import CAFFE_BGR_MEAN, REFERENCE_BGR_MEAN
from fcn_keras.resources import zoo_path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["CardError", "BGR_MEANS", "mean_matches", "validate_card", "list_models", "info", "catalog",
           "published_metrics", "loadable_card", "provenance"]


class CardError(ValueError):
    """A model card is missing a key or has a wrong value (the message names file and key)."""


BGR_MEANS: dict[str, tuple[float, float, float]] = {"fcn": REFERENCE_BGR_MEAN, "caffe": CAFFE_BGR_MEAN}
"""The preprocessing modes of :data:`fcn_keras.preprocessing.MODES` that subtract a BGR mean, with that mean."""


def mean_matches(bgr_mean, mode: str, tolerance: float = 0.01) -> bool:
    """Whether a card's ``bgr_mean`` is ``mode``'s mean (PASCAL-Context rounds the VOC mean to 3 decimals).

    Example:
        >>> mean_matches([104.007, 116.669, 122.679], "fcn"), mean_matches([116.190, 97.203, 92.318], "fcn")
        (True, False)
    """
    return all(abs(a - b) < tolerance for a, b in zip(bgr_mean, BGR_MEANS[mode]))


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
    mode = card["preprocessing"]["mode"]
    if mode not in BGR_MEANS:
        raise CardError(f"{where}: key 'preprocessing.mode' must be a BGR-minus-mean mode a model knows "
                        f"({' or '.join(repr(m) for m in BGR_MEANS)}), got {mode!r}")
    if card["loadable"] and not mean_matches(mean, mode):
        raise CardError(
            f"{where}: key 'preprocessing.bgr_mean' {mean} differs from mode {mode!r}'s mean {list(BGR_MEANS[mode])}: "
            "a model applies only the modes of fcn_keras.preprocessing.MODES, so such a card must be "
            "loadable = false (with not_loadable_reason) until a mode for its mean exists")

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


def loadable_card(name: str) -> dict:
    """The card of ``name``; ``NotImplementedError`` (with the card's reason) if it cannot be loaded yet.

    Example:
        >>> loadable_card("fcn8s_voc")["architecture"]
        'fcn8s'
    """
    card = info(name)
    if not card["loadable"]:
        raise NotImplementedError(f"Zoo model {name!r} cannot be loaded yet: {card['not_loadable_reason']}")
    return card


def provenance(card: dict, weights: str = "published") -> dict:
    """What a zoo model carries about where it comes from (``model.card``): plain JSON values.

    ``name``, ``title``, ``source`` (the weights' first URL), ``file``,
    ``checksum`` as the card gives it (``"sha1:..."``, ``"sha256:..."`` or
    ``"none"``) and, when published, the digest under its algorithm (``"sha1"``
    / ``"sha256"``), ``repository``, ``paper``, ``license``, the published
    ``metrics`` (each with its dataset, split and what it applies to), and
    ``weights``: ``"published"`` (the verified published file), ``"unverified
    file"`` (your own file) or ``"none"`` (architecture only).

    Example:
        >>> card = provenance(info("fcn8s_voc"))
        >>> card["name"], card["sha1"], card["source"]
        ('fcn8s_voc', 'c449ea74dd7d83751d1357d6a8c323fcf4038962', 'http://dl.caffe.berkeleyvision.org/fcn8s-heavy-pascal.caffemodel')
        >>> [(m["split"], m["mean_iu"]) for m in card["metrics"] if m["applies_to"] == "these weights"][0]
        ('seg11valid', 65.5)
    """
    if weights not in ("published", "unverified file", "none"):
        raise ValueError(f"weights must be 'published', 'unverified file' or 'none', got {weights!r}")
    checksum = card["weights"]["checksum"]
    digest = {} if checksum == "none" else dict([checksum.split(":")])
    return {
        "name": card["name"], "title": card["title"], "source": card["weights"]["urls"][0],
        "file": card["weights"]["file"], "checksum": checksum, **digest,
        "repository": card["source"]["repository"], "paper": card["source"]["paper"],
        "license": card["license"]["name"], "metrics": copy.deepcopy(card["metrics"]), "weights": weights,
    }
