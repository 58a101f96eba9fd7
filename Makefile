# The two set-up commands of the README:  `make run`  and  `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: run test install install-test lint typecheck unit clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

install: $(BIN)/python  ## the project and its runtime dependencies
	$(BIN)/python -m pip install --quiet -e .

install-test: $(BIN)/python  ## plus the test tools
	$(BIN)/python -m pip install --quiet -e '.[test]'

run: install  ## the whole stack on embedded defaults (Ctrl-C stops it)
	$(BIN)/kedge up

lint: install-test
	$(BIN)/ruff check .

typecheck: install-test
	$(BIN)/mypy

test: install-test lint typecheck  ## install, lint, type-check and run the whole test suite
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .kedge .pytest_cache .mypy_cache .ruff_cache
