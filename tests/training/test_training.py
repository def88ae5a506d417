"""train(): exact resume after a kill, improvement on synthetic data, Mirrored == one device, MultiWorker.

The runs use the tiny encoder of ``tiny.py`` and happen in fresh processes
(in parallel where independent): a kill must really end a process, and
tf.distribute's device set-up is per process.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.training import tiny

RUNNER = Path(tiny.__file__)
ROOT = RUNNER.parents[2]


def _start(out, *args, env=None):
    environ = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONWARNINGS": "ignore",
               "CUDA_VISIBLE_DEVICES": "", **(env or {})}
    return subprocess.Popen([sys.executable, str(RUNNER), str(out), *map(str, args)], env=environ,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(process, expected_rc=0, timeout=300):
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == expected_rc, output[-4000:]
    return output


def _weights(path):
    import keras

    tiny.register()
    model = keras.models.load_model(path)
    # By position: loading in one process numbers the RNG seed generators differently.
    return {f"{i}:{v.path}": np.asarray(v.numpy()) for i, v in enumerate(model.weights)}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One uninterrupted run, one killed after 11 steps and then resumed; 8 steps without dropout
    (dropout masks of a batch of 2 and of two batches of 1 differ) on 2 mirrored CPUs and then, in the
    same process, on one device (the default strategy: no replicas)."""
    base = tmp_path_factory.mktemp("runs")
    full = _start(base / "full")
    killed = _start(base / "resumed", "--kill-after", 11)
    killed_output = _finish(killed, expected_rc=17)
    state = json.loads((base / "resumed" / "resume" / "latest.json").read_text())
    resumed = _start(base / "resumed")
    full_output = _finish(full)
    mirrored = _start(base / "mirrored", "--steps", 8, "--logical-cpus", 2, "--strategy", "mirrored",
                      "--then-one-device", base / "single", env={"FCN_TINY_DROPOUT": "0"})
    resumed_output = _finish(resumed)
    both = _finish(mirrored)
    assert both.count("RESULT global_step 8") == 2, both[-4000:]
    mirrored_output, single_output = both.split("RESULT global_step 8", 1)
    return {"base": base, "state_at_kill": state,
            "outputs": (full_output, killed_output, resumed_output, single_output, mirrored_output)}


def test_killed_mid_epoch_and_resumed_ends_bit_identical(runs):
    base = runs["base"]
    # Killed in epoch 2 after step 11; the last state was written after step 10 (every 5 steps).
    assert runs["state_at_kill"]["global_step"] == 10
    assert runs["state_at_kill"]["epoch"] == 1 and runs["state_at_kill"]["step_in_epoch"] == 2
    assert "Resuming tiny_test" in runs["outputs"][2] and "resumed_from 10" in runs["outputs"][2]
    full, resumed = _weights(base / "full" / "model.keras"), _weights(base / "resumed" / "model.keras")
    assert len(full) == len(resumed)
    for (name, a), b in zip(full.items(), resumed.values()):
        # Weights and BatchNorm statistics; equal weights after dropout also show the RNG state was restored.
        np.testing.assert_array_equal(b, a, err_msg=name)
    # The logs agree too: the interrupted epoch's running metrics were restored, no row is duplicated.
    assert (base / "resumed" / "train_log.csv").read_text() == (base / "full" / "train_log.csv").read_text()
    assert json.loads((base / "full" / "resume" / "latest.json").read_text())["global_step"] == 24


def test_training_improves_mean_iou_clearly(runs):
    import csv

    from fcn_keras import data
    from fcn_keras.metrics import segmentation_scores

    rows = list(csv.DictReader((runs["base"] / "full" / "train_log.csv").open()))
    assert len(rows) == 3
    # The untrained model predicts class 0 everywhere (its score layers start at zero): its exact score.
    labels = [label.numpy() for _, label in data.load_voc(runs["base"] / "full" / "synthetic", "val")]
    baseline = segmentation_scores(labels, [np.zeros_like(l) for l in labels], 3)["mean_iou"]
    final = float(rows[-1]["val_mean_iou"])
    assert final > baseline + 0.2, (baseline, [r["val_mean_iou"] for r in rows])
    assert (runs["base"] / "full" / "best.keras").is_file()
    assert list((runs["base"] / "full" / "tensorboard").rglob("events.out.tfevents.*"))


def test_mirrored_on_two_cpus_equals_one_device(runs):
    assert "replicas: 1" in runs["outputs"][3] and "replicas: 2" in runs["outputs"][4]
    single = _weights(runs["base"] / "single" / "model.keras")
    mirrored = _weights(runs["base"] / "mirrored" / "model.keras")
    initial = _weights_of_untrained()
    for (name, a), b, c in zip(single.items(), mirrored.values(), initial.values()):
        # Equal up to float summation order; and training moved them (the comparison means something).
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=2e-5, err_msg=name)
    assert not np.allclose(single["0:tiny_c1/kernel"], initial["0:tiny_c1/kernel"])
    # Validation under Mirrored counts the pixels of both replicas (SegmentationMetrics' sum on read):
    # the same scores as one device (all validation images have one size, so batches need no padding).
    import csv

    rows = [list(csv.DictReader((runs["base"] / run / "train_log.csv").open()))[-1] for run in ("single", "mirrored")]
    for key in ("val_pixel_accuracy", "val_mean_accuracy", "val_mean_iou", "val_frequency_weighted_iou"):
        assert float(rows[1][key]) == pytest.approx(float(rows[0][key]), abs=1e-6), key


def _weights_of_untrained():
    import keras

    from fcn_keras.training import build_model

    keras.utils.set_random_seed(tiny.tiny_recipe().training.seed)
    model = build_model(tiny.tiny_recipe())
    return {f"{i}:{v.path}": np.asarray(v.numpy()) for i, v in enumerate(model.weights)}


def _keras_version():
    import keras

    return keras.__version__


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_multi_worker_on_localhost_trains_together(tmp_path):
    cluster = {"worker": [f"localhost:{p}" for p in _free_ports(2)]}
    workers = [
        _start(tmp_path, "--strategy", "multi_worker", "--steps", 4, "--probe-compat",
               env={"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})})
        for i in range(2)
    ]
    outputs = [_finish(w) for w in workers]
    for output in outputs:
        assert "RESULT global_step 4" in output
    chief, other = _weights(tmp_path / "model.keras"), _weights(tmp_path / "worker-1" / "model.keras")
    for (name, a), b in zip(chief.items(), other.values()):
        np.testing.assert_array_equal(b, a, err_msg=name)  # one synchronised model
    assert not np.allclose(chief["0:tiny_c1/kernel"], _weights_of_untrained()["0:tiny_c1/kernel"])  # it trained
    assert json.loads((tmp_path / "resume" / "latest.json").read_text())["global_step"] == 4
    assert not (tmp_path / "worker-1" / "resume").exists()  # only the chief writes the shared state
    # The training above used fcn_keras._compat's workarounds (they still work); without each one,
    # Keras still fails (it is still needed). A fixed Keras release fails here: delete the workaround.
    for name in ("skip_fit_peek", "vector_step_logs"):
        for output in outputs:
            line = next((l for l in output.splitlines() if l.startswith(f"COMPAT {name}:")), f"no COMPAT {name} line")
            assert line.startswith(f"COMPAT {name}: needed"), (
                f"{line}\nKeras {_keras_version()} may have fixed the bug fcn_keras._compat.{name} works around "
                f"(see its docstring): if the line says 'not needed', remove the workaround")
