#!/usr/bin/env bash
# `make demo`: Meshboard on the embedded default: SQLite, a private local Redis, the Kubernetes API stand-in
# seeded with OSM's bookstore demo, the lab mesh (real Envoy sidecars carrying the demo's traffic, scraped by a real
# Prometheus; TrafficSplit changes move real traffic), two Celery workers (one per collection queue; beat runs in
# the cluster-data one), and the web server.
#
# This script only prepares the environment; `python -m lab.supervise demo` starts every process in its own process
# group and supervises them: a process that dies is restarted with a backoff (the lab mesh restarts its own
# Prometheus and Envoys), the stand-in's death stops the demo (its objects live in its memory), and Ctrl-C stops
# every group it started.
#   MESHBOARD_DEMO_PORT (8000), MESHBOARD_DEMO_REDIS_PORT (6390): the web server's and Redis's ports
#   MESHBOARD_DEMO_STATE (var/demo): the folder for the database, logs and the lab's state (one per running demo)
#   MESHBOARD_DEMO_FAULT_CONTROL=1: lets you stall or fail the stand-in's answers over HTTP (lab/kubeapi/README.md)
set -euo pipefail
cd "$(dirname "$0")/.."

export MESHBOARD_DEMO_PORT=${MESHBOARD_DEMO_PORT:-8000}
export MESHBOARD_DEMO_REDIS_PORT=${MESHBOARD_DEMO_REDIS_PORT:-6390}
STATE=${MESHBOARD_DEMO_STATE:-var/demo}
mkdir -p "$STATE"
STATE=$(cd "$STATE" && pwd)
export MESHBOARD_DEMO_STATE="$STATE"

export DJANGO_SETTINGS_MODULE=meshboard.settings
export DEBUG=1
export MESHBOARD_VAR_DIR="$STATE"
export REDIS_URL="redis://127.0.0.1:${MESHBOARD_DEMO_REDIS_PORT}/0"
export ALLOWED_HOSTS="localhost,127.0.0.1"

exec .venv/bin/python -m lab.supervise demo
