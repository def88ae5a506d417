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

import numpy as np

from fcn_keras.caffe import CaffeModelError, load_caffe_weights
from fcn_keras.preprocessing import REFERENCE_BGR_MEAN
from fcn_keras.zoo.cache import cached_conversion, ensure_writable, home, save_conversion
from fcn_keras.zoo.cards import loadable_card
from fcn_keras.zoo.downloads import card_hashes, check_source, download_source

__all__ = ["load", "download"]


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


def _convert_and_cache(card: dict, fcn, source: Path, digests: dict) -> None:
    """Fills ``fcn`` from the checked download ``source`` and caches the conversion.

    A file that does not fit the architecture is deleted; one that does is
    verified by structure, and its hash is recorded (the first verified download)."""
    try:
        load_caffe_weights(fcn, source)
    except CaffeModelError as exc:
        source.unlink()
        raise CaffeModelError(f"{exc} (the downloaded file was deleted)") from exc
    save_conversion(card, fcn, source, digests)


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
        _convert_and_cache(card, _build(card, include_preprocessing=False)[1], source, digests)
    return source


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
        A ``keras.Model`` giving float32 logits ``(N, H, W, num_classes)``;
        ``model.classes`` and ``model.palette`` (``uint8 (num_classes, 3)``) come
        from the card.

    Example:
        >>> model = load("fcn8s_voc", weights=False)
        >>> model.classes[15], model.output_shape
        ('person', (None, None, None, 21))
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
