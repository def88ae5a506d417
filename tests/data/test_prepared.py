"""prepare()/load_prepared(): exact round trip, idempotence, atomicity, sharding, pipelines."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from fcn_keras.data import (
    DataError,
    load_prepared,
    load_voc,
    make_pipeline,
    prepare,
    read_manifest,
    voc_source,
)
from fcn_keras.data import prepared as prepared_module


def _arrays(dataset):
    return [tuple(t.numpy() for t in element) for element in dataset]


def test_round_trip_is_exact_and_ordered(synthetic_voc, tmp_path):
    out = prepare(voc_source(synthetic_voc, "trainval"), tmp_path / "p", num_shards=3, verbose=0)
    manifest = read_manifest(out)
    assert manifest["num_examples"] == 8 and manifest["num_shards"] == 3 and manifest["num_classes"] == 21
    assert sorted(p.name for p in out.iterdir()) == [
        "manifest.json", *(f"shard-{k:05d}-of-00003.tfrecord" for k in range(3))]
    want = _arrays(load_voc(synthetic_voc, "trainval", with_ids=True))
    got = _arrays(load_prepared(out, with_ids=True))
    assert [g[2] for g in got] == [w[2] for w in want]
    for (gi, gl, _), (wi, wl, _) in zip(got, want):
        np.testing.assert_array_equal(gl, wl)  # labels are lossless
        # Source JPEG bytes are kept and decoded with PIL's IDCT: the same pixels as the raw reader.
        np.testing.assert_array_equal(gi, wi)


def test_dataset_source_is_lossless_png(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 10, 12, 3), dtype=np.uint8)
    labels = rng.integers(0, 21, (3, 10, 12), dtype=np.uint8)
    ds = tf.data.Dataset.from_tensor_slices((images, labels, tf.constant(["a", "b", "c"])))
    out = prepare(ds, tmp_path / "p", verbose=0)
    got = _arrays(load_prepared(out, with_ids=True))
    assert [g[2] for g in got] == [b"a", b"b", b"c"]
    for k, (image, label, _) in enumerate(got):
        np.testing.assert_array_equal(image, images[k])
        np.testing.assert_array_equal(label, labels[k])


def test_idempotent_and_refuses_other_input(synthetic_voc, tmp_path):
    out = tmp_path / "p"
    prepare(voc_source(synthetic_voc, "train"), out, num_shards=2, verbose=0)
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    prepare(voc_source(synthetic_voc, "train"), out, num_shards=2, verbose=0)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamps  # nothing rewritten
    with pytest.raises(DataError, match="different input"):
        prepare(voc_source(synthetic_voc, "val"), out, verbose=0)
    prepare(voc_source(synthetic_voc, "val"), out, num_shards=1, overwrite=True, verbose=0)
    assert read_manifest(out)["num_examples"] == 2


def test_interrupted_run_leaves_nothing_readable(synthetic_voc, tmp_path, monkeypatch):
    out = tmp_path / "p"
    calls = {"n": 0}
    real_record = prepared_module._record

    def failing_record(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C in the middle of shard 2
        return real_record(*args, **kwargs)

    monkeypatch.setattr(prepared_module, "_record", failing_record)
    with pytest.raises(KeyboardInterrupt):
        prepare(voc_source(synthetic_voc, "trainval"), out, num_shards=2, verbose=0)
    assert not (out / "manifest.json").exists()
    assert [p.name for p in out.glob("shard-*")] == ["shard-00000-of-00002.tfrecord"]
    with pytest.raises(DataError, match="manifest.json: missing"):
        load_prepared(out)
    monkeypatch.setattr(prepared_module, "_record", real_record)
    (out / ".shard-00001-of-00002.tfrecord.k1ll3d.tmp.tfrecord").write_bytes(b"half")  # a SIGKILLed run's
    prepare(voc_source(synthetic_voc, "trainval"), out, num_shards=2, verbose=0)
    assert not list(out.glob(".*tmp*"))
    assert len(list(load_prepared(out))) == 8


def test_truncated_shard_is_detected(synthetic_voc, tmp_path):
    out = prepare(voc_source(synthetic_voc, "trainval"), tmp_path / "p", num_shards=2, verbose=0)
    shard = out / "shard-00001-of-00002.tfrecord"
    with open(shard, "r+b") as f:
        f.truncate(os.path.getsize(shard) - 10)
    with pytest.raises(DataError, match="shard-00001-of-00002.tfrecord: shard listed in the manifest"):
        load_prepared(out)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["shards"][1]["num_examples"] == 4


def test_pipeline_from_prepared_dir_and_worker_shards(synthetic_voc, tmp_path):
    out = prepare(voc_source(synthetic_voc, "trainval"), tmp_path / "p", num_shards=4, verbose=0)
    train = make_pipeline(str(out), training=True, batch_size=2, crop_size=32, seed=0, deterministic=True)
    first, second = [b[1].numpy() for b in train], [b[1].numpy() for b in train]
    again = [b[1].numpy() for b in make_pipeline(out, training=True, batch_size=2, crop_size=32, seed=0,
                                                   deterministic=True)]
    assert len(first) == 4 and all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not all(np.array_equal(a, b) for a, b in zip(first, second))

    def worker_ids(k):
        ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=k)
        return [i.numpy() for _, _, i in load_prepared(out, with_ids=True, input_context=ctx)]

    w0, w1 = worker_ids(0), worker_ids(1)
    assert len(w0) == len(w1) == 4 and sorted(w0 + w1) == sorted(i for _, _, i in _arrays(
        load_prepared(out, with_ids=True)))
