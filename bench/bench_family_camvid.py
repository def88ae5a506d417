"""The family on CamVid from scratch under one CPU budget: FCN-8s, SegNet, DeconvNet, DeepLab-LargeFOV (± CRF),
U-Net and PSPNet, each trained for the same wall-clock time on this machine and scored on the 233 test images.

The SegNet paper (PAMI 2017, Table 3) compares FCN, DeconvNet, SegNet and DeepLab-LargeFOV on CamVid with
ImageNet-initialised VGG16 encoders trained on 3,433 road images. Offline there are no ImageNet weights, so
here every member is trained from random initialisation on the 367 training images, at a small width
(``alpha``; FCN-8s over ``tiny_vgg``) so that it trains on 2 CPU cores: the table compares the architectures
under one budget, not the papers' models.

Full mode (``python -m bench --only family_camvid``; ``FCN_KERAS_CAMVID`` names the folder, default
``../shared/data/camvid``; ``FCN_KERAS_BENCH_FAMILY_BUDGET_S`` the training seconds per member, default 300;
``FCN_KERAS_BENCH_FAMILY_ONLY`` a comma-separated subset; ``FCN_KERAS_BENCH_FAMILY_OUT`` where runs go):

1. each member's seconds per training step are measured on random batches of the recipe's shape;
2. it is trained with ``fcn_keras.training.train`` for the whole epochs that fit the budget
   (recipe ``camvid_family_scratch`` with the member's ``[model]``);
3. its ``best.keras`` (best validation mean IU) is scored once on the test split at native 360x480, and
   DeepLab-LargeFOV also with the dense CRF (``fcn_keras.crf``, DeepLab's published parameters).

Quick mode checks the member table against the registry and builds each member at its width: no training.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

CAMVID = Path(os.environ.get("FCN_KERAS_CAMVID", Path(__file__).resolve().parents[2] / "shared" / "data" / "camvid"))
RECIPE = "camvid_family_scratch"

# member -> its [model] section: each at a small width, encoders of about the same size (16 ... 128 channels).
MEMBERS: dict[str, dict] = {
    "FCN-8s (tiny_vgg)": {"architecture": "fcn8s", "backbone": "tiny_vgg"},
    "SegNet": {"architecture": "segnet", "alpha": 0.25},
    "DeconvNet": {"architecture": "deconvnet", "alpha": 0.25},
    "DeepLab-LargeFOV": {"architecture": "deeplab_largefov", "alpha": 0.25},
    "U-Net (same padding)": {"architecture": "unet", "alpha": 0.25, "options": {"padding": "same"}},
    "PSPNet": {"architecture": "pspnet", "alpha": 0.25},
}
CRF_MEMBERS = ("DeepLab-LargeFOV",)

# SegNet paper (arXiv 1511.00561v3, PAMI 2017), Table 3: CamVid test, ImageNet VGG16 encoders trained on 3,433
# road images: global accuracy, class average accuracy, mean IU. Its DeconvNet has 1024-channel fc layers.
PUBLISHED = {
    ("FCN-8s (tiny_vgg)", False): (83.27, 59.56, 49.83),
    ("SegNet", False): (90.40, 71.20, 60.10),
    ("DeconvNet", False): (89.58, 70.24, 59.77),
    ("DeepLab-LargeFOV", False): (88.20, 62.53, 53.88),
    ("DeepLab-LargeFOV", True): (89.71, 60.67, 54.74),
}


def _recipe(member: str, steps: int | None = None):
    from fcn_keras.recipes import load_recipe

    model = {"alpha": 1.0, "options": {}, "backbone": "vgg16", **MEMBERS[member]}
    recipe = load_recipe(RECIPE).replace(model=model)
    if steps is not None:
        recipe = recipe.replace(training={"steps": steps})
    return recipe


def seconds_per_step(member: str, warmup: int = 3, timed: int = 8) -> float:
    """Median wall seconds of one training step of ``member`` on random batches of the recipe's shape."""
    import numpy as np

    from fcn_keras.training.compile import compile_model
    from fcn_keras.training.init import build_model

    recipe = _recipe(member)
    model = compile_model(build_model(recipe, init="none"), recipe)
    rng = np.random.default_rng(0)
    h, w = recipe.data.crop_size
    x = rng.normal(size=(recipe.data.batch_size, h, w, 3)).astype("float32")
    y = rng.integers(0, recipe.model.num_classes, (recipe.data.batch_size, h, w)).astype("int32")
    times = []
    for i in range(warmup + timed):
        start = time.perf_counter()
        model.train_on_batch(x, y)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return float(np.median(times))


def _scores(model, crf: bool, out_json: Path) -> dict:
    from fcn_keras import data
    from fcn_keras.evaluation import evaluate

    source = data.folder_source(CAMVID / "test.txt", metadata="camvid")
    kwargs = {"crf": True} if crf else {}
    start = time.perf_counter()
    scores = evaluate(model, source, verbose=0, out_json=out_json, **kwargs)
    return {**scores, "evaluate_s": round(time.perf_counter() - start, 1)}


def _train(member: str, steps: int, run_dir: Path) -> tuple[dict, float | None]:
    """``train()``'s result and the training's wall seconds (validations included), kept beside the run.

    A finished run resumes at its end and keeps the seconds its first, whole run measured.
    """
    from fcn_keras.files import write_text
    from fcn_keras.training import train

    start = time.perf_counter()
    result = train(_recipe(member, steps), run_dir, data_root=CAMVID, verbose=0)
    timing = run_dir / "train_seconds.txt"
    if result["resumed_from"] is None:
        write_text(timing, f"{time.perf_counter() - start:.1f}\n")
    return result, float(timing.read_text()) if timing.exists() else None


def _quick() -> dict:
    import keras

    from fcn_keras.models.architectures import ARCHITECTURES
    from fcn_keras.training.init import build_model

    rows = []
    for member, section in MEMBERS.items():
        if section["architecture"] not in ARCHITECTURES:
            rows.append({"member": member, "error": f"{section['architecture']} is not registered"})
            continue
        keras.utils.set_random_seed(0)
        model = build_model(_recipe(member), init="none")
        rows.append({"member": member, "architecture": model.architecture, "params": model.count_params()})
    return {"table": rows}


def run(quick: bool = False) -> dict:
    if quick:
        return _quick()
    import keras

    if not CAMVID.is_dir():
        raise FileNotFoundError(f"CamVid folder {CAMVID} is missing: set FCN_KERAS_CAMVID")
    budget = float(os.environ.get("FCN_KERAS_BENCH_FAMILY_BUDGET_S", 300))
    only = [m.strip() for m in os.environ.get("FCN_KERAS_BENCH_FAMILY_ONLY", "").split(",") if m.strip()]
    out = Path(os.environ.get("FCN_KERAS_BENCH_FAMILY_OUT", "runs/family_camvid"))
    rows = []
    for member in MEMBERS:
        if only and member not in only:
            continue
        recipe = _recipe(member)
        per_step = seconds_per_step(member)
        epoch = recipe.training.steps_per_epoch
        steps = max(epoch, int(budget / per_step) // epoch * epoch)
        run_dir = out / member.split(" ")[0].lower()
        result, train_s = _train(member, steps, run_dir)
        model = keras.models.load_model(result["best"] or result["model"])
        row = {"member": member, "architecture": model.architecture, "params": model.count_params(),
               "s_per_step": round(per_step, 3), "steps": steps, "train_s": train_s,
               "best_val_mean_iou": result["best_val_mean_iou"]}
        for crf in (False, True) if member in CRF_MEMBERS else (False,):
            scores = _scores(model, crf, run_dir / f"test_scores{'_crf' if crf else ''}.json")
            figures = {k: float(scores[k]) for k in (
                "pixel_accuracy", "mean_accuracy", "mean_iou", "frequency_weighted_iou", "evaluate_s")}
            rows.append({**row, "crf": crf, "published": PUBLISHED.get((member, crf)), **figures})
            print(json.dumps(rows[-1]), flush=True)
    return {"budget_s_per_member": budget, "camvid": str(CAMVID), "table": rows}
