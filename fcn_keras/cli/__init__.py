"""The ``fcn-keras`` command: train, evaluate, predict, export, the model zoo, datasets, the demo and CAM.

One module per subcommand (:mod:`~fcn_keras.cli.train`, :mod:`~fcn_keras.cli.evaluate`,
:mod:`~fcn_keras.cli.predict`, :mod:`~fcn_keras.cli.export`, :mod:`~fcn_keras.cli.zoo`,
:mod:`~fcn_keras.cli.data`, :mod:`~fcn_keras.cli.demo`, :mod:`~fcn_keras.cli.cam`), each only mapping its
arguments to library calls; :mod:`~fcn_keras.cli.models` resolves the MODEL
argument and :mod:`~fcn_keras.cli.common` holds what they share.

Each subcommand imports its heavy modules (Keras, TensorFlow) only when it runs,
so ``fcn-keras --help`` answers at once. Errors print one line,
``fcn-keras: error: ...``, and exit with status 1 (2 for a bad command line);
``--debug`` shows the full traceback instead.

Example:
    >>> main(["zoo", "list", "--names"])  # doctest: +ELLIPSIS
    cam_vgg16
    ...
    0
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from fcn_keras.cli import cam, data, demo, evaluate, export, predict, train, zoo
from fcn_keras.cli.common import PROG, CommandError, Parser, formatter

__all__ = ["CommandError", "build_parser", "main"]

SUBCOMMANDS = (train, evaluate, predict, export, zoo, data, demo, cam)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``fcn-keras`` with every subcommand.

    Example:
        >>> build_parser().parse_args(["predict", "fcn8s_voc", "photo.jpg"]).out
        'predictions'
    """
    parser = Parser(
        prog=PROG, formatter_class=formatter,
        description="Fully Convolutional Networks (Long, Shelhamer, Darrell) for Keras: segment images with the "
                    "model zoo, train on your data, export for TF Serving and TFLite.",
        epilog="Run 'fcn-keras demo' first: it trains, evaluates and exports a small FCN offline in minutes.\n"
               "'fcn-keras COMMAND --help' explains each command.",
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks and TensorFlow's log")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    commands.required = True
    for subcommand in SUBCOMMANDS:
        subcommand.add_parser(commands)
    return parser


def _version() -> str:
    from fcn_keras import __version__

    return __version__


def main(argv: Sequence[str] | None = None) -> int:
    """Runs ``fcn-keras`` with ``argv`` (default: the process's arguments); returns the exit status.

    Example:
        >>> main(["zoo", "info", "fcn99s"])  # the error goes to stderr as one line
        1
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    if not debug:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version or a bad command line
        return int(exc.code or 0)
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # every failure becomes one line unless --debug
        if debug:
            raise
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return 1
