"""What every subcommand shares: the one-line error, the parser class, argument types, output directories.

Nothing here imports Keras or TensorFlow, so ``fcn-keras --help`` answers at once.

Example:
    >>> size("96x128"), size("64")
    ((96, 128), (64, 64))
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
from pathlib import Path
from typing import Callable, Iterable, NoReturn, Sequence, TextIO

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
    return _pair(text.lower(), "x", "HEIGHTxWIDTH or SIZE")


def tile_size(text: str) -> tuple[int, int]:
    """``"1024,768"`` or ``"1024"`` -> ``(height, width)`` of a tile; an argparse type.

    Example:
        >>> tile_size("512,640"), tile_size("512")
        ((512, 640), (512, 512))
        >>> tile_size("512x640")
        Traceback (most recent call last):
        ...
        argparse.ArgumentTypeError: expected HEIGHT,WIDTH or SIZE in pixels (e.g. 1024,1024), got '512x640'
    """
    return _pair(text, ",", "HEIGHT,WIDTH or SIZE in pixels (e.g. 1024,1024)")


def _pair(text: str, separator: str, expected: str) -> tuple[int, int]:
    try:
        parts = [int(p) for p in text.split(separator)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"expected {expected} with positive numbers, got {text!r}")
    return parts[0], parts[1]


def non_negative(text: str) -> int:
    """A non-negative integer; an argparse type.

    Example:
        >>> non_negative("0")
        0
    """
    return _integer(text, 0, "non-negative")


def add_tiling_options(p: argparse.ArgumentParser) -> None:
    """``--tile H,W`` and ``--overlap P``: segment each image in overlapping windows (:mod:`fcn_keras.tiling`).

    Example:
        >>> parser = argparse.ArgumentParser()
        >>> add_tiling_options(parser)
        >>> parser.parse_args(["--tile", "1024,1024", "--overlap", "512"]).tile
        (1024, 1024)
    """
    p.add_argument("--tile", type=tile_size, metavar="H,W",
                   help="segment each image in windows of at most H x W pixels: the network's memory is bounded "
                        "by the window, and images of any size are read; H,W minus the overlap must be a multiple "
                        "of the model's stride (32)")
    p.add_argument("--overlap", type=non_negative, metavar="P",
                   help="with --tile: pixels neighbouring windows share (default: the smallest overlap for which "
                        "the masks equal the whole image's, twice the receptive field's radius; see docs/tiling.md)")


PRECISION_CHOICES = ("float32", "bfloat16")
"""``--precision``'s choices: :data:`fcn_keras.models.precision.PRECISIONS` (that module imports Keras)."""


def add_precision_option(p: argparse.ArgumentParser, what: str) -> None:
    """``--precision float32|bfloat16``: what ``what`` computes in (bfloat16 only where the machine has it natively).

    Example:
        >>> parser = argparse.ArgumentParser()
        >>> add_precision_option(parser, "the network")
        >>> parser.parse_args([]).precision, parser.parse_args(["--precision", "bfloat16"]).precision
        ('float32', 'bfloat16')
    """
    p.add_argument("--precision", choices=PRECISION_CHOICES, default="float32",
                   help=f"what {what} computes in (default: %(default)s). bfloat16 (Keras' mixed_bfloat16: float32 "
                        f"weights, inputs and logits) needs native bfloat16: a GPU, or an x86 CPU with AVX512_BF16 "
                        f"or AMX-BF16, or an Arm CPU with BF16; elsewhere it is emulated, slower than float32, and "
                        f"refused unless FCN_KERAS_ALLOW_SLOW_BFLOAT16=1 (docs/precision.md)")


def tiling_arguments(args: argparse.Namespace) -> tuple[tuple[int, int] | None, int | None]:
    """``(tile, overlap)`` from :func:`add_tiling_options`' arguments; ``--overlap`` alone is refused.

    Example:
        >>> tiling_arguments(argparse.Namespace(tile=(512, 512), overlap=None))
        ((512, 512), None)
        >>> tiling_arguments(argparse.Namespace(tile=None, overlap=64))
        Traceback (most recent call last):
        ...
        fcn_keras.cli.common.CommandError: --overlap applies to tiled inference: give --tile H,W with it
    """
    tile, overlap = getattr(args, "tile", None), getattr(args, "overlap", None)
    if tile is None and overlap is not None:
        raise CommandError("--overlap applies to tiled inference: give --tile H,W with it")
    return tile, overlap


def window_progress(stream: TextIO | None = None) -> Callable[[int, int], None]:
    """A ``progress`` callback for :func:`fcn_keras.tiling.tiled`: ``window K/N`` rewritten in place on stderr.

    Images of one window print nothing; the last window ends the line.

    Example:
        >>> import io
        >>> out = io.StringIO()
        >>> report = window_progress(out)
        >>> for done in (1, 2):
        ...     report(done, 2)
        >>> out.getvalue()
        '\\r  window 1/2\\r  window 2/2\\n'
    """
    def report(done: int, total: int) -> None:
        if total > 1:
            print(f"\r  window {done}/{total}", end="\n" if done == total else "", file=stream or sys.stderr,
                  flush=True)

    return report


def positive(text: str) -> int:
    """A positive integer; an argparse type.

    Example:
        >>> positive("3")
        3
    """
    return _integer(text, 1, "positive")


def _integer(text: str, minimum: int, kind: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a {kind} integer, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected a {kind} integer, got {value}")
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
