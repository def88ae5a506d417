"""Colour-coded label PNGs in folder datasets: decoded through the metadata's colours, on real files."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from fcn_keras.data import (
    DataError,
    check_dataset,
    folder_source,
    load_folder,
    load_metadata,
    load_prepared,
    prepare,
    read_manifest,
)
from fcn_keras.data.colors import LabelColors, UnknownColorError

# CamVid's 32 original classes (label_colors.txt of the release), each with the SegNet class it is
# grouped into (None: Void, ignored). Written out here independently of camvid32.toml, which it checks.
CAMVID32 = {
    "Animal": ((64, 128, 64), "Pedestrian"), "Archway": ((192, 0, 128), "Building"),
    "Bicyclist": ((0, 128, 192), "Bicyclist"), "Bridge": ((0, 128, 64), "Building"),
    "Building": ((128, 0, 0), "Building"), "Car": ((64, 0, 128), "Car"),
    "CartLuggagePram": ((64, 0, 192), "Pedestrian"), "Child": ((192, 128, 64), "Pedestrian"),
    "Column_Pole": ((192, 192, 128), "Pole"), "Fence": ((64, 64, 128), "Fence"),
    "LaneMkgsDriv": ((128, 0, 192), "Road"), "LaneMkgsNonDriv": ((192, 0, 64), "Road"),
    "Misc_Text": ((128, 128, 64), "SignSymbol"), "MotorcycleScooter": ((192, 0, 192), "Bicyclist"),
    "OtherMoving": ((128, 64, 64), "Car"), "ParkingBlock": ((64, 192, 128), "Pavement"),
    "Pedestrian": ((64, 64, 0), "Pedestrian"), "Road": ((128, 64, 128), "Road"),
    "RoadShoulder": ((128, 128, 192), "Pavement"), "Sidewalk": ((0, 0, 192), "Pavement"),
    "SignSymbol": ((192, 128, 128), "SignSymbol"), "Sky": ((128, 128, 128), "Sky"),
    "SUVPickupTruck": ((64, 128, 192), "Car"), "TrafficCone": ((0, 0, 64), "Pole"),
    "TrafficLight": ((0, 64, 64), "SignSymbol"), "Train": ((192, 64, 128), "Car"),
    "Tree": ((128, 128, 0), "Tree"), "Truck_Bus": ((192, 128, 192), "Car"),
    "Tunnel": ((64, 0, 64), "Building"), "VegetationMisc": ((192, 192, 0), "Tree"),
    "Void": ((0, 0, 0), None), "Wall": ((64, 192, 0), "Building"),
}

# A Cityscapes-style colour mask: a few classes in their colours, "unlabeled"/"dynamic"/"ground" ignored.
CITYSCAPES_TOML = """
name = "mini-cityscapes"
ignore_colors = [[0, 0, 0], [111, 74, 0], [81, 0, 81]]
[[classes]]
name = "road"
color = [128, 64, 128]
[[classes]]
name = "sidewalk"
color = [244, 35, 232]
[[classes]]
name = "building"
color = [70, 70, 70]
[[classes]]
name = "car"
color = [0, 0, 142]
"""


def _camvid32_groups(info):
    """For each SegNet class index, the original colours grouped into it (Void last, as 255)."""
    groups = {k: [c for c, target in CAMVID32.values() if target == name] for k, name in enumerate(info.class_names)}
    groups[255] = [CAMVID32["Void"][0]]
    return groups


def _colour(indices: np.ndarray, groups: dict[int, list[tuple[int, int, int]]]) -> np.ndarray:
    """Colours an index map, cycling through each class's colours over the pixels so that every one is used."""
    rgb = np.zeros(indices.shape + (3,), np.uint8)
    pattern = np.add.outer(np.arange(indices.shape[0]), np.arange(indices.shape[1]))
    for index, colors in groups.items():
        where = indices == index
        rgb[where] = np.array(colors, np.uint8)[pattern[where] % len(colors)]
    return rgb


def test_camvid32_metadata_is_camvid_with_the_original_colours():
    camvid, camvid32 = load_metadata("camvid"), load_metadata("camvid32")
    assert camvid32.class_names == camvid.class_names and np.array_equal(camvid32.colors, camvid.colors)
    table = camvid32.label_colors
    got = {tuple(c): int(i) for c, i in zip(table.colors.tolist(), table.indices)}
    want = {color: 255 if target is None else camvid.class_names.index(target) for color, target in CAMVID32.values()}
    assert len(got) == 32 and got == want
    assert camvid32.ignore_value == 11  # SegNet's greyscale labels read with it too


def test_real_camvid_labels_coloured_with_the_32_colours_decode_to_the_originals(camvid, tmp_path):
    info = load_metadata("camvid32")
    groups = _camvid32_groups(info)
    pairs = [line.split() for line in (camvid / "train.txt").read_text().splitlines()[:3]]
    (tmp_path / "colour").mkdir()
    want, lines = [], []
    for k, (image, label) in enumerate(pairs):
        raw = np.array(Image.open(camvid / label))
        expected = np.where(raw == 11, 255, raw).astype(np.uint8)
        rgb = _colour(expected, groups)
        mode = "RGBA" if k == 1 else "RGB"  # alpha is ignored
        out = tmp_path / "colour" / f"{k}.png"
        Image.fromarray(rgb).convert(mode).save(out)
        assert Image.open(out).mode == mode
        want.append(expected)
        lines.append(f"{camvid / image} colour/{k}.png")
    split = tmp_path / "train_colour.txt"
    split.write_text("\n".join(lines) + "\n")
    used = {tuple(c) for k in range(3)
            for c in np.array(Image.open(tmp_path / f"colour/{k}.png"))[..., :3].reshape(-1, 3).tolist()}
    assert len(used) > 11  # several original colours per class: the grouping itself is exercised

    got = [label.numpy() for _, label in load_folder(split, metadata="camvid32")]
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    assert check_dataset(split, metadata="camvid32") == []
    out = prepare(folder_source(split, metadata="camvid32"), tmp_path / "prepared", verbose=0)
    assert read_manifest(out)["class_names"] == list(info.class_names)
    for (_, label), w in zip(load_prepared(out), want):
        np.testing.assert_array_equal(label.numpy(), w)
    # The same metadata still reads SegNet's greyscale index labels (11 -> 255).
    greyscale = list(load_folder(camvid / "train.txt", metadata="camvid32").take(1))[0][1].numpy()
    np.testing.assert_array_equal(greyscale, want[0])


def _write_folder(root, labels: dict[str, np.ndarray]):
    """Images and colour label PNGs under root, and a split file listing them."""
    (root / "img").mkdir(parents=True, exist_ok=True)
    (root / "lab").mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for name, rgb in labels.items():
        Image.fromarray(rng.integers(0, 256, rgb.shape, dtype=np.uint8)).save(root / "img" / f"{name}.png")
        Image.fromarray(rgb).save(root / "lab" / f"{name}.png")
    split = root / "list.txt"
    split.write_text("".join(f"img/{n}.png lab/{n}.png\n" for n in labels))
    return split


def test_cityscapes_style_colour_mask(tmp_path):
    meta = tmp_path / "cityscapes.toml"
    meta.write_text(CITYSCAPES_TOML)
    info = load_metadata(meta)
    palette = {0: (128, 64, 128), 1: (244, 35, 232), 2: (70, 70, 70), 3: (0, 0, 142), 4: (0, 0, 0), 5: (111, 74, 0),
               6: (81, 0, 81)}
    codes = np.random.default_rng(1).integers(0, 7, (10, 14))
    rgb = np.array([palette[c] for c in codes.ravel()], np.uint8).reshape(10, 14, 3)
    split = _write_folder(tmp_path / "data", {"frankfurt_000000": rgb})
    source = folder_source(split, metadata=info)
    assert source.num_classes == 4 and source.class_names == ("road", "sidewalk", "building", "car")
    (_, label), = list(source.dataset())
    np.testing.assert_array_equal(label.numpy(), np.where(codes >= 4, 255, codes))


def test_unknown_colour_names_the_file_pixel_and_colour(tmp_path):
    meta = tmp_path / "cityscapes.toml"
    meta.write_text(CITYSCAPES_TOML)
    rgb = np.zeros((6, 9, 3), np.uint8)
    rgb[:, :4] = (128, 64, 128)
    rgb[3, 7] = (12, 34, 56)
    rgb[5, 8] = (1, 1, 1)
    split = _write_folder(tmp_path / "data", {"x": rgb})
    message = (r"lab/x.png: colour \(12, 34, 56\) at pixel \(row 3, col 7\) is not a class colour of metadata "
               r"mini-cityscapes \(2 unknown colours in 2 pixels\); known colours: road \(128, 64, 128\); .*"
               r"ignore \(0, 0, 0\) \(81, 0, 81\) \(111, 74, 0\)$")
    source = folder_source(split, metadata=meta)
    with pytest.raises(DataError, match=message):
        source.read(0)
    with pytest.raises(tf.errors.OpError, match=r"lab/x.png: colour \(12, 34, 56\) at pixel \(row 3, col 7\)"):
        list(source.dataset())
    problems = check_dataset(split, metadata=meta)
    assert len(problems) == 1 and problems[0].path.endswith("lab/x.png") and "(12, 34, 56)" in problems[0].problem
    with pytest.raises(DataError, match="lab/x.png: colour"):
        prepare(source, tmp_path / "prepared", verbose=0)
    # Without colours in the metadata a colour label is refused as before.
    with pytest.raises(DataError, match=r"lab/x.png: label has mode 'RGB' \(colour\)"):
        folder_source(split, num_classes=4).read(0)


def test_display_colours_decode_when_no_label_colours_are_listed(tmp_path):
    info = load_metadata("camvid")
    indices = np.array([[0, 3, 10, 255], [8, 8, 1, 2]], np.uint8)
    rgb = np.where(indices[..., None] == 255, 0, info.colors[np.minimum(indices, 10)]).astype(np.uint8)
    split = _write_folder(tmp_path, {"a": rgb})
    np.testing.assert_array_equal(load_folder(split, metadata="camvid").get_single_element()[1].numpy(), indices)


def test_metadata_colour_errors_name_the_file(tmp_path):
    base = '[[classes]]\nname = "a"\ncolor = [1, 2, 3]\n[[classes]]\nname = "b"\n'
    cases = {
        "twice.toml": (base + "color = [1, 2, 3]\n", r"colour \(1, 2, 3\) is listed for both a and b"),
        "ignored.toml": ("ignore_colors = [[9, 9, 9]]\n" + base + "label_colors = [[4, 4, 4], [9, 9, 9]]\n",
                         r"colour \(9, 9, 9\) is listed for both b and ignore"),
        "short.toml": (base + "label_colors = [[4, 4]]\n", r"b: \[4, 4\] is not a colour"),
        "big.toml": (base + "label_colors = [[4, 4, 300]]\n", r"b: \[4, 4, 300\] is not a colour"),
        "flat.toml": (base + "label_colors = [4, 4, 4]\n", r"b: 4 is not a colour"),
        "notlist.toml": (base + 'label_colors = "red"\n', "label_colors of class b must be a list"),
        "ignorelist.toml": ("ignore_colors = 0\n" + base, "ignore_colors must be a list"),
    }
    for name, (text, problem) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(DataError, match=f"{name}: invalid label colours: {problem}"):
            load_metadata(tmp_path / name)
    (tmp_path / "nocolours.toml").write_text('[[classes]]\nname = "a"\n[[classes]]\nname = "b"\n')
    assert load_metadata(tmp_path / "nocolours.toml").label_colors is None


def test_prepare_sees_a_changed_colour_table(tmp_path):
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[:, 2:] = (9, 9, 9)
    split = _write_folder(tmp_path / "data", {"a": rgb})
    (tmp_path / "ab.toml").write_text('[[classes]]\nname="a"\ncolor=[0,0,0]\n[[classes]]\nname="b"\ncolor=[9,9,9]\n')
    (tmp_path / "ba.toml").write_text('[[classes]]\nname="b"\ncolor=[9,9,9]\n[[classes]]\nname="a"\ncolor=[0,0,0]\n')
    out = prepare(folder_source(split, metadata=tmp_path / "ab.toml"), tmp_path / "p", verbose=0)
    assert load_prepared(out).get_single_element()[1].numpy()[0].tolist() == [0, 0, 1, 1, 1]
    with pytest.raises(DataError, match="different input"):  # the same files, now decoding to other classes
        prepare(folder_source(split, metadata=tmp_path / "ba.toml"), out, verbose=0)


def test_lookup_agrees_with_a_dictionary_and_the_fallback():
    rng = np.random.default_rng(3)
    colours = np.unique(rng.integers(0, 256, (40, 3)), axis=0)
    classes = [[tuple(c) for c in colours[k::5]] for k in range(5)]
    table = LabelColors.build("random", classes, tuple("abcde"))
    rgb = colours[rng.integers(0, len(colours), (30, 20))].astype(np.uint8)
    owner = {c: i for i, cs in enumerate(classes) for c in cs}
    expected = np.array([[owner[tuple(int(v) for v in p)] for p in row] for row in rgb])
    np.testing.assert_array_equal(table.to_indices(rgb), expected)
    # 255 classes leave no byte free to mark unknown colours: the sorted-search path takes over.
    full = LabelColors.build("full", [[(k, 0, 1)] for k in range(255)], tuple(str(k) for k in range(255)), [(0, 0, 0)])
    assert full._table is None
    np.testing.assert_array_equal(full.to_indices(np.array([[[7, 0, 1], [0, 0, 0]]], np.uint8)), [[7, 255]])
    with pytest.raises(UnknownColorError, match=r"colour \(7, 0, 2\) at pixel \(row 0, col 1\)"):
        full.to_indices(np.array([[[7, 0, 1], [7, 0, 2]]], np.uint8))
