# Tributary: every target bootstraps what it needs (a .venv from pyproject.toml, at the exact versions of
# constraints.txt; the emulators are checked). `make demo` installs the runtime only; the tests add [dev,bench]
# (the suite smoke-tests the benchmarks), `make lint` [dev].
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DEPS   := $(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)
PYTEST_ARGS ?=

.PHONY: help venv venv-dev venv-all constraints emulators system-deps demo test test-faults test-live lint format bench clean

help:
	@echo "make demo        the local stack on bundled samples, one ingestion per source (offline)"
	@echo "make test        the test suite (unit, emulators, end to end)"
	@echo "make test-faults the whole fault-injection matrix"
	@echo "make lint        ruff, format check, mypy and the layer contracts"
	@echo "make bench       benchmarks, written to BENCHMARKS.md"
	@echo "make constraints constraints.txt from the venv (after changing a range in pyproject.toml)"

# One stamp per set of extras ("" is the runtime alone), named after pyproject.toml and constraints.txt.
$(VENV)/.installed-%-$(DEPS): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.$(if $(filter base,$*),,[$*])'
	@rm -f $(VENV)/.installed-$*-*
	@touch $@

venv: $(VENV)/.installed-base-$(DEPS)
venv-dev: $(VENV)/.installed-dev-$(DEPS)
venv-all: $(VENV)/.installed-dev,bench-$(DEPS)

constraints: venv-all
	@{ sed -n '/^#/p' constraints.txt; $(BIN)/python -m pip freeze --exclude-editable; } > constraints.txt.new
	@mv constraints.txt.new constraints.txt

emulators: venv
	@$(BIN)/python -c "from common.local.stack import emulator_commands, DEFAULT_PORTS; emulator_commands('127.0.0.1', DEFAULT_PORTS)" \
		|| { echo "The Pub/Sub and Firestore emulators are needed (see the message above)."; exit 1; }

# redis-server and chromium for the Celery and console tests (installed when root on Debian, else one line how)
system-deps:
	@bin/system-deps

demo: venv # the emulated stack when the emulators are installed, else the embedded profile (tributary demo says which)
	$(BIN)/tributary demo

test: venv-all emulators system-deps
	$(BIN)/python -m pytest -m "not live and not faults" $(PYTEST_ARGS)

test-faults: venv-dev emulators system-deps
	$(BIN)/python -m pytest -m faults $(PYTEST_ARGS)

test-live: venv-dev
	$(BIN)/python -m pytest -m live $(PYTEST_ARGS)

lint: venv-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy common functions scheduler
	$(BIN)/lint-imports --no-cache

format: venv-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: venv-all emulators system-deps
	$(BIN)/python -m tests.bench

clean:
	rm -rf $(VENV) .tributary .pytest_cache .ruff_cache .mypy_cache
