"""``fcn-keras demo``: the whole path offline -> :func:`fcn_keras.demo.run_demo`.

Example:
    >>> from fcn_keras.cli import build_parser
    >>> build_parser().parse_args(["demo"]).out
    'fcn-demo'
"""

from __future__ import annotations

import argparse

from fcn_keras.cli.common import CommandError, add_command, positive, size


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Adds ``demo`` to the ``fcn-keras`` subcommands.

    Example:
        >>> parser = argparse.ArgumentParser(prog="fcn-keras")
        >>> add_parser(parser.add_subparsers())
        >>> parser.parse_args(["demo", "--size", "32x48", "--epochs", "1"]).size
        (32, 48)
    """
    p = add_command(commands, "demo", "the whole path offline in minutes: data, training, evaluation, export", """
        With no network and no data: write a synthetic VOC-layout dataset, train an FCN-8s over a small
        from-scratch encoder (tiny_vgg) with model.fit, evaluate it on the held-out split (the paper's
        four metrics and per-class IoU), export a TF Serving SavedModel and a TFLite file and check both
        against Keras, segment a sample image, and draw the confusion matrix, per-class IoU and training
        curves. Everything goes to --out; the same --seed gives the same results.
        """, """
        fcn-keras demo
        fcn-keras demo --out /tmp/fcn-demo --seed 1 --overwrite
        """)
    p.add_argument("--out", default="fcn-demo", help="output directory (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed of data and training (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace the demo's artefacts in an existing --out")
    p.add_argument("--num-images", type=positive, help="synthetic images, train + val (default: 250)")
    p.add_argument("--epochs", type=positive, help="training epochs (default: 6)")
    p.add_argument("--steps-per-epoch", type=positive, help="training steps per epoch (default: 50)")
    p.add_argument("--batch-size", type=positive, help="training batch size (default: 8)")
    p.add_argument("--size", type=size, metavar="HxW", help="image size (default: 96x128)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Runs ``fcn-keras demo`` for parsed ``args`` (minutes: it trains a model); returns the exit status.

    Example:
        >>> from fcn_keras.cli import build_parser
        >>> run(build_parser().parse_args(["demo", "--out", "/tmp/fcn-demo"]))  # doctest: +SKIP
        [1/6] writing a synthetic VOC-layout dataset (250 images, 6 classes) to /tmp/fcn-demo/data
        ...
        0
    """
    from fcn_keras.demo import run_demo

    settings = {"seed": args.seed, "num_images": args.num_images, "epochs": args.epochs,
                "steps_per_epoch": args.steps_per_epoch, "batch_size": args.batch_size, "image_size": args.size}
    try:
        run_demo(args.out, overwrite=args.overwrite, **{k: v for k, v in settings.items() if v is not None})
    except FileExistsError as exc:
        raise CommandError(str(exc)) from None
    return 0
