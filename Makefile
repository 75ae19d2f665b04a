# caudal: `make run` (demo), `make test` (suite without slow tests), `make test-all` (with them),
# `make setup` (venv only), `make bench` (QUICK=1: 1M events, one run each), `make ratios`
# (only the caudal-vs-DuckDB ratio table of whole processes).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# test processes: the suite waits on processes, brokers and disks more than it computes, so
# three workers keep two cores busy (files that share a service stay on one worker)
TEST_WORKERS ?= 3

.PHONY: setup run test test-all lint bench ratios clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test,bench]'
	touch $(STAMP)

setup: $(STAMP)

run: setup
	$(BIN)/caudal run examples/demo.sql

test: setup
	$(BIN)/ruff check caudal tests bench
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadgroup --durations=15

test-all: setup
	$(BIN)/ruff check caudal tests bench
	$(BIN)/pytest -m '' -n $(TEST_WORKERS) --dist loadgroup

lint: setup
	$(BIN)/ruff check caudal tests bench

bench: setup
	$(BIN)/python -m bench.run_all $(if $(QUICK),--quick)

ratios: setup
	$(BIN)/python -m bench.run_all --ratios-only $(if $(QUICK),--quick)

clean:
	rm -rf $(VENV) build *.egg-info
