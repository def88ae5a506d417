"""``fcn-keras data``: prepare, check or synthesise datasets (:mod:`fcn_keras.data`).

Example:
    >>> from fcn_keras.cli import build_parser
    >>> build_parser().parse_args(["data", "synthetic", "toy"]).size
    (96, 128)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fcn_keras.cli.common import CommandError, Parser, add_command, output_dir, positive, size


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Adds ``data`` and its subcommands to the ``fcn-keras`` subcommands.

    Example:
        >>> parser = argparse.ArgumentParser(prog="fcn-keras")
        >>> add_parser(parser.add_subparsers())
        >>> parser.parse_args(["data", "check", "VOC2012", "--split", "val"]).split
        'val'
    """
    p = add_command(commands, "data", "prepare, check or synthesise datasets", """
        Datasets are a PASCAL VOC root (JPEGImages/, SegmentationClass/, ImageSets/Segmentation/),
        an SBD root, a split file of 'image label' path pairs (CamVid's layout; class names and the
        ignore value from --metadata), or a prepared directory of TFRecord shards.
        """, """
        fcn-keras data synthetic toy-voc --num-images 40 --classes 6
        fcn-keras data check ~/data/VOCdevkit/VOC2012
        fcn-keras data prepare ~/data/VOCdevkit/VOC2012 voc-train-shards --split train
        """)
    sub = p.add_subparsers(dest="data_command", metavar="DATA_COMMAND", parser_class=Parser)
    sub.required = True

    prep = add_command(sub, "prepare", "convert a dataset into sharded TFRecords for fast training", """
        Convert a dataset split into sharded TFRecords (encoded image, lossless index label, id, size),
        verified on write. Re-running is a no-op; an interrupted run leaves no shard a later run reads.
        """, "fcn-keras data prepare VOC2012 voc-train --split train --num-shards 8")
    prep.add_argument("dataset", metavar="DATASET", help="VOC root, SBD root or 'image label' split file")
    prep.add_argument("out", metavar="OUT", help="directory for the shards and manifest.json")
    prep.add_argument("--split", default="train", help="VOC/SBD split name or split file (default: %(default)s)")
    prep.add_argument("--num-shards", type=positive, help="number of shards (default: one per 256 examples)")
    prep.add_argument("--num-classes", type=positive, help="number of classes (default: 21 for VOC)")
    prep.add_argument("--metadata", help="split files: metadata TOML or a shipped name such as 'camvid'")
    prep.add_argument("--overwrite", action="store_true", help="replace a prepared directory holding other data")
    prep.add_argument("--beam", nargs=argparse.REMAINDER, metavar="BEAM_OPTION",
                      help="write the same shards and manifest with an Apache Beam pipeline (the beam extra; "
                           "DirectRunner by default); every argument after --beam is a Beam pipeline option "
                           "(docs/beam.md)")
    prep.set_defaults(run=run_prepare)

    check = add_command(sub, "check", "scan a dataset and list every problem with its file", """
        Read every image and label of a dataset and list each problem (corrupt or truncated file,
        size mismatch, label values outside the classes, colour labels whose colours --metadata does
        not list, missing files, empty split) with its file. A prepared directory: every record of
        every shard decodes and its label values are classes (--num-classes, default the manifest's)
        or 255, each problem naming the shard and record. Exit status 1 if any.
        """, "fcn-keras data check VOC2012 --split val")
    check.add_argument("dataset", metavar="DATASET", help="VOC root, SBD root, split file or prepared directory")
    check.add_argument("--split", help="only this split (default: every split)")
    check.add_argument("--num-classes", type=positive, help="number of classes (default: 21 for VOC)")
    check.add_argument("--metadata", help="split files: metadata TOML or a shipped name such as 'camvid'")
    check.set_defaults(run=run_check)

    syn = add_command(sub, "synthetic", "write a small synthetic dataset in the VOC layout", """
        Write a VOC-layout dataset of simple shapes on textured backgrounds (real JPEGs and palette
        PNG labels with void borders), deterministic for a seed: input for trying the tools.
        """, "fcn-keras data synthetic toy-voc --num-images 40 --classes 6 --size 96x128")
    syn.add_argument("out", metavar="OUT", help="dataset root to create")
    syn.add_argument("--num-images", type=positive, default=16, help="number of images (default: %(default)s)")
    syn.add_argument("--classes", type=positive, default=21, help="classes incl. background (default: %(default)s)")
    syn.add_argument("--size", type=size, default=(96, 128), metavar="HxW", help="image size (default: 96x128)")
    syn.add_argument("--val-fraction", type=float, default=0.25, help="share of images in val (default: %(default)s)")
    syn.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    syn.add_argument("--overwrite", action="store_true", help="write into an existing non-empty OUT")
    syn.set_defaults(run=run_synthetic)


def run_prepare(args: argparse.Namespace) -> int:
    """``fcn-keras data prepare``: a dataset split -> :func:`fcn_keras.data.prepare`.

    Example:
        >>> import contextlib, io, pathlib, tempfile
        >>> from fcn_keras import data
        >>> from fcn_keras.cli import build_parser
        >>> work = pathlib.Path(tempfile.mkdtemp())
        >>> root = data.write_synthetic_voc(work / "toy", num_images=4, image_size=(24, 32))
        >>> with contextlib.redirect_stdout(io.StringIO()) as printed:  # a progress bar, then the summary
        ...     status = run_prepare(build_parser().parse_args(["data", "prepare", str(root), str(work / "shards"),
        ...                                                     "--split", "trainval"]))
        >>> status, printed.getvalue().splitlines()[-1].startswith("prepared 4 examples of")
        (0, True)
    """
    from fcn_keras import data

    source = data.dataset_source(args.dataset, args.split, num_classes=args.num_classes, metadata=args.metadata)
    if args.beam is not None:
        from fcn_keras import beam

        out = beam.prepare(source, args.out, args.num_shards, overwrite=args.overwrite, options=args.beam)
    else:
        out = data.prepare(source, args.out, args.num_shards, overwrite=args.overwrite)
    manifest = data.read_manifest(out)
    print(f"prepared {manifest['num_examples']} examples of {source.name} into {out}")
    return 0


def run_check(args: argparse.Namespace) -> int:
    """``fcn-keras data check``: :func:`fcn_keras.data.check_dataset`, one problem per line.

    Example:
        >>> import contextlib, io, tempfile
        >>> from fcn_keras import data
        >>> root = data.write_synthetic_voc(tempfile.mkdtemp(), num_images=2, image_size=(24, 32))
        >>> with contextlib.redirect_stdout(io.StringIO()) as printed:  # a progress bar, then the verdict
        ...     status = run_check(argparse.Namespace(dataset=str(root), split="val", num_classes=None, metadata=None))
        >>> status, printed.getvalue().splitlines()[-1] == f"{root}: no problems found"
        (0, True)
    """
    if not Path(args.dataset).exists():
        raise CommandError(f"dataset {args.dataset} does not exist")
    from fcn_keras import data

    problems = data.check_dataset(args.dataset, args.split, num_classes=args.num_classes, metadata=args.metadata,
                                  verbose=1)
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} problem(s) in {args.dataset}", file=sys.stderr)
        return 1
    print(f"{args.dataset}: no problems found")
    return 0


def run_synthetic(args: argparse.Namespace) -> int:
    """``fcn-keras data synthetic``: :func:`fcn_keras.data.write_synthetic_voc`.

    Example:
        >>> import tempfile
        >>> from fcn_keras.cli import build_parser
        >>> out = tempfile.mkdtemp()
        >>> run_synthetic(build_parser().parse_args(["data", "synthetic", out, "--num-images", "2", "--size", "24x32",
        ...                                          "--classes", "3"]))  # doctest: +ELLIPSIS
        wrote 2 synthetic images (3 classes) in the VOC layout to ...
        0
    """
    out = output_dir(args.out, args.overwrite)
    from fcn_keras import data

    data.write_synthetic_voc(out, args.num_images, args.seed, image_size=args.size, num_classes=args.classes,
                             val_fraction=args.val_fraction)
    print(f"wrote {args.num_images} synthetic images ({args.classes} classes) in the VOC layout to {out}")
    return 0
