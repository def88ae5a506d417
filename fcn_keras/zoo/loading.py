"""Zoo models: the card's architecture built, then filled from the cache, a download or your own file.

The first :func:`load` downloads (:mod:`fcn_keras.zoo.downloads`), verifies the
checksum (refusing and deleting a mismatch), converts exactly
(:func:`fcn_keras.caffe.load_caffe_weights`) and caches the result
(:mod:`fcn_keras.zoo.cache`); later loads read the converted weights after
checking their hash.

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
from fcn_keras.zoo.cache import cached_conversion, ensure_writable, home, save_conversion
from fcn_keras.zoo.cards import loadable_card, provenance
from fcn_keras.zoo.downloads import card_hashes, check_source, download_source

if TYPE_CHECKING:
    from fcn_keras.models import FCN

__all__ = ["build", "load", "download"]


def build(card: dict, include_preprocessing: bool = True, weights: str = "published") -> FCN:
    """The card's architecture without weights: an :class:`~fcn_keras.models.FCN` that knows what it is.

    Its class names, palette, ignore label and preprocessing mode come from the
    card, and ``model.card`` holds the card's provenance
    (:func:`~fcn_keras.zoo.cards.provenance`, with ``weights`` saying where the
    weights will come from).

    Example:
        >>> from fcn_keras.zoo import info
        >>> model = build(info("fcn32s_voc"), weights="none")
        >>> model.name, model.class_names[15], model.input_preprocessing, model.card["weights"]
        ('fcn32s_voc', 'person', None, 'none')
    """
    from fcn_keras.models import build_fcn

    return build_fcn(
        card["architecture"], backbone=card["backbone"], name=card["name"],
        class_names=card["classes"], palette=card["palette"], ignore_label=card.get("ignore_label", 255),
        preprocessing=card["preprocessing"]["mode"], include_preprocessing=include_preprocessing,
        card=provenance(card, weights),
    )


def _convert_and_cache(card: dict, model: FCN, source: Path, digests: dict) -> None:
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
    source = download_source(card, progress, timeout)
    digests = card_hashes(source, card)
    check_source(card, source, digests, cached=True)
    if cached_conversion(card) is None:
        ensure_writable(home() / "converted")
        _convert_and_cache(card, build(card, include_preprocessing=False), source, digests)
    return source


def load(
    name: str,
    weights: bool = True,
    weights_path: str | os.PathLike | None = None,
    include_preprocessing: bool = True,
    verify: bool = True,
    progress: bool = True,
) -> FCN:
    """A zoo model ready for RGB images with values 0-255, with its published weights.

    Args:
        name: a zoo entry (see :func:`~fcn_keras.zoo.list_models`).
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
        An :class:`~fcn_keras.models.FCN` giving float32 logits ``(N, H, W,
        num_classes)``. ``model.class_names``, ``model.palette`` (``uint8
        (num_classes, 3)``), ``model.ignore_label`` and ``model.preprocessing``
        come from the card, ``model.card`` is its provenance; all of it stays
        with the model through ``model.save`` and ``keras.models.load_model``.

    Example:
        >>> model = load("fcn8s_voc", weights=False)
        >>> model.class_names[15], model.output_shape, model.card["name"]
        ('person', (None, None, None, 21), 'fcn8s_voc')
    """
    card = loadable_card(name)
    converted = source = digests = None
    if weights_path is not None:
        source = Path(weights_path)
        if not source.is_file():
            raise FileNotFoundError(f"weights_path {str(source)!r} does not exist or is not a file")
    elif weights:
        converted = cached_conversion(card)
        if converted is None:
            source = download_source(card, progress)
    caffemodel = source is not None and not source.name.endswith(".weights.h5")
    if caffemodel and weights_path is None:
        # Checked before building the 134M-parameter model, so that refusals are quick.
        ensure_writable(home() / "converted")
        digests = card_hashes(source, card)
        check_source(card, source, digests, cached=True)
    elif caffemodel and verify and card["weights"]["checksum"] != "none":
        check_source(card, source, card_hashes(source, card), cached=False)
    if not weights and weights_path is None:
        provenance_of_weights = "none"
    elif weights_path is not None and not (caffemodel and verify and card["weights"]["checksum"] != "none"):
        provenance_of_weights = "unverified file"
    else:
        provenance_of_weights = "published"
    model = build(card, include_preprocessing, provenance_of_weights)
    if converted is not None:
        model.load_weights(converted)  # fast path: the .caffemodel is not needed
    elif digests is not None:
        _convert_and_cache(card, model, source, digests)
    elif caffemodel:
        # Your own file: converted at each load (it streams at disk speed), not cached.
        load_caffe_weights(model, source)
    elif source is not None:
        try:
            model.load_weights(source)
        except Exception as exc:  # keras raises several types for files that do not fit
            raise ValueError(f"weights_path {str(source)!r} does not fit zoo model {name!r}: {exc}") from exc
    return model
