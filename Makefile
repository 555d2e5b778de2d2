# The front door: `make demo` runs the main job end to end, `make test` runs every test.
# Both set up what they need on a fresh machine first (a virtualenv in .venv, redis-server through apt).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup system-deps demo test lint format typecheck unit integration bench compose-check clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

## make setup: the project and its development extras in .venv
setup: $(STAMP)

system-deps:
	infra/local/ensure-system-deps.sh

## make demo: start what is missing (redis, S3, sandbox, workers, Flower), run a handful of jobs, stop it all
demo: setup system-deps
	$(BIN)/python -m infra.local.demo

## make test: lint, type checks, unit and integration tests
test: setup
	infra/local/ensure-system-deps.sh --test
	$(MAKE) lint typecheck compose-check
	$(BIN)/pytest -q

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: setup
	$(BIN)/mypy

## make compose-check: docker-compose.yml refuses to render without its secrets, and publishes only on 127.0.0.1
compose-check: setup
	$(BIN)/python infra/compose/check.py

unit: setup
	$(BIN)/pytest -q tests/unit

integration: setup system-deps
	$(BIN)/pytest -q tests/integration

bench: setup system-deps
	$(BIN)/python bench/engine_ceiling.py --short
	$(BIN)/python bench/pipeline_throughput.py
	$(BIN)/python bench/storage_memory.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache test-artifacts .demo
