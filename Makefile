# Every target does its own set-up: a fresh clone needs only python3 (>= 3.10).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[test,jax]"
	touch $@

install: $(STAMP)

# The main job on the embedded default: no data, weights or network needed.
demo: $(STAMP)
	$(BIN)/fcn-keras demo $(ARGS)

# The whole suite on TensorFlow, then the backend-agnostic model tests again on JAX.
test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)
	KERAS_BACKEND=jax $(BIN)/python -m pytest -m backend_agnostic $(PYTEST_ARGS)

# Skips the end-to-end tests marked slow (make test runs them too).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
