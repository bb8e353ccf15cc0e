# One way to run everything. `make run` and `make test` need nothing but python3 (3.11+).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint format migrate bench simulator clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml setup.py | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

## Migrate, seed sample movies (development) and serve on http://127.0.0.1:8000.
run: $(STAMP)
	$(BIN)/movietickets serve

## Lint, type-check and run the whole test suite (SQLite and MariaDB).
test: lint
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## Apply every migration to DATABASE_URL.
migrate: $(STAMP)
	$(BIN)/movietickets migrate upgrade head

## The standalone Daraja simulator on port 8001.
simulator: $(STAMP)
	$(BIN)/movietickets simulator --port 8001

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache movietickets.db*
