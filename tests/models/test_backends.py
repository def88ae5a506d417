"""The model code is backend-agnostic: no TensorFlow import, same outputs on JAX as on TensorFlow."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import keras

from fcn_keras.models import build_fcn

pytestmark = pytest.mark.backend_agnostic

CASES = {  # name: build_fcn arguments
    "vgg16_fcn8s_atonce": dict(architecture="fcn8s_atonce", num_classes=3, include_preprocessing=True),
    "mobilenet_v2_fcn16s": dict(architecture="fcn16s", num_classes=4, backbone="mobilenet_v2"),
}

_TENSORFLOW_SIDE = textwrap.dedent(
    """
    import sys, numpy as np
    from fcn_keras.models import build_fcn
    from tests.models.test_backends import CASES, random_weights
    out = sys.argv[1]
    rng = np.random.default_rng(0)
    for name, kwargs in CASES.items():
        model = build_fcn(**kwargs)
        model.set_weights(random_weights(model, rng))
        x = rng.uniform(0, 255, (2, 23, 18, 3)).astype("float32")
        model.save_weights(f"{out}/{name}.weights.h5")
        np.savez(f"{out}/{name}.npz", x=x, y=np.asarray(model(x, training=False)))
    """
)


def random_weights(model, rng):
    """He-scaled random weights (positive BatchNorm variances) that keep activations finite."""
    values = []
    for w in model.weights:
        fan_in = max(1, int(np.prod(w.shape[:-1])))
        value = rng.standard_normal(w.shape).astype("float32") * np.sqrt(2.0 / fan_in)
        values.append(np.abs(value) + 0.5 if "variance" in w.path else value)
    return values


def _run(code: str, *args: str, backend: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "KERAS_BACKEND": backend}
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="runs on the JAX backend against a TensorFlow subprocess")
def test_jax_outputs_equal_tensorflow_outputs(tmp_path):
    result = _run(_TENSORFLOW_SIDE, str(tmp_path), backend="tensorflow")
    assert result.returncode == 0, result.stderr[-3000:]
    for name, kwargs in CASES.items():
        model = build_fcn(**kwargs)
        model.load_weights(tmp_path / f"{name}.weights.h5")
        data = np.load(tmp_path / f"{name}.npz")
        got = keras.ops.convert_to_numpy(model(data["x"], training=False))
        expected = data["y"]
        assert np.abs(expected).max() > 0
        relative = np.abs(got - expected).max() / np.abs(expected).max()
        assert relative <= 1e-4, f"{name}: relative error {relative:.2e}"


def test_model_code_runs_with_tensorflow_unimportable():
    code = textwrap.dedent(
        """
        import sys
        sys.modules["tensorflow"] = None  # any import of TensorFlow now fails
        import numpy as np, fcn_keras
        y = fcn_keras.fcn8s(num_classes=2, include_preprocessing=True)(np.zeros((1, 5, 6, 3), "float32"))
        fcn_keras.fcn16s(num_classes=2, backbone="mobilenet_v2")
        print(tuple(y.shape))
        """
    )
    result = _run(code, backend="jax")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("(1, 5, 6, 2)")
