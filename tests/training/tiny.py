"""A tiny real backbone and recipe for the training tests, and a runner for training subprocesses.

The training machinery (resume, distribution, logs) does not depend on the
encoder, so these tests register a five-convolution encoder (strides 8/16/32,
with BatchNorm statistics and dropout RNG state to restore) instead of paying for
MobileNetV2's graph on a shared 2-core machine. ``python tests/training/tiny.py
OUT [--kill-after N] [--strategy S] [--distribution D] [--logical-cpus K] [--steps N]
[--set SECTION.KEY=VALUE ...] [--data-root VOC] [--init MODEL] [--probe-compat] [--then-again OUT2]
[--then-one-device OUT3]`` trains it in a fresh process.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import keras

from fcn_keras.models import backbones
from fcn_keras.recipes import Recipe, parse_recipe


DROPOUT = float(os.environ.get("FCN_TINY_DROPOUT", "0.2"))


def _tiny_application(include_top=False, weights=None, input_shape=(None, None, 3), bn_momentum=0.7):
    inputs = keras.Input(input_shape)
    x = inputs
    for i, filters in enumerate((16, 32, 32, 64, 64), start=1):
        x = keras.layers.Conv2D(filters, 3, strides=2, padding="same", use_bias=False, name=f"tiny_c{i}")(x)
        # Short momentum: moving statistics usable after a few dozen steps; synchronized: Mirrored == one device
        # (a TensorFlow-only flag: under JAX's DataParallel the statistics are of the global batch anyway).
        x = keras.layers.BatchNormalization(momentum=bn_momentum, synchronized=keras.backend.backend() == "tensorflow",
                                            name=f"tiny_bn{i}")(x)
        x = keras.layers.ReLU(name=f"tiny_conv{i}")(x)
    x = keras.layers.Dropout(DROPOUT, name="tiny_drop")(x)
    return keras.Model(inputs, x, name="tiny")


def register() -> None:
    """Registers ``tiny`` and ``tiny_keras_bn`` (BatchNorm momentum 0.999, as keras.applications' MobileNetV2)."""
    taps = ("tiny_conv3", "tiny_conv4", "tiny_drop")
    backbones.BACKBONES["tiny"] = backbones.Backbone("tiny", preprocessing="tf", application=_tiny_application,
                                                     taps=taps)
    backbones.BACKBONES["tiny_keras_bn"] = backbones.Backbone(
        "tiny_keras_bn", preprocessing="tf", taps=taps,
        application=lambda **kwargs: _tiny_application(bn_momentum=0.999, **kwargs))


def tiny_recipe(**overrides) -> Recipe:
    """FCN-8s over the tiny encoder on 16 synthetic 32x48 images: 24 steps of batch 2 in epochs of 8."""
    register()
    data = {
        "description": "test recipe",
        "model": {"architecture": "fcn8s", "backbone": "tiny", "num_classes": 3},
        "init": {"source": "none"},
        "data": {"dataset": "synthetic", "batch_size": 2, "crop_size": [32, 32], "flip": True,
                 "synthetic_images": 16, "synthetic_size": [32, 48]},
        "loss": {"reduction": "mean"},
        "optimizer": {"learning_rate": 0.05, "momentum": 0.9},
        "training": {"steps": 24, "steps_per_epoch": 8, "seed": 3, "deterministic": True, "checkpoint_every": 5,
                     "batchnorm_batches": 4},
    }
    for section, values in overrides.items():
        data[section] = {**data.get(section, {}), **values}
    return parse_recipe(data, name="tiny_test")


class KillAt(keras.callbacks.Callback):
    """Ends the process abruptly (no cleanup, like a kill) after the given global step.

    The workers of a multi-worker run first wait for each other (a file each in ``out``): a worker
    that ended while another still fetched its share of the last step's all-reduce would fail that
    one with a connection error instead of a kill.
    """

    def __init__(self, step: int, out: str):
        super().__init__()
        self.step, self.out, self.seen = step, Path(out), 0

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.seen != self.step:
            return
        from fcn_keras.training import num_workers, strategy_of

        strategy = strategy_of(self.model)
        workers = num_workers(strategy)
        if workers > 1:
            (self.out / f"killed-{strategy.cluster_resolver.task_id}").touch()
            deadline = time.monotonic() + 120
            while len(list(self.out.glob("killed-*"))) < workers and time.monotonic() < deadline:
                time.sleep(0.1)
        os._exit(17)


def probe_compat(strategy) -> None:
    """Prints, for each workaround of fcn_keras._compat, whether Keras still fails without it.

    A fresh small model is fitted under ``strategy`` with every workaround but one; the expected
    upstream failure prints ``COMPAT <name>: needed``, a successful fit ``COMPAT <name>: not needed``.
    Both failures happen while tracing or before the first collective, on every worker alike.
    """
    import numpy as np
    import tensorflow as tf

    from fcn_keras import _compat
    from fcn_keras.training import shard_by_data

    symptoms = {"skip_fit_peek": "Attempt to convert a value (PerReplica",
                "vector_step_logs": "Invalid reduction dimension 0 for input with 0 dimensions"}
    zeros = np.zeros((4, 4, 2), "float32")
    data = shard_by_data(tf.data.Dataset.from_tensors((zeros[..., :1], zeros)).repeat(4).batch(2))
    for name, symptom in symptoms.items():
        with strategy.scope():
            model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Conv2D(2, 1)])
            model.compile(optimizer="sgd", loss="mse")
            model.optimizer.build(model.trainable_variables)
        for other in symptoms:
            if other != name:
                getattr(_compat, other)(model)
        try:
            model.fit(data, steps_per_epoch=1, verbose=0)
            print(f"COMPAT {name}: not needed")
        except ValueError as exc:
            verdict = "needed" if symptom in str(exc) else "other error"
            print(f"COMPAT {name}: {verdict} ({str(exc).splitlines()[0][:160]})")


def main(argv=None) -> None:
    keras.config.disable_traceback_filtering()
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--kill-after", type=int, default=0, help="steps of this process before os._exit(17)")
    parser.add_argument("--strategy", default=None)
    parser.add_argument("--distribution", default=None, help="train(distribution=...): keras.distribution on JAX")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="a tiny_recipe() override, VALUE in JSON (e.g. data.batch_size=4)")
    parser.add_argument("--logical-cpus", type=int, default=0)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--probe-compat", action="store_true", help="then probe_compat() under the strategy")
    parser.add_argument("--data-root", default=None,
                        help="train on this VOC-layout dataset (train and val splits), not the recipe's synthetic one")
    parser.add_argument("--init", default=None, help="start from this model (train()'s init)")
    parser.add_argument("--then-again", default=None,
                        help="then train into this directory with the same strategy (resuming the state it holds)")
    parser.add_argument("--then-one-device", default=None,
                        help="then train the same steps again into this directory without a strategy (one device)")
    args = parser.parse_args(argv)
    if args.logical_cpus:
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * args.logical_cpus)
    from fcn_keras.training import train

    overrides = {"data": {"dataset": "voc"}} if args.data_root else {}
    for item in args.set:
        key, value = item.split("=", 1)
        section, name = key.split(".")
        overrides.setdefault(section, {})[name] = json.loads(value)
    callbacks = [KillAt(args.kill_after, args.out)] if args.kill_after else []
    runs = [(args.out, args.strategy, args.distribution)]
    runs += [(args.then_again, args.strategy, args.distribution)] if args.then_again else []
    runs += [(args.then_one_device, None, None)] if args.then_one_device else []
    for out, strategy, distribution in runs:  # more runs here save starting TensorFlow in other processes
        result = train(tiny_recipe(**overrides), out, data_root=args.data_root, init=args.init, strategy=strategy,
                       distribution=distribution, steps=args.steps, verbose=2, callbacks=callbacks)
        model = result["model_object"]
        if keras.backend.backend() == "tensorflow":
            print("replicas:", model.distribute_strategy.num_replicas_in_sync)
        else:  # the devices that hold the trained variables
            print("devices:", len(keras.distribution.list_devices()), "variables on:",
                  len(model.weights[0].value.sharding.device_set))
        print("RESULT global_step", result["global_step"], "resumed_from", result["resumed_from"])
    if args.probe_compat:
        probe_compat(result["model_object"].distribute_strategy)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    main()
