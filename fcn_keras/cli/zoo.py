"""``fcn-keras zoo``: list, describe, download and evaluate the model zoo (:mod:`fcn_keras.zoo`).

Example:
    >>> from fcn_keras.cli import main
    >>> main(["zoo", "list", "--names"])  # doctest: +ELLIPSIS
    cam_vgg16
    ...
    0
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fcn_keras.cli.common import CommandError, Parser, add_command
from fcn_keras.cli.evaluate import add_evaluation_options, score
from fcn_keras.cli.models import load_keras_model


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Adds ``zoo`` and its subcommands to the ``fcn-keras`` subcommands.

    Example:
        >>> parser = argparse.ArgumentParser(prog="fcn-keras")
        >>> add_parser(parser.add_subparsers())
        >>> parser.parse_args(["zoo", "info", "fcn8s_voc"]).name
        'fcn8s_voc'
    """
    p = add_command(commands, "zoo", "list, describe, download and evaluate the model zoo", """
        The zoo holds the reference FCNs with the authors' published weights, converted exactly from
        Caffe. Weights download on first use into $FCN_KERAS_HOME (default ~/.keras/fcn_keras),
        are checked against their checksum, and are converted once.
        """, """
        fcn-keras zoo list
        fcn-keras zoo info fcn8s_voc
        fcn-keras zoo download fcn8s_voc
        """)
    sub = p.add_subparsers(dest="zoo_command", metavar="ZOO_COMMAND", parser_class=Parser)
    sub.required = True
    ls = add_command(sub, "list", "the zoo's models with their published mean IU", "List the zoo's models.")
    ls.add_argument("--names", action="store_true", help="names only, one per line")
    ls.set_defaults(run=run_list)
    info = add_command(sub, "info", "a model's card: classes, weights, licence, published metrics", """
        Show a model card (zoo/cards/NAME.toml) as JSON. Given a .keras file instead, show what the
        model carries: its classes, palette, preprocessing, architecture and, for a model from the
        zoo, its card's provenance (name, source, checksum, published metrics).
        """, """
        fcn-keras zoo info fcn8s_voc
        fcn-keras zoo info runs/fcn8s/best.keras
        """)
    info.add_argument("name", metavar="NAME", help="a zoo name or a .keras file")
    info.set_defaults(run=run_info)
    dl = add_command(sub, "download", "download, verify and convert a model's weights into the cache", """
        Download NAME's published weights, verify their checksum and convert them to Keras weights,
        so that later loads are fast and offline. Without network access this fails within seconds
        and says where to put the file by hand.
        """, "fcn-keras zoo download fcn8s_voc")
    dl.add_argument("name", metavar="NAME")
    dl.set_defaults(run=run_download)
    ev = add_command(sub, "evaluate", "reproduce a model's published evaluation (its card's split)", """
        Evaluate a zoo model on the dataset and split its card names (the VOC models: seg11valid,
        the 736 VOC2011 val images not in SBD train, as in the reference), so the result can be
        compared with the published mean IU that 'fcn-keras zoo info NAME' lists.
        """, "fcn-keras zoo evaluate fcn8s_voc --voc ~/data/VOCdevkit/VOC2011 --out eval-fcn8s")
    ev.add_argument("name", metavar="NAME")
    ev.add_argument("--voc", metavar="ROOT", required=True, help="the PASCAL VOC root (JPEGImages/, ...)")
    ev.add_argument("--split", help="another VOC split instead of the card's")
    add_evaluation_options(ev)
    ev.set_defaults(run=run_evaluate)


def run_list(args: argparse.Namespace) -> int:
    """``fcn-keras zoo list``: one row per card (or names only).

    Example:
        >>> run_list(argparse.Namespace(names=False))  # doctest: +ELLIPSIS, +NORMALIZE_WHITESPACE
        name architecture classes published mean IU loadable
        ...
        fcn8s_voc fcn8s 21 65.5 (seg11valid) yes
        ...
        0
    """
    from fcn_keras import zoo

    if args.names:
        print("\n".join(zoo.list_models()))
        return 0
    rows = [("name", "architecture", "classes", "published mean IU", "loadable")]
    for row in zoo.catalog():
        published = "-" if row["mean_iu"] is None else f"{row['mean_iu']} ({row['split']})"
        rows.append((row["name"], row["architecture"], str(row["num_classes"]), published,
                     "yes" if row["loadable"] else "no"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    return 0


def run_info(args: argparse.Namespace) -> int:
    """``fcn-keras zoo info NAME``: the card as JSON; for a ``.keras`` file, the model's identity and card.

    Example:
        >>> run_info(argparse.Namespace(name="fcn8s_voc"))  # doctest: +ELLIPSIS
        {
          "name": "fcn8s_voc",
        ...
        0
    """
    import json

    from fcn_keras import zoo

    if args.name.endswith(".keras"):
        description = load_keras_model(args.name).identity()
    else:
        description = zoo.info(args.name)
    print(json.dumps(description, indent=2, default=str))
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    """``fcn-keras zoo evaluate NAME --voc ROOT``: the card's published evaluation, reproduced.

    Example:
        >>> from fcn_keras.cli import build_parser
        >>> run_evaluate(build_parser().parse_args(["zoo", "evaluate", "fcn8s_voc", "--voc", "/nonexistent"]))
        Traceback (most recent call last):
        ...
        fcn_keras.cli.common.CommandError: --voc /nonexistent is not a directory
        >>> run_evaluate(build_parser().parse_args(["zoo", "evaluate", "fcn8s_voc", "--voc", "VOC2011"]))  # doctest: +SKIP
        evaluating fcn8s_voc on VOC2011 seg11valid (736 images)
        ...
    """
    from fcn_keras import data, zoo

    card = zoo.info(args.name)
    split = args.split or card["evaluation"]["split"]
    if card["evaluation"]["dataset"] != "voc":
        raise CommandError(f"zoo model {args.name} is evaluated on {card['evaluation']['dataset']}, "
                           f"which 'zoo evaluate' does not read yet; use 'fcn-keras evaluate'")
    if not Path(args.voc).is_dir():
        raise CommandError(f"--voc {args.voc} is not a directory")
    source = data.seg11valid_source(args.voc) if split == "seg11valid" else data.voc_source(args.voc, split)
    return score(load_keras_model(args.name, args.weights, not args.no_verify), source, args)


def run_download(args: argparse.Namespace) -> int:
    """``fcn-keras zoo download NAME``: download, verify and convert into the cache.

    Example:
        >>> run_download(argparse.Namespace(name="fcn8s_voc"))  # doctest: +SKIP
        fcn8s_voc: verified weights at /home/me/.keras/fcn_keras/downloads/fcn8s-heavy-pascal.caffemodel
        0
    """
    from fcn_keras import zoo

    path = zoo.download(args.name)
    print(f"{args.name}: verified weights at {path}")
    return 0
