"""Zoo models: the card's architecture built, then filled from the cache, a download or your own file.

The first :func:`load` downloads (:mod:`fcn_keras.zoo.downloads`), verifies the
checksum (refusing and deleting a mismatch), converts exactly
(:func:`fcn_keras.caffe.load_caffe_weights`) and caches the result
(:mod:`fcn_keras.zoo.cache`); later loads read the converted weights after
checking their hash. A local ``weights_path`` is verified too: a ``.caffemodel``
against the card's published checksum, a ``.weights.h5`` against the
conversions this cache recorded, and either by its layers.

Example:
    >>> model = load("fcn8s_voc", weights=False)
    >>> model.output_shape
    (None, None, None, 21)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from fcn_keras.caffe import CaffeModelError, load_caffe_weights
from fcn_keras.zoo.cache import (cached_conversion, ensure_writable, file_hashes, home, recorded_conversion,
                                 save_conversion)
from fcn_keras.zoo.cards import has_weights, loadable_card, provenance
from fcn_keras.zoo.downloads import ChecksumError, card_hashes, check_source, download_source
from fcn_keras.zoo.keras_weights import WeightsMismatchError, load_weights_by_name

if TYPE_CHECKING:
    from fcn_keras.models import SegmentationModel

__all__ = ["build", "load", "download", "check_converted"]


def build(card: dict, include_preprocessing: bool = True, weights: str = "published") -> SegmentationModel:
    """The card's architecture without weights: a :class:`~fcn_keras.models.SegmentationModel` that knows what it is.

    The model is ``fcn_keras.models.architectures.build(card["architecture"], ...)``
    with the card's ``[options]`` as further builder arguments. Its class names,
    palette, ignore label and preprocessing mode come from the card, and
    ``model.card`` holds the card's provenance
    (:func:`~fcn_keras.zoo.cards.provenance`, with ``weights`` saying where the
    weights will come from). The card's ``backbone`` is passed to builders that
    take one (the FCNs) and checked against the model of those that do not.

    Example:
        >>> from fcn_keras.zoo import info
        >>> model = build(info("fcn32s_voc"), weights="none")
        >>> model.name, model.class_names[15], model.input_preprocessing, model.card["weights"]
        ('fcn32s_voc', 'person', None, 'none')
    """
    import inspect

    from fcn_keras.models.architectures import ARCHITECTURES
    from fcn_keras.models.architectures import build as build_architecture

    arguments = dict(
        name=card["name"], class_names=card["classes"], palette=card["palette"],
        ignore_label=card.get("ignore_label", 255), preprocessing=card["preprocessing"]["mode"],
        include_preprocessing=include_preprocessing, card=provenance(card, weights), **card.get("options", {}),
    )
    builder = ARCHITECTURES.get(card["architecture"])
    takes_backbone = builder is not None and "backbone" in inspect.signature(builder).parameters
    if takes_backbone:
        arguments["backbone"] = card["backbone"]
    model = build_architecture(card["architecture"], **arguments)
    if model.backbone != card["backbone"]:
        raise ValueError(f"zoo model {card['name']!r}: its card says backbone {card['backbone']!r}, but "
                         f"architecture {card['architecture']!r} builds {model.backbone!r}")
    return model


def _refuse_no_weights(card: dict) -> None:
    if not has_weights(card):
        raise ValueError(f"zoo model {card['name']!r} has no published weights ({card['weights']['note']}); "
                         f"load({card['name']!r}, weights=False) builds the architecture, or pass weights_path=")


def _convert_and_cache(card: dict, model: SegmentationModel, source: Path, digests: dict) -> None:
    """Fills ``model`` from the checked download ``source`` and caches the conversion.

    A file that does not fit the architecture is deleted; one that does is
    verified by structure, and its hash is recorded (the first verified download)."""
    try:
        load_caffe_weights(model, source)
    except CaffeModelError as exc:
        source.unlink()
        raise CaffeModelError(f"{exc} (the downloaded file was deleted)") from exc
    save_conversion(card, model, source, digests)


def download(name: str, progress: bool = True, timeout: float = 20.0) -> Path:
    """Downloads, verifies and converts ``name``'s published weights into the cache.

    Returns the path of the verified ``.caffemodel`` (the converted Keras weights
    are cached beside it, so a later :func:`load` is fast). A file placed by hand
    at the returned path is verified the same way.

    Example:
        >>> download("fcn8s_voc")  # doctest: +SKIP
        PosixPath('/home/me/.keras/fcn_keras/downloads/fcn8s-heavy-pascal.caffemodel')
    """
    card = loadable_card(name)
    _refuse_no_weights(card)
    source = download_source(card, progress, timeout)
    digests = card_hashes(source, card)
    check_source(card, source, digests, cached=True)
    if cached_conversion(card) is None:
        ensure_writable(home() / "converted")
        _convert_and_cache(card, build(card, include_preprocessing=False), source, digests)
    return source


def check_converted(card: dict, path: Path) -> None:
    """Refuses a ``.weights.h5`` that is not this cache's conversion of the card's verified download.

    Keras weights are never published upstream, so the only provenance a
    ``.weights.h5`` can have is the conversion this cache made from a download
    it verified: the SHA-256 the registry recorded for it
    (:func:`~fcn_keras.zoo.cache.recorded_conversion`). Any other file (a copy
    from another machine, your own fine-tuning) raises
    :class:`~fcn_keras.zoo.ChecksumError` naming the file.

    Example:
        >>> import os, tempfile
        >>> from unittest import mock
        >>> from fcn_keras.zoo import info
        >>> path = Path(tempfile.mkdtemp()) / "mine.weights.h5"
        >>> _ = path.write_bytes(b"fine-tuned")
        >>> with mock.patch.dict(os.environ, FCN_KERAS_HOME=tempfile.mkdtemp()):  # doctest: +ELLIPSIS
        ...     check_converted(info("fcn8s_voc"), path)
        Traceback (most recent call last):
        ...
        fcn_keras.zoo.downloads.ChecksumError: ...mine.weights.h5: sha256 is ..., but this cache (...) records none as ...
    """
    entry = recorded_conversion(card)
    actual = file_hashes(path)["sha256"]
    if entry is not None and actual == entry["sha256"]:
        return
    recorded = "records none" if entry is None else f"records {entry['sha256']} (converted/{entry['file']})"
    file = card["weights"]["file"]
    raise ChecksumError(
        f"{path}: sha256 is {actual}, but this cache ({home()}) {recorded} as the conversion of "
        f"zoo model {card['name']!r}'s verified {file}: a .weights.h5 is verified only as that conversion. "
        f"Pass the .caffemodel instead (weights_path='/path/to/{file}', verified against the card), or pass "
        "verify=False to load your own weights (their layers are still checked; model.card['weights'] is then "
        "'unverified file').")


def load(
    name: str,
    weights: bool = True,
    weights_path: str | os.PathLike | None = None,
    include_preprocessing: bool = True,
    verify: bool = True,
    progress: bool = True,
) -> SegmentationModel:
    """A zoo model ready for RGB images with values 0-255, with its published weights.

    Args:
        name: a zoo entry (see :func:`~fcn_keras.zoo.list_models`).
        weights: load the published weights (downloaded, verified, converted and
            cached on first use); ``False`` gives the architecture only.
        weights_path: a local file to use instead of downloading: a
            ``.caffemodel`` (converted at each load, not cached) or a Keras
            ``.weights.h5`` (loaded layer by layer name). Its layers must be
            exactly the architecture's (names and shapes; the error names the
            file and the first layer that differs), whatever ``verify`` says.
        include_preprocessing: build the card's preprocessing (RGB->BGR, mean
            subtraction) into the model; ``False`` expects preprocessed input.
        verify: check where ``weights_path`` comes from: a ``.caffemodel``
            against the card's published checksum (if it has one), a
            ``.weights.h5`` against the conversion this cache recorded
            (:func:`check_converted`); a mismatch raises
            :class:`~fcn_keras.zoo.ChecksumError` naming the file. ``False``
            loads your own weights for the architecture (fine-tuned ones, say);
            ``model.card["weights"]`` then says ``"unverified file"``.
        progress: show a progress bar while downloading.

    Returns:
        The card's architecture (an :class:`~fcn_keras.models.FCN` for the FCN
        cards), a :class:`~fcn_keras.models.SegmentationModel` giving float32
        logits ``(N, H, W, num_classes)``. ``model.class_names``, ``model.palette`` (``uint8
        (num_classes, 3)``), ``model.ignore_label`` and ``model.preprocessing``
        come from the card, ``model.card`` is its provenance; all of it stays
        with the model through ``model.save`` and ``keras.models.load_model``.

    Example:
        >>> model = load("fcn8s_voc", weights=False)
        >>> model.class_names[15], model.output_shape, model.card["name"]
        ('person', (None, None, None, 21), 'fcn8s_voc')
        >>> load("fcn8s_voc", weights_path="mine.weights.h5", verify=False)  # doctest: +SKIP
    """
    card = loadable_card(name)
    converted = source = digests = None
    keras_file = False
    if weights_path is not None:
        source = Path(weights_path)
        if not source.is_file():
            raise FileNotFoundError(f"weights_path {str(source)!r} does not exist or is not a file")
        keras_file = source.name.endswith(".weights.h5")
        if verify and not has_weights(card):
            raise ChecksumError(f"{source}: zoo model {name!r} has no published weights to verify a file against "
                                f"({card['weights']['note']}); pass verify=False to load your own weights")
    elif weights:
        _refuse_no_weights(card)
        converted = cached_conversion(card)
        if converted is None:
            source = download_source(card, progress)
    # Provenance is checked before building the 134M-parameter model, so that refusals are quick.
    if weights_path is None and source is not None:
        ensure_writable(home() / "converted")
        digests = card_hashes(source, card)
        check_source(card, source, digests, cached=True)
        origin = "published"
    elif keras_file:
        if verify:
            check_converted(card, source)
        origin = "published" if verify else "unverified file"
    elif source is not None:
        checked = verify and card["weights"]["checksum"] != "none"  # a no-weights card was refused above
        if checked:
            check_source(card, source, card_hashes(source, card), cached=False)
        origin = "published" if checked else "unverified file"
    else:
        origin = "published" if weights else "none"
    model = build(card, include_preprocessing, origin)
    if converted is not None:
        model.load_weights(converted)  # fast path: the cache's own file, written from this very architecture
    elif digests is not None:
        _convert_and_cache(card, model, source, digests)
    elif keras_file:
        try:
            load_weights_by_name(model, source)
        except WeightsMismatchError as exc:
            raise WeightsMismatchError(f"weights_path {exc}") from None
    elif source is not None:
        # Your own file: converted at each load (it streams at disk speed), not cached.
        load_caffe_weights(model, source)
    return model
