# Two entry points for a fresh machine: `make run` (the sample use case) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# what engines with an environment of their own install there (`genaiops engine setup`)
ENGINE_REQ := $(wildcard src/genaiops/engines/*/runtime/requirements.txt)
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml $(ENGINE_REQ) | cksum | cut -d' ' -f1)
USE_CASE ?= classification
# pytest-xdist workers (each test file on one worker, its module fixtures built once; every Docker
# test file in one lane on one worker: tests/conftest.py)
TEST_WORKERS ?= 2

export PYTHON_KEYRING_BACKEND ?= keyrings.alt.file.PlaintextKeyring

.PHONY: setup system run test test-fast lint bench clean

$(STAMP): pyproject.toml $(ENGINE_REQ)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev,all]"
	for engine in $$($(BIN)/genaiops engine list --needing-setup); do \
		$(BIN)/genaiops engine setup $$engine || exit 1; done
	rm -f $(VENV)/.installed-* && touch $@

setup: $(STAMP)  ## venv with genaiops and every extra (promptflow, azure), pytest; each engine's own environment

run: setup  ## the main job: sample use case through experiment + evaluate against the bundled LLM simulator
	$(BIN)/genaiops validate
	$(BIN)/genaiops run init --use-case $(USE_CASE)
	$(BIN)/genaiops run experiment --use-case $(USE_CASE) --variants all
	$(BIN)/genaiops run evaluate --use-case $(USE_CASE)

system:  ## chromium + docker daemon + offline base image (idempotent; needs root, else tests skip)
	bash .ci/setup-system.sh

test: setup system  ## the whole test suite: on two workers, then the `solo` tests alone
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile -m "not solo"
	$(BIN)/python -m pytest -m solo

test-fast: setup  ## the fast tier for development: no real engine process, no Docker (about 2 minutes on 2 cores)
	$(BIN)/python -m pytest -m "not slow" -n $(TEST_WORKERS) --dist loadfile

lint: setup
	$(BIN)/ruff check src tests benchmarks

bench: setup
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) .genaiops .pytest_cache
