"""load_voc and the synthetic generator on real files: exact palette indices, order, sizes."""

from __future__ import annotations

import hashlib

import numpy as np
from PIL import Image

from fcn_keras.data import load_voc, voc_source, write_synthetic_voc


def _pil_label(root, example_id):
    return np.array(Image.open(root / "SegmentationClass" / f"{example_id}.png"))


def _pil_image(root, example_id):
    return np.array(Image.open(root / "JPEGImages" / f"{example_id}.jpg").convert("RGB"))


def test_synthetic_layout_and_labels(synthetic_voc):
    splits = synthetic_voc / "ImageSets" / "Segmentation"
    train = splits.joinpath("train.txt").read_text().split()
    val = splits.joinpath("val.txt").read_text().split()
    assert sorted(train + val) == splits.joinpath("trainval.txt").read_text().split()
    assert train and val and not set(train) & set(val)
    classes = set()
    for example_id in train + val:
        label = Image.open(synthetic_voc / "SegmentationClass" / f"{example_id}.png")
        assert label.mode == "P"
        values = np.array(label)
        classes |= set(np.unique(values).tolist())
        assert 255 in values and 0 in values  # void borders and background
        assert Image.open(synthetic_voc / "JPEGImages" / f"{example_id}.jpg").format == "JPEG"
    assert len(classes - {0, 255}) >= 3


def test_synthetic_is_deterministic(tmp_path):
    def digest(root):
        return hashlib.sha256(b"".join(p.read_bytes() for p in sorted(root.rglob("*.*")))).hexdigest()

    a = write_synthetic_voc(tmp_path / "a", num_images=3, seed=5)
    b = write_synthetic_voc(tmp_path / "b", num_images=3, seed=5)
    c = write_synthetic_voc(tmp_path / "c", num_images=3, seed=6)
    assert digest(a) == digest(b) != digest(c)


def test_load_voc_exact_labels_synthetic(synthetic_voc):
    ids = (synthetic_voc / "ImageSets/Segmentation/trainval.txt").read_text().split()
    got = list(load_voc(synthetic_voc, "trainval", with_ids=True))
    assert [i.numpy().decode() for _, _, i in got] == ids
    sizes = set()
    for image, label, example_id in got:
        example_id = example_id.numpy().decode()
        assert image.dtype == "uint8" and label.dtype == "uint8"
        np.testing.assert_array_equal(label.numpy(), _pil_label(synthetic_voc, example_id))
        np.testing.assert_array_equal(image.numpy(), _pil_image(synthetic_voc, example_id))
        sizes.add(tuple(label.shape))
    assert sizes == {(96, 128), (70, 50)}


def test_load_voc_exact_labels_voc_mini(voc_mini):
    for split in ("train", "val"):
        ids = (voc_mini / f"ImageSets/Segmentation/{split}.txt").read_text().split()
        got = list(load_voc(voc_mini, split))
        assert len(got) == len(ids)
        for (image, label), example_id in zip(got, ids):
            expected = _pil_label(voc_mini, example_id)
            np.testing.assert_array_equal(label.numpy(), expected)
            assert image.shape[:2] == expected.shape and image.shape[2] == 3
    # A real VOC label has classes and void; decoding as luma would not give these values.
    assert {0, 255} <= set(np.unique(_pil_label(voc_mini, ids[0])).tolist())


def test_voc_source_lists_files(synthetic_voc):
    source = voc_source(synthetic_voc, "val")
    assert source.num_classes == 21 and source.class_names[15] == "person"
    assert all(p.endswith(".jpg") for p in source.images)
    assert len(source) == len((synthetic_voc / "ImageSets/Segmentation/val.txt").read_text().split())
