# One way to run everything. `make run` and `make test` need nothing but python3 (3.11+).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Redocly CLI, the OpenAPI linter the tests run (from npm; git-ignored).
REDOCLY_STAMP := .tools/redocly/.installed

.PHONY: run test lint format migrate bench simulator clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml setup.py | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(REDOCLY_STAMP): .ci/install-redocly
	bash .ci/install-redocly .tools/redocly

## Migrate, seed sample movies and serve on http://127.0.0.1:8000, in development: the
## simulator, admin/admin, made-up secrets. (The installed command defaults to production.)
run: $(STAMP)
	ENVIRONMENT=development $(BIN)/movietickets serve

## Lint, type-check, check the layering (import-linter) and run the whole test suite (SQLite and MariaDB).
test: lint $(REDOCLY_STAMP)
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

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
	rm -rf $(VENV) .tools .mypy_cache .pytest_cache .ruff_cache movietickets.db*
