"""``fcn-keras cam``: class activation maps of images as heat-map overlays with the paper's localization box.

Example:
    >>> from fcn_keras.cli import build_parser
    >>> build_parser().parse_args(["cam", "m.keras", "photo.jpg", "--class", "dog"]).out
    'cam'
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fcn_keras.cli.common import CommandError, add_command, images, output_dir

_SHOWN_NAMES = 40  # an error lists at most this many class names (ImageNet has 1000)


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Adds ``cam`` to the ``fcn-keras`` subcommands.

    Example:
        >>> parser = argparse.ArgumentParser(prog="fcn-keras")
        >>> add_parser(parser.add_subparsers())
        >>> parser.parse_args(["cam", "m.keras", "a.jpg", "--class", "cat"]).class_name
        'cat'
    """
    p = add_command(commands, "cam", "class activation maps: heat-map overlays and weak-localization boxes", """
        Compute one class's activation map (Zhou et al., CVPR 2016) for each image and write NAME_cam.png in
        --out: the map as a jet heat map blended on the image, with the bounding box of the largest connected
        region above --threshold of the map's maximum (the paper's weak localization, printed too).
        MODEL is a .keras file of a CAM model (cam_vgg16, class_activation_model) or of a classifier that ends
        in GlobalAveragePooling2D -> Dense (e.g. keras.applications.ResNet50); a classifier does not record its
        input preprocessing (unless its first layer is fcn_keras' Preprocessing) or class names: give
        --preprocessing, and --class-names for names.
        INPUTS are image files, directories (their images, not recursive) or glob patterns.
        """, """
        fcn-keras cam cam_vgg16.keras photos/ --class dog --out cams
        fcn-keras cam resnet50.keras cat.jpg --preprocessing caffe --class-names imagenet.txt --class tabby
        fcn-keras cam resnet50.keras cat.jpg --preprocessing caffe --class 281
        """)
    p.add_argument("model", metavar="MODEL", help="a .keras file: a CAM model or a GAP classifier")
    p.add_argument("inputs", metavar="INPUT", nargs="+", help="image files, directories or glob patterns")
    p.add_argument("--class", dest="class_name", required=True, metavar="NAME",
                   help="the class to map: one of the model's class names, or its index")
    p.add_argument("--out", default="cam", help="output directory (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="write into an existing non-empty --out")
    p.add_argument("--alpha", type=float, default=0.5, help="opacity of the heat map (default: %(default)s)")
    p.add_argument("--threshold", type=float, default=0.2,
                   help="fraction of the map's maximum the box's region exceeds (default: %(default)s, the paper's)")
    p.add_argument("--preprocessing", metavar="MODE",
                   help="for a classifier file: the input mode it was trained on (caffe, tf, torch, fcn, ...)")
    p.add_argument("--class-names", metavar="FILE",
                   help="for a classifier file: a text file with one class name per line, in output order")
    p.set_defaults(run=run)


def _class_names(path: str | None) -> list[str] | None:
    if path is None:
        return None
    try:
        names = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines()]
    except OSError as exc:
        raise CommandError(f"--class-names {path}: {exc.strerror or exc}") from None
    return [name for name in names if name]


def load_cam_model(spec: str, preprocessing: str | None = None, class_names_file: str | None = None):
    """The CAM model of a ``.keras`` file: the file's own, or :func:`class_activation_model` of its classifier.

    Example:
        >>> load_cam_model("/nonexistent/m.keras")
        Traceback (most recent call last):
        ...
        fcn_keras.cli.common.CommandError: model file /nonexistent/m.keras does not exist
    """
    path = Path(spec)
    if path.suffix != ".keras":
        raise CommandError(f"MODEL must be a .keras file (a CAM model or a GAP classifier), got {spec}")
    if not path.is_file():
        raise CommandError(f"model file {spec} does not exist")
    import keras

    import fcn_keras  # noqa: F401  (registers the package's classes for loading)
    from fcn_keras.models import SegmentationModel
    from fcn_keras.models.cam import class_activation_model, maps_layer

    model = keras.models.load_model(path, compile=False)
    names = _class_names(class_names_file)
    if isinstance(model, SegmentationModel):
        if model.architecture != "cam":
            raise CommandError(f"{spec} is a segmentation model ({model.architecture}), not a CAM model or a "
                               f"classifier")
        maps_layer(model)
        if preprocessing is not None or names is not None:
            raise CommandError(f"{spec} is a CAM model: its preprocessing and class names are its own "
                               f"(--preprocessing and --class-names are for classifier files)")
        return model
    try:
        return class_activation_model(model, names, preprocessing=preprocessing)
    except ValueError as exc:
        hint = " (--preprocessing)" if "preprocessing=" in str(exc) else ""
        raise CommandError(f"{spec}: {exc}{hint}") from None


def class_index(name: str, class_names) -> int:
    """The index of ``name`` among ``class_names`` (or ``name`` as an index); one error listing the names.

    Example:
        >>> class_index("dog", ["cat", "dog"]), class_index("0", ["cat", "dog"])
        (1, 0)
        >>> class_index("cow", ["cat", "dog"])
        Traceback (most recent call last):
        ...
        fcn_keras.cli.common.CommandError: --class 'cow' is not one of the model's 2 classes: cat, dog (or an index 0..1)
    """
    names = list(class_names)
    if name in names:
        return names.index(name)
    if name.isdigit() and int(name) < len(names):
        return int(name)
    shown = ", ".join(names[:_SHOWN_NAMES]) + (f", ... ({len(names)} in all)" if len(names) > _SHOWN_NAMES else "")
    raise CommandError(f"--class {name!r} is not one of the model's {len(names)} classes: {shown} "
                       f"(or an index 0..{len(names) - 1})")


def _resize(values, size: tuple[int, int], resample):
    """A ``(h, w)`` float map or an RGB image resized to ``size`` ``(height, width)`` with PIL."""
    import numpy as np
    from PIL import Image

    if values.ndim == 2:
        return np.asarray(Image.fromarray(values.astype(np.float32)).resize(size[::-1], resample))
    return np.asarray(Image.fromarray(values).resize(size[::-1], resample))


def run(args: argparse.Namespace) -> int:
    """Runs ``fcn-keras cam`` for parsed ``args``; returns the exit status.

    Example:
        >>> import pathlib, tempfile, numpy as np
        >>> from PIL import Image
        >>> from fcn_keras.cli import build_parser
        >>> from fcn_keras.models.cam import cam_vgg16
        >>> work = pathlib.Path(tempfile.mkdtemp())
        >>> cam_vgg16(class_names=["cat", "dog"], alpha=1 / 16, include_preprocessing=True).save(work / "m.keras")
        >>> Image.fromarray(np.full((24, 32, 3), 90, np.uint8)).save(work / "a.png")
        >>> run(build_parser().parse_args(["cam", str(work / "m.keras"), str(work / "a.png"), "--class", "dog",
        ...                                "--out", str(work / "cams")]))  # doctest: +ELLIPSIS
        class activation maps of 'dog' for 1 image(s) with cam_vgg16 (.../m.keras) into .../cams
        a.png: box ...
        wrote 1 files to .../cams: <name>_cam.png
        0
    """
    if not 0.0 <= args.alpha <= 1.0:
        raise CommandError(f"--alpha must be in [0, 1], got {args.alpha}")
    if not 0.0 <= args.threshold < 1.0:
        raise CommandError(f"--threshold must be in [0, 1), got {args.threshold}")
    paths = images(args.inputs)
    model = load_cam_model(args.model, args.preprocessing, args.class_names)
    index = class_index(args.class_name, model.class_names)
    out = output_dir(args.out, args.overwrite)
    import numpy as np
    from PIL import Image

    from fcn_keras import viz
    from fcn_keras.data import read_image
    from fcn_keras.localization import cam_overlay, localize
    from fcn_keras.preprocessing import preprocess

    fixed = model.input_shape[1:3]
    fixed = None if None in fixed else tuple(fixed)
    print(f"class activation maps of {model.class_names[index]!r} for {len(paths)} image(s) with {model.name} "
          f"({args.model}) into {out}")
    for path in paths:
        image = read_image(path)
        # A classifier of a fixed input size sees the image resized to it; the map is resized back.
        x = image if fixed is None else _resize(image, fixed, Image.BILINEAR)
        x = np.asarray(x, np.float32)[None]
        if model.input_preprocessing:
            x = np.asarray(preprocess(x, model.input_preprocessing), np.float32)
        cam = np.asarray(model.predict_on_batch(x))[0, :, :, index]
        if fixed is not None:
            cam = _resize(cam, image.shape[:2], Image.BILINEAR)
        box = localize(cam, args.threshold)
        viz.save_image(cam_overlay(image, cam, box, alpha=args.alpha), out / f"{path.stem}_cam.png")
        where = "none (the map has no positive value)" if box is None else \
            f"left={box.left} top={box.top} right={box.right} bottom={box.bottom}"
        print(f"{path.name}: box {where}")
    print(f"wrote {len(paths)} files to {out}: <name>_cam.png")
    return 0
