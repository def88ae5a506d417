"""Every kind of bad input gives one clear error naming the file (nothing silently dropped)."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from fcn_keras.data import DataError, load_voc, read_example, read_image, read_label, write_synthetic_voc
from fcn_keras.data import decode


@pytest.fixture()
def voc(tmp_path):
    return write_synthetic_voc(tmp_path / "voc", num_images=3, seed=1, image_size=(24, 32))


def _only(root, example_id, split="bad"):
    (root / "ImageSets/Segmentation" / f"{split}.txt").write_text(f"{example_id}\n")
    return split


def _iterate_fails_naming(root, split, filename):
    with pytest.raises(tf.errors.OpError, match=filename):
        list(load_voc(root, split))


def test_corrupt_image(voc):
    path = voc / "JPEGImages/synth_000001.jpg"
    path.write_bytes(b"this is not a jpeg at all" * 20)
    with pytest.raises(DataError, match="synth_000001.jpg: cannot decode image"):
        read_image(path)
    _iterate_fails_naming(voc, _only(voc, "synth_000001"), "synth_000001.jpg")


def test_truncated_image(voc):
    path = voc / "JPEGImages/synth_000002.jpg"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="synth_000002.jpg: cannot decode image"):
        read_image(path)
    _iterate_fails_naming(voc, _only(voc, "synth_000002"), "synth_000002.jpg")


def test_truncated_label(voc):
    path = voc / "SegmentationClass/synth_000002.png"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    _iterate_fails_naming(voc, _only(voc, "synth_000002"), "synth_000002.png")


def test_label_size_differs(voc):
    path = voc / "SegmentationClass/synth_000000.png"
    label = Image.open(path)
    label.crop((0, 0, 30, 24)).save(path)
    with pytest.raises(DataError, match=r"synth_000000.png: label size 30x24 differs from image .* 32x24"):
        read_example(voc / "JPEGImages/synth_000000.jpg", path, 21)
    _iterate_fails_naming(voc, _only(voc, "synth_000000"), "synth_000000.png")


def test_label_values_out_of_range(voc):
    path = voc / "SegmentationClass/synth_000000.png"
    label = Image.open(path)
    values = np.array(label)
    values[0, 0] = 21
    values[1, 1] = 200
    out = Image.fromarray(values, "P")
    out.putpalette(label.getpalette())
    out.save(path)
    with pytest.raises(DataError, match=r"synth_000000.png: label values \[21, 200\] are outside \[0, 21\)"):
        read_label(path, 21)
    assert read_label(path, 201)[1, 1] == 200  # fine for a dataset with more classes
    _iterate_fails_naming(voc, _only(voc, "synth_000000"), "synth_000000.png")


def test_rgb_colour_label(voc):
    path = voc / "SegmentationClass/synth_000000.png"
    Image.open(path).convert("RGB").save(path)
    with pytest.raises(DataError, match=r"synth_000000.png: label has mode 'RGB' \(colour\)"):
        read_label(path, 21)
    _iterate_fails_naming(voc, _only(voc, "synth_000000"), "synth_000000.png")


@pytest.mark.parametrize("missing", ["JPEGImages/synth_000001.jpg", "SegmentationClass/synth_000001.png"])
def test_split_entry_with_missing_files(voc, missing):
    (voc / missing).unlink()
    with pytest.raises(DataError, match=f"{missing}: file listed in .*trainval.txt is missing"):
        load_voc(voc, "trainval")


def test_empty_and_missing_split(voc):
    (voc / "ImageSets/Segmentation/empty.txt").write_text("\n  \n")
    with pytest.raises(DataError, match="empty.txt: the split is empty"):
        load_voc(voc, "empty")
    with pytest.raises(DataError, match="nosuch.txt: split file is missing"):
        load_voc(voc, "nosuch")


@pytest.mark.parametrize("mode", ["L", "RGBA", "I;16", "CMYK"])
def test_unusual_image_modes_are_converted_and_logged_once(voc, mode, caplog, monkeypatch):
    monkeypatch.setattr(decode, "_WARNED_MODES", set())
    rgb = np.array(Image.open(voc / "JPEGImages/synth_000000.jpg"))
    grey = np.array(Image.open(voc / "JPEGImages/synth_000000.jpg").convert("L"))
    if mode == "I;16":
        image = Image.fromarray(grey.astype(np.uint16) * 257)  # 16-bit greyscale
        assert image.mode == "I;16"
    elif mode == "L":
        image = Image.fromarray(grey)
    else:
        image = Image.fromarray(rgb).convert(mode)
    ext = "jpg" if mode == "CMYK" else "png"
    for k in range(2):
        path = voc / f"JPEGImages/odd_{k}.{ext}"
        image.save(path, format="JPEG" if ext == "jpg" else "PNG")
        if ext == "png":  # VOC expects .jpg names; the reader goes by content, not extension
            shutil.move(path, voc / f"JPEGImages/odd_{k}.jpg")
        shutil.copy(voc / "SegmentationClass/synth_000000.png", voc / f"SegmentationClass/odd_{k}.png")
    (voc / "ImageSets/Segmentation/odd.txt").write_text("odd_0\nodd_1\n")
    with caplog.at_level(logging.WARNING, logger="fcn_keras.data"):
        got = [image.numpy() for image, _ in load_voc(voc, "odd")]
    warnings = [r for r in caplog.records if f"mode '{mode}'" in r.getMessage()]
    assert len(warnings) == 1 and "/odd_" in warnings[0].getMessage()  # names the file (decoding is parallel)
    assert got[0].shape == (24, 32, 3) and got[0].dtype == np.uint8
    if mode in ("L", "I;16"):
        np.testing.assert_array_equal(got[0], np.repeat(grey[..., None], 3, -1))
    elif mode == "RGBA":
        np.testing.assert_array_equal(got[0], rgb)
    else:
        assert np.abs(got[0].astype(int) - rgb).mean() < 8  # CMYK JPEG round trip is lossy


def test_check_dataset_lists_every_problem(voc):
    from fcn_keras.data import check_dataset, write_synthetic_voc

    assert check_dataset(voc) == []
    more = write_synthetic_voc(voc, num_images=6, seed=1, image_size=(24, 32))
    (more / "JPEGImages/synth_000001.jpg").write_bytes(b"garbage")
    label = more / "SegmentationClass/synth_000002.png"
    Image.open(label).convert("RGB").save(label)
    (more / "SegmentationClass/synth_000004.png").unlink()
    (more / "ImageSets/Segmentation/empty.txt").write_text("")
    (more / "ImageSets/Segmentation/dup.txt").write_text("synth_000000\nsynth_000000\n")
    problems = [str(p) for p in check_dataset(more)]
    assert len(problems) == 5, problems
    expected = ["synth_000001.jpg: cannot decode image", "synth_000002.png: label has mode 'RGB'",
                "synth_000004.png: label file is missing", "empty.txt: the split is empty",
                "dup.txt: id 'synth_000000' is listed 2 times"]
    for fragment in expected:
        assert sum(fragment in p for p in problems) == 1, (fragment, problems)
    assert [str(p) for p in check_dataset(more, "val")] == []  # val holds none of the broken ids


def test_check_prepared_and_folder(voc, tmp_path):
    from fcn_keras.data import check_dataset, prepare, voc_source

    out = prepare(voc_source(voc, "trainval"), tmp_path / "p", num_shards=1, verbose=0)
    assert check_dataset(out) == []
    shard = next(out.glob("shard-*"))
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF  # flip a byte inside a record: its CRC no longer matches
    shard.write_bytes(bytes(data))
    problems = check_dataset(out)
    assert len(problems) == 1 and problems[0].path == str(shard)
    (voc / "pairs.txt").write_text("JPEGImages/synth_000000.jpg SegmentationClass/synth_000000.png\n"
                                   "JPEGImages/nope.jpg SegmentationClass/synth_000000.png\n")
    problems = check_dataset(voc / "pairs.txt", num_classes=21)
    assert [p.problem for p in problems] == ["image file is missing"] and problems[0].path.endswith("nope.jpg")
    assert [p.problem for p in check_dataset(tmp_path / "nowhere")][0] == "does not exist"
