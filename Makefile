# The two commands a newcomer needs: `make run` and `make test`. Everything else is a helper.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_SYSTEM ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SERVICES := deploy/local/services.sh
export PYTHON := $(abspath $(PY))

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON_SYSTEM) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) ## Create the virtualenv and install the project (only when missing or changed)

services-up: install ## Start local Kafka and PostgreSQL (or use KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL)
	@bash $(SERVICES) up

services-down: ## Stop only the Kafka and PostgreSQL that deploy/local started
	@bash $(SERVICES) down

run: services-up ## Start the ledger in the foreground (Ctrl-C stops it)
	@eval "export $$(bash $(SERVICES) status | tail -n 1)" && exec $(VENV)/bin/ledger run

test: services-up ## Install what is missing, start services, run every test (fault suite at its bounded scale)
	@eval "export $$(bash $(SERVICES) status | tail -n 1)" && \
	  $(PY) -m pytest -p no:cacheprovider -m "not faults_full" $(PYTEST_ARGS)

test-faults-bounded: install ## The fault suite at its bounded scale (own Kafka/PostgreSQL, ~3 min)
	$(PY) -m pytest -p no:cacheprovider tests/faults -m "not faults_full" $(PYTEST_ARGS)

test-faults: install ## Full fault suite: kill -9, restarts, bad input, overload (own Kafka/PostgreSQL)
	$(PY) -m pytest -p no:cacheprovider tests/faults -m "not faults_bounded" $(PYTEST_ARGS)

test-unit: install ## Unit tests only (in memory, no services)
	$(PY) -m pytest -p no:cacheprovider tests/unit $(PYTEST_ARGS)

lint: install ## ruff (lint and format check) and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

fmt: install ## Format and autofix
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench-core: services-up ## Micro-benchmark of the core's batch entry point on PostgreSQL (100k commands)
	@eval "export $$(bash $(SERVICES) status | tail -n 1)" && $(PY) -m tests.bench.core_batch

asyncapi: install ## Write the AsyncAPI 3.0 document of the Kafka topics to docs/asyncapi.json
	@mkdir -p docs
	$(PY) -m faststream docs gen consumers.asyncapi:app --out docs/asyncapi.json

.PHONY: help install services-up services-down run test test-faults test-faults-bounded test-unit lint fmt bench-core asyncapi

bench: services-up ## End-to-end benchmarks vs baselines and limits, one run (BENCH_SCALE=1: ~5 min)
	@eval "export $$(bash $(SERVICES) status | tail -n 1)" && \
	  $(PY) -m bench.run || echo "bench: a run failed; benchmarks never fail the build"

bench-profile: services-up ## Profile the end-to-end path with py-spy (writes bench-results/profile-*)
	@eval "export $$(bash $(SERVICES) status | tail -n 1)" && \
	  $(PY) -m bench.profile || echo "bench-profile: the run failed"

.PHONY: bench bench-profile
