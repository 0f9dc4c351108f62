# Two commands do everything on a fresh machine: `make up` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: up test lint typecheck unit install migrate bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## Start the embedded broker and all four services; prints URLs and the admin key.
up: $(STAMP)
	$(BIN)/crm up

migrate: $(STAMP)
	$(BIN)/crm migrate

## Lint, type-check and run the whole suite (SQLite and PostgreSQL).
test: lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q -rfEs --durations=10

bench: $(STAMP)
	$(BIN)/python -m bench.slice

clean:
	rm -rf $(VENV) .crm .mypy_cache .ruff_cache .pytest_cache
