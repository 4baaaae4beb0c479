# The two commands a newcomer needs: `make run` and `make test`. Each sets up what it needs.

PYTHON ?= $(shell for p in python3 python3.13 python3.12 python3.11; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && { echo $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint format venv clean bench bench-analytics bench-sentiment

$(STAMP): requirements.txt requirements-dev.txt
	@test -n "$(PYTHON)" || { echo "error: Python 3.11 or newer is needed (python3 --version)"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	@touch $(STAMP)

venv: $(STAMP)

## make run: set up, migrate, train the demo models if absent, make a demo account, serve on :8000
run: $(STAMP)
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py train_demo_models --if-missing
	$(BIN)/python manage.py create_demo_user
	$(BIN)/python manage.py runserver $(HOST):$(PORT)

## make test: ruff, then the whole suite on PostgreSQL (DATABASE_URL) and Redis (REDIS_URL)
test: $(STAMP) lint
	$(BIN)/python -m pytest

BENCH_STAMP := $(VENV)/.installed-bench

$(BENCH_STAMP): $(STAMP) requirements-bench.txt
	$(BIN)/python -m pip install --quiet -r requirements-bench.txt
	@touch $(BENCH_STAMP)

## make bench: this service against the tutorial's bare Flask app (needs wrk: apt-get install wrk)
bench: $(BENCH_STAMP)
	$(BIN)/python -m bench.predict

## make bench-analytics: the analytics API at 1M and 10M request-log rows (PostgreSQL and Redis; ~20 min)
bench-analytics: $(STAMP)
	$(BIN)/python -m bench.analytics

## make bench-sentiment: what one local sentiment call can cost, against the library as it ships (~1 min)
bench-sentiment: $(STAMP)
	$(BIN)/python -m bench.sentiment_cost

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) var
