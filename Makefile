# The two commands of the README: `make demo` (embedded default, no servers) and `make test`;
# `make test-fast` runs only the tests that need no server.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.bench-installed

.PHONY: demo demo-serve test test-fast services lint bench screenshots clean

demo: $(STAMP)
	$(BIN)/vigil demo

# The demo, then its results in the web console (URL and demo logins printed; Ctrl-C stops).
demo-serve: $(STAMP)
	$(BIN)/vigil demo --serve

test: services $(STAMP)
	$(BIN)/pytest

# The tests that need no server: those using Mosquitto, PostgreSQL or a uvicorn process are
# marked `services` automatically (tests/conftest.py) and left out.
test-fast: $(STAMP)
	$(BIN)/pytest -m "not services"

# Mosquitto, PostgreSQL 15 and TimescaleDB for the tests' private instances (idempotent).
services:
	./scripts/install-test-services.sh

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The benchmarks' own tools (orjson for bench_wire, py-spy for flame graphs) on top of the tests'.
$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[test,bench]"
	touch $@

bench: services $(BENCH_STAMP)
	$(BIN)/python -m bench.bench_pipeline
	$(BIN)/python -m bench.bench_storage
	$(BIN)/python -m bench.bench_rules
	$(BIN)/python -m bench.bench_wire

# Every console screen at 1280 px and 390×844 into docs/screenshots/ (Debian's chromium).
screenshots: services $(STAMP)
	$(BIN)/python scripts/screenshots.py

clean:
	rm -rf var/ .pytest_cache .mypy_cache .ruff_cache
