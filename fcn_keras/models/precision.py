"""The precision a model computes in: a copy of the same model, same weights, under another dtype policy.

``with_precision(model, "bfloat16")`` is the model computing under Keras'
``mixed_bfloat16`` policy (bfloat16 activations and matmuls, float32
variables, float32 logits); ``"float32"`` is the plain float32 model. Exports
use the float32 copy; bfloat16 inference (``--precision bfloat16``) the
bfloat16 one. The copy is the model's own config rebuilt under the new policy,
so a layer the architecture pins to float32 (the preprocessing, the final
``score`` crop) stays float32.
"""

from __future__ import annotations

import copy

import keras

PRECISIONS = ("float32", "bfloat16")
"""The inference precisions: their names as ``--precision`` and ``precision=`` take them."""
_POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16"}


def _compute_dtypes(model: keras.Model) -> set[str]:
    def walk(layers):
        for layer in layers:
            yield layer.compute_dtype
            if hasattr(layer, "layers"):
                yield from walk(layer.layers)

    return {model.compute_dtype, *walk(model.layers)}


def is_mixed_precision(model: keras.Model) -> bool:
    """Whether ``model`` or any of its layers (nested models included) computes in float16/bfloat16.

    Example:
        >>> x = keras.Input((None, None, 3))
        >>> is_mixed_precision(keras.Model(x, keras.layers.Conv2D(2, 1, dtype="mixed_float16")(x)))
        True
    """
    return bool(_compute_dtypes(model) & {"float16", "bfloat16"})


def check_precision(precision) -> str:
    """``precision`` if it is one of :data:`PRECISIONS`, else a ``ValueError`` naming the argument.

    Example:
        >>> check_precision("float16")
        Traceback (most recent call last):
        ...
        ValueError: precision must be one of ('float32', 'bfloat16'), got 'float16'
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return precision


def _with_policy(config, policy: str, top: bool = True):
    # The model's own "dtype" (what FCN and the family build their layers under) becomes ``policy``;
    # below it, only mixed policies change, so layers pinned to float32 stay float32.
    if isinstance(config, dict):
        out = {}
        for key, value in config.items():
            name = value if isinstance(value, str) else (value.get("config", {}).get("name") if isinstance(
                value, dict) and value.get("class_name") in ("DTypePolicy", "FloatDTypePolicy") else None)
            if key == "dtype" and isinstance(name, str) and (top or name.startswith("mixed_")):
                if isinstance(value, str):
                    value = policy
                else:
                    value = copy.deepcopy(value)
                    value["config"]["name"] = policy
            else:
                value = _with_policy(value, policy, top and key == "config")
            out[key] = value
        return out
    if isinstance(config, list):
        return [_with_policy(item, policy, False) for item in config]
    return config


def _computes_in(model: keras.Model, precision: str) -> bool:
    if precision == "float32":
        return not is_mixed_precision(model)
    dtypes = _compute_dtypes(model)  # the model's own policy may say float32 while FCN's layers are mixed
    return precision in dtypes and dtypes <= {"float32", precision}


def with_precision(model: keras.Model, precision: str) -> keras.Model:
    """``model`` computing in ``precision`` (:data:`PRECISIONS`): itself if it already does, else a copy.

    The copy is the same class with the same identity and weights (variables
    stay float32 under ``mixed_bfloat16``); its logits are float32 either way.
    A model whose layers each fix their own policy (a plain functional model
    built under float32) cannot be given a new one this way and is refused.
    The copy is for inference: saved, an FCN or family model writes its float32
    self (its config names the model's own policy, which stays float32), so
    save the original and take the copy after loading.

    Example:
        >>> from fcn_keras.models import fcn8s
        >>> model = fcn8s(num_classes=2, backbone="tiny_vgg")
        >>> fast = with_precision(model, "bfloat16")
        >>> fast.get_layer("score_fr").compute_dtype, fast.get_layer("score").compute_dtype
        ('bfloat16', 'float32')
        >>> with_precision(model, "float32") is model, with_precision(fast, "float32").dtype_policy.name
        (True, 'float32')
    """
    check_precision(precision)
    if _computes_in(model, precision):
        return model
    config = _with_policy(keras.saving.serialize_keras_object(model), _POLICIES[precision])
    clone = keras.saving.deserialize_keras_object(config)
    clone.set_weights(model.get_weights())
    if not _computes_in(clone, precision):
        raise ValueError(f"could not make a {precision} copy of model {model.name!r}: its layers keep their own "
                         f"dtype policies; build it with dtype={_POLICIES[precision]!r} instead")
    return clone
