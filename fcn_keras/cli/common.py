"""What every subcommand shares: the one-line error, the parser class, argument types, output directories.

Nothing here imports Keras or TensorFlow, so ``fcn-keras --help`` answers at once.

Example:
    >>> size("96x128"), size("64")
    ((96, 128), (64, 64))
"""

from __future__ import annotations

import argparse
import os
import textwrap
from pathlib import Path
from typing import Iterable, NoReturn, Sequence

PROG = "fcn-keras"


class CommandError(Exception):
    """A user-facing error: printed as one line, exit status 1.

    Example:
        >>> str(CommandError("model file x.keras does not exist"))
        'model file x.keras does not exist'
    """


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors that point at ``--help`` (exit status 2).

    Example:
        >>> try:
        ...     Parser(prog="fcn-keras").parse_args(["--bogus"])
        ... except SystemExit as exit:
        ...     print(exit.code)
        2
    """

    def error(self, message: str) -> NoReturn:
        """Prints ``PROG: error: MESSAGE (see 'PROG --help')`` to stderr and exits with status 2."""
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def formatter(prog: str) -> argparse.HelpFormatter:
    """The help layout of every (sub)command: descriptions as written, options aligned.

    Example:
        >>> type(formatter("fcn-keras")).__name__
        'RawDescriptionHelpFormatter'
    """
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32, width=100)


def add_command(subparsers: argparse._SubParsersAction, name: str, summary: str, description: str, examples: str = "") -> argparse.ArgumentParser:
    """Adds subcommand ``name`` with its one-line ``summary``, ``description`` and ``examples`` epilog.

    Example:
        >>> parser = Parser(prog="fcn-keras")
        >>> commands = parser.add_subparsers(dest="command", parser_class=Parser)
        >>> add_command(commands, "hello", "say hello", "Says hello.", "fcn-keras hello").epilog
        'examples:\\n  fcn-keras hello'
    """
    return subparsers.add_parser(
        name, help=summary, description=textwrap.dedent(description).strip(),
        epilog=("examples:\n" + textwrap.indent(textwrap.dedent(examples).strip("\n"), "  ")) if examples else None,
        formatter_class=formatter,
    )


def size(text: str) -> tuple[int, int]:
    """``"96x128"`` or ``"128"`` -> ``(height, width)``; an argparse type.

    Example:
        >>> size("32x48")
        (32, 48)
    """
    try:
        parts = [int(p) for p in text.lower().split("x")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH or SIZE, got {text!r}") from None
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH or SIZE with positive numbers, got {text!r}")
    return parts[0], parts[1]


def positive(text: str) -> int:
    """A positive integer; an argparse type.

    Example:
        >>> positive("3")
        3
    """
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def output_dir(out: str | os.PathLike, overwrite: bool, remove: Iterable[str] = ()) -> Path:
    """:func:`fcn_keras.files.prepare_output_dir`, its refusal as a :class:`CommandError`.

    Example:
        >>> import tempfile
        >>> output_dir(tempfile.mkdtemp(), overwrite=False).is_dir()
        True
    """
    from fcn_keras.files import prepare_output_dir

    try:
        return prepare_output_dir(out, overwrite, remove)
    except FileExistsError as exc:
        raise CommandError(str(exc)) from None


def images(inputs: Sequence[str]) -> list[Path]:
    """:func:`fcn_keras.files.find_images` with unique stems (each image's outputs are named after it),
    its refusal as a :class:`CommandError`.

    Example:
        >>> images(["/nonexistent/photo.jpg"])
        Traceback (most recent call last):
        ...
        fcn_keras.cli.common.CommandError: input /nonexistent/photo.jpg does not exist
    """
    from fcn_keras.files import find_images

    try:
        return find_images(inputs, unique_stems=True)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
