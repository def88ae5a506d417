"""Reading variables (also ``tf.distribute`` ones) and writing a trained model without its training state."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import keras
import numpy as np

from fcn_keras.files import atomic_path


def variable_values(variables: Iterable[keras.Variable]) -> list[np.ndarray]:
    """The values of ``variables`` as NumPy arrays.

    Under a ``tf.distribute`` strategy a mirrored variable reads as its
    (identical) value and a sum-on-read metric variable as the sum over the
    replicas, as ``keras.ops.convert_to_numpy`` reads them.

    Example:
        >>> variable_values([keras.Variable([1.0, 2.0])])[0].tolist()
        [1.0, 2.0]
    """
    return [np.asarray(keras.ops.convert_to_numpy(v)) for v in variables]


def save_model(model: keras.Model, path: str | os.PathLike) -> Path:
    """Saves ``model`` to the ``.keras`` file ``path`` atomically, without compile and optimizer state.

    The file holds the architecture (the model's own class, serialized by
    ``keras.saving.serialize_keras_object``) and the weights; it loads with
    ``keras.models.load_model(path)`` without fcn_keras' training classes,
    and is a fraction of the size of ``model.save``'s (no momenta). Readers
    see the old file or the new one, never a part.

    Example:
        >>> import tempfile
        >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        >>> model.compile(optimizer="sgd", loss="mse")
        >>> path = save_model(model, tempfile.mkdtemp() + "/model.keras")
        >>> keras.models.load_model(path).compiled
        False
    """
    config = keras.saving.serialize_keras_object(model)
    config.pop("compile_config", None)
    plain = keras.saving.deserialize_keras_object(config)
    plain.set_weights(variable_values(model.weights))
    with atomic_path(path) as tmp:
        plain.save(tmp)
    return Path(path)
