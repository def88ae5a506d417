"""``fcn-keras evaluate``: a model and a dataset -> :func:`fcn_keras.evaluation.evaluate` and its pictures.

Example:
    >>> from fcn_keras.cli import build_parser
    >>> build_parser().parse_args(["evaluate", "model.keras", "VOC2012"]).split
    'val'
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from fcn_keras.cli.common import CommandError, add_command, add_tiling_options, output_dir, positive, tiling_arguments
from fcn_keras.cli.models import add_weights_options, load_keras_model

if TYPE_CHECKING:
    from fcn_keras.data import FileSource
    from fcn_keras.models import SegmentationModel


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Adds ``evaluate`` to the ``fcn-keras`` subcommands.

    Example:
        >>> parser = argparse.ArgumentParser(prog="fcn-keras")
        >>> add_parser(parser.add_subparsers())
        >>> parser.parse_args(["evaluate", "m.keras", "VOC2012", "--batch-size", "4"]).batch_size
        4
    """
    p = add_command(commands, "evaluate", "score a model on a dataset with the paper's four metrics", """
        Run a Keras model (zoo name or .keras file) over a dataset split at native resolution and
        print pixel accuracy, mean accuracy, mean IU, frequency-weighted IU and the per-class IoU,
        computed exactly as the reference's score.py over one confusion matrix. With --out, also
        write metrics.json, confusion_matrix.png and per_class_iou.png there. The model's class
        count must match the dataset's (VOC: 21 unless --num-classes).
        """, """
        fcn-keras evaluate runs/fcn32s/best.keras ~/data/VOCdevkit/VOC2012 --split val --out eval-fcn32s
        fcn-keras evaluate fcn-demo/model.keras fcn-demo/data --split val --num-classes 6
        fcn-keras evaluate camvid.keras ~/data/camvid/test.txt --metadata camvid
        fcn-keras evaluate camvid.keras ~/data/camvid/test.txt --metadata camvid --tile 256,256 --overlap 96
        fcn-keras evaluate deeplab.keras ~/data/VOCdevkit/VOC2012 --crf --crf-params bi_w=4,bi_xy_std=49,bi_rgb_std=5
        """)
    p.add_argument("model", metavar="MODEL", help="a zoo name or a .keras file")
    p.add_argument("dataset", metavar="DATASET", help="VOC root, SBD root or 'image label' split file")
    p.add_argument("--split", default="val", help="VOC/SBD split name or split file (default: %(default)s)")
    add_evaluation_options(p)
    p.add_argument("--num-classes", type=positive, help="the dataset's number of classes (default: 21 for VOC)")
    p.add_argument("--metadata", help="split files: metadata TOML or a shipped name such as 'camvid'")
    p.set_defaults(run=run)


def add_evaluation_options(p: argparse.ArgumentParser) -> None:
    """The options ``evaluate`` and ``zoo evaluate`` share (output, batch size, local weights and their check, tiling).

    Example:
        >>> parser = argparse.ArgumentParser()
        >>> add_evaluation_options(parser)
        >>> parser.parse_args([]).batch_size
        1
    """
    p.add_argument("--out", help="directory for metrics.json, confusion_matrix.png and per_class_iou.png")
    p.add_argument("--overwrite", action="store_true", help="write into an existing non-empty --out")
    p.add_argument("--batch-size", type=positive, default=1,
                   help="images of equal size per forward pass; results equal batch 1 (default: %(default)s)")
    add_weights_options(p)
    add_tiling_options(p)
    add_crf_options(p)


def add_crf_options(p: argparse.ArgumentParser) -> None:
    """``--crf`` and ``--crf-params``: DeepLab's fully connected CRF on the logits (:mod:`fcn_keras.crf`).

    Example:
        >>> parser = argparse.ArgumentParser()
        >>> add_crf_options(parser)
        >>> crf_argument(parser.parse_args(["--crf", "--crf-params", "bi_w=4"])).bi_w
        4.0
    """
    p.add_argument("--crf", action="store_true",
                   help="refine each image's logits with the fully connected CRF (mean field, as DeepLab; the crf "
                        "extra: pip install 'fcn_keras[crf]'); default parameters: DeepLab-LargeFOV's released "
                        "test.prototxt (max_iter=10, pos_w=3, pos_xy_std=3, bi_w=5, bi_xy_std=50, bi_rgb_std=10)")
    p.add_argument("--crf-params", metavar="KEY=VALUE,...",
                   help="with --crf, override CRF parameters, e.g. bi_w=4,bi_xy_std=49,bi_rgb_std=5 (keys: max_iter, "
                        "pos_w, pos_xy_std, bi_w, bi_xy_std, bi_rgb_std)")


def crf_argument(args: argparse.Namespace):
    """The :class:`fcn_keras.crf.DenseCRF` that ``--crf``/``--crf-params`` ask for, or ``None``; errors are one line.

    Example:
        >>> crf_argument(argparse.Namespace(crf=False, crf_params=None)) is None
        True
        >>> crf_argument(argparse.Namespace(crf=False, crf_params="bi_w=4"))
        Traceback (most recent call last):
        ...
        fcn_keras.cli.common.CommandError: --crf-params sets the parameters of --crf: give --crf with it
    """
    enabled, params = getattr(args, "crf", False), getattr(args, "crf_params", None)
    if not enabled:
        if params is not None:
            raise CommandError("--crf-params sets the parameters of --crf: give --crf with it")
        return None
    if getattr(args, "tile", None) is not None:
        raise CommandError("--crf with --tile: the dense CRF connects every pixel of the whole image, which tiled "
                           "inference never holds; drop --tile")
    from fcn_keras.crf import DenseCRF, require_pydensecrf

    try:
        crf = DenseCRF.parse(params or "")
        require_pydensecrf()
    except (ValueError, ImportError) as exc:
        raise CommandError(f"--crf-params: {exc}" if isinstance(exc, ValueError) else str(exc)) from None
    return crf


def run(args: argparse.Namespace) -> int:
    """Runs ``fcn-keras evaluate`` for parsed ``args``; returns the exit status.

    Example:
        >>> from fcn_keras.cli import build_parser
        >>> run(build_parser().parse_args(["evaluate", "fcn8s_voc", "/nonexistent"]))
        Traceback (most recent call last):
        ...
        fcn_keras.data.decode.DataError: /nonexistent: does not exist
    """
    from fcn_keras import data

    source = data.dataset_source(args.dataset, args.split, num_classes=args.num_classes, metadata=args.metadata)
    return score(load_keras_model(args.model, args.weights, not args.no_verify), source, args)


def score(model: SegmentationModel, source: FileSource, args: argparse.Namespace) -> int:
    """Evaluates ``model`` on a FileSource and writes the figures and pictures to ``args.out``.

    :func:`fcn_keras.evaluation.evaluate` takes the class names, ignore label and
    input preprocessing from the model, and so do the pictures.

    Example:
        >>> import tempfile, fcn_keras
        >>> from fcn_keras import data
        >>> root = data.write_synthetic_voc(tempfile.mkdtemp(), num_images=4, image_size=(24, 32), num_classes=3)
        >>> model = fcn_keras.fcn32s(class_names=["ground", "disc", "box"], backbone="tiny_vgg")
        >>> args = argparse.Namespace(out=None, overwrite=False, batch_size=1)
        >>> score(model, data.voc_source(root, "val", num_classes=3), args)  # doctest: +ELLIPSIS
        evaluating fcn32s_tiny_vgg on ... (1 images)
        ...
        0
    """
    if source.num_classes is not None and source.num_classes != model.num_classes:
        raise CommandError(f"model {model.name} predicts {model.num_classes} classes but dataset {source.name} has "
                           f"{source.num_classes}; pass --num-classes if the dataset is labelled otherwise")
    tile, overlap = tiling_arguments(args)
    crf = crf_argument(args)
    out = output_dir(args.out, args.overwrite) if args.out else None
    from fcn_keras import viz
    from fcn_keras.evaluation import evaluate

    tiling = "" if tile is None else f", in {tile[0]}x{tile[1]} windows"
    refined = "" if crf is None else ", refined by the dense CRF"
    print(f"evaluating {model.name} on {source.name} ({len(source)} images{tiling}{refined})")
    result = evaluate(model, source, batch_size=args.batch_size, tile=tile, overlap=overlap, crf=crf,
                      out_json=out / "metrics.json" if out else None)
    if out:
        viz.save_image(viz.confusion_matrix_image(result["confusion_matrix"], model=model), out / "confusion_matrix.png")
        viz.save_image(viz.iou_bars_image(result["per_class_iou"], model=model), out / "per_class_iou.png")
        print(f"wrote metrics.json, confusion_matrix.png and per_class_iou.png to {out}")
    return 0
