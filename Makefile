# The project's vocabulary. Every target creates or reuses .venv itself, so on a fresh
# machine `make run` and `make test` are the only two commands anyone needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export TRIPBOOK_ENV ?= development

.PHONY: run test lint format typecheck migrate seed worker beat bench bench-parts load fuzz audit k8s services clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools  # the venv seed has known CVEs
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

services: ## say in one line what is missing when PostgreSQL or Redis does not answer
	@$(BIN)/python -m tripbook.core.preflight

run: $(STAMP) services migrate seed ## the whole system in the foreground; Ctrl-C stops all
	$(BIN)/honcho -f deploy/Procfile.dev start

test: $(STAMP) ## the whole suite against real PostgreSQL, Redis, Celery, SMTP and payment sandbox
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: $(STAMP)
	$(BIN)/mypy

migrate: $(STAMP)
	$(BIN)/tripbook migrate

seed: $(STAMP)
	$(BIN)/tripbook seed-demo

worker: $(STAMP)
	$(BIN)/celery -A workers.app worker --loglevel INFO -Q payments,email,maintenance,celery

beat: $(STAMP)
	$(BIN)/celery -A workers.app beat --loglevel INFO --schedule $(VENV)/celerybeat-schedule

bench: $(STAMP)
	$(BIN)/python -m tests.bench.run

bench-parts: $(STAMP) ## where a request's CPU goes: the app in one process, parts taken out
	$(BIN)/python -m tests.bench.parts

load: $(STAMP) ## locust against a local stack (or LOAD_ARGS='--host URL'), then the checks
	$(BIN)/python -m tests.load.run $(LOAD_ARGS)

fuzz: $(STAMP) ## a longer schemathesis pass than the one in `make test`
	TRIPBOOK_FUZZ_EXAMPLES=300 $(BIN)/pytest tests/test_fuzz.py

audit: $(STAMP) ## known vulnerabilities; --strict fails when a package cannot be checked
	$(BIN)/pip-audit --strict --skip-editable --progress-spinner off

k8s: ## print the rendered prod overlay
	kubectl kustomize k8s/overlays/prod

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
