"""``fcn-keras demo``: the whole path — data, training, evaluation, export, prediction — offline, in minutes.

It writes a synthetic VOC-layout dataset (shapes on textured backgrounds),
trains an FCN-8s over the small from-scratch ``tiny_vgg`` encoder with
``model.fit``, evaluates it on the held-out split with the paper's four
metrics, exports a TF Serving SavedModel and a TFLite file and checks both
against Keras, segments a sample image, and draws the pictures. Everything
lands in one directory; the same seed gives the same results.

Example:
    >>> from fcn_keras.demo import DemoConfig
    >>> DemoConfig().num_classes, DemoConfig().backbone
    (6, 'tiny_vgg')
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fcn_keras.files import atomic_path, prepare_output_dir, write_text


@dataclass(frozen=True)
class DemoConfig:
    """What the demo trains on and how long; the defaults reach mean IU >= 0.8 in a few CPU minutes.

    Example:
        >>> DemoConfig(epochs=1, steps_per_epoch=2).total_steps
        2
    """

    seed: int = 0
    num_images: int = 250
    val_fraction: float = 0.2
    image_size: tuple[int, int] = (96, 128)
    num_classes: int = 6
    architecture: str = "fcn8s"
    backbone: str = "tiny_vgg"
    batch_size: int = 8
    epochs: int = 6
    steps_per_epoch: int = 50
    learning_rate: float = 1e-3
    parity_images: int = 4

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    @property
    def class_names(self) -> list[str]:
        return ["background"] + [f"shape {i}" for i in range(1, self.num_classes)]


# Everything the demo writes under its output directory, by role.
ARTEFACTS = {
    "dataset": "data",
    "training_log": "training_log.csv",
    "keras_model": "model.keras",
    "metrics": "metrics.json",
    "confusion_matrix": "confusion_matrix.png",
    "per_class_iou": "per_class_iou.png",
    "training_curves": "training_curves.png",
    "saved_model": "saved_model",
    "tflite": "model.tflite",
    "parity": "parity.json",
    "sample": "sample",
}


def _write_json(path: Path, payload: dict) -> None:
    write_text(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")


def _say(verbose: int, message: str) -> None:
    if verbose:
        print(message, flush=True)


def run_demo(out: str | os.PathLike = "fcn-demo", config: DemoConfig | None = None, overwrite: bool = False,
             verbose: int = 1, **settings) -> dict:
    """Runs the demo into ``out`` and returns its summary (metrics, parity, artefact paths, seconds).

    ``settings`` replace fields of ``config`` (default :class:`DemoConfig`),
    e.g. ``run_demo("d", seed=1, epochs=2)``. For a reproducible run it seeds
    Keras and turns on TensorFlow's op determinism, which stays on for the rest
    of the process.

    Example:
        >>> import tempfile
        >>> summary = run_demo(tempfile.mkdtemp(), num_images=6, image_size=(32, 32), epochs=1,
        ...                    steps_per_epoch=1, batch_size=2, parity_images=1, verbose=0)  # doctest: +SKIP
        >>> sorted(summary["artefacts"])[:3]  # doctest: +SKIP
        ['confusion_matrix', 'dataset', 'keras_model']
    """
    started = time.perf_counter()
    config = dataclasses.replace(config or DemoConfig(), **settings)
    out = prepare_output_dir(out, overwrite, remove=ARTEFACTS.values())
    paths = {role: out / name for role, name in ARTEFACTS.items()}

    import keras
    import tensorflow as tf

    from fcn_keras import data, viz
    from fcn_keras.evaluation import evaluate
    from fcn_keras.losses import SegmentationCrossEntropy
    from fcn_keras.metrics import SegmentationMetrics
    from fcn_keras.models import build_fcn

    keras.utils.set_random_seed(config.seed)
    tf.config.experimental.enable_op_determinism()
    timings = {}

    def lap(name: str, since: float) -> float:
        now = time.perf_counter()
        timings[name] = round(now - since, 2)
        return now

    t = time.perf_counter()
    _say(verbose, f"[1/6] writing a synthetic VOC-layout dataset ({config.num_images} images, "
                  f"{config.num_classes} classes) to {paths['dataset']}")
    root = data.write_synthetic_voc(
        paths["dataset"], num_images=config.num_images, seed=config.seed, image_size=config.image_size,
        num_classes=config.num_classes, val_fraction=config.val_fraction,
    )
    train_source = data.voc_source(root, "train", num_classes=config.num_classes)
    val_source = data.voc_source(root, "val", num_classes=config.num_classes)
    train = data.make_pipeline(train_source, training=True, batch_size=config.batch_size, preprocessing=None,
                               crop_size=config.image_size,
                               seed=config.seed, deterministic=True, cache=True, repeat=True)
    val = data.make_pipeline(val_source, training=False, batch_size=1, preprocessing=None, cache=True)
    t = lap("dataset", t)

    _say(verbose, f"[2/6] training {config.architecture} over {config.backbone} for {config.total_steps} steps "
                  f"(batch {config.batch_size}, {len(train_source)} training images)")
    # The model carries its class names and palette: evaluation, export and the pictures read them from it.
    model = build_fcn(config.architecture, class_names=config.class_names, backbone=config.backbone,
                      include_preprocessing=True, name=f"{config.architecture}_{config.backbone}_demo")
    model.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate),
        loss=SegmentationCrossEntropy(reduction="mean"),
        metrics=[SegmentationMetrics(model.num_classes)],
    )
    # shuffle=False: the pipeline shuffles itself (seeded), Keras cannot shuffle a tf.data.Dataset.
    model.fit(train, epochs=config.epochs, steps_per_epoch=config.steps_per_epoch, validation_data=val, shuffle=False,
              callbacks=[keras.callbacks.CSVLogger(str(paths["training_log"]))], verbose=1 if verbose else 0)
    with atomic_path(paths["keras_model"]) as tmp:  # the temporary name keeps the .keras suffix Keras wants
        model.save(tmp)
    t = lap("training", t)

    _say(verbose, f"[3/6] evaluating on the held-out split ({len(val_source)} images)")
    scores = evaluate(model, val_source.dataset(), verbose=verbose)  # classes and preprocessing: the model's
    t = lap("evaluation", t)

    _say(verbose, "[4/6] exporting a SavedModel (TF Serving) and a TFLite file, and checking them against Keras")
    from fcn_keras.export import export_model, saved_model_logits

    held_out = [val_source.read(i)[0] for i in range(min(config.parity_images, len(val_source)))]
    exports = {
        "savedmodel": export_model(model, paths["saved_model"], "saved_model", check_images=held_out,
                                   verbose=bool(verbose)),
        "tflite": export_model(model, paths["tflite"], "tflite", check_images=held_out, verbose=bool(verbose)),
    }
    saved_model = exports["savedmodel"]["path"]
    parity = {kind: result["parity"] for kind, result in exports.items()}
    _write_json(paths["parity"], parity)
    failed = [kind for kind, report in parity.items() if not report["passed"]]
    if failed:
        raise RuntimeError(f"the {' and '.join(failed)} export(s) disagree with Keras; see {paths['parity']}")
    t = lap("export", t)

    _say(verbose, "[5/6] segmenting a held-out sample image with the exported SavedModel")
    image, label = val_source.read(0)
    prediction = saved_model_logits(saved_model)(image).argmax(-1).astype(np.uint8)
    sample = viz.save_prediction(image, prediction, paths["sample"], val_source.ids[0], model=model)
    sample["comparison"] = viz.save_image(
        viz.side_by_side(image, label, prediction, model=model),
        paths["sample"] / f"{val_source.ids[0]}_comparison.png")
    t = lap("sample", t)

    _say(verbose, "[6/6] drawing the confusion matrix, per-class IoU and training curves")
    viz.save_image(viz.confusion_matrix_image(scores["confusion_matrix"], model=model), paths["confusion_matrix"])
    viz.save_image(viz.iou_bars_image(scores["per_class_iou"], model=model), paths["per_class_iou"])
    viz.save_image(viz.training_curves_image(paths["training_log"]), paths["training_curves"])
    lap("pictures", t)

    summary = {
        "mean_iou": scores["mean_iou"],
        "pixel_accuracy": scores["pixel_accuracy"],
        "mean_accuracy": scores["mean_accuracy"],
        "frequency_weighted_iou": scores["frequency_weighted_iou"],
        "per_class_iou": scores["per_class_iou"],
        "confusion_matrix": np.asarray(scores["confusion_matrix"]).tolist(),
        "parity": parity,
        "config": dataclasses.asdict(config),
        "seconds": {**timings, "total": round(time.perf_counter() - started, 2)},
        "saved_model_version": str(saved_model),
    }
    _write_json(paths["metrics"], summary)
    artefacts = {**{role: str(p) for role, p in paths.items()}, "saved_model_version": str(saved_model),
                 **{f"sample_{k}": str(v) for k, v in sample.items()}}
    summary["artefacts"] = artefacts
    if verbose:
        print(f"\nmean IU {scores['mean_iou']:.4f} on {len(val_source)} held-out images; "
              f"{summary['seconds']['total']:.0f} s in all. Artefacts:")
        width = max(len(k) for k in artefacts)
        for role, path in artefacts.items():
            print(f"  {role:<{width}}  {path}")
    return summary
