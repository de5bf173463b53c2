# memgrid — the two commands a newcomer needs are `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
# Re-install when pyproject.toml changes; the stamp names the extras installed.
STAMP_RUN := $(VENV)/.stamp-run
STAMP_TEST := $(VENV)/.stamp-test
PYTEST_ARGS ?=

.PHONY: run test lint unit contract integration e2e bench clean help run-distributed down helm-test

help:
	@echo "make run    - install and start memgrid (embedded) on http://127.0.0.1:$${MEMGRID_PORT:-8080}"
	@echo "make test   - install test dependencies and run lint + the whole test suite"
	@echo "make lint   - ruff and mypy"
	@echo "make run-distributed - Kafka, Neo4j, MinIO and one process per service (make down stops them)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP_RUN): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[embedded]'
	touch $@

$(STAMP_TEST): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[embedded,test]'
	touch $@ $(STAMP_RUN)

run: $(STAMP_RUN)
	$(BIN)/memgrid serve

lint: $(STAMP_TEST)
	$(BIN)/ruff check shared services tests bench
	$(BIN)/ruff format --check shared services tests bench
	$(BIN)/mypy shared services

unit: $(STAMP_TEST)
	$(BIN)/pytest -m unit $(PYTEST_ARGS)

contract: $(STAMP_TEST)
	$(BIN)/pytest -m contract $(PYTEST_ARGS)

# The whole suite, integration and e2e included: the servers they need are
# installed (first time: minutes, then cached in ~/.cache/memgrid) and started.
# helm-test first: its rendering tests run there, so pytest skips tests/helm.
test: lint helm-test
	python3 infra/local/memgrid_infra.py up
	$(BIN)/pytest --ignore=tests/helm $(PYTEST_ARGS)

# Part of `make test`. The Helm chart and the Dockerfile (docs/operations.md): helm lint --strict, renders
# with the default and the production-like values validated offline against the
# Kubernetes schemas, hadolint, then the rendering tests. helm is built once from
# the Go module proxy into ~/.cache/memgrid/tools (infra/tools/helm_tool.py).
helm-test: $(STAMP_TEST)
	python3 infra/tools/helm_tool.py install
	bash infra/helm/check.sh $(BIN)
	$(BIN)/pytest -m helm tests/helm $(PYTEST_ARGS)

bench: $(STAMP_TEST)
	$(BIN)/python bench/search_scale.py
	$(BIN)/python bench/locomo_recall.py

# Distributed mode on this machine: infra servers, then vault, scheduler, governance
# and interface as separate processes (infra/local/distributed.py; docs/deploy.md).
# DIST_ARGS passes options, e.g. DIST_ARGS="--embedder hashing --interface-port 18080".
run-distributed: $(STAMP_RUN)
	$(BIN)/python infra/local/distributed.py up $(DIST_ARGS)

# Stops the services, then the infra servers (standard library only: no venv needed).
down:
	python3 infra/local/distributed.py down $(DIST_DOWN_ARGS)

e2e: $(STAMP_TEST)
	$(BIN)/pytest -m e2e $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .memgrid .pytest_cache .mypy_cache .ruff_cache

-include infra/local/infra.mk
