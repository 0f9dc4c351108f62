# Two commands do everything on a fresh machine: `make up` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# The deployment files' offline validators (checkov, kubernetes-validate, hadolint,
# check-jsonschema) live apart: their pins would fight the project's.
TOOLS  := .venv-tools
TOOLS_STAMP := $(TOOLS)/.installed-stamp

.PHONY: up test lint typecheck unit install tools lock manifests migrate import bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,embedded]'
	touch $(STAMP)

install: $(STAMP)

$(TOOLS_STAMP): deploy/tools-requirements.txt
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --upgrade pip
	$(TOOLS)/bin/python -m pip install --quiet -r deploy/tools-requirements.txt
	touch $(TOOLS_STAMP)

tools: $(TOOLS_STAMP)

## Re-pin requirements.lock and requirements-build.lock (the image's packages) after changing pyproject.toml.
lock: $(STAMP)
	$(BIN)/python deploy/lock.py

## Regenerate the generated deployment files (a test fails while they are stale).
manifests: $(STAMP)
	$(BIN)/python deploy/manifests.py
	$(BIN)/crm topics manifest > deploy/k8s/base/topics.yaml

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
unit: $(STAMP) $(TOOLS_STAMP)
	CRM_DEPLOY_TOOLS=$(abspath $(TOOLS))/bin $(BIN)/pytest -q -n 2 -rfEs --durations=10

bench: $(STAMP)
	$(BIN)/python -m bench.slice

clean:
	rm -rf $(VENV) $(TOOLS) .crm .mypy_cache .ruff_cache .pytest_cache
