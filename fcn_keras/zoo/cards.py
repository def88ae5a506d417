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
from fcn_keras.preprocessing import MODES
from fcn_keras.resources import zoo_path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["CardError", "BGR_MEANS", "mean_matches", "validate_card", "list_models", "info", "catalog",
           "published_metrics", "loadable_card", "provenance", "has_weights"]


class CardError(ValueError):
    """A model card is missing a key or has a wrong value (the message names file and key)."""


BGR_MEANS: dict[str, tuple[float, float, float]] = {
    name: mode.bgr_mean for name, mode in MODES.items() if mode.bgr_mean is not None}
"""The preprocessing modes of :data:`fcn_keras.preprocessing.MODES` that subtract a BGR mean, with that mean."""


def mean_matches(bgr_mean, mode: str) -> bool:
    """Whether a card's ``bgr_mean`` is exactly ``mode``'s mean (the authors' layer files, to the digit).

    Example:
        >>> mean_matches([104.007, 116.669, 122.679], "pascalcontext"), mean_matches([104.007, 116.669, 122.679], "fcn")
        (True, False)
    """
    return [float(v) for v in bgr_mean] == list(BGR_MEANS[mode])


_METRIC_KEYS = ("mean_iu", "pixel_accuracy", "mean_accuracy", "fw_iu", "geometric_accuracy")
_CHECKSUM = re.compile(r"^(sha1:[0-9a-f]{40}|sha256:[0-9a-f]{64}|none)$")

# key -> (type, required); nested tables are checked by their own schema.
_CARD_SCHEMA = {
    "name": (str, True), "title": (str, True), "description": (str, False),
    "architecture": (str, True), "backbone": (str, True), "num_classes": (int, True),
    "classes": ((str, list), True), "palette": ((str, list), True), "ignore_label": (int, False),
    "loadable": (bool, True), "not_loadable_reason": (str, False), "heads": (list, False),
    "options": (dict, False),
    "preprocessing": (dict, True), "weights": (dict, True), "source": (dict, True),
    "license": (dict, True), "metrics": (list, True), "metrics_note": (str, False),
    "evaluation": (dict, False),
}
_TABLE_SCHEMAS = {
    "preprocessing": {"input": (str, True), "mode": (str, True), "bgr_mean": (list, False), "note": (str, False)},
    "weights": {"format": (str, True), "file": (str, False), "urls": (list, False), "checksum": (str, False),
                "checksum_source": (str, False), "note": (str, False)},
    "source": {"repository": (str, True), "model": (str, True), "paper": (str, True)},
    "license": {"name": (str, True), "url": (str, True), "note": (str, False)},
    "evaluation": {"command": (str, True), "dataset": (str, True), "split": (str, True), "note": (str, False)},
}
_WEIGHT_FORMATS = ("caffemodel", "none")
# weights.format -> the [weights] keys it needs; "none" (no published weights) takes none of the file's keys.
_WEIGHTS_KEYS = {"caffemodel": ("file", "checksum", "checksum_source"), "none": ("note",)}
# Builder arguments the card's own keys give (fcn_keras.zoo.loading.build); [options] may not repeat them.
_CARD_ARGUMENTS = {"name", "num_classes", "class_names", "palette", "ignore_label", "preprocessing",
                   "include_preprocessing", "card", "backbone", "weights"}
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

    ``classes = "voc"`` stands for :data:`fcn_keras.palette.VOC_CLASSES`
    (``"imagenet"``, the 1000 ILSVRC classes, stays a name: allowed on cards
    that are not loadable); ``palette = "voc"`` for the VOC colour map with
    ``num_classes`` entries. Only a loadable card must name an architecture of
    :data:`fcn_keras.models.architectures.ARCHITECTURES` and a preprocessing
    mode of :data:`fcn_keras.preprocessing.MODES` (with its exact BGR mean),
    so cards may describe what this version cannot build yet.
    ``weights.format`` is ``"caffemodel"`` (``file``, ``checksum``,
    ``checksum_source``; ``urls`` to download from, required when loadable)
    or ``"none"`` (the authors published none; ``note`` says so).
    Every error names ``where`` (the card's file) and the offending key.

    Example:
        >>> card = tomllib.loads(zoo_path("cards", "fcn8s_voc.toml").read_text())
        >>> validate_card(card)["classes"][15]
        'person'
    """
    from fcn_keras.models.architectures import ARCHITECTURES

    _check_table(card, _CARD_SCHEMA, where, "")
    for table, schema in _TABLE_SCHEMAS.items():
        if table in card:
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
    if card["classes"] == "imagenet":
        # The 1000 ILSVRC-2012 classes: their names are not shipped, so no model can be built with them.
        if card["loadable"] or num_classes != 1000:
            raise CardError(f"{where}: key 'classes' = 'imagenet' stands for the 1000 ILSVRC classes, whose names "
                            "fcn_keras does not ship: only a card with num_classes = 1000 and loadable = false "
                            "may use it")
    elif not isinstance(card["classes"], list) or len(card["classes"]) != num_classes \
            or not all(isinstance(c, str) for c in card["classes"]):
        raise CardError(f"{where}: key 'classes' must be 'voc' or a list of {num_classes} names (num_classes)")
    if card["palette"] == "voc":
        card["palette"] = voc_palette(num_classes).tolist()
    palette = card["palette"]
    if not isinstance(palette, list) or len(palette) != num_classes or not all(
            isinstance(c, list) and len(c) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in c)
            for c in palette):
        raise CardError(f"{where}: key 'palette' must be 'voc' or {num_classes} [r, g, b] lists of 0-255 ints")

    # Cards may describe architectures this version does not build (yet): only a loadable
    # card must name a registered architecture and a preprocessing mode a model applies.
    if card["loadable"]:
        if card["architecture"] not in ARCHITECTURES:
            raise CardError(f"{where}: key 'architecture' must be one of {sorted(ARCHITECTURES)} for a loadable "
                            f"card (fcn_keras.models.architectures.ARCHITECTURES), got {card['architecture']!r}")
    elif "not_loadable_reason" not in card:
        raise CardError(f"{where}: key 'not_loadable_reason' is required when loadable = false")
    clashes = sorted(set(card.get("options", {})) & _CARD_ARGUMENTS)
    if clashes:
        raise CardError(f"{where}: keys {['options.' + k for k in clashes]}: the card's own keys give these "
                        "builder arguments")
    _check_preprocessing(card, where)
    _check_weights(card, where)
    if Path(where).suffix == ".toml" and Path(where).stem != card["name"]:
        raise CardError(f"{where}: key 'name' is {card['name']!r} but the file is named {Path(where).name!r}")
    return card


def _check_preprocessing(card: dict, where: str) -> None:
    preprocessing = card["preprocessing"]
    mode, mean = preprocessing["mode"], preprocessing.get("bgr_mean")
    if mean is not None and (len(mean) != 3 or not all(isinstance(v, (int, float)) for v in mean)):
        raise CardError(f"{where}: key 'preprocessing.bgr_mean' must be 3 numbers (B, G, R), got {mean!r}")
    if not card["loadable"]:
        return
    if mode not in MODES:
        raise CardError(f"{where}: key 'preprocessing.mode' must be a mode of fcn_keras.preprocessing.MODES "
                        f"({', '.join(repr(m) for m in MODES)}), got {mode!r}")
    if mode in BGR_MEANS and mean is None:
        raise CardError(f"{where}: key 'preprocessing.bgr_mean' is required: mode {mode!r} subtracts "
                        f"{list(BGR_MEANS[mode])}; state the mean the weights were trained with")
    if mode not in BGR_MEANS and mean is not None:
        raise CardError(f"{where}: key 'preprocessing.bgr_mean' given, but mode {mode!r} subtracts no BGR mean")
    if mean is not None and not mean_matches(mean, mode):
        raise CardError(
            f"{where}: key 'preprocessing.bgr_mean' {mean} differs from mode {mode!r}'s mean {list(BGR_MEANS[mode])}: "
            "a model applies exactly the modes of fcn_keras.preprocessing.MODES: name the mode with this mean, "
            "or add one for it")


def _check_weights(card: dict, where: str) -> None:
    weights = card["weights"]
    form = weights["format"]
    if form not in _WEIGHT_FORMATS:
        raise CardError(f"{where}: key 'weights.format' must be one of {list(_WEIGHT_FORMATS)}, got {form!r}")
    needed = _WEIGHTS_KEYS[form]
    for key in needed:
        if key not in weights:
            raise CardError(f"{where}: missing required key 'weights.{key}' (weights.format = {form!r})")
    if form == "none":
        given = [key for key in (*_WEIGHTS_KEYS["caffemodel"], "urls") if key in weights]
        if given:
            raise CardError(f"{where}: keys {['weights.' + k for k in given]} describe a file, but weights.format "
                            "is 'none' (no published weights)")
        return
    if "evaluation" not in card:
        raise CardError(f"{where}: missing required key 'evaluation' (published weights are evaluated somewhere)")
    if not _CHECKSUM.match(weights["checksum"]):
        raise CardError(f"{where}: key 'weights.checksum' must be 'sha1:<40 hex>', 'sha256:<64 hex>' or 'none', "
                        f"got {weights['checksum']!r}")
    if card["loadable"] and not weights.get("urls"):
        raise CardError(f"{where}: key 'weights.urls' must list at least one URL (for downloading)")
    if "urls" not in weights and "note" not in weights:
        raise CardError(f"{where}: key 'weights.note' must say where the file is published when there are no urls")
    for url in weights.get("urls", []):
        if not isinstance(url, str) or not re.match(r"^(https?|file)://", url):
            raise CardError(f"{where}: key 'weights.urls' entries must be http(s):// or file:// URLs, got {url!r}")
        if url.rsplit("/", 1)[-1] != weights["file"]:
            raise CardError(f"{where}: key 'weights.urls': {url!r} does not end in weights.file {weights['file']!r}")


def has_weights(card: dict) -> bool:
    """Whether the card's authors published weights (``weights.format`` is not ``"none"``).

    Example:
        >>> has_weights(info("fcn8s_voc"))
        True
    """
    return card["weights"]["format"] != "none"


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

    Each row: name, title, architecture, num_classes, loadable, weights (the
    format: ``"caffemodel"``, or ``"none"`` when no weights are published),
    checksum (``"sha1"``, ``"sha256"`` or ``"none"``), and ``mean_iu``/``split``
    of the first metric measured on these weights (else the first published
    one), ``None`` if none.

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
            "weights": card["weights"]["format"],
            "checksum": card["weights"].get("checksum", "none").split(":")[0],
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

    ``name``, ``title``, ``source`` (the weights' first URL; ``None`` for a
    card without published weights), ``file`` (likewise),
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
    published = card["weights"]
    checksum = published.get("checksum", "none")
    digest = {} if checksum == "none" else dict([checksum.split(":")])
    return {
        "name": card["name"], "title": card["title"], "source": published["urls"][0] if "urls" in published else None,
        "file": published.get("file"), "checksum": checksum, **digest,
        "repository": card["source"]["repository"], "paper": card["source"]["paper"],
        "license": card["license"]["name"], "metrics": copy.deepcopy(card["metrics"]), "weights": weights,
    }
