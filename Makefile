# Two entry points for a fresh machine: `make train` and `make test`.
# Both create .venv on first use; torch is pinned (see pyproject.toml).
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
ARGS    ?=

.PHONY: train test setup setup-test bench clean

$(BIN)/mnistlite: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.test-deps: $(BIN)/mnistlite
	$(BIN)/pip install -q -e '.[test]'
	touch $@

setup: $(BIN)/mnistlite
setup-test: $(VENV)/.test-deps

# The main job: train the flagship with its registered recipe.
train: setup
	$(BIN)/mnistlite train $(ARGS)

test: setup-test
	$(BIN)/python -m pytest $(ARGS)

bench: setup
	$(BIN)/mnistlite bench $(ARGS)

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
