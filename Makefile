# The two quickstart targets create .venv when it is missing; everything is installed from pyproject.toml.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: run test lint unit contract service grpc jax e2e chaos fast install protos clean bench

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,export]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/amoeba up

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint
	$(BIN)/python -m pytest -q

# One tier at a time (markers in tests/conftest.py): make unit, make service, ... ; make fast = all but jax/e2e/chaos.
unit contract service grpc jax e2e chaos: $(STAMP)
	$(BIN)/python -m pytest -q -m $@

fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not jax and not e2e and not chaos"

protos: $(STAMP)
	$(BIN)/python -m protos.generate

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
