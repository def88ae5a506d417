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


def _pairs(*shapes, label_dtype=np.uint8, label_value=1):
    """A tf.data.Dataset of (image, label) with the given ((image h, w), (label h, w)) sizes."""
    def gen():
        for (ih, iw), (lh, lw) in shapes:
            yield np.zeros((ih, iw, 3), np.uint8), np.full((lh, lw), label_value, label_dtype)
    signature = (tf.TensorSpec([None, None, 3], tf.uint8), tf.TensorSpec([None, None], tf.as_dtype(label_dtype)))
    return tf.data.Dataset.from_generator(gen, output_signature=signature)


def test_prepare_refuses_tf_data_labels_that_do_not_fit_a_byte(tmp_path):
    from fcn_keras.data import prepare

    labels = np.zeros((3, 4, 5), np.int32)
    labels[1, 0, :2] = (256, 300)  # would wrap to 0 and 44 as uint8
    ds = tf.data.Dataset.from_tensor_slices((np.zeros((3, 4, 5, 3), np.uint8), labels, ["a", "b", "c"]))
    with pytest.raises(DataError, match=r"prepare\(source\): example 1 \(id 'b'\): label values \[256, 300\] "
                                        r"do not fit in 0\.\.255"):
        prepare(ds, tmp_path / "p", verbose=0)
    assert not (tmp_path / "p" / "manifest.json").exists()
    labels[1, 0, :2] = (7, 255)
    with pytest.raises(DataError, match=r"prepare\(source\): example 1: label values \[7\] are outside \[0, 5\)"):
        prepare(tf.data.Dataset.from_tensor_slices((np.zeros((3, 4, 5, 3), np.uint8), labels)), tmp_path / "p",
                num_classes=5, verbose=0)
    with pytest.raises(DataError, match=r"prepare\(source\): example 0: label values \(dtype float32\) are not whole"):
        prepare(tf.data.Dataset.from_tensors((np.zeros((4, 5, 3), np.uint8), np.full((4, 5), 1.5, np.float32))),
                tmp_path / "p", verbose=0)
    with pytest.raises(DataError, match=r"example 0: image values \(dtype int32\) are not whole numbers in 0\.\.255"):
        prepare(tf.data.Dataset.from_tensors((np.full((4, 5, 3), 256, np.int32), np.zeros((4, 5), np.uint8))),
                tmp_path / "p", verbose=0)
    out = prepare(tf.data.Dataset.from_tensor_slices((np.zeros((3, 4, 5, 3), np.uint8), labels)), tmp_path / "p",
                  num_classes=8, verbose=0)  # int32 labels that fit are fine
    assert read_label_values(out) == {0, 7, 255}


def read_label_values(out) -> set[int]:
    from fcn_keras.data import load_prepared

    return {int(v) for _, label in load_prepared(out) for v in np.unique(label.numpy())}


def test_check_prepared_checks_label_values(tmp_path):
    import json

    from fcn_keras.data import check_dataset, prepare

    labels = np.zeros((4, 4, 5), np.uint8)
    labels[2, 1, 1] = 30
    labels[3, 0, 0] = 255  # void is fine
    ds = tf.data.Dataset.from_tensor_slices((np.zeros((4, 4, 5, 3), np.uint8), labels, ["a", "b", "c", "d"]))
    out = prepare(ds, tmp_path / "p", num_shards=2, verbose=0)  # no num_classes: nothing to check against
    assert check_dataset(out) == []
    problems = check_dataset(out, num_classes=5)
    assert [str(p) for p in problems] == [
        f"{out / 'shard-00001-of-00002.tfrecord'}: record 0 (id 'c'): label values [30] are outside [0, 5) "
        "and not 255 (void)"]
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["num_classes"] = 21
    (out / "manifest.json").write_text(json.dumps(manifest))
    problems = check_dataset(out)  # the manifest's count
    assert len(problems) == 1
    assert problems[0].problem.endswith("label values [30] are outside [0, 21) and not 255 (void)")
    assert check_dataset(out, num_classes=31) == []  # an explicit count wins


@pytest.mark.parametrize("training", [False, True], ids=["evaluation", "training"])
@pytest.mark.parametrize("image_size, label_size", [((4, 7), (4, 6)), ((4, 6), (5, 6))],
                         ids=["image-larger", "label-larger"])
def test_pipeline_refuses_image_and_label_of_different_sizes(training, image_size, label_size):
    from fcn_keras.data import make_pipeline

    ds = _pairs(((4, 6), (4, 6)), (image_size, label_size))
    message = (rf"make_pipeline\(data\): example 1: image size {image_size[1]}x{image_size[0]} differs from its "
               rf"label size {label_size[1]}x{label_size[0]}")
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        list(make_pipeline(ds, training=training, seed=0))
    dicts = ds.map(lambda image, label: {"image": image, "label": label[..., None]})
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        list(make_pipeline(dicts, training=training, crop_size=3, scale_range=(0.5, 2.0), seed=0))
    assert len(list(make_pipeline(_pairs(((4, 6), (4, 6)), ((5, 2), (5, 2))), training=training, seed=0))) == 2


def test_augment_refuses_image_and_label_of_different_sizes():
    from fcn_keras.data import augment

    with pytest.raises(ValueError, match=r"augment: image size \(4, 7\) differs from label size \(4, 6\)"):
        augment(np.zeros((4, 7, 3), np.uint8), np.zeros((4, 6), np.uint8), [1, 2], crop_size=(3, 3))
    ds = _pairs(((4, 7), (4, 6))).map(lambda image, label: augment(image, label, [1, 2], crop_size=(3, 3)))
    with pytest.raises(tf.errors.InvalidArgumentError, match="augment: image and label sizes differ"):
        list(ds)


def test_folder_image_larger_than_its_label_names_both_files(tmp_path):
    from fcn_keras.data import load_folder, make_pipeline

    (tmp_path / "img").mkdir()
    (tmp_path / "lab").mkdir()
    Image.new("RGB", (8, 6)).save(tmp_path / "img" / "x.png")
    Image.new("L", (7, 6)).save(tmp_path / "lab" / "x.png")
    (tmp_path / "list.txt").write_text("img/x.png lab/x.png\n")
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"lab/x.png: label size 7x6 differs from image x.png"):
        list(make_pipeline(load_folder(tmp_path / "list.txt", num_classes=3), training=True, seed=0))
