"""Exact resume: the whole training state written during ``fit`` and put back into a fresh run.

A state is a directory ``resume/step-<global step>/variables.npz`` holding
every variable of the model (weights, BatchNorm statistics, dropout RNG
state), of the optimizer (momenta, iteration count, loss scale) and of the
running metrics of the current epoch, published by atomically replacing
``resume/latest.json`` (which names it, with the epoch and the step in it).
Under ``tf.distribute`` each replica holds a part of a running metric (Keras'
sum-on-read variables): the state keeps every replica's part besides the
total, and puts each part back into its replica.
Keras' ``BackupAndRestore`` restarts an interrupted epoch from its first
batch with mid-epoch weights, replaying batches; it is not used.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import time
from pathlib import Path

import keras
import numpy as np

from fcn_keras.files import atomic_directory, write_text
from fcn_keras.training.callbacks import BestCheckpoint
from fcn_keras.training.distribution import assign_replica_values, is_chief, replica_values, strategy_of
from fcn_keras.training.saving import variable_values

LATEST = "latest.json"
REPLICAS = "metric_replicas"
"""The key prefix of the per-replica parts of the running metrics in ``variables.npz``."""


class ResumeState(keras.callbacks.Callback):
    """Writes the exact training state every ``every`` steps and at each epoch end, and restores it.

    ``epoch`` and ``step_in_epoch`` say where training stands; ``global_step``
    counts finished steps. :meth:`load` reads a state; the next ``fit`` then
    puts the model and optimizer variables back at its start and the metric
    variables back at the start of the interrupted epoch (Keras resets
    metrics at each epoch start). Only the chief of a multi-worker run writes.
    ``stop_at_step`` ends training after that global step (tests, time-boxed runs).

    Example:
        >>> state = ResumeState("runs/a/resume", steps_per_epoch=8, every=5, best=BestCheckpoint("runs/a/best.keras"))
        >>> state.epoch, state.step_in_epoch = 1, 3
        >>> state.global_step
        11
    """

    def __init__(self, directory: str | os.PathLike, steps_per_epoch: int, every: int, best: BestCheckpoint):
        super().__init__()
        self.directory, self.steps_per_epoch, self.every, self.best = Path(directory), steps_per_epoch, every, best
        self.epoch, self.step_in_epoch = 0, 0
        self.stop_at_step: int | None = None
        self._batch_offset = 0
        self._restore: dict[str, np.ndarray] | None = None
        self._restore_metrics = False

    @property
    def global_step(self) -> int:
        """Steps finished: ``epoch * steps_per_epoch + step_in_epoch``."""
        return self.epoch * self.steps_per_epoch + self.step_in_epoch

    def _groups(self) -> dict[str, list]:
        model = self.model
        return {
            "model": list(model.variables),
            "optimizer": list(model.optimizer.variables),
            "metrics": [v for m in model.metrics for v in m.variables],
        }

    def load(self) -> bool:
        """Reads ``latest.json`` and its state; returns whether there is a state to resume from."""
        latest = self.directory / LATEST
        if not latest.is_file():
            return False
        info = json.loads(latest.read_text())
        with np.load(self.directory / info["path"] / "variables.npz") as arrays:
            self._restore = {k: arrays[k] for k in arrays.files}
        self.epoch, self.step_in_epoch = info["epoch"], info["step_in_epoch"]
        self.best.best = info.get("best", -math.inf)
        return True

    def on_train_begin(self, logs=None):
        if self._restore is None:
            return
        for group, variables in self._groups().items():
            if group != "metrics":
                self._assign(group, variables)
        self._restore_metrics = True

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self._batch_offset = self.step_in_epoch if self._restore_metrics else 0
        self.step_in_epoch = self._batch_offset
        if self._restore_metrics:
            # Keras reset the metrics just before this call: put back the interrupted epoch's running values.
            if self.step_in_epoch:
                self._assign_metrics(self._groups()["metrics"])
            self._restore_metrics, self._restore = False, None

    def _values(self, group: str, variables: list) -> list[np.ndarray]:
        count = sum(1 for k in self._restore if k.startswith(f"{group}/"))
        if count != len(variables):
            raise ValueError(f"resume state in {self.directory} has {count} {group} variables, the run has "
                             f"{len(variables)}: it was written by another recipe or version; delete it to restart")
        values = [self._restore[f"{group}/{i}"] for i in range(count)]
        for variable, value in zip(variables, values):
            if tuple(value.shape) != tuple(variable.shape):
                raise ValueError(f"resume state in {self.directory}: {group} variable {variable.path} has shape "
                                 f"{value.shape}, the run needs {tuple(variable.shape)}")
        return values

    def _assign(self, group: str, variables: list) -> None:
        for variable, value in zip(variables, self._values(group, variables)):
            variable.assign(value)

    def _assign_metrics(self, variables: list) -> None:
        totals = self._values("metrics", variables)
        strategy = strategy_of(self.model)
        n = strategy.num_replicas_in_sync
        parts = [self._restore.get(f"{REPLICAS}/{i}") for i in range(len(variables))]
        if any(p is None or p.shape[0] != n for p in parts):
            # Written with another number of replicas (or before parts were kept): the whole total goes
            # to the first replica, the others count from zero; the sums read the same.
            parts = [np.concatenate([t[None], np.zeros((n - 1, *t.shape), t.dtype)]) for t in totals]
        assign_replica_values(strategy, variables, parts)

    def on_train_batch_end(self, batch, logs=None):
        self.step_in_epoch = self._batch_offset + batch + 1
        if self.model.stop_training:
            return
        if self.global_step % self.every == 0 and self.step_in_epoch < self.steps_per_epoch:
            self.save()
        if self.stop_at_step is not None and self.global_step >= self.stop_at_step:
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        if self.model.stop_training and self.step_in_epoch < self.steps_per_epoch:
            return
        self.epoch, self.step_in_epoch = epoch + 1, 0
        if logs and not math.isfinite(float(logs.get("loss", 0.0))):
            return  # never publish a diverged state
        self.save()

    def save(self) -> None:
        """Writes the state now (every worker reads its variables, only the chief writes)."""
        groups = self._groups()
        metrics = groups.pop("metrics")
        arrays = {f"{g}/{i}": value for g, vs in groups.items() for i, value in enumerate(variable_values(vs))}
        strategy = strategy_of(self.model)
        for i, parts in enumerate(replica_values(strategy, metrics)):
            arrays[f"metrics/{i}"] = parts.sum(axis=0, dtype=parts.dtype)
            arrays[f"{REPLICAS}/{i}"] = parts
        if not is_chief(strategy):
            return
        name = f"step-{self.global_step:09d}"
        with atomic_directory(self.directory / name, replace=True) as tmp:
            np.savez(tmp / "variables.npz", **arrays)
        info = {"path": name, "epoch": self.epoch, "step_in_epoch": self.step_in_epoch,
                "global_step": self.global_step, "best": self.best.best, "time": time.time()}
        write_text(self.directory / LATEST, json.dumps(info, indent=1))
        for old in self.directory.iterdir():
            # Earlier states, and the temporary directories of writes a kill interrupted.
            if old.is_dir() and old.name != name and old.name.lstrip(".").startswith("step-"):
                shutil.rmtree(old, ignore_errors=True)


def truncate_csv_log(path: str | os.PathLike, epochs_done: int) -> None:
    """Drops the rows of a ``CSVLogger`` file for epochs ``>= epochs_done`` (trained again after a resume).

    Example:
        >>> import tempfile, pathlib
        >>> log = pathlib.Path(tempfile.mkdtemp()) / "train_log.csv"
        >>> _ = log.write_text("epoch,loss\\n0,1.5\\n1,1.2\\n2,0.9\\n")
        >>> truncate_csv_log(log, 2)
        >>> log.read_text().splitlines()
        ['epoch,loss', '0,1.5', '1,1.2']
    """
    path = Path(path)
    if not path.is_file():
        return
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return
    kept = [rows[0]] + [r for r in rows[1:] if r and int(r[0]) < epochs_done]
    text = io.StringIO(newline="")
    csv.writer(text).writerows(kept)
    write_text(path, text.getvalue())
