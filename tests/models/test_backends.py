"""The model code is backend-agnostic: no TensorFlow import, same outputs on JAX as on TensorFlow.

One test, in the TensorFlow pass, shows both: a JAX process in which TensorFlow cannot be
imported builds the models and computes them, and this process computes the same models on
TensorFlow. (The JAX pass has nothing to add here: it would build the same two models on JAX
again, and start a TensorFlow process to compare with.)
"""

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
_JAX_SIDE = textwrap.dedent(
    """
    import sys
    sys.modules["tensorflow"] = None  # any import of TensorFlow now fails
    import numpy as np, keras, fcn_keras
    assert keras.backend.backend() == "jax", keras.backend.backend()
    from tests.models.test_backends import CASES, seeded_case
    for name in CASES:
        model, x = seeded_case(name)
        # predict: one XLA program per model, as predict and fit run on JAX (a call compiles op by op).
        np.save(f"{sys.argv[1]}/{name}.npy", model.predict(x, batch_size=len(x), verbose=0))
        del model
    print("fcn_keras ran on JAX without TensorFlow")
    """
)


def random_weights(model, rng):
    """He-scaled random weights (positive BatchNorm variances) that keep activations finite."""
    values = []
    for w in model.weights:
        fan_in = max(1, int(np.prod(w.shape[:-1])))
        value = rng.standard_normal(w.shape, dtype=np.float32) * np.float32(np.sqrt(2.0 / fan_in))
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


# Not backend_agnostic: it starts its own JAX process, so the TensorFlow pass covers both backends.
# The JAX process runs first and alone: one full-size VGG16 at a time, as in any other scope.
@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="compares a JAX process with TensorFlow here")
def test_jax_without_tensorflow_computes_what_tensorflow_computes(tmp_path):
    jax_side = subprocess.run([sys.executable, "-c", _JAX_SIDE, str(tmp_path)], env=_env("jax"),
                              capture_output=True, text=True, timeout=600)
    assert jax_side.returncode == 0, jax_side.stderr[-3000:]
    assert jax_side.stdout.strip().endswith("fcn_keras ran on JAX without TensorFlow")
    for name in CASES:
        model, x = seeded_case(name)
        expected = keras.ops.convert_to_numpy(model(x, training=False))
        del model
        got = np.load(tmp_path / f"{name}.npy")
        assert got.shape == expected.shape == (2, 23, 18, CASES[name]["num_classes"])
        assert np.abs(expected).max() > 0
        relative = np.abs(got - expected).max() / np.abs(expected).max()
        assert relative <= 1e-4, f"{name}: relative error {relative:.2e}"
