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

## make test: the whole suite (starts its own Redis, stand-in, ... and stops them). First all but the suites that
## measure real traffic and time, in TEST_WORKERS processes (pytest-xdist; each file whole in one of them); then those
## (the lab mesh's Envoys, the fleet, the fault and load stacks, the demo) in one process, alone on the machine, as
## their rates, latencies and intervals are compared with what the generators and clocks say.
TEST_WORKERS ?= 2
ALONE := tests/labmesh tests/metrics/test_resilience_lab.py tests/metrics/test_preflight_lab.py \
	tests/policies/test_preflight_lab.py tests/fleet tests/reliability tests/demo
test: bootstrap
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile $(addprefix --ignore=,$(ALONE)) $(PYTEST_ARGS)
	$(PY) -m pytest $(PYTEST_ARGS) $(ALONE)

lint: bootstrap
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

## make bench: benchmarks; results go to BENCHMARKS.md by hand with the machine and date
bench: bootstrap
	$(PY) -m lab.bench

## make screenshots: the README's screenshots (docs/screenshots/) from a demo of its own, or SCREENSHOTS_URL's
screenshots: bootstrap
	$(PY) scripts/screenshots.py $(if $(SCREENSHOTS_URL),--url $(SCREENSHOTS_URL))
