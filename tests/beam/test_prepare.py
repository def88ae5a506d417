"""`fcn-keras data prepare --beam` on the DirectRunner: the single-process prepare's shards and manifest, byte for byte."""

from __future__ import annotations

import pytest

ONE_WORKER = ["--direct_num_workers", "1", "--direct_running_mode", "in_memory"]


def _files(directory) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


@pytest.fixture(scope="module")
def voc(tmp_path_factory):
    from fcn_keras import data

    return data.write_synthetic_voc(tmp_path_factory.mktemp("voc"), num_images=7, image_size=(24, 32), num_classes=4)


def test_beam_prepare_writes_the_single_process_shards_and_manifest(voc, tmp_path, fcn_keras_cmd):
    from fcn_keras import data

    single = data.prepare(data.voc_source(voc, "trainval"), tmp_path / "single", num_shards=3, verbose=0)
    status, out, err = fcn_keras_cmd("data", "prepare", voc, tmp_path / "beam", "--split", "trainval",
                                     "--num-shards", "3", "--beam", *ONE_WORKER)
    assert status == 0, err
    assert f"prepared 7 examples of voc:{voc}" in out and "wrote shard-00002-of-00003.tfrecord (2 examples)" in out
    files = _files(tmp_path / "beam")
    assert sorted(files) == ["manifest.json", *(f"shard-{k:05d}-of-00003.tfrecord" for k in range(3))]
    assert files == _files(single)  # every shard and the manifest byte for byte
    stamps = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "beam").iterdir()}
    # The same input again is a no-op (no pipeline runs); another input is refused without --overwrite.
    assert fcn_keras_cmd("data", "prepare", voc, tmp_path / "beam", "--split", "trainval", "--beam")[0] == 0
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "beam").iterdir()} == stamps
    status, _, err = fcn_keras_cmd("data", "prepare", voc, tmp_path / "beam", "--split", "val", "--beam")
    assert status == 1 and "holds a prepared dataset of a different input" in err


def test_beam_prepare_default_sharding_matches(voc, tmp_path):
    from fcn_keras import beam, data

    source = data.voc_source(voc, "train")
    single = data.prepare(source, tmp_path / "single", verbose=0)
    assert _files(beam.prepare(source, tmp_path / "beam", options=ONE_WORKER, verbose=0)) == _files(single)
