"""Keras callbacks of a training run: stop at a non-finite loss, keep the best model by validation mean IU."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

import keras

from fcn_keras.training.saving import save_model

if TYPE_CHECKING:
    from fcn_keras.training.resume import ResumeState

MONITOR = "val_mean_iou"
"""The log that :class:`BestCheckpoint` follows."""


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message names the epoch and global step."""


class StopOnNaN(keras.callbacks.Callback):
    """Stops training at the first non-finite loss and keeps a message naming the global step in ``message``.

    ``state`` (a :class:`~fcn_keras.training.resume.ResumeState`) says where
    training stands. :func:`~fcn_keras.training.train` raises
    :class:`TrainingDiverged` with the message.
    """

    def __init__(self, state: "ResumeState"):
        super().__init__()
        self.state = state
        self.message: str | None = None

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            step = self.state.global_step
            self.message = (f"loss became {float(loss)} at global step {step} (epoch {self.state.epoch + 1}, "
                            f"batch {step - self.state.epoch * self.state.steps_per_epoch}); training stopped. "
                            "Lower the learning rate or check the data.")
            print(f"\n{self.message}")
            self.model.stop_training = True


class BestCheckpoint(keras.callbacks.Callback):
    """Saves the model to ``path`` (atomically, without training state) whenever ``monitor`` improves.

    ``best`` is the best value so far; a resumed run sets it from the resume
    state, so that a worse epoch after a resume does not overwrite the file. A
    partial epoch (training stopped early) is not a candidate.

    Example:
        >>> BestCheckpoint("runs/a/best.keras").best
        -inf
    """

    def __init__(self, path: str | os.PathLike, monitor: str = MONITOR):
        super().__init__()
        self.path, self.monitor, self.best = Path(path), monitor, -math.inf

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if self.model.stop_training:
            return
        if value is not None and math.isfinite(float(value)) and float(value) > self.best:
            self.best = float(value)
            save_model(self.model, self.path)
