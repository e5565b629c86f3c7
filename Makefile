# One entry point. Every target creates .venv when missing and installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint typecheck check bench fuzz clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.run-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[gateway]'
	touch $@

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.run-installed

$(VENV)/.bench-installed: pyproject.toml $(VENV)/.dev-installed
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $@

run: $(VENV)/.run-installed
	$(BIN)/airlock serve --host $(HOST) --port $(PORT)

test: $(VENV)/.dev-installed
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples
	$(BIN)/mypy

check: lint test

# Every benchmark, then benchmarks/results.md and benchmarks/results.png. Uses wrk for the load
# test when it is installed (apt-get install wrk), else a built-in asyncio load generator.
bench: $(VENV)/.bench-installed
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# Longer fuzz runs of the atheris harnesses in tests/fuzz/ (the suite runs them for seconds).
# FUZZ_SECONDS per harness; the corpus is kept in .venv/fuzz-corpus so runs build on each other.
FUZZ_SECONDS ?= 300

$(VENV)/.fuzz-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev,fuzz]'
	touch $@ $(VENV)/.dev-installed $(VENV)/.run-installed

fuzz: $(VENV)/.fuzz-installed
	$(BIN)/python tests/fuzz/run.py --seconds $(FUZZ_SECONDS) --corpus $(VENV)/fuzz-corpus
