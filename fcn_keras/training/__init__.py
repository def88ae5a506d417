"""Training FCNs with ``model.fit``: recipes in, models, logs and an exact resume state out.

``train(recipe, out_dir)`` is the front door (:mod:`fcn_keras.training.train`).
One concept per module:

- :mod:`~fcn_keras.training.init` — the recipe's model; staged init by layer name;
- :mod:`~fcn_keras.training.compile` — loss, Caffe SGD or AdamW, metrics, training state built before ``fit``;
- :mod:`~fcn_keras.training.data` — the recipe's datasets, batches a pure function of ``(seed, epoch, step)``;
- :mod:`~fcn_keras.training.batchnorm` — BatchNorm statistics a model trained from scratch can predict with;
- :mod:`~fcn_keras.training.distribution` — strategy, chief, per-worker directories, data sharding, replica parts;
- :mod:`~fcn_keras.training.jax_distribution` — ``keras.distribution.DataParallel`` on the JAX backend;
- :mod:`~fcn_keras.training.callbacks` — NaN stop, best checkpoint;
- :mod:`~fcn_keras.training.resume` — the exact resume state;
- :mod:`~fcn_keras.training.saving` — variables as NumPy, models saved without training state.

Only public Keras, TensorFlow and JAX API is used; the two Keras bugs that
multi-worker training needs worked around are in :mod:`fcn_keras._compat`.

Example:
    >>> from fcn_keras.training import train
    >>> result = train("tiny_synthetic", "/tmp/fcn-run", steps=4)  # doctest: +SKIP
"""

from fcn_keras.training.batchnorm import EstimateStatistics, estimate_statistics, settle_batchnorm
from fcn_keras.training.callbacks import MONITOR, BestCheckpoint, StopOnNaN, TrainingDiverged
from fcn_keras.models.segmentation_model import dtype_policy
from fcn_keras.training.compile import build_training_state, compile_model, make_optimizer
from fcn_keras.training.data import (
    class_names_of, data_sources, epoch_seed, label_checked, palette_of, pipeline_preprocessing, statistics_batches,
    train_dataset, val_dataset,
)
from fcn_keras.training.distribution import (
    assign_replica_values, is_chief, is_multi_worker, num_workers, replica_values, resolve_strategy, shard_by_data,
    strategy_of, worker_directory,
)
from fcn_keras.training.init import build_model, init_from_model, iter_layers
from fcn_keras.training.jax_distribution import resolve_distribution
from fcn_keras.training.resume import ResumeState, truncate_csv_log
from fcn_keras.training.saving import save_model, variable_values
from fcn_keras.training.train import train

__all__ = [
    "BestCheckpoint", "EstimateStatistics", "MONITOR", "ResumeState", "StopOnNaN", "TrainingDiverged",
    "assign_replica_values", "build_model", "build_training_state", "class_names_of", "compile_model", "data_sources",
    "dtype_policy", "epoch_seed", "estimate_statistics", "init_from_model", "is_chief", "is_multi_worker",
    "iter_layers", "label_checked", "make_optimizer", "num_workers", "palette_of", "pipeline_preprocessing",
    "replica_values", "resolve_distribution", "resolve_strategy", "save_model", "settle_batchnorm", "shard_by_data",
    "statistics_batches", "strategy_of", "train", "train_dataset", "truncate_csv_log", "val_dataset", "variable_values",
    "worker_directory",
]
