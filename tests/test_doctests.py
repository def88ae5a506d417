"""The doctests of every module under fcn_keras/, one test per module (its name in the test id).

Modules are found by walking the package directory at collection time, so
modules and packages added later run without editing this file. A module
without examples is skipped with that reason (``-ra`` lists them); a private
(``_``-prefixed) module is run only when it has examples. A module that cannot
be imported for want of an optional package (an extra CI does not install) is
skipped, naming the package.

The examples run as written, with ``ELLIPSIS`` (as the per-module doctest tests
that viz, cli and demo had). Keras' global state is cleared after each docstring
whose examples build models, so the full-size VGG16 models some examples build do
not pile up in the worker.
"""

from __future__ import annotations

import doctest
import importlib
import io
import sys
import tempfile
import time
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "fcn_keras"
_CLEAN_AFTER_S = 0.5


def _module_names() -> list[str]:
    names = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        if "__pycache__" in path.parts or path.name == "__main__.py":
            continue
        parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def _private(name: str) -> bool:
    return any(part.startswith("_") for part in name.split(".")[1:])


def _import(name: str):
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and not exc.name.startswith("fcn_keras"):
            pytest.skip(f"{name} needs {exc.name}, which is not installed (an optional extra)")
        raise


@pytest.mark.parametrize("name", _module_names())
def test_doctests(name, tmp_path, monkeypatch):
    # The examples' tempfile.mkdtemp() folders go under pytest's tmp_path, which pytest prunes.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    module = _import(name)
    # Only the module's own objects: re-exported functions are tested where they are defined.
    tests = [t for t in doctest.DocTestFinder(exclude_empty=True).find(module, name) if t.examples]
    if not tests:
        pytest.skip("private module without doctests" if _private(name) else "module without doctests")
    output = io.StringIO()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in sorted(tests, key=lambda t: t.lineno or 0):
        start = time.perf_counter()
        try:
            runner.run(test, out=output.write)
        finally:
            # A collection costs ~0.2 s with TensorFlow loaded: paid only after a docstring whose
            # examples took long enough to have built models (a VGG16 FCN holds 0.5 GB until Keras'
            # reference cycles are collected), so that they do not pile up in the worker.
            if time.perf_counter() - start > _CLEAN_AFTER_S and "keras" in sys.modules:
                sys.modules["keras"].backend.clear_session()  # also runs gc.collect()
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}:\n{output.getvalue()}"
