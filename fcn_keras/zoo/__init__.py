"""The model zoo: trained FCNs in one call, from the authors' published Caffe weights.

Each entry is a model card, ``zoo/cards/<name>.toml``: architecture, classes,
palette, preprocessing, where the weights come from and how to check them, the
licence, the published metrics with the split they were measured on, and the
command that reproduces the evaluation.

- :mod:`fcn_keras.zoo.cards`: the card schema and loading (:func:`info`, :func:`list_models`, :func:`catalog`);
- :mod:`fcn_keras.zoo.cache`: ``FCN_KERAS_HOME`` and the converted-weights cache (:func:`home`);
- :mod:`fcn_keras.zoo.downloads`: downloads with progress, ``.part`` files, ``Range`` resume and checksums;
- :mod:`fcn_keras.zoo.keras_weights`: ``.weights.h5`` files checked against a model and loaded by layer name;
- :mod:`fcn_keras.zoo.loading`: :func:`load` and :func:`download`.

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

from fcn_keras.caffe import load_caffe_weights
from fcn_keras.zoo.cache import CacheError, home
from fcn_keras.zoo.cards import CardError, catalog, info, list_models, published_metrics, validate_card
from fcn_keras.zoo.downloads import ChecksumError, DownloadError
from fcn_keras.zoo.keras_weights import WeightsMismatchError
from fcn_keras.zoo.loading import download, load

__all__ = [
    "CardError", "ChecksumError", "DownloadError", "CacheError", "WeightsMismatchError",
    "list_models", "info", "load", "download", "load_caffe_weights", "home", "validate_card",
    "catalog", "published_metrics",
]
