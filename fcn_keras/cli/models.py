"""The MODEL argument: a zoo name, a ``.keras`` file or an exported SavedModel, resolved to a library object.

Everything a command needs to know about a model (class names, palette,
preprocessing) is read from the model itself, never guessed.

Example:
    >>> saved_model_dir(Path("/nonexistent")) is None
    True
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from fcn_keras.cli.common import CommandError

if TYPE_CHECKING:
    from fcn_keras.models import SegmentationModel
    from fcn_keras.segmenter import Segmenter

MODEL_HELP = "a zoo name (see 'fcn-keras zoo list'), a .keras file, or a SavedModel directory"


def add_weights_options(p) -> None:
    """``--weights`` and ``--no-verify``: a zoo model's local weights file, and accepting one's own.

    Example:
        >>> import argparse
        >>> parser = argparse.ArgumentParser()
        >>> add_weights_options(parser)
        >>> parser.parse_args(["--weights", "w.weights.h5", "--no-verify"]).no_verify
        True
    """
    p.add_argument("--weights", help="zoo models: a local .caffemodel or .weights.h5 instead of downloading; "
                                     "it must be the published weights (or this cache's conversion of them)")
    p.add_argument("--no-verify", action="store_true",
                   help="with --weights: accept your own weights for the architecture (their layers are still "
                        "checked)")


def load_keras_model(spec: str, weights: str | None = None, verify: bool = True) -> SegmentationModel:
    """A Keras model from a zoo name or a ``.keras`` file (for commands that need Keras itself).

    ``weights`` and ``verify`` are :func:`fcn_keras.zoo.load`'s ``weights_path`` and ``verify``
    (``--weights``, ``--no-verify``); a local weights file that is not the published one is refused
    as one line that names the option.

    Example:
        >>> load_keras_model("/nonexistent/model.keras")
        Traceback (most recent call last):
        ...
        fcn_keras.cli.common.CommandError: model file /nonexistent/model.keras does not exist
        >>> load_keras_model("fcn8s_voc", "/no.h5")
        Traceback (most recent call last):
        ...
        FileNotFoundError: weights_path '/no.h5' does not exist or is not a file
    """
    from fcn_keras import zoo

    if spec in zoo.list_models():
        try:
            return zoo.load(spec, weights_path=weights, verify=verify)
        except zoo.ChecksumError as exc:
            if weights is None:  # the cache's download, not the user's file
                raise
            raise CommandError(f"{exc} On the command line: --no-verify.") from None
    if weights is not None:
        raise CommandError("--weights only applies to zoo models")
    path = Path(spec)
    if path.suffix == ".keras":
        from fcn_keras.export.command import load_model

        try:
            return load_model(path)
        except FileNotFoundError:
            raise CommandError(f"model file {spec} does not exist") from None
        except TypeError as exc:  # not a SegmentationModel
            raise CommandError(f"{spec}: {exc}") from None
    if saved_model_dir(path) is not None:
        raise CommandError(f"{spec} is a SavedModel; this command needs a Keras model (a zoo name or a .keras file)")
    raise CommandError(f"model {spec!r} is not a zoo name (known: {', '.join(zoo.list_models())}) "
                       f"nor a .keras file")


def saved_model_dir(path: Path) -> Path | None:
    """``path`` if it holds a SavedModel, or its highest numbered version (a TF Serving base directory).

    Example:
        >>> import tempfile
        >>> base = Path(tempfile.mkdtemp())
        >>> for version in ("1", "2"):
        ...     (base / version).mkdir()
        ...     _ = (base / version / "saved_model.pb").write_bytes(b"")
        >>> saved_model_dir(base).name
        '2'
    """
    if (path / "saved_model.pb").is_file():
        return path
    if path.is_dir():
        versions = sorted((int(p.name), p) for p in path.iterdir() if p.name.isdigit() and (p / "saved_model.pb").is_file())
        if versions:
            return versions[-1][1]
    return None


def load_segmenter(spec: str, weights: str | None = None, verify: bool = True, precision: str = "float32") -> Segmenter:
    """A :class:`Segmenter` from a zoo name, a ``.keras`` file or a SavedModel directory.

    A SavedModel must be an fcn_keras export (its ``predict_images`` signature
    and class names are used); a TF Serving base directory means its highest
    version. A Keras model is given the preprocessing it asks for
    (``model.input_preprocessing``) and segments with its own class names and palette,
    in ``precision`` (:func:`fcn_keras.segmenter.keras_segmenter`); a SavedModel computes in
    the precision it was exported in.

    Example:
        >>> import pathlib, tempfile, numpy as np, fcn_keras
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "m.keras"
        >>> fcn_keras.fcn32s(class_names=["ground", "disc"], backbone="tiny_vgg").save(path)
        >>> segmenter = load_segmenter(str(path))
        >>> segmenter.class_names, segmenter.segment(np.zeros((24, 32, 3), np.uint8)).shape
        (['ground', 'disc'], (24, 32))
        >>> load_segmenter("fcn-demo/saved_model").class_names[:2]  # doctest: +SKIP
        ['background', 'shape 1']
    """
    from fcn_keras.segmenter import keras_segmenter, saved_model_segmenter

    saved = saved_model_dir(Path(spec)) if os.path.isdir(spec) else None
    if saved is not None:
        if precision != "float32":
            raise CommandError(f"--precision {precision} applies to Keras models; SavedModel {saved} computes in the "
                               f"precision it was exported in (fcn-keras export --precision {precision})")
        try:
            return saved_model_segmenter(saved)
        except (FileNotFoundError, KeyError):
            raise CommandError(f"SavedModel {saved} is not an fcn_keras export (no predict_images signature "
                               f"or export.json)") from None
    model = load_keras_model(spec, weights, verify)
    return keras_segmenter(model, f"{model.name} ({spec})", precision=precision)
