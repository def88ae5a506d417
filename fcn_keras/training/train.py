"""``train()``: a recipe through ``model.fit``, with logs, the best checkpoint, a NaN stop, exact resume and distribution."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import keras
import tensorflow as tf

from fcn_keras import _compat
from fcn_keras.files import write_text
from fcn_keras.recipes import Recipe, load_recipe, recipe_to_dict
from fcn_keras.training.batchnorm import EstimateStatistics, batchnorm_layers, settle_batchnorm
from fcn_keras.training.callbacks import BestCheckpoint, StopOnNaN, TrainingDiverged
from fcn_keras.models.segmentation_model import dtype_policy
from fcn_keras.training.compile import build_training_state, compile_model
from fcn_keras.training.data import (
    class_names_of, data_sources, palette_of, pipeline_preprocessing, statistics_batches, train_dataset, val_dataset,
)
from fcn_keras.training.distribution import is_multi_worker, resolve_strategy, shard_by_data, worker_directory
from fcn_keras.training.init import build_model
from fcn_keras.training.jax_distribution import (
    device_count, distribution_scope, resolve_distribution,
)
from fcn_keras.training.resume import ResumeState, truncate_csv_log
from fcn_keras.training.saving import save_model


def train(
    recipe: Recipe | str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    data_root: str | os.PathLike | dict | None = None,
    init: str | os.PathLike | None = None,
    strategy: str | tf.distribute.Strategy | None = None,
    distribution: str | keras.distribution.DataParallel | None = None,
    steps: int | None = None,
    verbose: str | int = "auto",
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> dict[str, Any]:
    """Trains a recipe with ``model.fit``, resuming from ``out_dir`` when it holds a resume state.

    Writes into ``out_dir``: ``model.keras`` (the final model) and
    ``best.keras`` (best ``val_mean_iou``), both without training state;
    ``train_log.csv`` (Keras ``CSVLogger``), ``tensorboard/``, ``recipe.json``
    and ``resume/`` (:class:`~fcn_keras.training.resume.ResumeState`). With
    ``training.deterministic = true`` a run killed at any point and resumed
    ends with bit-identical weights to an uninterrupted one.

    Args:
        recipe: a :class:`~fcn_keras.recipes.Recipe`, a shipped recipe name or a TOML path.
        out_dir: where models, logs and the resume state go (created).
        data_root: dataset location(s), see :func:`~fcn_keras.training.data.data_sources`.
        init: overrides the recipe's ``[init] source`` (e.g. the previous stage's ``model.keras``).
        strategy: ``None``, ``"mirrored"``, ``"multi_worker"`` or a ``tf.distribute.Strategy``
            (:func:`~fcn_keras.training.distribution.resolve_strategy`).
        distribution: on the JAX backend, ``"data_parallel"`` or a ``keras.distribution.DataParallel``
            (:func:`~fcn_keras.training.jax_distribution.resolve_distribution`); not with ``strategy``.
        steps: overrides ``training.steps`` (a short run of a big recipe).
        verbose: Keras ``fit`` verbosity (progress bar by default).
        callbacks: extra Keras callbacks.

    Returns:
        ``{"history": {...}, "model": path, "best": path or None, "best_val_mean_iou": float,
        "global_step": int, "resumed_from": int or None, "model_object": the trained keras.Model}``.

    Raises:
        TrainingDiverged: the loss became NaN/inf (the message names the step).

    Example:
        >>> result = train("tiny_synthetic", "/tmp/fcn-run", steps=4)  # doctest: +SKIP
        >>> result["global_step"]  # doctest: +SKIP
        4
    """
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe)
    if steps is not None:
        recipe = recipe.replace(training={"steps": int(steps),
                                          "steps_per_epoch": min(int(steps), recipe.training.steps_per_epoch)})
    if any(isinstance(cb, ResumeState) for cb in callbacks):
        raise ValueError("train() adds its own ResumeState callback")
    t = recipe.training
    parallel = resolve_distribution(distribution, strategy=strategy, batch_size=recipe.data.batch_size)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "recipe.json", json.dumps({"name": recipe.name, "source": recipe.source,
                                                 "recipe": recipe_to_dict(recipe)}, indent=1))
    keras.utils.set_random_seed(t.seed)
    if t.deterministic:
        tf.config.experimental.enable_op_determinism()
    strategy = resolve_strategy(strategy)
    train_source, val_source = data_sources(recipe, data_root, out)
    logs = worker_directory(strategy, out)
    logs.mkdir(exist_ok=True)

    with dtype_policy(t.mixed_precision), strategy.scope(), distribution_scope(parallel):
        names, palette = class_names_of(train_source), palette_of(train_source)
        fits = bool(names) and len(names) == recipe.model.num_classes
        model = build_model(recipe, init=init, class_names=names if fits else None,
                            palette=palette if fits and palette is not None else None)
        settle_batchnorm(model, recipe)
        compile_model(model, recipe)
        # Every variable exists before fit(): a resume state is restored into them, and fit builds nothing.
        build_training_state(model)
    if is_multi_worker(strategy):
        _compat.multi_worker_fit(model)

    best = BestCheckpoint(logs / "best.keras")
    state = ResumeState(out / "resume", t.steps_per_epoch, t.checkpoint_every, best)
    resumed = state.load()
    start_step = state.global_step if resumed else None
    if resumed:
        print(f"Resuming {recipe.name} from {out / 'resume'} at epoch {state.epoch + 1}, "
              f"step {state.step_in_epoch} of {t.steps_per_epoch} (global step {state.global_step})")
        truncate_csv_log(logs / "train_log.csv", state.epoch)
    nan_stop = StopOnNaN(state)
    fit_callbacks = [nan_stop, *callbacks, keras.callbacks.CSVLogger(str(logs / "train_log.csv"), append=True),
                     keras.callbacks.TensorBoard(str(logs / "tensorboard")), best, state]
    preprocessing = pipeline_preprocessing(model)
    if t.batchnorm_batches and batchnorm_layers(model):
        # Its own seeds: the estimate must not consume or shift the training batches.
        fit_callbacks.insert(0, EstimateStatistics(lambda epoch: statistics_batches(
            recipe, train_source, epoch, preprocessing)))
    # One image per replica and per keras.distribution device (one of the two is 1), every batch full.
    replicas = strategy.num_replicas_in_sync * device_count(parallel)
    val = shard_by_data(val_dataset(recipe, val_source, replicas, preprocessing))
    history: dict[str, list] = {}

    def run(first_epoch: int, last_epoch: int, steps_per_epoch: int, skip: int) -> None:
        data = shard_by_data(train_dataset(recipe, train_source, range(first_epoch, last_epoch), skip, preprocessing))
        with distribution_scope(parallel):
            fit = model.fit(data, epochs=last_epoch, initial_epoch=first_epoch, steps_per_epoch=steps_per_epoch,
                            validation_data=val, callbacks=fit_callbacks, verbose=verbose, shuffle=False)
        for key, values in fit.history.items():
            history.setdefault(key, []).extend(values)

    if state.step_in_epoch:
        # The interrupted epoch runs only its remaining batches, in a fit call of its own.
        run(state.epoch, state.epoch + 1, t.steps_per_epoch - state.step_in_epoch, state.step_in_epoch)
    if state.global_step < t.steps and not model.stop_training:
        run(state.epoch, recipe.epochs, t.steps_per_epoch, 0)
    if nan_stop.message:
        raise TrainingDiverged(nan_stop.message)
    save_model(model, logs / "model.keras")
    return {
        "history": history,
        "model": str(logs / "model.keras"),
        "best": str(best.path) if best.path.is_file() else None,
        "best_val_mean_iou": best.best,
        "global_step": state.global_step,
        "resumed_from": start_step,
        "model_object": model,
    }
