"""SegmentImages on the DirectRunner: the files `fcn-keras predict` writes, byte for byte; corrupt images reported
per file; reruns skip what is done; names that would collide refused."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from tests.beam.conftest import CLASS_NAMES

ONE_WORKER = ["--direct_num_workers", "1", "--direct_running_mode", "in_memory"]
KINDS = ("mask", "color", "overlay")


def _files(directory) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.glob("*.png"))}


def _lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def predicted(models, images, tmp_path_factory):
    """The outputs of plain `fcn-keras predict` (no Beam) for the .keras file and the SavedModel."""
    from fcn_keras import cli

    out = tmp_path_factory.mktemp("predicted")
    for kind, model in models.items():
        assert cli.main(["predict", model, str(images["good"]), "--out", str(out / kind)]) == 0
    return {kind: out / kind for kind in models}


@pytest.fixture(scope="module")
def keras_run(models, images, tmp_path_factory):
    """One SegmentImages run of the .keras model over the good images and the two corrupt ones."""
    from fcn_keras.beam import segment_images

    out = tmp_path_factory.mktemp("beam") / "keras"
    patterns = [str(images["good"] / "*"), *(str(p) for p in images["corrupt"])]
    report = segment_images(models["keras"], patterns, str(out), options=ONE_WORKER, max_batch_size=3)
    return out, report


def test_keras_model_writes_predicts_files_and_reports_corrupt_images(keras_run, predicted, images):
    out, report = keras_run
    expected = _files(predicted["keras"])
    assert len(expected) == 12
    assert _files(out) == expected  # every picture byte for byte, nothing more
    from fcn_keras.files import current_umask

    assert {oct(p.stat().st_mode & 0o777) for p in out.glob("*.png")} == {oct(0o666 & ~current_umask())}
    masks = [np.asarray(Image.open(out / f"img{k}_mask.png")) for k in range(4)]
    pixels = np.bincount(np.concatenate([m.ravel() for m in masks]), minlength=3)
    assert (pixels > 0.05 * pixels.sum()).sum() >= 2  # masks of several classes, not all class 0
    assert (report.segmented, report.skipped, report.failed) == (4, 0, 2)
    failures = sorted(report.failures(), key=lambda f: f["image"])
    assert [f["image"] for f in failures] == [str(p) for p in images["corrupt"]]
    assert failures[0]["error"].startswith("cannot decode image: cannot identify image file")
    assert "truncated" in failures[1]["error"]
    counts = {line["image"]: line for line in _lines(out / "counts.jsonl")}
    assert sorted(counts) == sorted(str(p) for p in images["good"].iterdir())
    for k, mask in enumerate(masks):
        line = counts[str(next(images["good"].glob(f"img{k}.*")))]
        assert line["mask"] == str(out / f"img{k}_mask.png") and (line["height"], line["width"]) == mask.shape
        assert line["class_pixels"] == {name: int((mask == c).sum()) for c, name in enumerate(CLASS_NAMES)}


def test_saved_model_through_the_cli_writes_predicts_files(models, images, predicted, tmp_path, fcn_keras_cmd):
    status, out, err = fcn_keras_cmd("predict", models["saved_model"], images["good"], "--out", tmp_path / "s",
                                     "--beam", *ONE_WORKER)
    assert status == 0, err
    assert _files(tmp_path / "s") == _files(predicted["saved_model"])
    assert "segmented 4 image(s), skipped 0 whose outputs were all present, none failed" in out
    assert (tmp_path / "s" / "failures.jsonl").read_text() == ""
    assert len(_lines(tmp_path / "s" / "counts.jsonl")) == 4


def test_a_rerun_skips_the_images_whose_outputs_are_all_there(keras_run, models, images, tmp_path, fcn_keras_cmd):
    first, _ = keras_run
    out = tmp_path / "again"
    shutil.copytree(first, out)
    (out / "img2_overlay.png").unlink()  # as if the first run had stopped before this picture
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")}
    status, printed, err = fcn_keras_cmd("predict", models["keras"], images["good"], *images["corrupt"],
                                         "--out", out, "--beam", *ONE_WORKER)
    assert status == 1  # the corrupt images fail again, each named on stderr
    assert sorted(err.splitlines()) == sorted(f"{p}: {f['error']}" for p, f in zip(
        images["corrupt"], sorted(keras_run[1].failures(), key=lambda f: f["image"])))
    assert "segmented 1 image(s), skipped 3 whose outputs were all present, 2 failed" in printed
    assert _files(out) == _files(first)
    # The skipped images' pictures are not written again; img2 is segmented and written whole.
    untouched = {name: stamp for name, stamp in stamps.items() if not name.startswith("img2_")}
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.png") if p.name in untouched} == untouched
    assert len(untouched) == 9 and (out / "img2_mask.png").stat().st_mtime_ns != stamps["img2_mask.png"]
    # counts.jsonl covers every image, the skipped ones counted again from their masks
    key = lambda line: line["image"]  # noqa: E731
    assert sorted(_lines(out / "counts.jsonl"), key=key) == sorted(
        [{**line, "mask": line["mask"].replace(str(first), str(out))} for line in _lines(first / "counts.jsonl")],
        key=key)


def test_two_images_that_would_write_the_same_outputs_are_refused(models, images, tmp_path, fcn_keras_cmd):
    from fcn_keras.beam import segment_images

    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        shutil.copy(images["good"] / "img0.jpg", tmp_path / name / "same.jpg")
    shutil.copy(images["good"] / "img1.jpg", tmp_path / "a" / "other.jpg")
    patterns = [str(tmp_path / "a" / "*"), str(tmp_path / "b" / "*"), str(tmp_path / "a" / "other.jpg")]
    report = segment_images(models["keras"], patterns, str(tmp_path / "out"), options=ONE_WORKER)
    assert (report.segmented, report.failed) == (1, 2)  # other.jpg, matched twice, is one image
    assert sorted(f["image"] for f in report.failures()) == [str(tmp_path / n / "same.jpg") for n in ("a", "b")]
    assert "would write the same outputs (same_*)" in report.failures()[0]["error"]
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == [f"other_{k}.png" for k in sorted(KINDS)]
    # Local inputs on the command line are refused before any pipeline runs, as by plain predict.
    status, _, err = fcn_keras_cmd("predict", models["keras"], tmp_path / "a", tmp_path / "b", "--out",
                                   tmp_path / "cli", "--beam")
    assert status == 1 and err.count("\n") == 1 and "would write the same outputs (same_*)" in err


def test_options_after_beam_go_to_beam_and_unknown_ones_are_refused(models, images, tmp_path, fcn_keras_cmd):
    status, _, err = fcn_keras_cmd("predict", models["keras"], images["good"], "--beam", "--out", tmp_path / "o")
    assert status == 1 and err == ("fcn-keras: error: unknown Beam pipeline option --out (everything after --beam "
                                   "goes to Beam; fcn-keras's own options go before --beam)\n")
    assert not (tmp_path / "o").exists()
    from fcn_keras.beam import pipeline_options

    options = pipeline_options(["--runner", "DataflowRunner", "--project", "p", "--region", "europe-west1",
                                "--temp_location", "gs://b/tmp", "--requirements_file", "requirements.txt"])
    assert options.get_all_options()["project"] == "p" and options.get_all_options()["runner"] == "DataflowRunner"


def test_without_the_beam_extra_beam_fails_in_one_line(models, images, tmp_path, monkeypatch, fcn_keras_cmd):
    import sys

    for name in [m for m in sys.modules if m == "fcn_keras.beam" or m.startswith("fcn_keras.beam.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "apache_beam", None)  # what an environment without apache-beam imports
    status, _, err = fcn_keras_cmd("predict", models["keras"], images["good"], "--out", tmp_path / "o", "--beam")
    assert status == 1
    assert err == 'fcn-keras: error: fcn_keras.beam needs Apache Beam: pip install "fcn_keras[beam]"\n'


def test_importing_fcn_keras_never_imports_beam():
    from tests.test_layout import imports

    for edge in imports():
        inside = edge.source == "fcn_keras.beam" or edge.source.startswith("fcn_keras.beam.")
        if edge.target == "apache_beam" or edge.target.startswith("apache_beam."):
            assert inside, f"{edge}: only fcn_keras.beam may import Apache Beam"
        elif (edge.target == "fcn_keras.beam" or edge.target.startswith("fcn_keras.beam.")) and not inside:
            assert edge.function is not None, f"{edge}: fcn_keras.beam must be imported where it is used"


def test_model_inputs_and_outputs_on_a_remote_filesystem(models, images, predicted, fcn_keras_cmd):
    from pathlib import Path

    from tests.beam import memfs

    memfs.OBJECTS.clear()
    for path in [*images["good"].iterdir(), images["corrupt"][0]]:
        memfs.put(f"bucket/photos/{path.name}", path.read_bytes())
    base = Path(models["saved_model"])
    for path in base.rglob("*"):  # a TF Serving base directory: the highest version is used
        if path.is_file():
            memfs.put(f"bucket/models/fcn/{path.relative_to(base).as_posix()}", path.read_bytes())
    status, out, err = fcn_keras_cmd("predict", "memfs://bucket/models/fcn", "memfs://bucket/photos/",
                                     "--out", "memfs://bucket/masks", "--beam", *ONE_WORKER)
    assert status == 1 and err == "memfs://bucket/photos/junk.jpg: cannot decode image: cannot identify image file " \
                                  "'memfs://bucket/photos/junk.jpg'\n"
    assert "segmenting 0 local image(s) and 1 pattern(s)" in out and "segmented 4 image(s)" in out
    written = memfs.listing("bucket/masks")
    assert {name: content for name, content in written.items() if name.endswith(".png")} == _files(
        predicted["saved_model"])
    assert len(written["counts.jsonl"].decode().splitlines()) == 4
    # Nothing else: no temporary picture, no sink's temporary directory
    assert sorted(written) == sorted([*_files(predicted["saved_model"]), "counts.jsonl", "failures.jsonl"])
    # A remote .keras file reaches Keras (which reads local files only) as a local copy.
    from fcn_keras.beam.filesystem import local_copy

    remote = memfs.put("bucket/models/model.keras", Path(models["keras"]).read_bytes())
    assert Path(local_copy(remote)).read_bytes() == Path(models["keras"]).read_bytes()
    # A remote pattern that matches nothing is refused before a job starts.
    status, _, err = fcn_keras_cmd("predict", "memfs://bucket/models/fcn", "memfs://bucket/none/*.jpg",
                                   "--out", "memfs://bucket/other", "--beam")
    assert status == 1 and err == "fcn-keras: error: no file matches the pattern memfs://bucket/none/*.jpg\n"


def test_tiles_reach_the_workers_segmenter(models, images, predicted, tmp_path, fcn_keras_cmd):
    # Windows of 32x32 without overlap: not the whole image's masks, so equal files show --tile reached Beam.
    tiled = ["--tile", "32,32", "--overlap", "0"]
    assert fcn_keras_cmd("predict", models["keras"], images["good"], "--out", tmp_path / "p", *tiled)[0] == 0
    status, _, err = fcn_keras_cmd("predict", models["keras"], images["good"], "--out", tmp_path / "b", *tiled,
                                   "--beam", *ONE_WORKER)
    assert status == 0, err
    assert _files(tmp_path / "b") == _files(tmp_path / "p")
    assert _files(tmp_path / "p") != _files(predicted["keras"])
