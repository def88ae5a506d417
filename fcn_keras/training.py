"""Runs a training recipe with ``model.fit``: logs, best-mIoU checkpoint, NaN stop, exact resume, distribution.

``train(recipe, out_dir)`` writes into ``out_dir``:

- ``model.keras`` — the final model (atomic write); ``best.keras`` — the best ``val_mean_iou`` so far;
- ``train_log.csv`` (Keras ``CSVLogger``) and ``tensorboard/`` (Keras ``TensorBoard``);
- ``resume/`` — the resume state: every variable of the model (including
  dropout RNG states and BatchNorm statistics), of the optimizer (momenta,
  iteration count, loss scale) and of the epoch's running metrics, with the
  epoch and the step within it. It is written every
  ``training.checkpoint_every`` steps and at each epoch end, as a new directory
  published by an atomic rename of ``resume/latest.json``.

Calling ``train`` again with the same ``out_dir`` resumes from that state. The
training data of each epoch is a deterministic function of ``(seed, epoch)``
(its own shuffling and augmentation seeds), and a resumed epoch skips the
batches already trained on, so with ``training.deterministic = true`` a run
killed at any point and resumed ends with bit-identical weights to an
uninterrupted one. (Keras' own ``BackupAndRestore`` restarts an interrupted
epoch from its first batch with the mid-epoch weights, so it replays batches;
it is not used.)
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import keras

from fcn_keras.losses import SegmentationCrossEntropy
from fcn_keras.metrics import SegmentationMetrics
from fcn_keras.models import build_fcn
from fcn_keras.optimizers import CaffeSGD
from fcn_keras.recipes import Recipe, load_recipe, recipe_to_dict

MONITOR = "val_mean_iou"


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message names the epoch and global step."""


# ---------------------------------------------------------------- model, optimizer, init


def build_model(recipe: Recipe, init: str | os.PathLike | None = None) -> keras.Model:
    """The recipe's model, initialised from ``init`` (default: the recipe's ``[init] source``).

    ``init`` is ``"imagenet"``, ``"none"``, or a ``.keras`` model file whose
    layers are copied by name (:func:`init_from_model`; the staged-training
    init of FCN-16s from FCN-32s and FCN-8s from FCN-16s).

    Example:
        >>> from fcn_keras.recipes import load_recipe
        >>> build_model(load_recipe("tiny_synthetic"), init="none").name
        'fcn8s_mobilenet_v2'
    """
    m = recipe.model
    source = str(init if init is not None else recipe.init.source)
    if source.startswith("recipe:"):
        raise ValueError(
            f"{recipe.source}: [init] source = {source!r} is a previous stage; pass its model file, "
            f"e.g. train(..., init='runs/{source[7:]}/model.keras')"
        )
    weights = "imagenet" if source == "imagenet" else None
    model = build_fcn(m.architecture, num_classes=m.num_classes, trainable_upsampling=m.trainable_upsampling,
                      weights=weights, backbone=m.backbone)
    if source not in ("imagenet", "none"):
        init_from_model(model, source)
    if m.batchnorm_momentum:
        for layer in model._flatten_layers():  # noqa: SLF001 - nested backbones included
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = m.batchnorm_momentum
    return model


def init_from_model(model: keras.Model, source: keras.Model | str | os.PathLike) -> list[str]:
    """Copies every layer of ``source`` that ``model`` has by name; returns the copied names.

    New layers of ``model`` (FCN-16s' ``score_pool4`` when initialised from
    FCN-32s) keep their initialisation — zero for score layers, bilinear for
    upsampling. Raises ``ValueError`` listing the layers whose shapes do not
    fit (another number of classes or backbone), or when no layer is shared.

    Example:
        >>> fcn16 = build_fcn("fcn16s", num_classes=3, backbone="mobilenet_v2")
        >>> "score_fr" in init_from_model(fcn16, build_fcn("fcn32s", num_classes=3, backbone="mobilenet_v2"))
        True
    """
    where = str(source) if not isinstance(source, keras.Model) else f"model {source.name!r}"
    if not isinstance(source, keras.Model):
        if not os.path.isfile(source):
            raise FileNotFoundError(f"init checkpoint {where} does not exist")
        source = keras.models.load_model(source, compile=False)
    own = {layer.name: layer for layer in model.layers if layer.weights}
    copied, misfits = [], []
    pending = []
    for layer in source.layers:
        if not layer.weights or layer.name not in own:
            continue
        values = layer.get_weights()
        target = own[layer.name]
        expected = [tuple(w.shape) for w in target.weights]
        if expected != [v.shape for v in values]:
            misfits.append(f"{layer.name} (checkpoint {[v.shape for v in values]}, model {expected})")
        else:
            pending.append((target, values))
    if misfits:
        raise ValueError(f"init checkpoint {where} does not fit {model.name}: these layers differ in shape: "
                         + "; ".join(misfits))
    if not pending:
        raise ValueError(f"init checkpoint {where} shares no layer with {model.name} "
                         f"(checkpoint layers: {[l.name for l in source.layers if l.weights][:8]}...)")
    for target, values in pending:
        target.set_weights(values)
        copied.append(target.name)
    return copied


def make_optimizer(recipe: Recipe) -> CaffeSGD:
    """The recipe's Caffe SGD with its learning-rate schedule."""
    o, s, t = recipe.optimizer, recipe.schedule, recipe.training
    lr = o.learning_rate
    if s.name == "poly":
        lr = keras.optimizers.schedules.PolynomialDecay(lr, t.steps, end_learning_rate=0.0, power=s.power)
    elif s.name == "step":
        lr = keras.optimizers.schedules.ExponentialDecay(lr, s.step_size, s.gamma, staircase=True)
    multipliers = {"*bias": (o.bias_lr_multiplier, 0.0), "*": (1.0, 1.0)}
    return CaffeSGD(learning_rate=lr, momentum=o.momentum, weight_decay=o.weight_decay, multipliers=multipliers)


def compile_model(model: keras.Model, recipe: Recipe, **compile_kwargs) -> keras.Model:
    """Compiles with the recipe's loss, optimizer and :class:`SegmentationMetrics`.

    Under ``mixed_float16`` Keras wraps the optimizer in a ``LossScaleOptimizer``.
    """
    loss = SegmentationCrossEntropy(recipe.loss.reduction, class_weights=recipe.loss.class_weights or None)
    model.compile(optimizer=make_optimizer(recipe), loss=loss,
                  metrics=[SegmentationMetrics(recipe.model.num_classes)], **compile_kwargs)
    return model


# ---------------------------------------------------------------- data


def _preprocessing(recipe: Recipe):
    from fcn_keras.models.backbones import get_backbone
    from fcn_keras.models.layers import Preprocessing

    mode = get_backbone(recipe.model.backbone).preprocessing
    if mode == "fcn":
        return "fcn"
    layer = Preprocessing(mode)
    return lambda image: layer(image)


def data_sources(recipe: Recipe, data_root: str | os.PathLike | dict | None, out_dir: Path):
    """``(train_source, val_source)`` for the recipe's dataset.

    ``data_root``: the dataset folder (VOC layout for ``voc``; a prepared
    folder for ``prepared``), a dict ``{"sbd": ..., "voc": ...}`` for ``sbd``
    (SBD for training, VOC for the ``seg11valid`` validation), or ``None`` for
    ``synthetic`` (written into ``out_dir/synthetic``).
    """
    from fcn_keras import data

    d, n = recipe.data, recipe.model.num_classes
    kind = d.dataset
    roots = data_root if isinstance(data_root, dict) else {kind: data_root} if data_root is not None else {}
    if kind == "synthetic":
        root = roots.get("synthetic") or out_dir / "synthetic"
        data.write_synthetic_voc(root, num_images=d.synthetic_images, seed=recipe.training.seed,
                                 image_size=tuple(d.synthetic_size), num_classes=n)
        return data.voc_source(root, d.train_split, num_classes=n), data.voc_source(root, d.val_split, num_classes=n)
    if kind == "voc":
        root = _need(roots, "voc", recipe)
        return data.voc_source(root, d.train_split, num_classes=n), data.voc_source(root, d.val_split, num_classes=n)
    if kind == "sbd":
        train = data.sbd_source(_need(roots, "sbd", recipe), d.train_split)
        voc = _need(roots, "voc", recipe)
        val = data.seg11valid_source(voc) if d.val_split == "seg11valid" else data.voc_source(voc, d.val_split)
        return train, val
    if kind == "prepared":
        return str(_need(roots, "prepared", recipe)), str(_need(roots, "prepared_val", recipe))
    raise ValueError(f"{recipe.source}: unsupported dataset {kind!r}")


def _need(roots: dict, key: str, recipe: Recipe):
    if not roots.get(key):
        raise ValueError(f"recipe {recipe.name} (dataset {recipe.data.dataset!r}) needs data_root[{key!r}]: "
                         f"pass data_root={{{key!r}: '/path/to/{key}'}}")
    return roots[key]


def label_checked(dataset, num_classes: int, ignore_label: int = 255):
    """Adds a per-batch check that labels are class indices or ``ignore_label`` (fails with a clear message)."""
    import tensorflow as tf

    def check(images, labels):
        bad = tf.logical_and(tf.not_equal(labels, ignore_label),
                             tf.logical_or(labels < 0, labels >= num_classes))
        assertion = tf.debugging.Assert(
            tf.logical_not(tf.reduce_any(bad)),
            [f"labels must be class indices in [0, {num_classes}) or the ignore label {ignore_label}; "
             "found out-of-range labels, largest:", tf.reduce_max(tf.where(bad, labels, -1))])
        with tf.control_dependencies([assertion]):
            return images, tf.identity(labels)

    return dataset.map(check)


def _epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch) % (2**31 - 1)


def _train_dataset(recipe: Recipe, source, epochs: range, skip: int):
    """Epochs ``epochs`` of training batches, each epoch drawn from its own seed; the first ``skip`` dropped."""
    import tensorflow as tf
    from fcn_keras import data

    d, t = recipe.data, recipe.training
    parts = [
        data.make_pipeline(
            source, training=True, batch_size=d.batch_size, crop_size=tuple(d.crop_size) or None,
            preprocessing=_preprocessing(recipe), scale_range=tuple(d.scale_range) or None, flip=d.flip,
            seed=_epoch_seed(t.seed, epoch), deterministic=True, repeat=True,
        ).take(t.steps_per_epoch)
        for epoch in epochs
    ]
    dataset = parts[0]
    for part in parts[1:]:
        dataset = dataset.concatenate(part)
    dataset = label_checked(dataset.skip(skip), recipe.model.num_classes)
    return dataset.prefetch(tf.data.AUTOTUNE)


def _val_dataset(recipe: Recipe, source, replicas: int):
    from fcn_keras import data

    # One image per replica, so that no replica gets an empty batch. Images of a batch are padded to the
    # largest (labels with 255, never counted); fcn_keras.evaluation.evaluate gives exact batch-1 figures.
    dataset = data.make_pipeline(source, training=False, batch_size=replicas, preprocessing=_preprocessing(recipe))
    if recipe.training.validation_steps:
        dataset = dataset.take(recipe.training.validation_steps)
    return label_checked(dataset, recipe.model.num_classes)


def _distributed(strategy, make: Callable):
    """``make()``; under a multi-worker strategy with DATA sharding: every worker builds the same
    global-batch pipeline and keeps its share of each global batch (Keras' fit does not start on
    ``distribute_datasets_from_function`` datasets in Keras 3.15)."""
    dataset = make()
    if strategy.extended._in_multi_worker_mode():  # noqa: SLF001 - no public test exists
        import tensorflow as tf

        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        dataset = dataset.with_options(options)
    return dataset


# ---------------------------------------------------------------- callbacks


def _atomic_save_model(model: keras.Model, path: Path) -> None:
    """Saves the model without its compile state (loads without fcn_keras' training classes), atomically."""
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.keras")
    plain = keras.Model.from_config(model.get_config())
    for target, source in zip(plain.weights, model.weights):
        target.assign(_variable_numpy(source))
    plain.save(tmp)
    os.replace(tmp, path)


class StopOnNaN(keras.callbacks.Callback):
    """Stops training at the first non-finite loss and remembers a message naming the global step."""

    def __init__(self, state: "ResumeState"):
        super().__init__()
        self.state = state
        self.message = None

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
    """Saves ``best.keras`` atomically whenever ``val_mean_iou`` improves; ``best`` survives resumes."""

    def __init__(self, path: Path, monitor: str = MONITOR):
        super().__init__()
        self.path, self.monitor, self.best = path, monitor, -math.inf

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if self.model.stop_training:  # a partial epoch (stopped early) is not a candidate
            return
        if value is not None and math.isfinite(float(value)) and float(value) > self.best:
            self.best = float(value)
            _atomic_save_model(self.model, self.path)


class ResumeState(keras.callbacks.Callback):
    """Writes and restores the exact training state (see the module docstring).

    ``epoch`` and ``step_in_epoch`` say where training stands; ``global_step`` counts
    finished steps. A state is a directory ``resume/step-<n>/`` holding
    ``variables.npz`` and published by atomically replacing ``resume/latest.json``.
    """

    def __init__(self, directory: Path, steps_per_epoch: int, every: int, best: BestCheckpoint):
        super().__init__()
        self.directory, self.steps_per_epoch, self.every, self.best = directory, steps_per_epoch, every, best
        self.epoch, self.step_in_epoch = 0, 0
        self._batch_offset = 0
        self._restore: dict | None = None
        self._restore_metrics = None
        self.stop_at_step: int | None = None  # testing and time-boxed runs: stop after this global step

    @property
    def global_step(self) -> int:
        return self.epoch * self.steps_per_epoch + self.step_in_epoch

    # -- what is saved
    def _groups(self) -> dict[str, list]:
        model = self.model
        return {
            "model": list(model.variables),
            "optimizer": list(model.optimizer.variables),
            "metrics": [v for m in model.metrics for v in m.variables],
        }

    def load(self) -> bool:
        """Reads ``latest.json``; returns whether there is a state to resume from."""
        latest = self.directory / "latest.json"
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
            if group == "metrics":
                continue
            self._assign(group, variables)
        self._restore_metrics = self._restore

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self._batch_offset = self.step_in_epoch if self._restore_metrics is not None else 0
        self.step_in_epoch = self._batch_offset
        if self._restore_metrics is not None:
            # Keras reset the metrics just before this call: put back the interrupted epoch's running values.
            if self.step_in_epoch and self.model.distribute_strategy.num_replicas_in_sync == 1:
                self._assign("metrics", self._groups()["metrics"])
            self._restore_metrics = self._restore = None

    def _assign(self, group: str, variables: list) -> None:
        count = sum(1 for k in self._restore if k.startswith(f"{group}/"))
        if count != len(variables):
            raise ValueError(f"resume state in {self.directory} has {count} {group} variables, the run has "
                             f"{len(variables)}: it was written by another recipe or version; delete it to restart")
        for i, variable in enumerate(variables):
            value = self._restore[f"{group}/{i}"]
            if tuple(value.shape) != tuple(variable.shape):
                raise ValueError(f"resume state in {self.directory}: {group} variable {variable.path} has shape "
                                 f"{value.shape}, the run needs {tuple(variable.shape)}")
            variable.assign(value)

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
        """Writes the state now (only the chief does under multi-worker training)."""
        arrays = {f"{g}/{i}": _variable_numpy(v) for g, vs in self._groups().items() for i, v in enumerate(vs)}
        if not _is_chief(self.model.distribute_strategy):
            return
        name = f"step-{self.global_step:09d}"
        target = self.directory / name
        tmp = self.directory / f".{name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        np.savez(tmp / "variables.npz", **arrays)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
        info = {"path": name, "epoch": self.epoch, "step_in_epoch": self.step_in_epoch,
                "global_step": self.global_step, "best": self.best.best, "time": time.time()}
        _atomic_write_text(self.directory / "latest.json", json.dumps(info, indent=1))
        for old in self.directory.glob("step-*"):
            if old.name != name:
                shutil.rmtree(old, ignore_errors=True)


def _variable_numpy(variable) -> np.ndarray:
    """A variable's value, also for tf.distribute variables (sync-on-read ones read as their replica sum)."""
    value = getattr(variable, "_value", variable)  # the backend's variable inside a keras.Variable
    if hasattr(value, "read_value"):
        value = value.read_value()
    return np.asarray(value)


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _is_chief(strategy) -> bool:
    """Whether this process writes shared files: always, except on non-chief multi-worker workers."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not strategy.extended._in_multi_worker_mode():  # noqa: SLF001
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def _truncate_csv(path: Path, epochs_done: int) -> None:
    """Drops CSV rows of epochs that will be trained again after a resume."""
    if not path.is_file():
        return
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return
    kept = [rows[0]] + [r for r in rows[1:] if r and int(r[0]) < epochs_done]
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="") as f:
        csv.writer(f).writerows(kept)
    os.replace(tmp, path)


# ---------------------------------------------------------------- train


def _prepare_for_strategy(model: keras.Model, strategy) -> None:
    """Adjusts Keras 3.15's fit() under a tf.distribute strategy, on this model only.

    1. fit() first peeks at one batch of the training data to build the model (built already here).
       That starts an extra iteration of the dataset, and make_pipeline's seeded shuffling and
       augmentation draw new values on every iteration: the trained data would differ from a
       single-device run. Under MultiWorkerMirroredStrategy the peek also all-reduces the
       (images, labels) tuple across workers, which fails. The peek is skipped.
    2. Multi-worker only: step logs are reduced with ``strategy.reduce("MEAN", v, axis=0)``, which
       fails on scalars; the steps return them as 1-element vectors, which that reduction turns
       back into the same scalars (every worker holds the same synchronised values).
    """
    import tensorflow as tf

    model._maybe_symbolic_build = lambda *args, **kwargs: None
    if not strategy.extended._in_multi_worker_mode():  # noqa: SLF001
        return
    for name in ("train_step", "test_step"):
        step = getattr(model, name)

        def vector_logs(data, step=step):
            return tf.nest.map_structure(lambda v: tf.reshape(v, [1]), step(data))

        setattr(model, name, vector_logs)


def resolve_strategy(strategy):
    """``None`` (the default strategy), ``"mirrored"`` (all local GPUs, or CPUs),
    ``"multi_worker"`` (``MultiWorkerMirroredStrategy`` from ``TF_CONFIG``) or a
    ``tf.distribute.Strategy``."""
    import tensorflow as tf

    if strategy is None or strategy == "default":
        return tf.distribute.get_strategy()
    if strategy == "mirrored":
        return tf.distribute.MirroredStrategy()
    if strategy == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError("strategy='multi_worker' needs the TF_CONFIG environment variable (cluster and task)")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if isinstance(strategy, tf.distribute.Strategy):
        return strategy
    raise ValueError(f"strategy must be None, 'mirrored', 'multi_worker' or a tf.distribute.Strategy, got {strategy!r}")


@contextlib.contextmanager
def _dtype_policy(name: str):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def train(
    recipe: Recipe | str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    data_root: str | os.PathLike | dict | None = None,
    init: str | os.PathLike | None = None,
    strategy=None,
    steps: int | None = None,
    verbose: str | int = "auto",
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> dict:
    """Trains a recipe with ``model.fit``, resuming from ``out_dir`` when it holds a resume state.

    Args:
        recipe: a :class:`~fcn_keras.recipes.Recipe`, a shipped recipe name or a TOML path.
        out_dir: where models, logs and the resume state go (created).
        data_root: dataset location(s), see :func:`data_sources`.
        init: overrides the recipe's ``[init] source`` (e.g. the previous stage's ``model.keras``).
        strategy: ``None``, ``"mirrored"``, ``"multi_worker"`` or a ``tf.distribute.Strategy``.
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
    import tensorflow as tf

    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe)
    if steps is not None:
        recipe = recipe.replace(training={"steps": int(steps),
                                          "steps_per_epoch": min(int(steps), recipe.training.steps_per_epoch)})
    t = recipe.training
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _atomic_write_text(out / "recipe.json", json.dumps({"name": recipe.name, "source": recipe.source,
                                                         "recipe": recipe_to_dict(recipe)}, indent=1))
    keras.utils.set_random_seed(t.seed)
    if t.deterministic:
        tf.config.experimental.enable_op_determinism()
    strategy = resolve_strategy(strategy)
    train_source, val_source = data_sources(recipe, data_root, out)
    # Non-chief workers of a multi-worker run keep their logs and models apart; all read the chief's resume state.
    logs = out if _is_chief(strategy) else out / f"worker-{strategy.cluster_resolver.task_id}"
    logs.mkdir(exist_ok=True)

    with _dtype_policy(t.mixed_precision), strategy.scope():
        model = build_model(recipe, init=init)
        compile_model(model, recipe)
        # Optimizer and metric variables must exist before fit() to restore a resume state into them.
        model.optimizer.build(model.trainable_variables)
        model._symbolic_build(data_batch=(np.zeros((1, 64, 64, 3), "float32"), np.zeros((1, 64, 64), "int32")))
    if strategy is not tf.distribute.get_strategy() or strategy.num_replicas_in_sync > 1:
        _prepare_for_strategy(model, strategy)

    best = BestCheckpoint(logs / "best.keras")
    state = ResumeState(out / "resume", t.steps_per_epoch, t.checkpoint_every, best)
    resumed = state.load()
    start_step = state.global_step if resumed else None
    if resumed:
        print(f"Resuming {recipe.name} from {out / 'resume'} at epoch {state.epoch + 1}, "
              f"step {state.step_in_epoch} of {t.steps_per_epoch} (global step {state.global_step})")
        _truncate_csv(logs / "train_log.csv", state.epoch)
    nan_stop = StopOnNaN(state)
    user = list(callbacks)
    for cb in user:
        if isinstance(cb, ResumeState):
            raise ValueError("train() adds its own ResumeState callback")
    fit_callbacks = [nan_stop, *user, keras.callbacks.CSVLogger(str(logs / "train_log.csv"), append=True),
                     keras.callbacks.TensorBoard(str(logs / "tensorboard")), best, state]
    val = _distributed(strategy, lambda: _val_dataset(recipe, val_source, strategy.num_replicas_in_sync))
    history: dict = {}

    def run(first_epoch: int, last_epoch: int, steps_per_epoch: int, skip: int) -> None:
        data = _distributed(strategy, lambda: _train_dataset(recipe, train_source, range(first_epoch, last_epoch), skip))
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
    _atomic_save_model(model, logs / "model.keras")
    return {
        "history": history,
        "model": str(logs / "model.keras"),
        "best": str(best.path) if best.path.is_file() else None,
        "best_val_mean_iou": best.best,
        "global_step": state.global_step,
        "resumed_from": start_step,
        "model_object": model,
    }

