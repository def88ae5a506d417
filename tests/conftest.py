"""Shared fixtures. The real datasets live outside the project, in ../shared/data."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("FCN_KERAS_SHARED_DATA", PROJECT_ROOT.parent / "shared" / "data"))


# `make test` runs both passes on two xdist workers, `-n 2 --dist loadscope`: each scope runs in one
# worker, so its fixtures are built once. A scope is a module, except that cli/ (one reduced demo
# run) and export/ (one MobileNetV2 FCN and its SavedModel) share session fixtures across modules.
# (A scheduler of our own, not xdist_group marks: `--dist loadgroup` ignores them under pytest 9,
# whose nodes no longer read the `_nodeid` that xdist 3.8 rewrites.)
_SHARED_BY_PACKAGE = ("cli", "export")
# Modules that hold full-size (134M-parameter) VGG16 models and their 0.5 GB weight files. On
# TensorFlow they form one scope, so that only one worker at a time holds such models: two at once
# need more memory than a CI box may have. (On JAX they are where the compiling is, and stay apart.)
_FULL_SIZE_VGG16 = ("tests/models/test_architectures.py", "tests/models/test_convolutionalize.py",
                    "tests/models/test_layers.py", "tests/models/test_precision_and_errors.py",
                    "tests/models/test_serialization.py", "tests/zoo/test_conversion.py",
                    "tests/zoo/test_zoo_load.py", "tests/bench/test_bench.py",
                    "tests/models/test_fast_formulation.py", "tests/export/test_flagship.py",
                    "tests/zoo/test_weights_path.py")
_FULL_SIZE_SCOPE = "full-size VGG16 modules"
# The longest scopes start first, so that the two workers finish together (order only; any name may go).
_LONGEST_FIRST = (_FULL_SIZE_SCOPE, "tests/training/test_training.py", "tests/cli", "tests/export",
                  "tests/test_docs_examples.py", "tests/models/test_backends.py", "tests/training/test_jax_distribution.py",
                  "tests/models/test_architectures.py", "tests/models/test_backbones.py",
                  "tests/models/test_convolutionalize.py", "tests/training/test_slow_recipes.py",
                  "tests/models/test_precision_and_errors.py", "tests/zoo/test_zoo_load.py",
                  "tests/models/test_serialization.py", "tests/test_doctests.py", "tests/beam/test_segment.py")


# The doctests of these modules build full-size VGG16 models; the others run beside the full-size scope.
_FULL_SIZE_DOCTESTS = ("fcn_keras]", "fcn_keras.models]", "fcn_keras.models.fcn]", "fcn_keras.models.fast",
                       "fcn_keras.models.receptive_field]", "fcn_keras.models.segmentation_model]",
                       "fcn_keras.models.backbones]", "fcn_keras.zoo", "fcn_keras.caffe", "fcn_keras.training.init",
                       "fcn_keras.training.compile", "fcn_keras.training.data")


def _scope(nodeid: str) -> str:
    path = nodeid.split("::", 1)[0]
    parts = path.split("/")
    on_tensorflow = os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow"
    if path == "tests/test_doctests.py" and on_tensorflow:
        module = nodeid.rsplit("[", 1)[-1]
        return _FULL_SIZE_SCOPE if module.startswith(_FULL_SIZE_DOCTESTS) else path
    if path in _FULL_SIZE_VGG16 and on_tensorflow:
        return _FULL_SIZE_SCOPE
    return "/".join(parts[:2]) if len(parts) > 2 and parts[1] in _SHARED_BY_PACKAGE else path


def release_models() -> None:
    """Frees the models nothing refers to any more: Keras' global state goes, then the reference cycles
    (layers, traced functions) that keep a dropped model's 0.5 GB of variables alive until a collection."""
    import gc
    import sys

    if "keras" in sys.modules:
        sys.modules["keras"].backend.clear_session()
    gc.collect()


@pytest.fixture(scope="module", autouse=True)
def _release_models():
    """After each module, Keras' global state and the module's models go (a worker runs many modules)."""
    yield
    release_models()


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class Scheduling(LoadScopeScheduling):
        ordered = False

        def _split_scope(self, nodeid: str) -> str:
            return _scope(nodeid)

        def _assign_work_unit(self, node) -> None:
            if not self.ordered:
                for scope in reversed(_LONGEST_FIRST):
                    if scope in self.workqueue:
                        self.workqueue.move_to_end(scope, last=False)
                self.ordered = True
            super()._assign_work_unit(node)

    return Scheduling(config, log)


# JAX compiles every op for every new shape (models run eagerly, op by op). The xdist workers of one
# JAX run share what they compiled through JAX's persistent cache in a temporary directory, so each
# program is compiled once per run rather than once per worker; the directory goes at the end.
_JAX_CACHE = "FCN_KERAS_TEST_JAX_CACHE"
# The tests' programs are compiled once and run on tiny inputs: XLA's CPU backend spends more time
# optimising them than running them (a fifth of the JAX pass's CPU time, measured on test_backbones).
# Convolutions and matmuls call the same library kernels either way; every test keeps its tolerance.
_XLA_TEST_FLAGS = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"


# Under `-n 2` on two cores each xdist worker gets one core: TensorFlow's thread pools, sized for the whole
# machine by default, then only spin and switch (measured: 8 % more CPU time for tests/export and tests/cli).
# Set before TensorFlow starts in the worker; the processes a test starts inherit it.
_ONE_THREAD = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}


def pytest_configure(config):
    workers = int((getattr(config, "workerinput", None) or {}).get("workercount", 1))
    if workers >= len(os.sched_getaffinity(0)):
        for name, value in _ONE_THREAD.items():
            os.environ.setdefault(name, value)
    if os.environ.get("KERAS_BACKEND") != "jax":
        return
    if "--xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):  # before JAX starts; workers inherit it
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_XLA_TEST_FLAGS}".strip()
    if not hasattr(config, "workerinput"):  # the xdist controller, or a run without workers
        if getattr(config.option, "numprocesses", None) and not os.environ.get(_JAX_CACHE):
            config._fcn_keras_jax_cache = os.environ[_JAX_CACHE] = tempfile.mkdtemp(prefix="fcn-keras-jax-")
    elif os.environ.get(_JAX_CACHE):  # a worker: its environment came from the controller
        import jax

        jax.config.update("jax_compilation_cache_dir", os.environ[_JAX_CACHE])
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


def pytest_unconfigure(config):
    directory = getattr(config, "_fcn_keras_jax_cache", None)
    if directory:
        shutil.rmtree(directory, ignore_errors=True)
        os.environ.pop(_JAX_CACHE, None)


def _shared(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"real dataset {path} is absent (only development machines have ../shared/data)")
    return path


@pytest.fixture(scope="session")
def voc_mini() -> Path:
    """The 18 real PASCAL VOC 2012 images with official labels (VOC layout)."""
    return _shared("voc-mini")


@pytest.fixture(scope="session")
def camvid() -> Path:
    """CamVid road scenes, 11 classes, SegNet split (image/label pair lists)."""
    return _shared("camvid")
