# One command runner for Meshboard. Every target installs what it is missing first (scripts/bootstrap.sh).
SHELL := /bin/bash
APT_TEST := redis-server postgresql
PY := .venv/bin/python

.PHONY: test lint bench bootstrap

bootstrap:
	./scripts/bootstrap.sh $(APT_TEST)

## make test: the whole suite (starts its own Redis, stand-in, ... and stops them)
test: bootstrap
	$(PY) -m pytest $(PYTEST_ARGS)

lint: bootstrap
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

## make bench: benchmarks; results go to BENCHMARKS.md by hand with the machine and date
bench: bootstrap
	$(PY) -m lab.bench
