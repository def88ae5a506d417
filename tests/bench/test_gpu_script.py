"""bench/gpu.sh runs end to end on a CPU with Keras' JAX backend, where TensorFlow cannot be imported
(as on the GPU machine), and writes the rows bench/README.md describes."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

from tests.conftest import PROJECT_ROOT

# First on PYTHONPATH, it makes TensorFlow absent as on the GPU machine: `import tensorflow` raises
# ModuleNotFoundError and importlib.util.find_spec("tensorflow") is None (PyTorch probes with it).
NO_TENSORFLOW = 'import sys\nsys.modules["tensorflow"] = None\n'


def _without_tensorflow(tmp_path) -> dict:
    shim = tmp_path / "no_tf"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(NO_TENSORFLOW)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    return {**env, "PYTHONPATH": str(shim), "KERAS_BACKEND": "jax", "CUDA_VISIBLE_DEVICES": "", "JAX_PLATFORMS": "cpu"}


def test_the_model_code_and_the_workers_setup_do_not_import_tensorflow_on_jax():
    # Here TensorFlow is installed: nothing may import it on the JAX backend, not even to probe (Keras'
    # set_random_seed does: bench.measure.seed hides it).
    code = ("import sys, fcn_keras.models, fcn_keras.losses, fcn_keras.optimizers, bench.flops, bench.measure; "
            "import keras; bench.measure.seed(0); keras.random.normal((2,)); "
            "print(keras.backend.backend(), sorted(m for m in sys.modules if m.split('.')[0] == 'tensorflow'))")
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["jax", "[]"], done.stdout


def test_gpu_script_quick_on_cpu_writes_every_row(tmp_path):
    out = tmp_path / "out"
    env = {**_without_tensorflow(tmp_path), "OUT": str(out), "FCN_KERAS_GPU_QUICK": "1", "PYTHON": sys.executable}
    done = subprocess.run(["bash", "bench/gpu.sh"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    figures = json.loads((out / "gpu.json").read_text())
    assert figures["quick"] and (out / "gpu.log").read_text().strip()
    # Without PyTorch (the bench extra, which `make test` does not install) the peer's rows are left out.
    peer = importlib.util.find_spec("torch") is not None
    assert figures["torch_available"] == peer
    assert figures["devices"] == ["cpu", "cpu: cpu"][1 - peer:], figures["devices"]  # torch's, JAX's
    # --quick keeps one row per worker kind, in bfloat16 (bench.gpu.plan); the full run adds float32 beside each.
    inference = {(r["variant"], r["policy"]): r for r in figures["inference"]}
    assert set(inference) == {("call", "mixed_bfloat16"), ("torch", "float32")} - ({("torch", "float32")} if not peer else set())
    for row in inference.values():
        assert "error" not in row and not row["tensorflow_imported"], row
        assert row["median_s"] > 0 and row["matmul_flops"] > 0 and row["size"] == 64, row
        assert row["achieved_tflops"] > 0
    assert inference[("call", "mixed_bfloat16")]["matmul_bf16_flops"] > 0
    training = {(r["framework"], r["policy"]): r for r in figures["training"]}
    assert set(training) == {("keras", "mixed_bfloat16"), ("torch", "mixed_bfloat16")} - ({("torch", "mixed_bfloat16")} if not peer else set())
    for row in training.values():
        assert "error" not in row and not row["tensorflow_imported"], row
        assert row["img_per_s"] > 0 and row["finite_loss"] and row["achieved_tflops"] > 0, row
    summary = figures["summary"]
    assert summary["inference_bfloat16_ms"] > 0 and summary["train_bfloat16_images_per_s"] > 0
    if peer:
        assert summary["torch_inference_float32_ms"] > 0 and summary["torch_train_bfloat16_images_per_s"] > 0
    assert 0 < summary["train_bf16_fraction_of_spec_peak"] < 1
