"""``fcn-keras predict``: images -> a model's masks, coloured masks and overlays (:mod:`fcn_keras.viz`).

Example:
    >>> from fcn_keras.cli import build_parser
    >>> build_parser().parse_args(["predict", "fcn8s_voc", "photo.jpg"]).out
    'predictions'
"""

from __future__ import annotations

import argparse

from fcn_keras.cli.common import (CommandError, add_command, add_precision_option, add_tiling_options, images,
                                  output_dir, tiling_arguments, window_progress)
from fcn_keras.cli.evaluate import add_crf_options, crf_argument
from fcn_keras.cli.models import MODEL_HELP, add_weights_options, load_segmenter


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Adds ``predict`` to the ``fcn-keras`` subcommands.

    Example:
        >>> parser = argparse.ArgumentParser(prog="fcn-keras")
        >>> add_parser(parser.add_subparsers())
        >>> parser.parse_args(["predict", "m.keras", "a.jpg", "photos/"]).inputs
        ['a.jpg', 'photos/']
    """
    p = add_command(commands, "predict", "segment images: coloured masks, overlays and index masks (PNG)", """
        Segment images with a model and write, for each image NAME.EXT in --out:
          NAME_mask.png     the class index of every pixel (greyscale PNG, values 0..C-1)
          NAME_color.png    the mask in the model's class colours
          NAME_overlay.png  the mask blended over the image, with a legend of the classes present
        INPUTS are image files, directories (their images, not recursive) or glob patterns.
        """, """
        fcn-keras predict fcn8s_voc photo.jpg holiday/ 'shots/*.png' --out masks
        fcn-keras predict fcn-demo/model.keras fcn-demo/data/JPEGImages --out demo-masks
        fcn-keras predict fcn-demo/saved_model street.jpg --out masks --overwrite
        fcn-keras predict camvid.keras aerial.tif --tile 1024,1024 --overlap 608 --out masks
        fcn-keras predict camvid.keras street/ --precision bfloat16 --out masks
        fcn-keras predict deeplab.keras photo.jpg --crf --crf-params bi_w=4,bi_xy_std=49 --out masks
        """)
    p.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    p.add_argument("inputs", metavar="INPUT", nargs="+", help="image files, directories or glob patterns")
    p.add_argument("--out", default="predictions", help="output directory (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="write into an existing non-empty --out")
    p.add_argument("--alpha", type=float, default=0.5, help="opacity of the mask in overlays (default: %(default)s)")
    add_weights_options(p)
    add_precision_option(p, "the network")
    add_tiling_options(p)
    add_crf_options(p)
    p.add_argument("--beam", nargs=argparse.REMAINDER, metavar="BEAM_OPTION",
                   help="run as an Apache Beam pipeline (the beam extra; DirectRunner by default); every argument "
                        "after --beam is a Beam pipeline option (--runner DataflowRunner --project P ...). Inputs "
                        "may be on any Beam filesystem (gs://, s3://); images whose outputs are all in --out are "
                        "skipped (--overwrite: segment them again); adds counts.jsonl and failures.jsonl "
                        "(docs/beam.md)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Runs ``fcn-keras predict`` for parsed ``args``; returns the exit status.

    Example:
        >>> import pathlib, tempfile, fcn_keras
        >>> from fcn_keras import data
        >>> from fcn_keras.cli import build_parser
        >>> work = pathlib.Path(tempfile.mkdtemp())
        >>> root = data.write_synthetic_voc(work / "toy", num_images=2, image_size=(24, 32), num_classes=3)
        >>> fcn_keras.fcn32s(num_classes=3, backbone="tiny_vgg", include_preprocessing=True).save(work / "m.keras")
        >>> run(build_parser().parse_args(["predict", str(work / "m.keras"), str(root / "JPEGImages"),
        ...                                "--out", str(work / "masks")]))  # doctest: +ELLIPSIS
        segmenting 2 image(s) with fcn32s_tiny_vgg (.../m.keras) into .../masks
        ...
        wrote 6 files to .../masks: <name>_mask.png, <name>_color.png, <name>_overlay.png
        0
    """
    tile, overlap = tiling_arguments(args)
    crf = crf_argument(args)
    if args.beam is not None:
        if args.weights:
            raise CommandError("--weights applies to zoo models; --beam runs a .keras file or a SavedModel")
        if crf is not None:
            raise CommandError("--crf runs in the local predict only; drop --beam to refine with the dense CRF")
        if args.precision != "float32":
            raise CommandError(f"--precision {args.precision} runs in the local predict only; with --beam, "
                               f"segment with a SavedModel exported with --precision {args.precision}")
        from fcn_keras.beam.predict import run_predict

        return run_predict(args.model, args.inputs, args.out, args.beam, alpha=args.alpha, overwrite=args.overwrite,
                           tile=tile, overlap=overlap)
    paths = images(args.inputs)
    out = output_dir(args.out, args.overwrite)
    segmenter = load_segmenter(args.model, args.weights, not args.no_verify, args.precision)
    if tile is not None:
        from PIL import Image

        from fcn_keras.tiling import tiled

        segmenter = tiled(segmenter, tile, overlap, progress=window_progress())
        Image.MAX_IMAGE_PIXELS = None  # tiles are for images past PIL's decompression-bomb guard (179 Mpx)
    if crf is not None:
        from fcn_keras.crf import crf_segmenter

        segmenter = crf_segmenter(segmenter, crf)
    import keras

    from fcn_keras import viz
    from fcn_keras.data import read_image

    print(f"segmenting {len(paths)} image(s) with {segmenter.description} into {out}")
    progress = keras.utils.Progbar(len(paths), unit_name="image")
    for i, path in enumerate(paths, start=1):
        image = read_image(path)
        mask = segmenter.segment(image)
        viz.save_prediction(image, mask, out, path.stem, palette=segmenter.palette,
                            class_names=segmenter.class_names, alpha=args.alpha)
        progress.update(i)
    print(f"wrote {3 * len(paths)} files to {out}: <name>_mask.png, <name>_color.png, <name>_overlay.png")
    return 0
