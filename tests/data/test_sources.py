"""SBD (.mat), the reference split rules, folder datasets (CamVid) on real files."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat

from fcn_keras.data import (
    DataError,
    dataset_kind,
    dataset_source,
    dataset_splits,
    load_folder,
    load_metadata,
    load_sbd,
    load_voc,
    prepare,
    splits,
    train_aug_source,
)


def _write_sbd(root, ids, seed=0):
    """A real SBD-layout folder: JPEGs and GTcls .mat files as the release stores them."""
    rng = np.random.default_rng(seed)
    (root / "img").mkdir(parents=True)
    (root / "cls").mkdir()
    labels = {}
    for i in ids:
        h, w = rng.integers(20, 40, size=2)
        label = rng.integers(0, 21, size=(h, w)).astype(np.uint8)
        label[0] = 255
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / "img" / f"{i}.jpg")
        gt = {"Segmentation": label, "Boundaries": np.zeros((21, 1), object), "CategoriesPresent": np.array([1])}
        savemat(root / "cls" / f"{i}.mat", {"GTcls": gt})
        labels[i] = label
    return labels


def test_sbd_reads_mat_labels_exactly(tmp_path):
    root = tmp_path / "benchmark_RELEASE" / "dataset"
    labels = _write_sbd(root, ["2008_000002", "2008_000003", "2008_000007"])
    (root / "train.txt").write_text("2008_000002\n2008_000007\n")
    (root / "val.txt").write_text("2008_000003\n")
    got = list(load_sbd(tmp_path / "benchmark_RELEASE", "train", with_ids=True))
    assert [i.numpy().decode() for _, _, i in got] == ["2008_000002", "2008_000007"]
    for image, label, i in got:
        np.testing.assert_array_equal(label.numpy(), labels[i.numpy().decode()])
        assert image.shape[:2] == label.shape


def test_split_rules_on_made_up_lists():
    voc11_val = ["2007_000033", "2007_000042", "2008_000010", "2011_000001"]
    sbd_train = ["2007_000042", "2008_000020", "2011_000001"]
    assert splits.make_seg11valid(voc11_val, sbd_train) == ["2007_000033", "2008_000010"]
    voc_train, voc_val, sbd_val = ["a", "b"], ["c", "d"], ["d", "e", "a"]
    assert splits.make_train_aug(voc_train, ["c", "f"], sbd_val, voc_val) == ["a", "b", "e", "f"]


def test_shipped_seg11valid():
    ids = splits.reference_split("seg11valid")
    assert len(ids) == len(set(ids)) == 736 and ids == sorted(ids)
    assert all(i[:4] in {"2007", "2008", "2009", "2010", "2011"} for i in ids)
    with pytest.raises(ValueError, match="write_reference_splits"):
        splits.reference_split_path("train_aug")


def test_write_reference_splits_and_train_aug(tmp_path, synthetic_voc):
    sbd = tmp_path / "sbd"
    voc_ids = (synthetic_voc / "ImageSets/Segmentation/trainval.txt").read_text().split()
    val_ids = (synthetic_voc / "ImageSets/Segmentation/val.txt").read_text().split()
    _write_sbd(sbd, ["sbd_a", "sbd_b", val_ids[0], voc_ids[0]])
    (sbd / "train.txt").write_text(f"sbd_a\n{val_ids[0]}\n{voc_ids[0]}\n")
    (sbd / "val.txt").write_text("sbd_b\n")
    written = splits.write_reference_splits(tmp_path / "lists", voc_root=synthetic_voc, sbd_root=sbd)
    train_aug = written["train_aug"].read_text().split()
    train_ids = (synthetic_voc / "ImageSets/Segmentation/train.txt").read_text().split()
    assert set(train_aug) == (set(train_ids) | {"sbd_a", "sbd_b"}) and val_ids[0] not in train_aug
    assert written["seg11valid"].read_text().split() == val_ids[1:]
    source = train_aug_source(synthetic_voc, sbd, written["train_aug"])
    # VOC ids keep their VOC PNG label (VOC wins over SBD); SBD-only ids use the .mat.
    assert source.labels[source.ids.index(voc_ids[0])].endswith(".png")
    assert source.labels[source.ids.index("sbd_a")].endswith(".mat")
    assert len(list(source.dataset())) == len(train_aug)


def test_seg11valid_on_voc_mini(voc_mini, tmp_path):
    shipped = set(splits.reference_split("seg11valid"))
    present = sorted(i for i in (voc_mini / "ImageSets/Segmentation/trainval.txt").read_text().split() if i in shipped)
    assert present  # voc-mini's VOC val crops include seg11valid images
    split = tmp_path / "seg11valid_present.txt"
    split.write_text("\n".join(present))
    assert len(list(load_voc(voc_mini, str(split)))) == len(present)


def test_camvid_folder_dataset(camvid):
    info = load_metadata("camvid")
    assert info.num_classes == 11 and info.ignore_value == 11 and info.colors.shape == (11, 3)
    ds = load_folder(camvid / "val.txt", metadata="camvid", with_ids=True)
    lines = (camvid / "val.txt").read_text().split("\n")
    image, label, example_id = next(iter(ds))
    raw = np.array(Image.open(camvid / lines[0].split()[1]))
    expected = np.where(raw == 11, 255, raw)
    np.testing.assert_array_equal(label.numpy(), expected)
    assert example_id.numpy().decode() == lines[0].split()[0].split("/")[-1][:-4]
    assert image.shape == (360, 480, 3) and 255 in label.numpy() and label.numpy().max() == 255
    assert set(np.unique(label.numpy())) <= set(range(11)) | {255}


def test_folder_palette_labels_and_metadata_errors(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "lab").mkdir()
    label = np.array([[0, 1, 2], [2, 7, 1]], np.uint8)
    im = Image.fromarray(label, "P")
    im.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [9] * (253 * 3))
    im.save(tmp_path / "lab" / "x.png")
    Image.new("RGB", (3, 2), (1, 2, 3)).save(tmp_path / "img" / "x.png")
    (tmp_path / "list.txt").write_text("img/x.png lab/x.png\n")
    meta = tmp_path / "meta.toml"
    meta.write_text('ignore_value = 7\n[[classes]]\nname="a"\ncolor=[0,0,0]\n'
                    '[[classes]]\nname="b"\ncolor=[1,1,1]\n[[classes]]\nname="c"\ncolor=[2,2,2]\n')
    (_, got), = list(load_folder(tmp_path / "list.txt", metadata=meta))
    np.testing.assert_array_equal(got.numpy(), np.where(label == 7, 255, label))
    bad = tmp_path / "bad.toml"
    bad.write_text('[[classes]]\nname="a"\ncolor=[0,0]\n')
    with pytest.raises(DataError, match="bad.toml"):
        load_metadata(bad)
    (tmp_path / "one.txt").write_text("img/x.png\n")
    with pytest.raises(DataError, match="one.txt.*line 1"):
        load_folder(tmp_path / "one.txt", num_classes=3)


def test_one_detection_of_every_layout(tmp_path, synthetic_voc):
    """dataset_kind / dataset_source: VOC root, SBD root (both depths), split file, prepared directory."""
    sbd = tmp_path / "benchmark_RELEASE"
    _write_sbd(sbd / "dataset", ["a", "b"])
    (sbd / "dataset" / "train.txt").write_text("a\nb\n")
    pairs = tmp_path / "pairs.txt"
    pairs.write_text(f"{synthetic_voc}/JPEGImages/synth_000000.jpg {synthetic_voc}/SegmentationClass/synth_000000.png\n")
    prepared = prepare(dataset_source(synthetic_voc, "val"), tmp_path / "prepared", verbose=0)
    assert [dataset_kind(p) for p in (synthetic_voc, sbd, sbd / "dataset", pairs, prepared)] == [
        "voc", "sbd", "sbd", "folder", "prepared"]
    assert dataset_splits(synthetic_voc) == ("train", "trainval", "val") and dataset_splits(pairs) == ()
    assert dataset_source(synthetic_voc).name.endswith("train.txt") and len(dataset_source(synthetic_voc, "val")) == 2
    assert dataset_source(sbd).ids == ("a", "b") and dataset_source(sbd, "train").num_classes == 21
    folder = dataset_source(pairs, "val", num_classes=21)  # a split file is its own split
    assert folder.ids and folder.num_classes == 21
    (tmp_path / "junk").mkdir()
    for path, problem in [(tmp_path / "junk", "is not a dataset: expected a VOC root"),
                          (tmp_path / "nowhere", "does not exist"),
                          (prepared, "is a prepared dataset"),
                          (synthetic_voc / "ImageSets", "is not a dataset")]:
        with pytest.raises(DataError, match=problem) as caught:
            dataset_source(path)
        assert caught.value.path == str(path)
    with pytest.raises(DataError, match="sbd_missing.txt: split file is missing"):
        dataset_source(sbd, str(tmp_path / "sbd_missing.txt"))
    with pytest.raises(DataError, match="21 classes, not num_classes=5"):
        dataset_source(sbd, num_classes=5)
    with pytest.raises(DataError, match="val.txt: split file is missing"):
        dataset_source(sbd, "val")
