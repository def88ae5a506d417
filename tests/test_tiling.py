"""Tiled inference (fcn_keras.tiling): equal to the whole image's output where the theory says, different only
near the cuts below it, the network only ever shown windows, and the CLI and evaluation on top.

The models are tiny FCNs over ``tiny_vgg`` whose zero-initialised score layers are given random weights:
with the reference's zero init every logit would be 0 and any tiling would trivially "match".
"""

from __future__ import annotations

import json
import tracemalloc

import keras
import numpy as np
import pytest

import fcn_keras
from fcn_keras.models.receptive_field import architecture_receptive_field, receptive_field
from fcn_keras.segmenter import Segmenter, keras_segmenter
from fcn_keras.tiling import exact_overlap, tiled, windows

IMAGE_SHAPE = (333, 517, 3)  # no side a multiple of the stride


def _tiny(architecture: str, seed: int = 0):
    keras.utils.set_random_seed(seed)  # the same encoder every run: tolerances below are for its logits
    model = fcn_keras.models.FCN(architecture, num_classes=3, backbone="tiny_vgg")
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if layer.name.startswith("score") and layer.weights:
            layer.set_weights([rng.normal(size=w.shape).astype("float32") * 0.5 for w in layer.get_weights()])
    return model


@pytest.fixture(scope="module")
def models():
    return {name: _tiny(name) for name in ("fcn32s", "fcn8s")}


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(1).integers(0, 256, IMAGE_SHAPE, dtype=np.uint8)


@pytest.fixture(scope="module")
def whole(models, image):
    """Each model's segmenter and its untiled logits of ``image``."""
    segmenters = {name: keras_segmenter(model) for name, model in models.items()}
    return {name: (s, s.logits(image)) for name, s in segmenters.items()}


def _recording(segmenter: Segmenter, shapes: list) -> Segmenter:
    """``segmenter`` whose logits record the shape of every image they are given."""
    def logits(image):
        shapes.append(image.shape)
        return segmenter.logits(image)

    return Segmenter(logits, segmenter.class_names, segmenter.palette, segmenter.description,
                     segmenter.receptive_field)


# The receptive field and stride, derived from the layers, against the network's behaviour ---------------


@pytest.mark.parametrize("architecture", ["fcn32s", "fcn8s"])
def test_receptive_field_is_what_one_perturbed_pixel_reaches(models, architecture):
    """Perturbing one input pixel at each of the 32 phases of the pooling grid changes exactly the outputs
    the derived receptive field says: the bound is reached, never exceeded."""
    model = models[architecture]
    field = receptive_field(model)
    assert field.stride == 32 and field.before == field.after  # tiny_vgg's heads are centred
    rng = np.random.default_rng(2)
    strip = rng.uniform(0, 255, (1, 48, 352, 3)).astype("float32")  # columns are measured: a short strip will do
    centre = 128
    batch = np.repeat(strip, 32, axis=0)
    for phase in range(32):
        batch[phase, 24, centre + phase] += 200.0
    changed = np.abs(np.asarray(model.predict(batch, batch_size=8, verbose=0))
                     - np.asarray(model(strip))).max(axis=(1, 3)) > 0  # (phase, column)
    reach_left = max(centre + p - np.nonzero(changed[p])[0].min() for p in range(32))
    reach_right = max(np.nonzero(changed[p])[0].max() - centre - p for p in range(32))
    # An output q depends on inputs q - before ... q + after: a pixel i moves outputs up to i + before.
    assert (reach_right, reach_left) == (field.before[1], field.after[1])


def test_the_stride_is_the_period_of_shifts(models):
    """Shifting the input by the stride shifts the output away from the borders exactly; half of it does not."""
    model = models["fcn8s"]
    big = np.random.default_rng(3).integers(0, 256, (1, 320, 384, 3)).astype("float32")
    out = np.asarray(model(big))
    margin = receptive_field(model).radius
    for shift, equal in ((32, True), (16, False)):
        shifted = np.asarray(model(big[:, shift:, shift:]))
        inner = (slice(margin, 320 - shift - margin), slice(margin, 384 - shift - margin))
        same = np.allclose(shifted[0][inner], out[0, shift:, shift:][inner], atol=1e-5 * np.abs(out).max())
        assert same == equal, shift


def test_an_export_s_architecture_gives_the_model_s_receptive_field(models):
    """What a SavedModel segmenter uses: the network its export.json names, rebuilt once."""
    assert architecture_receptive_field("fcn8s", "tiny_vgg") == receptive_field(models["fcn8s"])
    with pytest.raises(ValueError, match="no receptive field for architecture 'fcn4s'"):
        architecture_receptive_field("fcn4s", "tiny_vgg")


# Equality, and where it stops ---------------------------------------------------------------------------


@pytest.mark.parametrize("architecture, tile", [("fcn32s", (300, 332)), ("fcn8s", (320, 352))])
def test_tiled_equals_the_whole_image_at_the_exact_overlap(whole, image, architecture, tile):
    """Windows starting on the stride's grid, overlap >= twice the radius: the same logits and mask. (300 is no
    multiple of 32: only tile - overlap has to be.)"""
    segmenter, expected = whole[architecture]
    overlap = exact_overlap(segmenter, tile)
    assert overlap >= 2 * segmenter.receptive_field().radius and (tile[0] - overlap) % 32 == 0
    tiles = tiled(segmenter, tile, overlap)
    plan = tiles.windows(*image.shape[:2])
    assert len({r for r, _ in plan}) >= 2 and len({c for _, c in plan}) >= 3
    logits = tiles.logits(image)
    np.testing.assert_allclose(logits, expected, rtol=0, atol=1e-4 * np.abs(expected).max())
    mask = tiles.segment(image)
    assert mask.dtype == np.uint8
    np.testing.assert_array_equal(mask, expected.argmax(-1))
    assert tiled(segmenter, tile).overlap == overlap  # the default is the exact overlap


def test_smaller_overlaps_differ_only_near_the_cuts(whole, image):
    """Below the exact overlap, a kept pixel can differ only if its receptive field crosses its window's inner
    edge; the smaller the overlap, the more pixels do."""
    segmenter, expected = whole["fcn8s"]
    radius = segmenter.receptive_field().radius
    changed = {}
    for overlap in (0, 64, 128):
        tiles = tiled(segmenter, (256, 256), overlap)
        error = np.abs(tiles.logits(image) - expected).max(-1)
        differs = error > 1e-4 * np.abs(expected).max()
        near = np.zeros(image.shape[:2], bool)
        for rows, cols in tiles.windows(*image.shape[:2]):
            r = np.arange(rows.keep_start, rows.keep_stop)[:, None]
            c = np.arange(cols.keep_start, cols.keep_stop)[None, :]
            inner = np.full(np.broadcast_shapes(r.shape, c.shape), np.inf)
            for distance, interior in ((r - rows.start, rows.start > 0), (rows.stop - 1 - r, rows.stop < image.shape[0]),
                                       (c - cols.start, cols.start > 0), (cols.stop - 1 - c, cols.stop < image.shape[1])):
                if interior:
                    inner = np.minimum(inner, distance)
            near[rows.keep_start:rows.keep_stop, cols.keep_start:cols.keep_stop] = inner < radius
        assert differs.any() and not (differs & ~near).any(), overlap
        changed[overlap] = differs.mean()
    assert changed[0] > changed[64] > changed[128]


# Memory: the network sees windows only; segment keeps one window's scores -------------------------------


def test_the_network_only_ever_sees_windows_and_segment_holds_one_window(whole):
    """Every call of the network is on one window; besides the mask, segment's NumPy memory stays below half of
    what the whole image's logits would take (tracemalloc sees NumPy's buffers; TensorFlow's are the window's)."""
    segmenter, _ = whole["fcn8s"]
    shapes: list = []
    tiles = tiled(_recording(segmenter, shapes), (128, 160), 0)
    big = np.random.default_rng(4).integers(0, 256, (512, 640, 3), dtype=np.uint8)
    plan = tiles.windows(512, 640)
    tracemalloc.start()
    try:
        mask = tiles.segment(big)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(shapes) == len(plan) == 16
    assert {s for s in shapes} == {(128, 160, 3)}
    full_logits = 512 * 640 * 3 * np.dtype(np.float32).itemsize
    assert mask.shape == (512, 640) and mask.nbytes <= peak < full_logits / 2, (peak, full_logits)


# Edge cases and bad input --------------------------------------------------------------------------------


def test_an_image_smaller_than_the_tile_is_one_window(whole, image):
    segmenter, expected = whole["fcn32s"]
    shapes: list = []
    small = image[:100, :150]
    out = tiled(_recording(segmenter, shapes), (256, 256), 64).logits(small)
    assert shapes == [(100, 150, 3)]
    np.testing.assert_array_equal(out, segmenter.logits(small))


def test_windows_partition_the_axis():
    for length, tile, overlap in ((600, 256, 64), (257, 256, 0), (1000, 300, 75), (31, 64, 32)):
        plan = windows(length, tile, overlap)
        kept = np.concatenate([np.arange(w.keep_start, w.keep_stop) for w in plan])
        np.testing.assert_array_equal(kept, np.arange(length))
        assert all(w.stop - w.start <= tile and w.start <= w.keep_start < w.keep_stop <= w.stop for w in plan)
        assert all(b.start - a.start == tile - overlap for a, b in zip(plan, plan[1:]))
        assert all(w.keep_start - w.start >= overlap // 2 for w in plan[1:])
        assert all(w.stop - w.keep_stop >= overlap // 2 for w in plan[:-1])


@pytest.mark.parametrize("tile, overlap, message", [
    ((256, 256), 256, r"^overlap must be smaller than the tile \(256, 256\), got 256$"),
    ((256, 256), 300, r"^overlap must be smaller than the tile"),
    ((256, 256), -32, r"^overlap must be a non-negative integer number of pixels, got -32$"),
    ((256, 256), 1.5, r"^overlap must be a non-negative integer"),
    ((256, 256), 100, r"^overlap: tile \(256, 256\) minus overlap 100 must be a multiple of the network's stride 32 "
                      r".*e\.g\. overlap 96 or 128$"),
    ((250, 256), 0, r"^tile \(250, 256\): its height and width must differ by a multiple of the network's stride 32"),
    ((256,), 0, r"^tile must be \(height, width\) with two positive integers, got \(256,\)$"),
    ((0, 256), 0, r"^tile must be \(height, width\)"),
    ((64, 64), None, r"^tile \(64, 64\) is too small for exact tiling: .* exact overlap is 256 \(its receptive field "
                     r"reaches 121 pixels\)"),
])
def test_bad_arguments_are_refused_naming_them(whole, tile, overlap, message):
    with pytest.raises(ValueError, match=message):
        tiled(whole["fcn8s"][0], tile, overlap)


def test_a_segmenter_that_does_not_know_its_stride_is_refused(whole):
    segmenter, _ = whole["fcn8s"]
    blind = Segmenter(segmenter.logits, segmenter.class_names, segmenter.palette, "blind")
    with pytest.raises(ValueError, match="segmenter 'blind' does not know its network's stride"):
        tiled(blind, (256, 256), 64)
    with pytest.raises(ValueError, match=r"tiled inference takes one RGB image \(H, W, 3\) with pixels, got shape"):
        tiled(segmenter, (256, 256), 64).segment(np.zeros((10, 10), np.uint8))


# The library's users: evaluate and the CLI ---------------------------------------------------------------


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, models):
    """A .keras file of the tiny FCN-8s and a small synthetic VOC dataset of images larger than a tile."""
    from fcn_keras import data

    work = tmp_path_factory.mktemp("tiling")
    models["fcn8s"].save(work / "m.keras")
    root = data.write_synthetic_voc(work / "voc", num_images=2, image_size=(333, 400), num_classes=3,
                                    val_fraction=0.5)
    return work, root


@pytest.fixture(scope="module")
def whole_scores(models, workspace):
    """The dataset's val split and the untiled evaluation of the tiny FCN-8s on it."""
    from fcn_keras import data
    from fcn_keras.evaluation import evaluate

    source = data.voc_source(workspace[1], "val", num_classes=3)
    return source, evaluate(models["fcn8s"], source, verbose=0)


def test_tiled_evaluation_counts_the_same_confusion(models, whole_scores):
    from fcn_keras.evaluation import evaluate

    source, whole_result = whole_scores
    tiled_result = evaluate(models["fcn8s"], source, tile=(320, 352), verbose=0)
    np.testing.assert_array_equal(tiled_result["confusion_matrix"], whole_result["confusion_matrix"])
    coarse = evaluate(models["fcn8s"], source, tile=(256, 256), overlap=0, verbose=0)
    assert coarse["confusion_matrix"].sum() == whole_result["confusion_matrix"].sum()
    assert not np.array_equal(coarse["confusion_matrix"], whole_result["confusion_matrix"])
    with pytest.raises(ValueError, match="batch_size=2 with tile: tiled evaluation runs one image at a time"):
        evaluate(models["fcn8s"], source, tile=(320, 352), batch_size=2, verbose=0)
    with pytest.raises(ValueError, match="overlap applies to tiled evaluation"):
        evaluate(models["fcn8s"], source, overlap=64, verbose=0)


def _run_cli(capsys, *argv):
    from fcn_keras import cli

    status = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_cli_predict_and_evaluate_with_tiles(models, workspace, whole_scores, capsys, monkeypatch):
    """The default overlap is the exact one: the masks and the confusion are the whole image's. With --tile,
    images past PIL's decompression-bomb guard are read (here the guard is lowered to below these images)."""
    from PIL import Image

    from fcn_keras.data import read_image

    work, root = workspace
    images = root / "JPEGImages"
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50_000)  # restored after the test; 333x400 is over twice it
    status, _, err = _run_cli(capsys, "predict", work / "m.keras", images, "--out", work / "whole")
    assert status == 1 and "decompression bomb" in err
    status, out, err = _run_cli(capsys, "predict", work / "m.keras", images, "--out", work / "tiled",
                                "--tile", "320,352")
    assert status == 0, err
    assert "tiles 320x352 overlapping 256 (exact from 256)" in out
    assert err.count("window 4/4\n") == 2  # progress: each image's four windows
    segmenter = keras_segmenter(models["fcn8s"])
    paths = sorted(images.glob("*.jpg"))
    assert len(paths) == 2
    for path in paths:
        np.testing.assert_array_equal(np.asarray(Image.open(work / "tiled" / f"{path.stem}_mask.png")),
                                      segmenter.segment(read_image(path)))

    status, out, err = _run_cli(capsys, "evaluate", work / "m.keras", root, "--num-classes", "3",
                                "--out", work / "eval", "--tile", "320,352", "--overlap", "256")
    assert status == 0, err
    assert "in 320x352 windows" in out
    tiled_metrics = json.loads((work / "eval" / "metrics.json").read_text())
    assert tiled_metrics["confusion_matrix"] == whole_scores[1]["confusion_matrix"].tolist()


@pytest.mark.parametrize("argv, message", [
    (["--tile", "320x352"], "argument --tile: expected HEIGHT,WIDTH or SIZE in pixels (e.g. 1024,1024), got '320x352'"),
    (["--tile", "320,0"], "argument --tile: expected HEIGHT,WIDTH or SIZE in pixels (e.g. 1024,1024) with positive numbers, got '320,0'"),
    (["--tile", "256,256", "--overlap", "-1"], "argument --overlap: expected a non-negative integer, got -1"),
])
def test_cli_refuses_bad_tiles_in_one_line(workspace, capsys, argv, message):
    work, root = workspace
    status, _, err = _run_cli(capsys, "predict", work / "m.keras", root / "JPEGImages", "--out", work / "x", *argv)
    assert status == 2 and message in err and err.count("\n") == 1


def test_cli_refuses_an_overlap_off_the_grid_and_an_overlap_without_tile(workspace, capsys):
    work, root = workspace
    status, _, err = _run_cli(capsys, "predict", work / "m.keras", root / "JPEGImages", "--out", work / "y",
                              "--tile", "256,256", "--overlap", "100")
    assert status == 1 and err.startswith("fcn-keras: error: overlap: tile (256, 256) minus overlap 100 must be a "
                                          "multiple of the network's stride 32") and err.count("\n") == 1
    status, _, err = _run_cli(capsys, "evaluate", work / "m.keras", root, "--num-classes", "3", "--overlap", "64")
    assert status == 1 and err == "fcn-keras: error: --overlap applies to tiled inference: give --tile H,W with it\n"
