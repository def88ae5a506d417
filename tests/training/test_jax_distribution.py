"""train(distribution="data_parallel"): keras.distribution.DataParallel on JAX trains what one device trains.

One fresh JAX process with four virtual CPU devices (``XLA_FLAGS``) trains the
tiny recipe of ``tiny.py`` with the reference's summed loss over the four
devices, then the same steps on one device, then asks for two runs that must be
refused. The test process itself stays on TensorFlow (the refusal there).
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from tests.training import tiny

pytest.importorskip("jax")

ROOT = Path(tiny.__file__).resolve().parents[2]
# Summed loss (the FCN reference's): the learning rate of the mean-loss recipe over the 4 * 32 * 32 pixels of
# a batch of 4. 20 images give 5 for validation: 4 + 1 completed with blanks by val_dataset on 4 devices. Dropout stays
# on: jax.random gives the same bits however the batch is sharded.
SUMMED = ["--set", "data.batch_size=4", "--set", "data.synthetic_images=20", "--set", 'loss.reduction="sum"',
          "--set", "optimizer.learning_rate=2e-5"]
RUNNER = """
import sys
from tests.training import tiny
from fcn_keras.training import train

tiny.main(sys.argv[1:])
for kwargs in ({"recipe": tiny.tiny_recipe(data={"batch_size": 6})}, {"strategy": "mirrored"}):
    try:
        train(kwargs.pop("recipe", tiny.tiny_recipe()), sys.argv[1] + "-refused", distribution="data_parallel",
              **kwargs)
        print("NOT REFUSED", kwargs)
    except ValueError as exc:
        print("REFUSED", exc)
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("jax")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KERAS_BACKEND": "jax", "CUDA_VISIBLE_DEVICES": "",
           "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONWARNINGS": "ignore"}
    process = subprocess.run(
        [sys.executable, "-c", RUNNER, str(base / "parallel"), "--steps", "4", "--distribution", "data_parallel",
         *SUMMED, "--then-one-device", str(base / "single")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    assert process.returncode == 0, process.stdout[-4000:]
    assert process.stdout.count("RESULT global_step 4") == 2, process.stdout[-4000:]
    return base, process.stdout


def _weights(path):
    tiny.register()
    model = keras.models.load_model(path)
    return {f"{i}:{v.path}": np.asarray(v.numpy()) for i, v in enumerate(model.weights)}


def _last_row(path):
    with open(path) as f:
        return list(csv.DictReader(f))[-1]


def test_data_parallel_on_four_devices_equals_one_device(runs):
    base, output = runs
    parallel_output, single_output = output.split("RESULT global_step 4", 1)
    # The distributed run's variables lived on all four devices, the other run's on one.
    assert "devices: 4 variables on: 4" in parallel_output, parallel_output[-3000:]
    assert "devices: 4 variables on: 1" in single_output, single_output[-3000:]
    single, parallel = _weights(base / "single" / "model.keras"), _weights(base / "parallel" / "model.keras")
    assert list(parallel) == list(single)
    for (name, a), b in zip(single.items(), parallel.values()):
        # Weights and re-estimated BatchNorm statistics, equal up to float summation order.
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=2e-5, err_msg=name)
    # The score layers start at zero: training moved them, so the comparison compares something.
    score = next(k for k in single if k.endswith("score_fr/kernel"))
    assert np.abs(single[score]).max() > 1e-4
    rows = [_last_row(base / run / "train_log.csv") for run in ("single", "parallel")]
    # The same global-batch loss sums, and the same validation scores (the padded examples count nowhere).
    assert float(rows[1]["loss"]) == pytest.approx(float(rows[0]["loss"]), rel=1e-5)
    for key in ("val_pixel_accuracy", "val_mean_accuracy", "val_mean_iou", "val_frequency_weighted_iou"):
        assert float(rows[1][key]) == pytest.approx(float(rows[0][key]), abs=1e-6), key


def test_data_parallel_refuses_uneven_batches_and_a_strategy(runs):
    _, output = runs
    refusals = [line for line in output.splitlines() if "REFUSED" in line]
    assert refusals == [
        "REFUSED distribution='data_parallel' splits every global batch over 4 devices: "
        "[data] batch_size = 6 is not a multiple of 4",
        "REFUSED distribution='data_parallel' and strategy='mirrored' both distribute training: "
        "give one (strategy= is tf.distribute, for the TensorFlow backend)",
    ]


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="checks the refusal on the TensorFlow backend")
def test_data_parallel_is_refused_on_tensorflow(tmp_path, capsys):
    from fcn_keras import cli

    status = cli.main(["train", "tiny_synthetic", "--out", str(tmp_path / "run"), "--distribution", "data_parallel"])
    err = capsys.readouterr().err
    assert status == 1 and err.count("\n") == 1, err
    assert "distribution='data_parallel' is keras.distribution on the JAX backend (KERAS_BACKEND=jax)" in err
    assert "'tensorflow'" in err and not (tmp_path / "run" / "model.keras").exists()
