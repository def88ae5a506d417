"""The examples in the docstrings of every zoo and caffe module run."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import fcn_keras.caffe
import fcn_keras.zoo

MODULES = [package.__name__ for package in (fcn_keras.zoo, fcn_keras.caffe)] + [
    info.name for package in (fcn_keras.zoo, fcn_keras.caffe)
    for info in pkgutil.iter_modules(package.__path__, prefix=package.__name__ + ".")
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name, tmp_path, monkeypatch):
    monkeypatch.setenv("FCN_KERAS_HOME", str(tmp_path / "home"))  # examples never touch the real cache
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 1 and result.failed == 0
