"""Which ``tf.distribute`` strategy trains, which process writes, and how the data is split.

Everything here is public TensorFlow API: ``tf.distribute.MultiWorkerMirroredStrategy``
and its ``cluster_resolver``, ``strategy.extended.should_checkpoint`` (the chief
of a multi-worker cluster, or the only process otherwise), tf.data's
``AutoShardPolicy``, and ``strategy.run`` / ``strategy.gather`` for the
per-replica parts of sync-on-read variables.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

STRATEGIES = ("default", "mirrored", "multi_worker")
"""The strategy names :func:`resolve_strategy` accepts (besides ``None`` and a ``tf.distribute.Strategy``)."""


def resolve_strategy(strategy: str | tf.distribute.Strategy | None = None) -> tf.distribute.Strategy:
    """The ``tf.distribute.Strategy`` that a ``strategy`` argument of :func:`~fcn_keras.training.train` names.

    ``None`` or ``"default"``: the current (default) strategy, one device;
    ``"mirrored"``: ``MirroredStrategy`` over all local GPUs (or the CPU);
    ``"multi_worker"``: ``MultiWorkerMirroredStrategy`` from the ``TF_CONFIG``
    environment variable; or a ``tf.distribute.Strategy``, returned as it is.
    A name gives the same instance every time in a process: each new strategy
    numbers its collective operations from the same start, so a second one
    meets the first one's collectives with other shapes (``InvalidArgumentError:
    Shape mismatch in the collective instance``), e.g. when a resumed run
    follows another run in one process.

    Example:
        >>> resolve_strategy(None).num_replicas_in_sync
        1
        >>> resolve_strategy("pipeline")
        Traceback (most recent call last):
        ...
        ValueError: strategy must be None, 'default', 'mirrored', 'multi_worker' or a tf.distribute.Strategy, got 'pipeline'
    """
    if strategy is None or strategy == "default":
        return tf.distribute.get_strategy()
    if strategy == "multi_worker" and "TF_CONFIG" not in os.environ:
        raise ValueError("strategy='multi_worker' needs the TF_CONFIG environment variable (cluster and task)")
    if strategy in ("mirrored", "multi_worker"):
        return _process_strategy(strategy)
    if isinstance(strategy, tf.distribute.Strategy):
        return strategy
    raise ValueError(f"strategy must be None, 'default', 'mirrored', 'multi_worker' or a tf.distribute.Strategy, "
                     f"got {strategy!r}")


def strategy_of(model: keras.Model) -> tf.distribute.Strategy:
    """The ``tf.distribute`` strategy ``model`` was built under: its own on TensorFlow, the default one elsewhere.

    Only TensorFlow-backend models have ``distribute_strategy``; on JAX one
    process is one strategy replica (``keras.distribution`` splits batches
    inside the compiled step, see :mod:`fcn_keras.training.jax_distribution`).

    Example:
        >>> strategy_of(keras.Sequential([keras.Input((1,))])).num_replicas_in_sync
        1
    """
    return getattr(model, "distribute_strategy", None) or tf.distribute.get_strategy()


@functools.cache
def _process_strategy(name: str) -> tf.distribute.Strategy:
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    return tf.distribute.MultiWorkerMirroredStrategy()


def num_workers(strategy: tf.distribute.Strategy) -> int:
    """How many processes train together: the chief and workers of a ``MultiWorkerMirroredStrategy``, else 1.

    Example:
        >>> num_workers(resolve_strategy(None))
        1
    """
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return 1
    spec = strategy.cluster_resolver.cluster_spec()
    return max(1, sum(spec.num_tasks(job) for job in ("chief", "worker") if job in spec.jobs))


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
    """Whether several processes train together (a ``MultiWorkerMirroredStrategy`` cluster of two or more).

    Example:
        >>> is_multi_worker(resolve_strategy(None))
        False
    """
    return num_workers(strategy) > 1


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the files others read (models, resume state): not a non-chief worker.

    The chief is the ``chief`` task of a multi-worker cluster, or worker 0
    when the cluster has no chief (TensorFlow's
    ``strategy.extended.should_checkpoint``); a single process always is.

    Example:
        >>> is_chief(resolve_strategy(None))
        True
    """
    return bool(strategy.extended.should_checkpoint)


def worker_directory(strategy: tf.distribute.Strategy, out_dir: str | os.PathLike) -> Path:
    """Where this process writes its logs and models: ``out_dir`` for the chief, ``out_dir/worker-<i>`` otherwise.

    Non-chief workers of a multi-worker run write apart, so that no two
    processes write one file; all of them resume from the chief's state.

    Example:
        >>> str(worker_directory(resolve_strategy(None), "runs/a"))
        'runs/a'
    """
    if is_chief(strategy):
        return Path(out_dir)
    return Path(out_dir) / f"worker-{strategy.cluster_resolver.task_id}"


def shard_by_data(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """The dataset with tf.data's DATA auto-shard policy: each worker keeps its share of every global batch.

    Every worker then builds the same global-batch pipeline (the same
    shuffling and augmentation for a seed), and the workers together train
    exactly the batches one process would. The policy only acts under a
    multi-worker strategy; elsewhere it changes nothing.

    Example:
        >>> ds = shard_by_data(tf.data.Dataset.range(4))
        >>> ds.options().experimental_distribute.auto_shard_policy.name
        'DATA'
    """
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)



def replica_values(strategy: tf.distribute.Strategy, variables: Sequence[keras.Variable]) -> list[np.ndarray]:
    """Each variable's part on every replica in sync, stacked: ``[num_replicas_in_sync, *variable.shape]``.

    Keras creates metric state under ``tf.distribute`` as sync-on-read
    variables summed on read: each replica holds its own part, and reading
    the variable outside a replica gives only the sum. The parts are read
    inside each replica (``strategy.run``) and gathered from every worker
    (``strategy.gather``); every worker of a multi-worker run must call this
    together. Any other variable reads as its value on each replica.

    Example:
        >>> mean = keras.metrics.Mean()
        >>> mean.update_state([2.0, 4.0])
        >>> [part.tolist() for part in replica_values(resolve_strategy(None), mean.variables)]
        [[6.0], [2.0]]
    """
    variables = list(variables)
    if strategy.num_replicas_in_sync == 1:  # one part, the value itself (also on JAX, whose arrays TF cannot trace)
        return [np.asarray(keras.ops.convert_to_numpy(v))[None] for v in variables]
    if not variables:
        return []

    def parts():
        return [tf.expand_dims(tf.identity(v.value), 0) for v in variables]

    per_replica = strategy.run(tf.function(parts))
    return [np.asarray(strategy.gather(part, axis=0)) for part in per_replica]


def assign_replica_values(strategy: tf.distribute.Strategy, variables: Sequence[keras.Variable],
                          values: Sequence[np.ndarray]) -> None:
    """Assigns ``values[i][r]`` to replica ``r``'s part of ``variables[i]`` (the inverse of :func:`replica_values`).

    Outside a replica a sum-on-read variable cannot be given a total
    (TensorFlow divides it among the local replicas, wrong for integers and
    for several workers); inside each replica (``strategy.run``) every part is
    assigned exactly. ``values[i]`` has shape ``[num_replicas_in_sync, *shape]``.

    Example:
        >>> mean = keras.metrics.Mean()
        >>> assign_replica_values(resolve_strategy(None), mean.variables, [np.array([6.0]), np.array([2.0])])
        >>> float(mean.result())
        3.0
    """
    variables = list(variables)
    n = strategy.num_replicas_in_sync
    for variable, value in zip(variables, values, strict=True):
        if tuple(value.shape) != (n, *variable.shape):
            raise ValueError(f"assign_replica_values: {variable.path} needs values of shape {(n, *variable.shape)} "
                             f"({n} replicas), got {tuple(value.shape)}")
    if n == 1:
        for variable, value in zip(variables, values):
            variable.assign(value[0])
        return
    if not variables:
        return
    constants = [tf.constant(np.asarray(value), dtype=variable.dtype) for variable, value in zip(variables, values)]

    def assign():
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        for variable, value in zip(variables, constants):
            variable.assign(tf.gather(value, replica))

    strategy.run(tf.function(assign))
