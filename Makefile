# Sluice — every command a developer or platform engineer runs starts here.
# Each target sets up what it needs: the virtualenv at .venv/ is built on first use from the
# lock (requirements/dev.txt, exported from uv.lock, every file checked against its hash) and
# rebuilt from scratch when the lock or pyproject.toml changes.

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_WORKERS ?= 2

.DEFAULT_GOAL := help
TIME_SCALE ?= 1
RATE ?= 10
DURATION ?= 60

# Deploying: ENV picks infrastructure/terraform/env/$(ENV).tfvars and keeps Terraform's working
# data in build/terraform/$(ENV); the state lives in TF_STATE_BUCKET (S3, with locking).
ENV ?= dev
ARCH ?= x86_64
TF_STATE_BUCKET ?=
TF_DIR := infrastructure/terraform
TF := TF_DATA_DIR=$(CURDIR)/build/terraform/$(ENV) terraform -chdir=$(TF_DIR)
TF_VARS := -var-file=env/$(ENV).tfvars -var=lambda_architecture=$(ARCH)

.PHONY: help install lock lock-check run load test test-slow tf-check tables lint demo package tf-init plan \
	deploy destroy smoke clean bench bench-e2e browser

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[1m%-10s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml requirements/dev.txt
	$(PYTHON) -m venv --clear $(VENV)
	$(BIN)/python -m pip install --quiet --no-input --require-hashes -r requirements/dev.txt
	$(BIN)/python -m pip install --quiet --no-input --no-deps --no-build-isolation -e .
	@touch $@

install: $(STAMP) ## Create .venv/ with Sluice (editable) and exactly the locked dev dependencies

lock: $(STAMP) ## Refresh uv.lock and requirements/ after a change to pyproject.toml (UPGRADE=1: newest releases)
	$(BIN)/python -m infrastructure.lock refresh $(if $(UPGRADE),--upgrade,)

lock-check: $(STAMP) ## Fail when pyproject.toml, uv.lock, requirements/ and .venv/ disagree
	$(BIN)/python -m infrastructure.lock check

run: $(STAMP) ## The whole pipeline locally, in the foreground (TIME_SCALE=10 shortens waits); Ctrl-C stops
	$(BIN)/sluice up --time-scale $(TIME_SCALE)

load: $(STAMP) ## RATE files/s for DURATION s into the running stack, then what arrived in MinIO
	$(BIN)/sluice load --rate $(RATE) --seconds $(DURATION)

test: $(STAMP) ## Unit and in-process tests, and the Terraform's offline checks; < 10 min
	$(BIN)/pytest -m "not slow" -n $(PYTEST_WORKERS)
	$(TF_DIR)/check.sh

test-slow: $(STAMP) browser ## Tests that start servers or need long clocks; < 35 min
	$(BIN)/pytest -m "slow and not alone" -n $(PYTEST_WORKERS)
	$(BIN)/pytest -m "slow and alone"

# The daily report's page is checked in a real browser (tests/slow/test_report_browser.py):
# Debian's Chromium and its driver, installed with apt-get when missing (root, or sudo).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser: ## Chromium for the report's browser test: apt-get install chromium chromium-driver when missing
	@command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || { \
	  $(SUDO) apt-get update && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium chromium-driver; }

bench: $(STAMP) ## Benchmarks against the machine's limits and rclone (QUICK=1: < 2 min); build/bench.json, docs/BENCHMARKS.md
	$(BIN)/python -m infrastructure.bench $(if $(QUICK),--quick,)

bench-e2e: $(STAMP) ## The local stack at production buffering, 10 then 100 files/s: rate, latency, losses
	$(BIN)/python -m infrastructure.bench.e2e

tf-check: ## Terraform only: fmt, init (offline mirror), validate, mocked `terraform test`
	$(TF_DIR)/check.sh

tables: $(STAMP) ## Regenerate the payload tables' Glue columns (schemas/payload_tables.json) from their Avro schemas
	$(BIN)/python -m infrastructure.glue_tables

lint: $(STAMP) ## ruff (style, bugs) and mypy (strict types)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

demo: $(STAMP) ## Sample files through every function into SeaweedFS as MinIO, in process
	$(BIN)/python -m infrastructure.local.stack.demo

# LAMBDA_PYTHON: the python3.12 (Lambda's runtime) that compiles the zips' bytecode; by default
# $SLUICE_LAMBDA_PYTHON, else python3.12 on PATH, the system's or pyenv's.
LAMBDA_PYTHON ?=
package: $(STAMP) ## Deterministic Lambda zips for python3.12 on ARCH=x86_64|arm64 in build/lambda
	$(BIN)/python -m infrastructure.packaging --arch $(ARCH) --out build/lambda \
	  $(if $(LAMBDA_PYTHON),--python $(LAMBDA_PYTHON),)

tf-init:
	@test -n "$(TF_STATE_BUCKET)" || { echo "make: set TF_STATE_BUCKET=<state bucket> (see README: Deploy to AWS)" >&2; exit 2; }
	$(TF) init -input=false -reconfigure -lockfile=readonly \
	  -backend-config=env/$(ENV).s3.tfbackend -backend-config="bucket=$(TF_STATE_BUCKET)"

plan: package tf-init ## Terraform plan for ENV=dev|prod (TF_STATE_BUCKET=…), saved for deploy
	$(TF) plan -input=false $(TF_VARS) -out=$(ENV).tfplan

deploy: plan ## Apply the saved plan of ENV
	$(TF) apply -input=false $(ENV).tfplan

destroy: tf-init ## Destroy ENV (buckets that still hold objects refuse)
	$(TF) destroy $(TF_VARS)

# Without ENV on the command line (or in the environment), the local stack, as run and load use.
smoke: $(STAMP) ## A sample through the local stack (ENV=dev|prod: that deployment), checked in MinIO
	$(BIN)/sluice smoke $(if $(filter file,$(origin ENV)),--local,--env $(ENV))

clean: ## Remove the virtualenv and caches
	rm -rf $(VENV) build .sluice .pytest_cache .mypy_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
