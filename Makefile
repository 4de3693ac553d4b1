# The two commands of the README:
#   make run    set up, make keys (first start), migrate the embedded SQLite database, apply the
#               default sequence (first start only: a restart never publishes edits half made), run
#   make test   set up (system packages, services, venv) and run lint, types and the tests
VENV ?= .venv
BIN := $(VENV)/bin
PYTHON ?= python3
# make run PORT=8080 HOST=0.0.0.0
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint setup runtime services system-deps bench demo

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# What running needs: the package and its dependencies, not the test tools.
$(BIN)/.runtime: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

# Everything `make test` needs on top: pytest, Playwright, ruff, mypy.
$(BIN)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	touch $(BIN)/.runtime $@

runtime: $(BIN)/.runtime

setup: $(BIN)/.installed

# Keys of its own on a first start: no .env and no database yet (a database sealed with the
# development key keeps it until `nurture init` and `nurture keys rotate`, said at start).
run: runtime
	@test -f .env || test -f nurture.db || $(BIN)/nurture init
	$(BIN)/nurture db upgrade
	$(BIN)/nurture sequences apply templates/sequences --if-empty
	$(BIN)/nurture run --host $(HOST) --port $(PORT)

demo: runtime
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
