# Sluice — every command a developer or platform engineer runs starts here.
# Each target sets up what it needs: the virtualenv at .venv/ is built on first use
# and rebuilt when pyproject.toml changes.

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_WORKERS ?= 2

.DEFAULT_GOAL := help
TIME_SCALE ?= 1
RATE ?= 10
DURATION ?= 60

.PHONY: help install run load test test-slow lint demo clean

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[1m%-10s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

install: $(STAMP) ## Create .venv/ with Sluice (editable) and its dev dependencies

run: $(STAMP) ## The whole pipeline locally, in the foreground (TIME_SCALE=10 shortens waits); Ctrl-C stops
	$(BIN)/sluice up --time-scale $(TIME_SCALE)

load: $(STAMP) ## RATE files/s for DURATION s into the running stack, then what arrived in MinIO
	$(BIN)/sluice load --rate $(RATE) --seconds $(DURATION)

test: $(STAMP) ## Unit and in-process tests (moto in process, real gzip and fastavro); < 10 min
	$(BIN)/pytest -m "not slow" -n $(PYTEST_WORKERS)

test-slow: $(STAMP) ## Tests that start servers or need long clocks; < 35 min
	$(BIN)/pytest -m slow -n $(PYTEST_WORKERS)

lint: $(STAMP) ## ruff (style, bugs) and mypy (strict types)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

demo: $(STAMP) ## Sample files through every function into SeaweedFS as MinIO, in process
	$(BIN)/python -m infrastructure.local.demo

clean: ## Remove the virtualenv and caches
	rm -rf $(VENV) build .sluice .pytest_cache .mypy_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
