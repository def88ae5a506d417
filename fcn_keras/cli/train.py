"""``fcn-keras train``: a recipe -> :func:`fcn_keras.training.train` (resumable).

Example:
    >>> "model.keras" in TRAIN_ARTEFACTS
    True
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fcn_keras.cli.common import CommandError, add_command, output_dir, positive

# What fcn_keras.training.train writes into its output directory.
TRAIN_ARTEFACTS = ("resume", "model.keras", "best.keras", "train_log.csv", "tensorboard", "recipe.json", "synthetic")


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Adds ``train`` to the ``fcn-keras`` subcommands.

    Example:
        >>> parser = argparse.ArgumentParser(prog="fcn-keras")
        >>> add_parser(parser.add_subparsers())
        >>> parser.parse_args(["train", "tiny_synthetic", "--out", "runs/tiny"]).recipe
        'tiny_synthetic'
    """
    p = add_command(commands, "train", "train an FCN from a recipe with model.fit (resumable)", """
        Train the model a recipe describes (architecture, dataset, crops, optimizer, schedule, steps,
        precision): a shipped recipe name (zoo/recipes: fcn32s_voc, fcn16s_voc, fcn8s_voc,
        fcn8s_atonce_voc, fcn32s_voc_paper, camvid_mobilenet_v2_scratch, camvid_fcn8s_vgg16,
        tiny_synthetic) or a recipe TOML file. For a folder dataset (dataset = "folder", such as
        CamVid), --data is the folder holding its split files (train.txt, val.txt). --out receives
        model.keras, best.keras (best validation mean IU), train_log.csv, tensorboard/ and a resume
        state: if the run is interrupted, the same command resumes it where it stopped. A non-empty
        --out without a resume state is refused unless --overwrite (which starts afresh).
        """, """
        fcn-keras train tiny_synthetic --out runs/tiny
        fcn-keras train fcn32s_voc --sbd ~/data/benchmark_RELEASE --voc ~/data/VOC2011 --out runs/fcn32s
        fcn-keras train fcn16s_voc --sbd ~/data/benchmark_RELEASE --voc ~/data/VOC2011 \\
            --init runs/fcn32s/model.keras --out runs/fcn16s
        fcn-keras train camvid_mobilenet_v2_scratch --data ~/data/camvid --out runs/camvid
        fcn-keras train my_recipe.toml --data ~/data/VOCdevkit/VOC2012 --out runs/mine   # dataset = "voc"
        KERAS_BACKEND=jax fcn-keras train camvid_fcn8s_vgg16 --data ~/data/camvid --out runs/camvid \\
            --distribution data_parallel
        """)
    p.add_argument("recipe", metavar="RECIPE", help="a shipped recipe name or a recipe .toml file")
    p.add_argument("--out", required=True, help="run directory (models, logs, resume state)")
    p.add_argument("--data", metavar="ROOT",
                   help="the recipe's dataset: a VOC root, a folder of split files or a prepared directory")
    p.add_argument("--voc", metavar="ROOT", help="SBD recipes: the VOC root for seg11valid validation")
    p.add_argument("--sbd", metavar="ROOT", help="SBD recipes: the SBD root (benchmark_RELEASE)")
    p.add_argument("--val-data", metavar="DIR", help="prepared recipes: the prepared validation directory")
    p.add_argument("--init", help="initial weights: 'imagenet' (or a local copy of keras.applications' ImageNet "
                   ".h5), 'none' or a .keras model (layers copied by name)")
    p.add_argument("--steps", type=positive, help="override the recipe's number of training steps")
    p.add_argument("--strategy", choices=("mirrored", "multi_worker"),
                   help="TensorFlow backend: distribute over devices/workers with tf.distribute")
    p.add_argument("--distribution", choices=("data_parallel",),
                   help="JAX backend (KERAS_BACKEND=jax): keras.distribution.DataParallel over all devices")
    p.add_argument("--overwrite", action="store_true", help="discard a previous run in --out and start afresh")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Runs ``fcn-keras train`` for parsed ``args``; returns the exit status.

    Example:
        >>> import tempfile
        >>> from fcn_keras.cli import build_parser
        >>> run(build_parser().parse_args(["train", "no_such_recipe", "--out", tempfile.mkdtemp()]))
        Traceback (most recent call last):
        ...
        fcn_keras.recipes.RecipeError: no recipe named 'no_such_recipe'; shipped recipes: [...]
        >>> run(build_parser().parse_args(["train", "tiny_synthetic", "--out", "runs/tiny"]))  # doctest: +SKIP
        trained tiny_synthetic to step 200: final model runs/tiny/model.keras, ...
        0
    """
    from fcn_keras.recipes import load_recipe

    recipe = load_recipe(args.recipe)
    resuming = (Path(args.out) / "resume").is_dir() and not args.overwrite
    if not resuming:
        output_dir(args.out, args.overwrite, TRAIN_ARTEFACTS)
    roots, flags = {}, {}
    for key, flag, value in ((recipe.data.dataset, "--data", args.data), ("voc", "--voc", args.voc),
                             ("sbd", "--sbd", args.sbd), ("prepared_val", "--val-data", args.val_data)):
        if value is None:
            continue
        if key in roots:
            raise CommandError(f"{flags[key]} and {flag} both give the {key} dataset; give one")
        if not Path(value).exists():
            raise CommandError(f"{flag} {value} does not exist")
        roots[key], flags[key] = value, flag
    from fcn_keras.training import train

    result = train(recipe, args.out, data_root=roots or None, init=args.init, strategy=args.strategy,
                   distribution=args.distribution, steps=args.steps)
    print(f"trained {recipe.name} to step {result['global_step']}: final model {result['model']}, "
          f"best validation mean IU {result['best_val_mean_iou']:.4f} ({result['best']})")
    return 0
