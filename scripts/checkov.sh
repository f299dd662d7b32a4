#!/usr/bin/env bash
# Runs checkov from its own virtualenv, .venv-checkov, created on first use: checkov pins many packages exactly,
# and those pins would fight the project's in .venv. The version is pinned here, so a new checkov release (with
# new checks) never changes a test result by itself; move the pin on purpose.
#   scripts/checkov.sh -f rendered.yaml --framework kubernetes     (any checkov arguments)
# Installing takes about 20 s with a warm pip cache (a few minutes on a cold one); messages go to stderr, so
# checkov's own output on stdout stays parseable. On failure it exits 1 with pip's log.
set -euo pipefail
cd "$(dirname "$0")/.."

CHECKOV_VERSION=3.3.30
venv=.venv-checkov
stamp=$venv/.checkov-$CHECKOV_VERSION
if [ ! -f "$stamp" ]; then
  echo "checkov.sh: installing checkov $CHECKOV_VERSION into $venv (log: $venv/pip.log)" >&2
  PY=${PYTHON:-python3}
  [ -x "$venv/bin/python" ] || "$PY" -m venv "$venv"
  if ! "$venv/bin/pip" install --disable-pip-version-check "checkov==$CHECKOV_VERSION" >"$venv/pip.log" 2>&1; then
    tail -n 30 "$venv/pip.log" >&2
    echo "checkov.sh: pip could not install checkov $CHECKOV_VERSION; the whole log is in $venv/pip.log" >&2
    exit 1
  fi
  touch "$stamp"
fi
exec "$venv/bin/checkov" "$@"
