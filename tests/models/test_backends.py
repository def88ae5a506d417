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

CASES = {  # name: build_fcn arguments
    "vgg16_fcn8s_atonce": dict(architecture="fcn8s_atonce", num_classes=3, include_preprocessing=True),
    "mobilenet_v2_fcn16s": dict(architecture="fcn16s", num_classes=4, backbone="mobilenet_v2"),
}

# Each backend builds the model and draws the same weights and input from one seed (model.weights
# come in the same order on every backend), so no 540 MB weights file passes between the processes.
_TENSORFLOW_SIDE = textwrap.dedent(
    """
    import sys, numpy as np
    from tests.models.test_backends import CASES, seeded_case
    for name in CASES:
        model, x = seeded_case(name)
        np.save(f"{sys.argv[1]}/{name}.npy", np.asarray(model(x, training=False)))
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


def seeded_case(name: str):
    """The case's model with seeded random weights, and a seeded batch of two 23x18 images."""
    model = build_fcn(**CASES[name])
    rng = np.random.default_rng(0)
    model.set_weights(random_weights(model, rng))
    return model, rng.uniform(0, 255, (2, 23, 18, 3)).astype("float32")


def _env(backend: str) -> dict:
    env = {**os.environ, "KERAS_BACKEND": backend}
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _run(code: str, *args: str, backend: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], env=_env(backend), capture_output=True, text=True,
                          timeout=600)


@pytest.mark.backend_agnostic
@pytest.mark.skipif(keras.backend.backend() != "jax", reason="runs on the JAX backend against a TensorFlow subprocess")
def test_jax_outputs_equal_tensorflow_outputs(tmp_path):
    tensorflow_side = subprocess.Popen([sys.executable, "-c", _TENSORFLOW_SIDE, str(tmp_path)], env=_env("tensorflow"),
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        got = {}
        for name in CASES:  # meanwhile, the same models on JAX
            model, x = seeded_case(name)
            got[name] = keras.ops.convert_to_numpy(model(x, training=False))
        _, stderr = tensorflow_side.communicate(timeout=600)
    finally:
        if tensorflow_side.poll() is None:
            tensorflow_side.kill()
    assert tensorflow_side.returncode == 0, stderr[-3000:]
    for name in CASES:
        expected = np.load(tmp_path / f"{name}.npy")
        assert got[name].shape == expected.shape and np.abs(expected).max() > 0
        relative = np.abs(got[name] - expected).max() / np.abs(expected).max()
        assert relative <= 1e-4, f"{name}: relative error {relative:.2e}"


# Not backend_agnostic: it starts its own JAX process whichever backend runs it, so the TensorFlow pass
# runs it once and the JAX pass does not repeat it.
def test_model_code_runs_with_tensorflow_unimportable():
    code = textwrap.dedent(
        """
        import sys
        sys.modules["tensorflow"] = None  # any import of TensorFlow now fails
        import numpy as np, fcn_keras
        y = fcn_keras.fcn8s(num_classes=2, include_preprocessing=True)(np.zeros((1, 5, 6, 3), "float32"))
        print(tuple(y.shape))
        """
    )
    result = _run(code, backend="jax")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("(1, 5, 6, 2)")
