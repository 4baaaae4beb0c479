# The two commands a newcomer needs: `make run` and `make test`. Each sets up what it needs.
#
# Dependencies are locked: requirements*.in name what we chose and why; `make lock` compiles them
# into requirements*.txt, every package pinned with its hashes, and every install here checks them
# (pip --require-hashes). `make run` installs only the runtime lock; `make test` adds the dev one.

PYTHON ?= $(shell for p in python3 python3.13 python3.12 python3.11; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && { echo $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
PIP_INSTALL := $(BIN)/python -m pip install --require-hashes --no-color
RUNTIME_STAMP := $(VENV)/.installed-runtime
DEV_STAMP := $(VENV)/.installed-dev
BENCH_STAMP := $(VENV)/.installed-bench
PIP_STAMP := $(VENV)/.installed-pip
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test manage lock lint format venv clean bench bench-analytics bench-sentiment bench-telemetry

$(BIN)/python:
	@test -n "$(PYTHON)" || { echo "error: Python 3.11 or newer is needed (python3 --version)"; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(PIP_STAMP): requirements-pip.txt | $(BIN)/python
	$(PIP_INSTALL) --quiet -r requirements-pip.txt
	@touch $@

$(RUNTIME_STAMP): requirements.txt $(PIP_STAMP)
	@echo "==> Installing what serving needs (requirements.txt) into $(VENV): about 30 s the first time, then only when the lock changes"
	$(PIP_INSTALL) -r requirements.txt
	@touch $@

$(DEV_STAMP): requirements-dev.txt $(RUNTIME_STAMP)
	@echo "==> Installing the test and lint tools (requirements-dev.txt) into $(VENV): about 25 s the first time"
	$(PIP_INSTALL) -r requirements-dev.txt
	@touch $@

$(BENCH_STAMP): requirements-bench.txt $(RUNTIME_STAMP)
	$(PIP_INSTALL) -r requirements-bench.txt
	@touch $@

venv: $(DEV_STAMP)

## make run: set up, migrate, train the demo models if absent, make a demo account, serve on :8000
run: $(RUNTIME_STAMP)
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py train_demo_models --if-missing
	$(BIN)/python manage.py create_demo_user
	$(BIN)/python manage.py runserver $(HOST):$(PORT)

## make manage ARGS="changepassword demo": any manage.py command, without activating the virtualenv
manage: $(RUNTIME_STAMP)
	$(BIN)/python manage.py $(ARGS)

## make test: ruff and mypy, then the whole suite on PostgreSQL (DATABASE_URL) and Redis (REDIS_URL)
test: $(DEV_STAMP) lint
	$(BIN)/python -m pytest

## make lock: after editing a requirements*.in, recompile the requirements*.txt it feeds (with hashes).
## Versions already locked are kept unless the .in asks otherwise; to move them on:
## make lock LOCK_ARGS=--upgrade, or LOCK_ARGS="--upgrade-package scipy".
# uv (in the dev lock) resolves for every platform and Python 3.11+, with markers where they
# differ, and takes every file's hash from the index's listing: it downloads nothing, and a lock
# made here holds on other platforms and Pythons too. The order matters: dev is constrained by the
# runtime lock, bench by both.
UV_COMPILE = $(BIN)/uv pip compile --quiet --universal --python-version 3.11 --generate-hashes \
	--custom-compile-command "make lock" $(LOCK_ARGS)
lock: $(DEV_STAMP)
	$(UV_COMPILE) requirements.in -o requirements.txt
	$(UV_COMPILE) requirements-dev.in -o requirements-dev.txt
	$(UV_COMPILE) requirements-bench.in -o requirements-bench.txt

## make bench: this service against the tutorial's bare Flask app (needs wrk: apt-get install wrk)
bench: $(BENCH_STAMP)
	$(BIN)/python -m bench.predict

## make bench-analytics: the analytics API at 1M and 10M request-log rows (PostgreSQL and Redis;
## ~11 min, 10 of them seeding and aggregating the rows: the README's "Measured")
bench-analytics: $(RUNTIME_STAMP)
	$(BIN)/python -m bench.analytics

## make bench-telemetry: the request log line (on against off, side by side) and the metrics, per prediction (~5 min)
bench-telemetry: $(BENCH_STAMP)
	$(BIN)/python -m bench.telemetry_cost

## make bench-sentiment: what one local sentiment call can cost, against the library as it ships (~1 min)
bench-sentiment: $(RUNTIME_STAMP)
	$(BIN)/python -m bench.sentiment_cost

## make lint: ruff (style and common bugs), then mypy with the Django and DRF plugins (pyproject.toml)
lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy project accounts analytics inference

format: $(DEV_STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) var
