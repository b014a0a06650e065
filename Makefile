# Two entry points for a fresh machine: `make train` and `make test`.
# Both create .venv on first use; torch is pinned (see pyproject.toml).
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
ARGS    ?=

# The data root is the caller's choice ($MNISTLITE_DATA, --data-dir). This
# repository's machines and CI keep MNIST beside the checkout, so the Makefile
# (not the library) points there when the folder exists and nothing else is set.
SHARED_DATA := $(abspath $(wildcard ../shared/datasets))
export MNISTLITE_DATA ?= $(SHARED_DATA)

# Tiers: test-fast needs no browser, database or Jupyter kernel and trains nothing
# (within a minute on 2 cores, fresh clone included); test is everything and is
# what CI and the README run.
FAST    := -m "not slow and not pg and not browser"

.PHONY: train test test-fast lint setup setup-test setup-fast setup-lint bench clean

$(BIN)/mnistlite: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.fast-deps: $(BIN)/mnistlite
	$(BIN)/pip install -q -e '.[test-fast]'
	touch $@

$(VENV)/.test-deps: $(VENV)/.fast-deps
	$(BIN)/pip install -q -e '.[test]'
	touch $@

$(VENV)/.lint-deps: $(BIN)/mnistlite
	$(BIN)/pip install -q -e '.[lint]'
	touch $@

setup: $(BIN)/mnistlite
setup-fast: $(VENV)/.fast-deps
setup-test: $(VENV)/.test-deps
setup-lint: $(VENV)/.lint-deps

# The main job: train the flagship with its registered recipe.
train: setup
	$(BIN)/mnistlite train $(ARGS)

test: setup-test
	$(BIN)/python -m pytest $(ARGS)

test-fast: setup-fast
	$(BIN)/python -m pytest $(FAST) $(ARGS)

# ruff (lint, import order, format) over everything; mypy over the typed core.
lint: setup-lint
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples
	$(BIN)/mypy

bench: setup
	$(BIN)/mnistlite bench $(ARGS)

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .ruff_cache .mypy_cache
