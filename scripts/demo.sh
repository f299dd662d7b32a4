#!/usr/bin/env bash
# `make demo`: Meshboard on the embedded default: SQLite, a private local Redis, the Kubernetes API stand-in
# seeded with OSM's bookstore demo, the lab mesh (real Envoy sidecars carrying the demo's traffic, scraped by a real
# Prometheus; TrafficSplit changes move real traffic), two Celery workers (one per collection queue; beat runs in
# the cluster-data one), and the web server.
# Ctrl-C stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."

WEB_PORT=${MESHBOARD_DEMO_PORT:-8000}
REDIS_PORT=${MESHBOARD_DEMO_REDIS_PORT:-6390}
STATE=var/demo
mkdir -p "$STATE"
PY=.venv/bin/python

export DEBUG=1
export MESHBOARD_VAR_DIR="$PWD/$STATE"
export REDIS_URL="redis://127.0.0.1:${REDIS_PORT}/0"
export ALLOWED_HOSTS="localhost,127.0.0.1"

port_free() {
  $PY - "$1" <<'PYCODE'
import socket, sys
with socket.socket() as s:
    try:
        s.bind(("127.0.0.1", int(sys.argv[1])))
    except OSError:
        sys.exit(1)
PYCODE
}
for pair in "web:$WEB_PORT:MESHBOARD_DEMO_PORT" "redis:$REDIS_PORT:MESHBOARD_DEMO_REDIS_PORT"; do
  IFS=: read -r what port variable <<<"$pair"
  port_free "$port" || { echo "demo: port $port ($what) is in use; pick another with $variable=<port> make demo"; exit 1; }
done

pids=()
stopping=0
cleanup() {
  stopping=1
  trap - EXIT INT TERM
  echo
  echo "demo: stopping"
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$STATE" \
  >"$STATE/redis.log" 2>&1 &
pids+=($!)

rm -f "$STATE/kubeconfig"
# MESHBOARD_DEMO_FAULT_CONTROL=1 lets you stall or fail the stand-in's answers over HTTP (lab/kubeapi/README.md).
fault_flag=()
[ "${MESHBOARD_DEMO_FAULT_CONTROL:-0}" = "1" ] && fault_flag=(--fault-control)
$PY -m lab.kubeapi --seed bookstore --port 0 --kubeconfig-out "$STATE/kubeconfig" "${fault_flag[@]}" \
  >"$STATE/kubeapi.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do [ -s "$STATE/kubeconfig" ] && break; sleep 0.1; done
[ -s "$STATE/kubeconfig" ] || { echo "demo: the Kubernetes API stand-in did not start; see $STATE/kubeapi.log"; exit 1; }
if [ ${#fault_flag[@]} -gt 0 ]; then
  echo "demo: fault control on: POST faults to $(sed -n 's/^ *server: //p' "$STATE/kubeconfig" | head -n 1)/_lab/faults"
fi

# The lab mesh: one Envoy per bookstore pod, its apps and traffic, the controller that applies the stand-in's
# TrafficSplits and policies, and Prometheus (every port chosen at run time; see $STATE/lab-mesh/lab.json).
rm -f "$STATE/lab-mesh/lab.json"
$PY -m lab.mesh up --kubeconfig "$STATE/kubeconfig" --state-dir "$STATE/lab-mesh" >"$STATE/lab-mesh.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 300); do [ -s "$STATE/lab-mesh/lab.json" ] && break; sleep 0.1; done
[ -s "$STATE/lab-mesh/lab.json" ] || { echo "demo: the lab mesh did not start; see $STATE/lab-mesh.log"; exit 1; }
PROMETHEUS_URL=$($PY -c 'import json, sys; print(json.load(open(sys.argv[1]))["prometheus_url"])' "$STATE/lab-mesh/lab.json")

$PY manage.py migrate --noinput >/dev/null
$PY manage.py create_user viewer --role viewer --password "view-the-mesh" >/dev/null
$PY manage.py create_user operator --role operator --password "move-the-canary" --staff >/dev/null
$PY manage.py add_cluster demo --kubeconfig "$PWD/$STATE/kubeconfig" --prometheus-url "$PROMETHEUS_URL" \
  --poll-interval 15 >/dev/null

# Both collection queues, one small solo worker each (so a stalled Prometheus never holds Kubernetes data back, as
# in production); beat runs inside the cluster-data worker to keep the demo light. Both also take the tick queue.
.venv/bin/celery -A meshboard worker -Q cluster,tick -n cluster@%h --beat --pool solo --loglevel WARNING \
  --schedule "$STATE/celerybeat-schedule" >"$STATE/worker-cluster.log" 2>&1 &
pids+=($!)
.venv/bin/celery -A meshboard worker -Q metrics,tick -n metrics@%h --pool solo --loglevel WARNING \
  >"$STATE/worker-metrics.log" 2>&1 &
pids+=($!)

$PY manage.py runserver "127.0.0.1:${WEB_PORT}" --noreload >"$STATE/web.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  $PY -c "import urllib.request, sys; urllib.request.urlopen(sys.argv[1], timeout=1)" \
    "http://127.0.0.1:${WEB_PORT}/healthz" 2>/dev/null && break
  sleep 0.2
done

cat <<MSG

Meshboard demo is running: http://127.0.0.1:${WEB_PORT}/
  log in as  operator / move-the-canary   (may change TrafficSplit weights; also opens /admin/)
         or  viewer   / view-the-mesh     (read only)
  cluster "demo" is the Kubernetes API stand-in seeded with OSM's bookstore demo, collected every 15 s,
  with real Envoy sidecars carrying its traffic; their Prometheus: ${PROMETHEUS_URL}
  make the canary worse:  $PY -m lab.mesh set --state-dir $STATE/lab-mesh --workload bookstore-v2 --error-rate 0.3
  workers: one per queue (cluster, metrics), beat inside the cluster one; readiness: http://127.0.0.1:${WEB_PORT}/readyz
  logs: $STATE/*.log     stop: Ctrl-C
MSG
wait -n "${pids[@]}" || true
if [ "$stopping" = 0 ]; then
  echo "demo: a process stopped unexpectedly; the end of each log:"
  for log in "$STATE"/*.log; do echo "--- $log"; tail -n 5 "$log"; done
fi
