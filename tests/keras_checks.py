"""The shared serialization checks every custom Keras class of the project goes through.

In the spirit of keras-hub's ``TestCase.run_layer_test``: a layer, initializer,
loss, metric, optimizer or model must survive ``get_config``/``from_config``,
``keras.saving`` (de)serialization and a ``.keras`` file round trip **in safe
mode without custom_objects** (what ``import fcn_keras`` registers is all Keras
gets), and compute the same values afterwards.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import keras


def numpy(x) -> np.ndarray:
    return keras.ops.convert_to_numpy(x)


def _same_structure_values(a, b, exact: bool = True) -> None:
    for x, y in zip(keras.tree.flatten(a), keras.tree.flatten(b)):
        if exact:
            np.testing.assert_array_equal(numpy(x), numpy(y))
        else:
            np.testing.assert_allclose(numpy(x), numpy(y), rtol=1e-6, atol=1e-6)


def _json(value):
    return json.loads(json.dumps(value))  # what a file stores: tuples read back as lists


def check_object_round_trip(obj) -> object:
    """``serialize_keras_object`` -> JSON -> ``deserialize_keras_object`` (safe mode): same class and config."""
    config = json.loads(json.dumps(keras.saving.serialize_keras_object(obj)))
    assert config["registered_name"].startswith("fcn_keras>"), config["registered_name"]
    with keras.saving.custom_object_scope({}):
        clone = keras.saving.deserialize_keras_object(config, safe_mode=True)
    assert type(clone) is type(obj)
    assert _json(clone.get_config()) == _json(obj.get_config())
    return clone


def run_layer_test(layer_factory, inputs, expected_output_shape: tuple, tmp_path: Path) -> keras.layers.Layer:
    """Checks one custom layer: shapes, symbolic call, config, serialization and a ``.keras`` round trip.

    ``layer_factory()`` builds a fresh layer; ``inputs`` is an array or a list
    of arrays; the output must have ``expected_output_shape``.
    """
    layer = layer_factory()
    output = layer(inputs)
    assert tuple(output.shape) == tuple(expected_output_shape)

    # The symbolic output agrees with the eager one wherever a size is known.
    structure = inputs if isinstance(inputs, list) else [inputs]
    symbolic_inputs = [keras.Input(tuple(None for _ in np.shape(x)[1:-1]) + (np.shape(x)[-1],)) for x in structure]
    symbolic = layer_factory()(symbolic_inputs if isinstance(inputs, list) else symbolic_inputs[0])
    for known, actual in zip(symbolic.shape[1:], expected_output_shape[1:]):
        assert known is None or known == actual, (symbolic.shape, expected_output_shape)

    # config and keras.saving, in safe mode
    assert type(layer).from_config(layer.get_config()).get_config() == layer.get_config()
    clone = check_object_round_trip(layer)
    clone_output = clone(inputs)
    if layer.weights:
        clone.set_weights(layer.get_weights())
        clone_output = clone(inputs)
    _same_structure_values(output, clone_output)

    # inside a model, through a .keras file
    model = keras.Model(symbolic_inputs if isinstance(inputs, list) else symbolic_inputs[0],
                        layer(symbolic_inputs if isinstance(inputs, list) else symbolic_inputs[0]))
    path = tmp_path / f"{type(layer).__name__}.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    assert [type(l) for l in loaded.layers] == [type(l) for l in model.layers]
    _same_structure_values(model(inputs), loaded(inputs))
    return layer


def run_model_test(model: keras.Model, inputs: np.ndarray, tmp_path: Path, fresh_process: bool = False):
    """Checks a model class: a safe-mode ``.keras`` round trip keeps class, config, identity and outputs.

    With ``fresh_process``, the file is also loaded in a new Python process that
    does nothing but ``import fcn_keras`` and ``keras.models.load_model(path)``.
    """
    path = tmp_path / f"{model.name}.keras"
    model.save(path)
    expected = numpy(model(inputs, training=False))
    loaded = keras.models.load_model(path, safe_mode=True)
    assert type(loaded) is type(model)
    assert _json(loaded.get_config()) == _json(model.get_config())
    assert [(l.name, l.trainable) for l in loaded.layers] == [(l.name, l.trainable) for l in model.layers]
    if hasattr(model, "identity"):
        assert loaded.identity() == model.identity()
    np.testing.assert_array_equal(numpy(loaded(inputs, training=False)), expected)
    if fresh_process:
        np.save(tmp_path / "inputs.npy", inputs)
        np.save(tmp_path / "expected.npy", expected)
        script = textwrap.dedent(f"""
            import json, numpy as np, keras
            import fcn_keras
            model = keras.models.load_model({str(path)!r})
            got = keras.ops.convert_to_numpy(model(np.load({str(tmp_path / 'inputs.npy')!r}), training=False))
            print(json.dumps({{"class": type(model).__name__, "identity": model.identity(),
                              "equal": bool(np.array_equal(got, np.load({str(tmp_path / 'expected.npy')!r})))}}))
        """)
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        result = json.loads(done.stdout.strip().splitlines()[-1])
        assert result == {"class": type(model).__name__, "identity": json.loads(json.dumps(model.identity())),
                          "equal": True}
    return loaded
