"""``fcn-keras export``: a Keras model -> :func:`fcn_keras.export.export_model` (SavedModel and/or TFLite).

Example:
    >>> from fcn_keras.cli import build_parser
    >>> build_parser().parse_args(["export", "model.keras", "--tflite", "m.tflite"]).quantization is None
    True
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fcn_keras.cli.common import CommandError, add_command, add_precision_option, images, positive, size
from fcn_keras.cli.models import add_weights_options, load_keras_model


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Adds ``export`` to the ``fcn-keras`` subcommands.

    Example:
        >>> parser = argparse.ArgumentParser(prog="fcn-keras")
        >>> add_parser(parser.add_subparsers())
        >>> parser.parse_args(["export", "m.keras", "--tflite", "m.tflite", "--input-size", "256"]).input_size
        (256, 256)
    """
    p = add_command(commands, "export", "export a model as a TF Serving SavedModel and/or a TFLite file", """
        Export a Keras model (zoo name or .keras file) for serving. The SavedModel goes to
        --saved-model BASE/<version>/ (the next version unless --version), written atomically so a
        TF Serving instance polling BASE never sees half a version; it takes raw RGB images (JPEG/PNG
        bytes or uint8 arrays) with the preprocessing inside. --tflite writes a TFLite file with
        builtin ops only (float32, or --quantization float16/int8). With --parity-images DIR both
        are checked against Keras on those images. --precision bfloat16 makes the SavedModel compute
        in bfloat16 (float32 in and out), for servers with native bfloat16; TFLite keeps its own
        precisions, so it is exported in a separate command.
        """, """
        fcn-keras export fcn-demo/model.keras --saved-model models/segmenter
        fcn-keras export fcn8s_voc --saved-model /srv/models/fcn8s --version 3 --tflite fcn8s.tflite
        fcn-keras export model.keras --tflite model_int8.tflite --quantization int8 --representative photos/
        fcn-keras export model.keras --saved-model /srv/models/fast --precision bfloat16
        """)
    p.add_argument("model", metavar="MODEL", help="a zoo name or a .keras file")
    p.add_argument("--saved-model", metavar="BASE", help="TF Serving base directory to export a version into")
    p.add_argument("--version", type=positive, help="SavedModel version number (default: the next one)")
    p.add_argument("--tflite", metavar="FILE", help="also write a TFLite file")
    p.add_argument("--quantization", choices=("float16", "int8"), help="TFLite quantization (default: float32)")
    p.add_argument("--representative", metavar="DIR", help="images to calibrate int8 quantization")
    p.add_argument("--input-size", type=size, metavar="HxW", help="TFLite: a fixed input size (GPU delegates)")
    p.add_argument("--parity-images", metavar="DIR", help="check the exports against Keras on these images")
    add_precision_option(p, "the SavedModel's network")
    add_weights_options(p)
    p.add_argument("--overwrite", action="store_true", help="replace an existing version or TFLite file")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Runs ``fcn-keras export`` for parsed ``args``; returns the exit status.

    Example:
        >>> from fcn_keras.cli import build_parser
        >>> run(build_parser().parse_args(["export", "m.keras"]))
        Traceback (most recent call last):
        ...
        fcn_keras.cli.common.CommandError: nothing to export: give --saved-model BASE and/or --tflite FILE
        >>> run(build_parser().parse_args(["export", "m.keras", "--saved-model", "models/m"]))  # doctest: +SKIP
        SavedModel: models/m/1
        0
    """
    if not args.saved_model and not args.tflite:
        raise CommandError("nothing to export: give --saved-model BASE and/or --tflite FILE")
    if args.tflite and Path(args.tflite).exists() and not args.overwrite:
        raise CommandError(f"{args.tflite} already exists; pass --overwrite to replace it")
    if args.precision != "float32" and args.tflite:
        raise CommandError(f"--precision {args.precision} applies to --saved-model only: TFLite has no bfloat16 "
                           f"convolutions (its reduced precisions are --quantization float16/int8); export the "
                           f"TFLite file in a separate command")
    if args.quantization == "int8" and not args.representative:
        raise CommandError("--quantization int8 needs --representative DIR (images to calibrate with)")
    check_images = [str(p) for p in images([args.parity_images])] if args.parity_images else None
    model = load_keras_model(args.model, args.weights, not args.no_verify)
    from fcn_keras.export import export_model

    results = []
    if args.saved_model:
        results.append(export_model(model, args.saved_model, "saved_model", version=args.version,
                                    overwrite=args.overwrite, check_images=check_images,
                                    precision=args.precision))
        print(f"SavedModel{'' if args.precision == 'float32' else f' ({args.precision})'}: {results[-1]['path']}")
    if args.tflite:
        results.append(export_model(model, args.tflite, "tflite", overwrite=args.overwrite,
                                    quantization=args.quantization, input_size=args.input_size,
                                    representative_data=args.representative, check_images=check_images))
        print(f"TFLite ({args.quantization or 'float32'}): {args.tflite}")
    failed = [r["parity"]["kind"] for r in results if r["parity"] is not None and not r["parity"]["passed"]]
    if failed:
        raise CommandError(f"parity check failed for {', '.join(failed)} (figures above)")
    return 0
