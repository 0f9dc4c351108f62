# Two commands do everything on a fresh machine: `make up` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: up test lint typecheck unit install migrate import bench clean

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

## Import a CSV into profile: make import KIND=customers FILE=path/to/customers.csv
import: $(STAMP)
	@test -n "$(KIND)" -a -n "$(FILE)" || { echo "usage: make import KIND=customers|purchases FILE=path.csv"; exit 2; }
	$(BIN)/crm import $(KIND) "$(abspath $(FILE))"

## Lint, type-check and run the whole suite (SQLite and PostgreSQL).
test: lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

## Two workers: most tests wait on the broker or a database, so two share the 2 cores well.
unit: $(STAMP)
	$(BIN)/pytest -q -n 2 -rfEs --durations=10

bench: $(STAMP)
	$(BIN)/python -m bench.slice

clean:
	rm -rf $(VENV) .crm .mypy_cache .ruff_cache .pytest_cache
