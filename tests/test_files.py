"""fcn_keras.files, the bottom layer: atomic writes that leave plain modes, and nothing on failure.

The umask is process-wide, so the mode tests set it in a subprocess (never in the
test process, whose other threads may be creating files). That subprocess loads
``fcn_keras/files.py`` on its own: it imports nothing from fcn_keras
(tests/test_layout.py checks it), so no TensorFlow start-up is paid.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from fcn_keras import files

FILES_PY = Path(files.__file__)

# Runs in a fresh interpreter: umask given as argv[1], work directory argv[2]; prints the modes it saw.
_SCRIPT = r"""
import importlib.util, json, os, sys
from pathlib import Path

os.umask(int(sys.argv[1], 8))
spec = importlib.util.spec_from_file_location("files_under_test", sys.argv[3])
files = importlib.util.module_from_spec(spec)
spec.loader.exec_module(files)
root = Path(sys.argv[2])
with files.atomic_path(root / "sub" / "a.txt") as tmp:
    tmp.write_text("a")
files.write_text(root / "b.json", "{}")
files.write_bytes(root / "c.bin", b"c")
with files.atomic_directory(root / "model" / "1") as tmp:
    (tmp / "variables").mkdir()
    (tmp / "variables" / "v.index").write_bytes(b"v")
    (tmp / "saved_model.pb").write_bytes(b"pb")
modes = {str(p.relative_to(root)): oct(p.stat().st_mode & 0o777) for p in sorted(root.rglob("*"))}
print(json.dumps(modes))
"""


def _modes_under(umask: int, tmp_path: Path) -> dict[str, int]:
    done = subprocess.run([sys.executable, "-c", _SCRIPT, oct(umask), str(tmp_path), str(FILES_PY)],
                          capture_output=True, text=True, timeout=60, check=True)
    return {name: int(mode, 8) for name, mode in json.loads(done.stdout).items()}


@pytest.mark.parametrize("umask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750)],
                         ids=["umask022", "umask027"])
def test_atomic_writes_give_plain_modes_under_the_umask(tmp_path, umask, file_mode, dir_mode):
    modes = _modes_under(umask, tmp_path)
    directories = {"sub", "model", "model/1", "model/1/variables"}
    assert set(modes) == directories | {"sub/a.txt", "b.json", "c.bin", "model/1/saved_model.pb",
                                        "model/1/variables/v.index"}, "no temporary file may remain"
    assert {name: oct(mode) for name, mode in modes.items()} == {
        name: oct(dir_mode if name in directories else file_mode) for name in modes}


def test_atomic_path_failure_leaves_nothing_and_keeps_the_old_file(tmp_path):
    target = tmp_path / "labels.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="writer failed"):
        with files.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("writer failed")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.txt"]


def test_atomic_path_keeps_the_suffix_for_writers_that_dispatch_on_it(tmp_path):
    with files.atomic_path(tmp_path / "mask.png") as tmp:
        assert tmp.suffix == ".png" and tmp.parent == tmp_path and tmp.name.startswith(".")


def test_atomic_directory_failure_leaves_nothing(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with files.atomic_directory(tmp_path / "export") as tmp:
            (tmp / "saved_model.pb").write_bytes(b"half")
            raise KeyboardInterrupt  # BaseException too: a killed writer cleans up
    assert list(tmp_path.iterdir()) == []


def test_atomic_directory_replace_swaps_the_whole_tree(tmp_path):
    target = tmp_path / "prepared"
    with files.atomic_directory(target) as tmp:
        (tmp / "old-only.txt").write_text("old")
        (tmp / "both.txt").write_text("old")
    with pytest.raises(FileExistsError, match="prepared exists already"):
        with files.atomic_directory(target) as tmp:
            pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prepared"], "the refused block left nothing"
    with files.atomic_directory(target, replace=True) as tmp:
        (tmp / "both.txt").write_text("new")
        assert (target / "old-only.txt").exists(), "readers see the old tree until the block ends"
    assert sorted(p.name for p in target.iterdir()) == ["both.txt"] and (target / "both.txt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prepared"], "the old tree is removed"


def test_dataset_writers_give_plain_modes(tmp_path):
    """write_synthetic_voc and prepare: files others read get 0o666 & ~umask, directories 0o777 & ~umask."""
    from fcn_keras.data import prepare, voc_source, write_synthetic_voc

    root = write_synthetic_voc(tmp_path / "voc", num_images=2, image_size=(16, 20))
    out = prepare(voc_source(root, "trainval"), tmp_path / "prepared", num_shards=2, verbose=0)
    umask = files.current_umask()
    written = sorted(p for p in tmp_path.rglob("*") if not p.is_symlink())
    assert {p.name for p in out.iterdir()} == {"manifest.json", "shard-00000-of-00002.tfrecord",
                                               "shard-00001-of-00002.tfrecord"}
    assert not [p for p in written if p.name.startswith(".")], "temporary files remain"
    wrong = {str(p.relative_to(tmp_path)): oct(stat.S_IMODE(p.stat().st_mode)) for p in written
             if stat.S_IMODE(p.stat().st_mode) != (0o777 if p.is_dir() else 0o666) & ~umask}
    assert not wrong, f"not plain modes under umask {umask:03o}: {wrong}"
    assert os.access(root / "JPEGImages" / "synth_000000.jpg", os.R_OK)
