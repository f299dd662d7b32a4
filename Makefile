# One command runner for Meshboard. Every target installs what it is missing first (scripts/bootstrap.sh).
SHELL := /bin/bash
APT_TEST := redis-server prometheus chromium postgresql
PY := .venv/bin/python

.PHONY: test lint bench bootstrap demo screenshots

bootstrap:
	./scripts/bootstrap.sh $(APT_TEST)
	@# kubectl (for `kubectl kustomize` in tests/deploy): Debian's kubernetes-client, unless a kubectl is already there.
	@command -v kubectl >/dev/null || ./scripts/bootstrap.sh kubernetes-client

## make demo: the product on the embedded default (SQLite, local Redis, the stand-in with the bookstore mesh)
demo: bootstrap
	./scripts/demo.sh

## make test: the whole suite (starts its own Redis, stand-in, ... and stops them), in TEST_WORKERS processes
## (pytest-xdist), each test file whole in one of them (its module fixtures, a lab mesh or a stack, start once)
TEST_WORKERS ?= 2
test: bootstrap
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

lint: bootstrap
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

## make bench: benchmarks; results go to BENCHMARKS.md by hand with the machine and date
bench: bootstrap
	$(PY) -m lab.bench

## make screenshots: the README's screenshots (docs/screenshots/) from a demo of its own, or SCREENSHOTS_URL's
screenshots: bootstrap
	$(PY) scripts/screenshots.py $(if $(SCREENSHOTS_URL),--url $(SCREENSHOTS_URL))
