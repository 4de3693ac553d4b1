# The two commands of the README:
#   make run    set up, migrate the embedded SQLite database, apply the default sequence, run
#   make test   set up (system packages, services, venv) and run lint, types and the tests
VENV ?= .venv
BIN := $(VENV)/bin
PYTHON ?= python3

.PHONY: run test lint setup services system-deps bench demo

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

setup: $(BIN)/.installed

run: setup
	$(BIN)/nurture db upgrade
	$(BIN)/nurture sequences apply templates/sequences
	$(BIN)/nurture run

demo: setup
	$(BIN)/nurture demo

system-deps:
	bash scripts/system-deps.sh

services:
	bash scripts/services.sh

lint: setup
	$(BIN)/ruff check nurture workers tests bench
	$(BIN)/ruff format --check nurture workers tests bench
	$(BIN)/mypy

test: system-deps services setup lint
	$(BIN)/pytest

bench: system-deps services setup
	$(BIN)/python -m bench
