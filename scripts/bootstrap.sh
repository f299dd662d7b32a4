#!/usr/bin/env bash
# Installs what Meshboard needs on a fresh Debian/Ubuntu machine, only what is missing, and says what it installs.
#   scripts/bootstrap.sh [apt-package ...]   e.g. scripts/bootstrap.sh redis-server prometheus
# Then creates .venv and installs the Python packages from pyproject.toml (again whenever pyproject.toml changes).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for pkg in "$@"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "bootstrap: installing Debian packages: ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv with $($PY --version)"
  $PY -m venv .venv
fi
stamp=.venv/.meshboard-deps
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "bootstrap: installing Python packages into .venv (log: .venv/pip.log)"
  if ! { .venv/bin/pip install --disable-pip-version-check --upgrade pip &&
         .venv/bin/pip install --disable-pip-version-check -e ".[dev]"; } >.venv/pip.log 2>&1; then
    tail -n 30 .venv/pip.log
    echo "bootstrap: pip failed; the whole log is in .venv/pip.log" >&2
    exit 1
  fi
  touch "$stamp"
fi
