"""``keras.distribution`` on the JAX backend: one process trains data-parallel over all its devices.

``train(..., distribution="data_parallel")`` builds and fits the model inside a
public ``keras.distribution.DataParallel`` over ``keras.distribution.list_devices()``:
every variable is replicated, every global batch is split along its first axis,
and XLA compiles the one training step for all devices, all-reducing the
gradients. The step still computes the loss, the BatchNorm statistics and the
metric counts of the *global* batch, so N devices train what one device does
(up to float summation order) for either loss reduction. This is the JAX
counterpart of ``tf.distribute`` (:mod:`fcn_keras.training.distribution`); the
two are never combined.

Each global batch must split evenly: the recipe's ``[data] batch_size`` must be
a multiple of the device count, and validation batches hold one image per
device, the last one completed with images whose pixels are all the ignore
label (they count in no score).
"""

from __future__ import annotations

import contextlib
from typing import ContextManager

import keras

DISTRIBUTIONS = ("data_parallel",)
"""The names the ``distribution`` argument of :func:`~fcn_keras.training.train` accepts (besides ``None``)."""


def resolve_distribution(
    distribution: str | keras.distribution.DataParallel | None,
    *,
    strategy: object = None,
    batch_size: int = 1,
) -> keras.distribution.DataParallel | None:
    """The ``keras.distribution`` a ``distribution`` argument of :func:`~fcn_keras.training.train` names.

    ``None``: none (one device, or a ``tf.distribute`` strategy);
    ``"data_parallel"``: ``keras.distribution.DataParallel`` over all devices of
    ``keras.distribution.list_devices()``; a ``keras.distribution.DataParallel``
    is returned as it is. Refused, each with one error naming the argument: any
    backend but JAX, a ``strategy`` given too (other than ``"default"``), several
    JAX processes, and a ``batch_size`` (the global batch) that the devices cannot
    split evenly.

    Example:
        >>> resolve_distribution(None) is None
        True
        >>> resolve_distribution("model_parallel")
        Traceback (most recent call last):
        ...
        ValueError: distribution must be None, 'data_parallel' or a keras.distribution.DataParallel, got 'model_parallel'
    """
    if distribution is None:
        return None
    if not (distribution in DISTRIBUTIONS or isinstance(distribution, keras.distribution.DataParallel)):
        raise ValueError(f"distribution must be None, 'data_parallel' or a keras.distribution.DataParallel, "
                         f"got {distribution!r}")
    backend = keras.backend.backend()
    if backend != "jax":
        raise ValueError(f"distribution={distribution!r} is keras.distribution on the JAX backend (KERAS_BACKEND=jax); "
                         f"this process runs Keras on {backend!r}: use strategy='mirrored' or 'multi_worker' there")
    if strategy not in (None, "default"):
        raise ValueError(f"distribution={distribution!r} and strategy={strategy!r} both distribute training: "
                         f"give one (strategy= is tf.distribute, for the TensorFlow backend)")
    import jax

    if jax.process_count() > 1:
        raise ValueError(f"distribution={distribution!r} trains in one process over its local devices; "
                         f"this is one of {jax.process_count()} JAX processes, which train() does not coordinate")
    name = repr(distribution) if isinstance(distribution, str) else type(distribution).__name__
    if distribution == "data_parallel":
        distribution = keras.distribution.DataParallel(devices=keras.distribution.list_devices())
    devices = device_count(distribution)
    if batch_size % devices:
        raise ValueError(f"distribution={name} splits every global batch over {devices} devices: "
                         f"[data] batch_size = {batch_size} is not a multiple of {devices}")
    return distribution


def device_count(distribution: keras.distribution.DataParallel | None) -> int:
    """How many devices share each batch: the data axis of the distribution's device mesh (1 without one).

    Example:
        >>> device_count(None)
        1
    """
    if distribution is None:
        return 1
    mesh = distribution.device_mesh
    return int(mesh.shape[list(mesh.axis_names).index(distribution.batch_dim_name)])


def distribution_scope(distribution: keras.distribution.DataParallel | None) -> ContextManager:
    """``distribution.scope()`` (variables created and ``fit`` run inside are distributed), or a no-op for ``None``.

    Example:
        >>> with distribution_scope(None):
        ...     keras.distribution.distribution() is None
        True
    """
    return contextlib.nullcontext() if distribution is None else distribution.scope()
