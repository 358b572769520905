# Tributary: every target bootstraps what it needs (a .venv from pyproject.toml; the emulators are checked).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
PYTEST_ARGS ?=

.PHONY: help venv emulators demo test test-faults test-live lint format bench clean

help:
	@echo "make demo        the local stack on bundled samples, one ingestion per source (offline)"
	@echo "make test        the test suite (unit, emulators, end to end)"
	@echo "make test-faults the whole fault-injection matrix"
	@echo "make lint        ruff, format check, mypy and the layer contracts"
	@echo "make bench       benchmarks, written to BENCHMARKS.md"

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	@rm -f $(VENV)/.installed-*
	@touch $@

venv: $(STAMP)

emulators: venv
	@$(BIN)/python -c "from common.local.stack import emulator_commands, DEFAULT_PORTS; emulator_commands('127.0.0.1', DEFAULT_PORTS)" \
		|| { echo "The Pub/Sub and Firestore emulators are needed (see the message above)."; exit 1; }

demo: venv emulators
	$(BIN)/tributary demo

test: venv emulators
	$(BIN)/python -m pytest -m "not live and not faults" $(PYTEST_ARGS)

test-faults: venv emulators
	$(BIN)/python -m pytest -m faults $(PYTEST_ARGS)

test-live: venv
	$(BIN)/python -m pytest -m live $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy common functions scheduler
	$(BIN)/lint-imports --no-cache

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: venv emulators
	$(BIN)/python -m tests.bench

clean:
	rm -rf $(VENV) .tributary .pytest_cache .ruff_cache .mypy_cache
