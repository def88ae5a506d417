# Every target does its own set-up: a fresh clone needs only python3 (>= 3.10).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.installed-demo

.PHONY: install demo test test-fast bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[test,jax,onnx,beam,crf]"
	touch $@

install: $(STAMP)

# The demo's extra packages (LiteRT, matplotlib); a no-op after the first time.
$(DEMO_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -e ".[demo]"
	touch $@

# The main job on the embedded default: no data, weights or network needed.
demo: $(DEMO_STAMP)
	$(BIN)/fcn-keras demo $(ARGS)

# Two workers: much of a test's time is one-threaded (graph building, tracing, JAX's op-by-op
# compiles, subprocess start-up). Tests are grouped so that shared fixtures are built once
# (tests/conftest.py: pytest_xdist_make_scheduler).
XDIST := -n 2 --dist loadscope

# The whole suite on TensorFlow, then the backend-agnostic model tests again on JAX.
test: $(STAMP)
	$(BIN)/python -m pytest $(XDIST) $(PYTEST_ARGS)
	KERAS_BACKEND=jax $(BIN)/python -m pytest -m backend_agnostic $(XDIST) $(PYTEST_ARGS)

# Skips the end-to-end tests marked slow (make test runs them too).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" $(XDIST) $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
