"""The ``fcn-keras`` command: train, evaluate, predict, export, the model zoo, datasets and the demo.

Each subcommand imports its heavy modules (Keras, TensorFlow) only when it runs,
so ``fcn-keras --help`` answers at once. Errors print one line,
``fcn-keras: error: ...``, and exit with status 1 (2 for a bad command line);
``--debug`` shows the full traceback instead.

Example:
    >>> main(["zoo", "list", "--names"])  # doctest: +ELLIPSIS
    fcn16s_voc
    ...
    0
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Callable, Sequence

PROG = "fcn-keras"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


class CommandError(Exception):
    """A user-facing error: printed as one line, exit status 1."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors that point at ``--help``."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32, width=100)


def _add(subparsers, name: str, summary: str, description: str, examples: str = "") -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        name, help=summary, description=textwrap.dedent(description).strip(),
        epilog=("examples:\n" + textwrap.indent(textwrap.dedent(examples).strip("\n"), "  ")) if examples else None,
        formatter_class=_formatter,
    )
    return parser


def _size(text: str) -> tuple[int, int]:
    """``"96x128"`` or ``"128"`` -> ``(height, width)``."""
    try:
        parts = [int(p) for p in text.lower().split("x")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH or SIZE, got {text!r}") from None
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH or SIZE with positive numbers, got {text!r}")
    return parts[0], parts[1]


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``fcn-keras`` with every subcommand.

    Example:
        >>> build_parser().parse_args(["predict", "fcn8s_voc", "photo.jpg"]).out
        'predictions'
    """
    parser = _Parser(
        prog=PROG, formatter_class=_formatter,
        description="Fully Convolutional Networks (Long, Shelhamer, Darrell) for Keras: segment images with the "
                    "model zoo, train on your data, export for TF Serving and TFLite.",
        epilog="Run 'fcn-keras demo' first: it trains, evaluates and exports a small FCN offline in minutes.\n"
               "'fcn-keras COMMAND --help' explains each command.",
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks and TensorFlow's log")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True
    _add_train(commands)
    _add_predict(commands)
    _add_export(commands)
    _add_zoo(commands)
    _add_data(commands)
    _add_demo(commands)
    return parser


def _version() -> str:
    from fcn_keras import __version__

    return __version__


# --------------------------------------------------------------------------- models

MODEL_HELP = "a zoo name (see 'fcn-keras zoo list'), a .keras file, or a SavedModel directory"


class Segmenter:
    """One model behind one interface: ``segment(image uint8 (H, W, 3)) -> class indices (H, W)``.

    ``num_classes``, ``class_names`` and ``palette`` describe its classes.
    """

    def __init__(self, segment: Callable, num_classes: int, class_names: Sequence[str], palette, description: str,
                 keras_model=None):
        self.segment = segment
        self.num_classes = num_classes
        self.class_names = list(class_names)
        self.palette = palette
        self.description = description
        self.keras_model = keras_model


def _default_classes(num_classes: int):
    from fcn_keras.palette import VOC_CLASSES, voc_palette

    names = VOC_CLASSES if num_classes == len(VOC_CLASSES) else [f"class {i}" for i in range(num_classes)]
    return list(names), voc_palette(num_classes)


def load_keras_model(spec: str, weights: str | None = None):
    """A Keras model from a zoo name or a ``.keras`` file (for commands that need Keras itself)."""
    from fcn_keras import zoo

    if spec in zoo.list_models():
        return zoo.load(spec, weights_path=weights)
    if weights is not None:
        raise CommandError("--weights only applies to zoo models")
    path = Path(spec)
    if path.suffix == ".keras":
        if not path.is_file():
            raise CommandError(f"model file {spec} does not exist")
        import keras

        import fcn_keras.models  # noqa: F401  (registers the custom layers for loading)

        return keras.saving.load_model(path, compile=False)
    if _saved_model_dir(path) is not None:
        raise CommandError(f"{spec} is a SavedModel; this command needs a Keras model (a zoo name or a .keras file)")
    raise CommandError(f"model {spec!r} is not a zoo name (known: {', '.join(zoo.list_models())}) "
                       f"nor a .keras file")


def _saved_model_dir(path: Path) -> Path | None:
    """``path`` if it holds a SavedModel, or its highest numbered version (a TF Serving base directory)."""
    if (path / "saved_model.pb").is_file():
        return path
    if path.is_dir():
        versions = sorted((int(p.name), p) for p in path.iterdir() if p.name.isdigit() and (p / "saved_model.pb").is_file())
        if versions:
            return versions[-1][1]
    return None


def load_segmenter(spec: str, weights: str | None = None, preprocessing: str | None = None) -> Segmenter:
    """A :class:`Segmenter` from a zoo name, a ``.keras`` file or a SavedModel directory.

    A SavedModel must be an fcn_keras export (its ``predict_images`` signature
    and class names are used); a TF Serving base directory means its highest version.
    """
    import numpy as np

    saved = _saved_model_dir(Path(spec)) if os.path.isdir(spec) else None
    if saved is not None:
        from fcn_keras.demo import saved_model_logits
        from fcn_keras.export import read_export_info

        try:
            info = read_export_info(saved)
            run = saved_model_logits(saved)
        except (FileNotFoundError, KeyError):
            raise CommandError(f"SavedModel {saved} is not an fcn_keras export (no predict_images signature "
                               f"or export.json)") from None
        names = info["class_names"]
        return Segmenter(lambda image: run(image).argmax(-1), len(names), names,
                         np.asarray(info["palette"], np.uint8), f"SavedModel {saved}")

    model = load_keras_model(spec, weights)
    from fcn_keras.export.graph import logits_function

    logits_fn, _, _ = logits_function(model, preprocessing)
    num_classes = int(model.output_shape[-1])
    names, palette = _default_classes(num_classes)
    names = list(getattr(model, "classes", names))
    palette = np.asarray(getattr(model, "palette", palette), np.uint8)

    def segment(image):
        logits = logits_fn(image[None].astype("float32"))
        return np.asarray(logits)[0].argmax(-1)

    return Segmenter(segment, num_classes, names, palette, f"{model.name} ({spec})", keras_model=model)


# --------------------------------------------------------------------------- train

# What fcn_keras.training.train writes into its output directory.
TRAIN_ARTEFACTS = ("resume", "model.keras", "best.keras", "train_log.csv", "tensorboard", "recipe.json", "synthetic")


def _add_train(commands) -> None:
    p = _add(commands, "train", "train an FCN from a recipe with model.fit (resumable)", """
        Train the model a recipe describes (architecture, dataset, crops, optimizer, schedule, steps,
        precision): a shipped recipe name (zoo/recipes: fcn32s_voc, fcn16s_voc, fcn8s_voc,
        fcn8s_atonce_voc, fcn32s_voc_paper, tiny_synthetic) or a recipe TOML file. --out receives
        model.keras, best.keras (best validation mean IU), train_log.csv, tensorboard/ and a resume
        state: if the run is interrupted, the same command resumes it where it stopped. A non-empty
        --out without a resume state is refused unless --overwrite (which starts afresh).
        """, """
        fcn-keras train tiny_synthetic --out runs/tiny
        fcn-keras train fcn32s_voc --sbd ~/data/benchmark_RELEASE --voc ~/data/VOC2011 --out runs/fcn32s
        fcn-keras train fcn16s_voc --sbd ~/data/benchmark_RELEASE --voc ~/data/VOC2011 \\
            --init runs/fcn32s/model.keras --out runs/fcn16s
        fcn-keras train my_recipe.toml --data ~/data/VOCdevkit/VOC2012 --out runs/mine   # dataset = "voc"
        """)
    p.add_argument("recipe", metavar="RECIPE", help="a shipped recipe name or a recipe .toml file")
    p.add_argument("--out", required=True, help="run directory (models, logs, resume state)")
    p.add_argument("--data", metavar="ROOT", help="the recipe's dataset: a VOC root or a prepared directory")
    p.add_argument("--voc", metavar="ROOT", help="SBD recipes: the VOC root for seg11valid validation")
    p.add_argument("--sbd", metavar="ROOT", help="SBD recipes: the SBD root (benchmark_RELEASE)")
    p.add_argument("--val-data", metavar="DIR", help="prepared recipes: the prepared validation directory")
    p.add_argument("--init", help="initial weights: 'imagenet', 'none' or a .keras model (layers copied by name)")
    p.add_argument("--steps", type=_positive, help="override the recipe's number of training steps")
    p.add_argument("--strategy", choices=("mirrored", "multi_worker"), help="distribute over devices/workers")
    p.add_argument("--overwrite", action="store_true", help="discard a previous run in --out and start afresh")
    p.set_defaults(run=_train)


def _train(args) -> int:
    from fcn_keras.recipes import load_recipe

    recipe = load_recipe(args.recipe)
    resuming = (Path(args.out) / "resume").is_dir() and not args.overwrite
    if not resuming:
        _output_dir(args.out, args.overwrite, TRAIN_ARTEFACTS)
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
                   steps=args.steps)
    print(f"trained {recipe.name} to step {result['global_step']}: final model {result['model']}, "
          f"best validation mean IU {result['best_val_mean_iou']:.4f} ({result['best']})")
    return 0


# --------------------------------------------------------------------------- predict


def _add_predict(commands) -> None:
    p = _add(commands, "predict", "segment images: coloured masks, overlays and index masks (PNG)", """
        Segment images with a model and write, for each image NAME.EXT in --out:
          NAME_mask.png     the class index of every pixel (greyscale PNG, values 0..C-1)
          NAME_color.png    the mask in the model's class colours
          NAME_overlay.png  the mask blended over the image, with a legend of the classes present
        INPUTS are image files, directories (their images, not recursive) or glob patterns.
        """, """
        fcn-keras predict fcn8s_voc photo.jpg holiday/ 'shots/*.png' --out masks
        fcn-keras predict fcn-demo/model.keras fcn-demo/data/JPEGImages --out demo-masks
        fcn-keras predict fcn-demo/saved_model street.jpg --out masks --overwrite
        """)
    p.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    p.add_argument("inputs", metavar="INPUT", nargs="+", help="image files, directories or glob patterns")
    p.add_argument("--out", default="predictions", help="output directory (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="write into an existing non-empty --out")
    p.add_argument("--alpha", type=float, default=0.5, help="opacity of the mask in overlays (default: %(default)s)")
    p.add_argument("--weights", help="zoo models: a local .caffemodel or .weights.h5 instead of downloading")
    p.add_argument("--preprocessing", choices=("fcn", "caffe", "tf", "torch"),
                   help=".keras models without their own preprocessing layer and an unknown backbone: the input "
                        "preprocessing to apply")
    p.set_defaults(run=_predict)


def find_images(inputs: Sequence[str]) -> list[Path]:
    """Image files named by ``inputs`` (files, directories or glob patterns), in order, without repeats.

    Example:
        >>> find_images(["/nonexistent/photo.jpg"])
        Traceback (most recent call last):
        ...
        fcn_keras.cli.CommandError: input /nonexistent/photo.jpg does not exist
    """
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise CommandError(f"directory {item} has no images ({', '.join(IMAGE_SUFFIXES)})")
        elif path.is_file():
            files = [path]
        elif glob.has_magic(item):
            files = sorted(Path(p) for p in glob.glob(item, recursive=True)
                           if Path(p).is_file() and Path(p).suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise CommandError(f"no image matches the pattern {item}")
        else:
            raise CommandError(f"input {item} does not exist")
        found += [f for f in files if f not in found]
    stems: dict[str, Path] = {}
    for f in found:
        if f.stem in stems:
            raise CommandError(f"inputs {stems[f.stem]} and {f} would write the same outputs ({f.stem}_*.png)")
        stems[f.stem] = f
    return found


def _output_dir(out: str, overwrite: bool, remove: Sequence[str] = ()) -> Path:
    from fcn_keras.demo import prepare_output_dir

    try:
        return prepare_output_dir(out, overwrite, remove)
    except FileExistsError as exc:
        raise CommandError(str(exc)) from None


def _predict(args) -> int:
    images = find_images(args.inputs)
    out = _output_dir(args.out, args.overwrite)
    segmenter = load_segmenter(args.model, args.weights, args.preprocessing)
    import keras

    from fcn_keras import viz
    from fcn_keras.data import read_image

    print(f"segmenting {len(images)} image(s) with {segmenter.description} into {out}")
    progress = keras.utils.Progbar(len(images), unit_name="image")
    for i, path in enumerate(images, start=1):
        image = read_image(path)
        mask = segmenter.segment(image)
        viz.save_prediction(image, mask, out, path.stem, palette=segmenter.palette,
                            class_names=segmenter.class_names, alpha=args.alpha)
        progress.update(i)
    print(f"wrote {3 * len(images)} files to {out}: <name>_mask.png, <name>_color.png, <name>_overlay.png")
    return 0


# --------------------------------------------------------------------------- export


def _add_export(commands) -> None:
    p = _add(commands, "export", "export a model as a TF Serving SavedModel and/or a TFLite file", """
        Export a Keras model (zoo name or .keras file) for serving. The SavedModel goes to
        --saved-model BASE/<version>/ (the next version unless --version), written atomically so a
        TF Serving instance polling BASE never sees half a version; it takes raw RGB images (JPEG/PNG
        bytes or uint8 arrays) with the preprocessing inside. --tflite writes a TFLite file with
        builtin ops only (float32, or --quantization float16/int8). With --parity-images DIR both
        are checked against Keras on those images.
        """, """
        fcn-keras export fcn-demo/model.keras --saved-model models/segmenter
        fcn-keras export fcn8s_voc --saved-model /srv/models/fcn8s --version 3 --tflite fcn8s.tflite
        fcn-keras export model.keras --tflite model_int8.tflite --quantization int8 --representative photos/
        """)
    p.add_argument("model", metavar="MODEL", help="a zoo name or a .keras file")
    p.add_argument("--saved-model", metavar="BASE", help="TF Serving base directory to export a version into")
    p.add_argument("--version", type=_positive, help="SavedModel version number (default: the next one)")
    p.add_argument("--tflite", metavar="FILE", help="also write a TFLite file")
    p.add_argument("--quantization", choices=("float16", "int8"), help="TFLite quantization (default: float32)")
    p.add_argument("--representative", metavar="DIR", help="images to calibrate int8 quantization")
    p.add_argument("--input-size", type=_size, metavar="HxW", help="TFLite: a fixed input size (GPU delegates)")
    p.add_argument("--parity-images", metavar="DIR", help="check the exports against Keras on these images")
    p.add_argument("--weights", help="zoo models: a local .caffemodel or .weights.h5 instead of downloading")
    p.add_argument("--overwrite", action="store_true", help="replace an existing version or TFLite file")
    p.set_defaults(run=_export)


def _export(args) -> int:
    if not args.saved_model and not args.tflite:
        raise CommandError("nothing to export: give --saved-model BASE and/or --tflite FILE")
    if args.tflite and Path(args.tflite).exists() and not args.overwrite:
        raise CommandError(f"{args.tflite} already exists; pass --overwrite to replace it")
    if args.quantization == "int8" and not args.representative:
        raise CommandError("--quantization int8 needs --representative DIR (images to calibrate with)")
    if args.parity_images:
        find_images([args.parity_images])
    model = load_keras_model(args.model, args.weights)
    from fcn_keras.export import export_saved_model
    from fcn_keras.export.tflite import export_tflite

    if args.saved_model:
        version_dir = export_saved_model(model, args.saved_model, args.version, overwrite=args.overwrite)
        print(f"SavedModel: {version_dir}")
    if args.tflite:
        export_tflite(model, args.tflite, args.quantization, args.input_size, args.representative)
        print(f"TFLite ({args.quantization or 'float32'}): {args.tflite}")
    if args.parity_images:
        from fcn_keras.data import read_image
        from fcn_keras.demo import saved_model_logits
        from fcn_keras.export.parity import parity, tflite_parity

        images = [read_image(p) for p in find_images([args.parity_images])]
        reports = []
        if args.saved_model:
            reports.append(parity("savedmodel", saved_model_logits(version_dir), model, images))
        if args.tflite:
            reports.append(tflite_parity(args.tflite, model, images))
        for report in reports:
            print(f"parity {report}")
        failed = [r.kind for r in reports if not r.passed]
        if failed:
            raise CommandError(f"parity check failed for {', '.join(failed)} (figures above)")
    return 0


# --------------------------------------------------------------------------- zoo


def _add_zoo(commands) -> None:
    p = _add(commands, "zoo", "list, describe, download and evaluate the model zoo", """
        The zoo holds the reference FCNs with the authors' published weights, converted exactly from
        Caffe. Weights download on first use into $FCN_KERAS_HOME (default ~/.keras/fcn_keras),
        are checked against their checksum, and are converted once.
        """, """
        fcn-keras zoo list
        fcn-keras zoo info fcn8s_voc
        fcn-keras zoo download fcn8s_voc
        """)
    sub = p.add_subparsers(dest="zoo_command", metavar="ZOO_COMMAND", parser_class=_Parser)
    sub.required = True
    ls = _add(sub, "list", "the zoo's models with their published mean IU", "List the zoo's models.")
    ls.add_argument("--names", action="store_true", help="names only, one per line")
    ls.set_defaults(run=_zoo_list)
    info = _add(sub, "info", "a model's card: classes, weights, licence, published metrics",
                "Show a model card (zoo/cards/NAME.toml) as JSON.", "fcn-keras zoo info fcn8s_voc")
    info.add_argument("name", metavar="NAME")
    info.set_defaults(run=_zoo_info)
    dl = _add(sub, "download", "download, verify and convert a model's weights into the cache", """
        Download NAME's published weights, verify their checksum and convert them to Keras weights,
        so that later loads are fast and offline. Without network access this fails within seconds
        and says where to put the file by hand.
        """, "fcn-keras zoo download fcn8s_voc")
    dl.add_argument("name", metavar="NAME")
    dl.set_defaults(run=_zoo_download)


def _zoo_list(args) -> int:
    from fcn_keras import zoo

    names = zoo.list_models()
    if args.names:
        print("\n".join(names))
        return 0
    rows = [("name", "architecture", "classes", "published mean IU", "loadable")]
    for name in names:
        card = zoo.info(name)
        published = [f"{m['mean_iu']} ({m['split']})" for m in card["metrics"]
                     if m.get("applies_to") == "these weights" and "mean_iu" in m]
        paper = [f"{m['mean_iu']} ({m['split']}, paper)" for m in card["metrics"] if "mean_iu" in m]
        rows.append((name, card["architecture"], str(card["num_classes"]), (published or paper or ["-"])[0],
                     "yes" if card["loadable"] else "no"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    return 0


def _zoo_info(args) -> int:
    import json

    from fcn_keras import zoo

    card = zoo.info(args.name)
    print(json.dumps(card, indent=2, default=str))
    return 0


def _zoo_download(args) -> int:
    from fcn_keras import zoo

    path = zoo.download(args.name)
    print(f"{args.name}: verified weights at {path}")
    return 0


# --------------------------------------------------------------------------- data


def _add_data(commands) -> None:
    p = _add(commands, "data", "prepare, check or synthesise datasets", """
        Datasets are a PASCAL VOC root (JPEGImages/, SegmentationClass/, ImageSets/Segmentation/),
        an SBD root, a split file of 'image label' path pairs (CamVid's layout; class names and the
        ignore value from --metadata), or a prepared directory of TFRecord shards.
        """, """
        fcn-keras data synthetic toy-voc --num-images 40 --classes 6
        fcn-keras data check ~/data/VOCdevkit/VOC2012
        fcn-keras data prepare ~/data/VOCdevkit/VOC2012 voc-train-shards --split train
        """)
    sub = p.add_subparsers(dest="data_command", metavar="DATA_COMMAND", parser_class=_Parser)
    sub.required = True

    prep = _add(sub, "prepare", "convert a dataset into sharded TFRecords for fast training", """
        Convert a dataset split into sharded TFRecords (encoded image, lossless index label, id, size),
        verified on write. Re-running is a no-op; an interrupted run leaves no shard a later run reads.
        """, "fcn-keras data prepare VOC2012 voc-train --split train --num-shards 8")
    prep.add_argument("dataset", metavar="DATASET", help="VOC root, SBD root or 'image label' split file")
    prep.add_argument("out", metavar="OUT", help="directory for the shards and manifest.json")
    prep.add_argument("--split", default="train", help="VOC/SBD split name or split file (default: %(default)s)")
    prep.add_argument("--num-shards", type=_positive, help="number of shards (default: one per 256 examples)")
    prep.add_argument("--num-classes", type=_positive, help="number of classes (default: 21 for VOC)")
    prep.add_argument("--metadata", help="split files: metadata TOML or a shipped name such as 'camvid'")
    prep.add_argument("--overwrite", action="store_true", help="replace a prepared directory holding other data")
    prep.set_defaults(run=_data_prepare)

    check = _add(sub, "check", "scan a dataset and list every problem with its file", """
        Read every image and label of a dataset and list each problem (corrupt or truncated file,
        size mismatch, label values outside the classes, colour labels, missing files, empty split)
        with its file. Exit status 1 if any.
        """, "fcn-keras data check VOC2012 --split val")
    check.add_argument("dataset", metavar="DATASET", help="VOC root, SBD root, split file or prepared directory")
    check.add_argument("--split", help="only this split (default: every split)")
    check.add_argument("--num-classes", type=_positive, help="number of classes (default: 21 for VOC)")
    check.add_argument("--metadata", help="split files: metadata TOML or a shipped name such as 'camvid'")
    check.set_defaults(run=_data_check)

    syn = _add(sub, "synthetic", "write a small synthetic dataset in the VOC layout", """
        Write a VOC-layout dataset of simple shapes on textured backgrounds (real JPEGs and palette
        PNG labels with void borders), deterministic for a seed: input for trying the tools.
        """, "fcn-keras data synthetic toy-voc --num-images 40 --classes 6 --size 96x128")
    syn.add_argument("out", metavar="OUT", help="dataset root to create")
    syn.add_argument("--num-images", type=_positive, default=16, help="number of images (default: %(default)s)")
    syn.add_argument("--classes", type=_positive, default=21, help="classes incl. background (default: %(default)s)")
    syn.add_argument("--size", type=_size, default=(96, 128), metavar="HxW", help="image size (default: 96x128)")
    syn.add_argument("--val-fraction", type=float, default=0.25, help="share of images in val (default: %(default)s)")
    syn.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    syn.add_argument("--overwrite", action="store_true", help="write into an existing non-empty OUT")
    syn.set_defaults(run=_data_synthetic)


def dataset_source(path: str, split: str | None = None, num_classes: int | None = None, metadata: str | None = None):
    """The :class:`~fcn_keras.data.FileSource` of a VOC root, SBD root or split file (+ split)."""
    from fcn_keras import data

    root = Path(path)
    options = {} if num_classes is None else {"num_classes": num_classes}
    if root.is_file() or root.suffix == ".txt":
        return data.folder_source(root, metadata=metadata, **options)
    if (root / "ImageSets" / "Segmentation").is_dir():
        return data.voc_source(root, split or "train", **options)
    if (root / "cls").is_dir() or (root / "dataset" / "cls").is_dir():
        return data.sbd_source(root, split or "train")
    if not root.exists():
        raise CommandError(f"dataset {path} does not exist")
    raise CommandError(f"{path} is not a dataset: expected a VOC root (with ImageSets/Segmentation), "
                       f"an SBD root or an 'image label' split file")


def _data_prepare(args) -> int:
    from fcn_keras import data

    source = dataset_source(args.dataset, args.split, args.num_classes, args.metadata)
    out = data.prepare(source, args.out, args.num_shards, overwrite=args.overwrite)
    manifest = data.read_manifest(out)
    print(f"prepared {manifest['num_examples']} examples of {source.name} into {out}")
    return 0


def _data_check(args) -> int:
    from fcn_keras import data

    if not Path(args.dataset).exists():
        raise CommandError(f"dataset {args.dataset} does not exist")
    problems = data.check_dataset(args.dataset, args.split, num_classes=args.num_classes, metadata=args.metadata,
                                  verbose=1)
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} problem(s) in {args.dataset}", file=sys.stderr)
        return 1
    print(f"{args.dataset}: no problems found")
    return 0


def _data_synthetic(args) -> int:
    from fcn_keras import data

    out = _output_dir(args.out, args.overwrite)
    data.write_synthetic_voc(out, args.num_images, args.seed, image_size=args.size, num_classes=args.classes,
                             val_fraction=args.val_fraction)
    print(f"wrote {args.num_images} synthetic images ({args.classes} classes) in the VOC layout to {out}")
    return 0


# --------------------------------------------------------------------------- demo


def _add_demo(commands) -> None:
    p = _add(commands, "demo", "the whole path offline in minutes: data, training, evaluation, export", """
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
    p.add_argument("--num-images", type=_positive, help="synthetic images, train + val (default: 250)")
    p.add_argument("--epochs", type=_positive, help="training epochs (default: 6)")
    p.add_argument("--steps-per-epoch", type=_positive, help="training steps per epoch (default: 50)")
    p.add_argument("--batch-size", type=_positive, help="training batch size (default: 8)")
    p.add_argument("--size", type=_size, metavar="HxW", help="image size (default: 96x128)")
    p.set_defaults(run=_demo)


def _demo(args) -> int:
    import dataclasses

    from fcn_keras.demo import DemoConfig, run_demo

    overrides = {"num_images": args.num_images, "epochs": args.epochs, "steps_per_epoch": args.steps_per_epoch,
                 "batch_size": args.batch_size, "image_size": args.size}
    config = dataclasses.replace(DemoConfig(seed=args.seed), **{k: v for k, v in overrides.items() if v is not None})
    try:
        run_demo(args.out, config, overwrite=args.overwrite)
    except FileExistsError as exc:
        raise CommandError(str(exc)) from None
    return 0


# --------------------------------------------------------------------------- entry point


def main(argv: Sequence[str] | None = None) -> int:
    """Runs ``fcn-keras`` with ``argv`` (default: the process's arguments); returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    if not debug:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        # Keras warns on every fit() over a tf.data pipeline, which fcn_keras shuffles itself.
        warnings.filterwarnings("ignore", message=r"`shuffle=True` was passed")
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


if __name__ == "__main__":
    sys.exit(main())
